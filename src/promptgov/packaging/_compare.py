"""Is an exported package, installed or as a wheel, exactly what the workspace exports now?

The manifest inside a package lists the hash of every file, which catches an accidental edit;
but whoever can edit a file in site-packages can edit ``manifest.json`` too. The export is
reproducible, so the answer that cannot be forged from inside the package is to export the
release again from the workspace and compare every file byte for byte: that is
:func:`compare_package` (``promptgov verify-package``, and the last step of
``python -m <package> verify --workspace`` wherever promptgov is importable).
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

from promptgov.errors import PromptgovError


def package_files(path: Path | str) -> tuple[str, dict[str, bytes]]:
    """``(package, files)`` of an installed package folder or a ``.whl``: every file of the
    package (``__pycache__`` excluded), keyed ``package/relative/path``."""
    path = Path(path)
    if path.is_file() and path.suffix == ".whl":
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if ".dist-info/" not in n and not n.endswith("/")]
            files = {n: zf.read(n) for n in names}
        packages = {n.split("/")[0] for n in files}
        if len(packages) != 1:
            raise PromptgovError(f"{path}: not a promptgov export (packages: {sorted(packages)})")
        return packages.pop(), files
    if not (path / "manifest.json").is_file():
        raise PromptgovError(f"{path}: no manifest.json here (fix: pass the installed package's "
                             "folder, e.g. .venv/lib/python3.11/site-packages/support_bot, or "
                             "the .whl file)")
    files = {}
    for f in sorted(path.rglob("*")):
        rel = f.relative_to(path)
        if f.is_file() and "__pycache__" not in rel.parts:
            files[f"{path.name}/{rel.as_posix()}"] = f.read_bytes()
    return path.name, files


def compare_package(path: Path | str, workspace: Any = None) -> list[str]:
    """One line per file of the package at ``path`` that differs from the export of its release
    from ``workspace`` (missing, extra or changed); empty: byte-identical."""
    from promptgov.packaging._export import build_contents
    from promptgov.workspace import Workspace

    ws = Workspace.of(workspace)
    pkg, have = package_files(path)
    try:
        manifest = json.loads(have[f"{pkg}/manifest.json"])
        release = manifest["release"]["name"]
    except (KeyError, ValueError, TypeError):
        return [f"{pkg}/manifest.json: missing or unreadable (fix: export the release again "
                "and deploy that package)"]
    try:
        want = build_contents(release, ws).files
    except PromptgovError as e:
        return [f"cannot export release {release} from {ws.root} to compare with: "
                + str(e).splitlines()[0]]
    from promptgov._version import __version__

    made_with = manifest.get("exported_with", {}).get("promptgov")
    why = ("" if made_with == __version__ else
           f"; it was exported with promptgov {made_with}, this is {__version__}")
    out = []
    for name in sorted(set(have) | set(want)):
        if name not in want:
            out.append(f"{name}: not part of the export of release {release} (an added file)")
        elif name not in have:
            out.append(f"{name}: missing (the export of release {release} has it)")
        elif have[name] != want[name]:
            out.append(f"{name}: differs from the export of release {release} from the workspace "
                       f"(sha256 {_sha(have[name])}, exported {_sha(want[name])}){why}")
    return out


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]

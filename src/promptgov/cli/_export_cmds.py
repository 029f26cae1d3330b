"""``promptgov export``: a release's approved prompt versions as a frozen, self-verifying wheel."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated

import typer

from promptgov.cli._app import WorkspaceOpt, app, workspace
from promptgov.cli._eval_cmds import JsonOpt, _errors


@app.command("export")
def export_cmd(
    release: Annotated[str, typer.Argument(metavar="RELEASE",
                                           help="A release of governance/releases/.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the wheel to.")]
    = Path("dist"),
    as_json: JsonOpt = False, ws: WorkspaceOpt = None,
) -> None:
    """Build a frozen wheel of a release's approved prompt versions.

    The wheel (name and version from the release manifest) embeds the prompts, their schemas,
    the routing bands and retry policy and a manifest of every hash and approval; it needs only
    pydantic and verifies itself on import. Refuses, writing nothing, when a version the release
    names is unapproved, revoked or drifted. The same release gives the same bytes.

    Example: promptgov export support_bot --out dist/
    """
    from promptgov.governance import load_release
    from promptgov.packaging import export

    w = workspace(ws)
    with _errors(ValueError):
        path = export(release, out=out, workspace=w)
    rel = load_release(w.root, release)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    if as_json:
        print(json.dumps({"wheel": str(path), "sha256": sha, "release": rel.name,
                          "version": rel.version, "prompts": sorted(rel.prompts)}, indent=1))
        return
    print(f"wrote {path} (release {rel.name} v{rel.version}: {', '.join(sorted(rel.prompts))})")
    print(f"sha256 {sha}")


@app.command("verify-package")
def verify_package_cmd(
    package: Annotated[Path, typer.Argument(
        metavar="PACKAGE", help="An installed package folder (site-packages/support_bot) or a "
        ".whl file.")],
    as_json: JsonOpt = False, ws: WorkspaceOpt = None,
) -> None:
    """Check an exported package file by file against a fresh export from the workspace.

    Exports the package's release again (the export is reproducible) and compares every file,
    runtime code and manifest.json included, byte for byte. Exit 1 naming each file that was
    added, removed or changed.

    Example: promptgov verify-package .venv/lib/python3.11/site-packages/support_bot
    """
    from promptgov.packaging._compare import compare_package

    w = workspace(ws)
    with _errors(ValueError):
        problems = compare_package(package, w)
    if as_json:
        print(json.dumps({"ok": not problems, "package": str(package), "problems": problems},
                         indent=1))
    elif not problems:
        print(f"ok: {package} is byte for byte the export of its release from {w.root}")
    for line in problems if not as_json else ():
        typer.echo(f"error: {line}", err=True)
    if problems:
        raise typer.Exit(1)

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
    from promptgov.export import export_release
    from promptgov.governance import load_release

    w = workspace(ws)
    with _errors(ValueError):
        path = export_release(release, out=out, workspace=w)
    rel = load_release(w.root, release)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    if as_json:
        print(json.dumps({"wheel": str(path), "sha256": sha, "release": rel.name,
                          "version": rel.version, "prompts": sorted(rel.prompts)}, indent=1))
        return
    print(f"wrote {path} (release {rel.name} v{rel.version}: {', '.join(sorted(rel.prompts))})")
    print(f"sha256 {sha}")

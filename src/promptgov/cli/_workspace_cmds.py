"""``promptgov lock``, ``check`` and ``ls``: the fast, model-free governance commands."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from promptgov.cli._app import WorkspaceOpt, app, workspace

if TYPE_CHECKING:
    from promptgov.governance._check import Scan


@app.command()
def lock(ws: WorkspaceOpt = None) -> None:
    """Record the content hash of every new prompt, schema and evalset version in
    governance/lock.json. Refuses to re-hash a locked version that changed.

    Example: promptgov lock
    """
    from promptgov.governance import lock as do_lock

    w = workspace(ws)
    added, warnings = do_lock(w.root)
    for p in warnings:
        print(f"warning: {p}", file=sys.stderr)
    print(f"locked {len(added)} new version(s)" + (": " + ", ".join(added) if added else
                                                   "; governance/lock.json is up to date"))


@app.command()
def check(
    ws: WorkspaceOpt = None,
    full: Annotated[bool, typer.Option(
        help="Re-derive every hash, ignoring what this machine derived before.")] = False,
    runs: Annotated[bool, typer.Option(
        help="Also check each approval record against its MLflow run (hashes, metrics, gates; "
        "slower: opens the tracking store).")] = False,
) -> None:
    """Verify the workspace against governance/lock.json (a fast CI / pre-commit step).

    Exits 1, naming file, version, locked and new hash and the fix, when a locked version
    changed, a version is not locked, a reference is unknown, or a schema broke.

    Example: promptgov check
    """
    from promptgov.governance import check as do_check

    w = workspace(ws)
    result = do_check(w.root, full=full, runs=runs)
    for p in result.warnings:
        print(f"warning: {p}", file=sys.stderr)
    for p in result.problems:
        print(f"error: {p}", file=sys.stderr)
    print(result.summary())
    if not result.ok:
        raise typer.Exit(1)


@app.command("ls")
def ls_cmd(ws: WorkspaceOpt = None) -> None:
    """List prompts, versions, hashes and lock state.

    Example: promptgov ls
    """
    from rich.console import Console
    from rich.table import Table

    from promptgov.governance._check import scan
    from promptgov.hashing import short

    w = workspace(ws)
    s = scan(w.root)
    t = Table(title=f"prompts in {w.root}")
    for col in ("prompt", "kind", "schema", "evalset", "content", "render", "state"):
        t.add_column(col)
    for ref, e in s.prompts.items():
        t.add_row(ref, e.get("kind", ""), e.get("schema") or "-", e.get("evalset") or "-",
                  short(e["content_hash"]), short(e.get("render_fingerprint") or ""),
                  _lock_state(s, ref, e["file"]))
    Console(width=max(120, Console().width)).print(t)
    print(f"{len(s.schemas)} schemas: {', '.join(s.schemas)}")
    print(f"{len(s.evalsets)} evalsets: " + ", ".join(f"{r} ({e['count']} cases)"
                                                       for r, e in s.evalsets.items()))
    unreadable = [p for p in s.problems if not p.code]  # files that do not load: not listed
    for p in unreadable:
        print(f"error: {p}", file=sys.stderr)
    if unreadable:
        raise typer.Exit(1)


def _lock_state(s: Scan, ref: str, file: str) -> str:
    """The ``state`` cell of a prompt version (rich markup): lock, then its worst problem."""
    if not s.lock["prompts"].get(ref):
        return "[yellow]unlocked[/]"
    codes = {p.code for p in s.problems if p.file == file}
    if "drift" in codes:
        return "[red]drifted[/]"
    if codes & {"invalid_content", "contamination"}:
        return "[red]invalid[/] (see check)"
    return "[green]locked[/]"

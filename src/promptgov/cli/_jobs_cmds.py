"""``promptgov evalset from-jobs``: production failures become cases to label."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from promptgov.cli._app import WorkspaceOpt, app, workspace
from promptgov.cli._eval_cmds import JsonOpt, _errors

evalset_app = typer.Typer(no_args_is_help=True, help="Make evalsets from other sources.")
app.add_typer(evalset_app, name="evalset")


@evalset_app.command("from-jobs")
def from_jobs(
    store: Annotated[str, typer.Argument(
        metavar="STORE", help="The job store: sqlite:///jobs.db (or a path), redis://HOST:6379/0 "
        "with --queue, or a .jsonl of traces (`python -m PKG dlq --json`).")],
    prompt: Annotated[str | None, typer.Option(
        "--prompt", "-p", help="The prompt version whose jobs to take (needed when the store "
        "holds several).")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="Evalset name (default: <prompt name>-prod).")] = None,
    queue: Annotated[str | None, typer.Option(
        "--queue", "-q", help="The BullMQ queue of a Redis store (the package name).")] = None,
    as_json: JsonOpt = False, ws: WorkspaceOpt = None,
) -> None:
    """Turn the dead letters and review-band jobs of an exported package into an evalset.

    Each distinct input becomes a case without an expected value, for a person to label; meta
    says why it was picked (the last error, or the model's answer) and names the job. Cases
    already in the evalset keep their labels; new cases make a new version. Then label them,
    `promptgov lock`, and evaluate the next prompt version on them.

    Example: promptgov evalset from-jobs sqlite:///var/lib/app/jobs.db --prompt ticket_triage@2
    """
    from promptgov.jobs import evalset_from_jobs, read_traces

    w = workspace(ws)
    with _errors(ValueError):
        es, counts = evalset_from_jobs(w, read_traces(store, queue=queue), prompt=prompt,
                                       name=name, source=_safe(store))
    rel = es.dir.relative_to(w.root)
    if as_json:
        print(json.dumps({"evalset": es.ref, "dir": str(rel), **counts}))
        return
    new = counts["dead_letter"] + counts["review"]
    print(f"{'wrote' if new else 'unchanged:'} {rel} ({es.ref}: {counts['cases']} cases; new: "
          f"{counts['dead_letter']} dead letter(s), {counts['review']} review)")
    if new:
        print(f"next: fill in `expected` in {rel}/cases.jsonl, then `promptgov lock`")


def _safe(store: str) -> str:
    """The store without a password (``redis://:pw@host`` → ``redis://***@host``)."""
    head, at, tail = store.rpartition("@")
    return f"{head.split('://')[0]}://***@{tail}" if at and "://" in head else store

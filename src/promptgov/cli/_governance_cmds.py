"""``promptgov approve``, ``revoke``, ``status``, ``release`` and ``gate``: evidence in MLflow
becomes a recorded decision; releases name approved versions; CI re-checks the gates."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from promptgov.cli._app import WorkspaceOpt, app, workspace
from promptgov.cli._eval_cmds import JsonOpt, _errors, _fmt, _num, _quiet_mlflow

RefArg = Annotated[str, typer.Argument(metavar="PROMPT@VERSION", help="e.g. ticket_triage@2")]
ByOpt = Annotated[str, typer.Option("--by", envvar="PROMPTGOV_USER",
                                    help="Who decides (recorded); env PROMPTGOV_USER.")]

if TYPE_CHECKING:
    from rich.table import Table

    from promptgov.governance._approvals import GateRecord
    from promptgov.workspace import Workspace


@app.command()
def approve(
    ref: RefArg,
    run: Annotated[str, typer.Option("--run", help="The MLflow run id that is the evidence.")],
    by: ByOpt,
    alias: Annotated[str, typer.Option(
        help="MLflow prompt-registry alias to set on the version.")] = "approved",
    record_cassette: Annotated[bool, typer.Option(
        "--record-cassette", help="Record the run's answers to governance/cassettes/ so that "
        "`promptgov gate` can replay them offline.")] = False,
    adversarial_run: Annotated[str | None, typer.Option(
        help="MLflow run holding the adversarial drop (default: the latest one of this "
        "version).")] = None,
    as_json: JsonOpt = False, ws: WorkspaceOpt = None,
) -> None:
    """Approve a locked prompt version on the evidence of an MLflow run.

    Checks that the run is of exactly the locked version (prompt, render, schema and evalset
    hashes) and every gate of governance/policy.toml; refuses, listing each failing gate with
    value and limit, and writes nothing otherwise. On success writes
    governance/approvals/PROMPT@VERSION.toml and sets the MLflow prompt alias.

    Example: promptgov approve ticket_triage@2 --run 9cf4... --by alice
    """
    _quiet_mlflow()
    from promptgov.governance._approvals import approval_path
    from promptgov.governance._approvals import approve as do_approve

    w = workspace(ws)
    with _errors(ValueError):
        a = do_approve(ref, run, by, workspace=w, alias=alias, record_cassette=record_cassette,
                       adversarial_run=adversarial_run)
    if as_json:
        print(json.dumps(a.model_dump(mode="json", exclude_none=True), indent=1))
        return
    print(f"approved {a.ref} by {a.approved_by} on run {a.run_id} ({a.model} on {a.evalset}): "
          f"{len(a.gates)} gates passed")
    for g in a.gates:
        print(f"  ok  {_gate_line(g)}")
    print(f"MLflow prompt {a.prompt} version {a.registry_version}: alias "
          f"{', '.join(a.aliases)}")
    print(f"wrote {w.relpath(approval_path(w.root, a.ref))}"
          + (f" and {a.cassette}" if a.cassette else ""))


@app.command()
def revoke(
    ref: RefArg, by: ByOpt,
    reason: Annotated[str, typer.Option(help="Why (recorded).")],
    ws: WorkspaceOpt = None,
) -> None:
    """Revoke an approval: the record is kept, marked revoked (who, when, why), and the MLflow
    aliases are removed. `promptgov check` then fails for every release naming the version.

    Example: promptgov revoke ticket_triage@2 --by alice --reason "misroutes card disputes"
    """
    _quiet_mlflow()
    from promptgov.governance._approvals import approval_path
    from promptgov.governance._approvals import revoke as do_revoke

    w = workspace(ws)
    with _errors(ValueError):
        a = do_revoke(ref, by, reason, workspace=w)
    print(f"revoked {a.ref} (approved by {a.approved_by} on {a.approved_at:%Y-%m-%d}); "
          f"MLflow alias {', '.join(a.aliases) or '-'} no longer points to it; "
          f"wrote {w.relpath(approval_path(w.root, a.ref))}")


@app.command()
def status(
    prompt: Annotated[str | None, typer.Argument(help="Only this prompt.")] = None,
    no_runs: Annotated[bool, typer.Option("--no-runs", help="Do not read MLflow.")] = False,
    as_json: JsonOpt = False, ws: WorkspaceOpt = None,
) -> None:
    """Every prompt version: lock state, latest MLflow metrics, approval and releases.

    Example: promptgov status ticket_triage
    """
    _quiet_mlflow()
    from promptgov.governance._status import METRICS, status_rows

    w = workspace(ws)
    with _errors():
        rows = [r for r in status_rows(w, runs=not no_runs) if prompt in (None, r["prompt"])]
    if as_json:
        print(json.dumps([{k: _num(v) for k, v in r.items()} for r in rows], indent=1))
        return
    from rich.console import Console

    Console(width=max(140, Console().width)).print(_status_table(w, rows, METRICS))
    broken = [r["problem"] for r in rows if r["problem"]]
    for p in broken:  # a file that does not load is shown, never skipped
        print(f"error: {p}", file=sys.stderr)
    if broken:
        raise typer.Exit(1)


@app.command("release")
def release_cmd(
    name: Annotated[str, typer.Argument(help="Release name, e.g. support.")],
    prompts: Annotated[list[str], typer.Argument(metavar="PROMPT@VERSION...",
                                                 help="The versions that ship together.")],
    description: Annotated[str | None, typer.Option(help="What the release is for.")] = None,
    ws: WorkspaceOpt = None,
) -> None:
    """Write governance/releases/NAME.toml naming approved prompt versions.

    Refuses unless every version is approved and matches its approval, and no response schema
    breaks against the previous release. Bumps the release version when the set changes.

    Example: promptgov release support ticket_triage@2 reply_draft@1
    """
    from promptgov.governance._releasing import release as do_release

    w = workspace(ws)
    with _errors(ValueError):
        rel = do_release(name, prompts, description=description, workspace=w)
    print(f"release {rel.name} v{rel.version}: {', '.join(rel.prompts)}"
          + (f" (previous v{rel.previous_version}: {', '.join(rel.previous)})"
             if rel.previous_version else "") + f"; wrote {rel.file}")


@app.command("gate")
def gate_cmd(
    release: Annotated[str, typer.Argument(help="Release name, e.g. support.")],
    model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Re-run with this model instead of the approval's cassette or "
        "offline model.")] = None,
    track: Annotated[bool, typer.Option(help="Log the re-runs to MLflow.")] = False,
    as_json: JsonOpt = False, ws: WorkspaceOpt = None,
) -> None:
    """Re-run each version of a release and check the current policy's gates (CI, after check).

    Each version is re-evaluated on the evalset it was approved on: from the replay cassette
    recorded at approval, else with its offline model (local/...), else with --model. Exits 1,
    listing each gate that no longer holds.

    Example: promptgov gate support
    """
    _quiet_mlflow()
    from promptgov.governance._regression import gate as do_gate

    w = workspace(ws)
    with _errors(ValueError):
        report = do_gate(release, model=model, workspace=w, track=track)
    if as_json:
        print(json.dumps({"release": report.release, "version": report.version,
                          "ok": report.ok, "versions": [
                              {"ref": r.ref, "model": r.model, "evalset": r.evalset,
                               "ok": r.ok, "problems": list(r.problems),
                               "gates": [{**vars(c), "value": _num(c.value)} for c in r.checks]}
                              for r in report.results]}, indent=1))
    else:
        for r in report.results:
            print(f"{r.ref} on {r.evalset or '-'} with {r.model or '-'}: "
                  + ("ok" if r.ok else "FAILED"))
            for p in r.problems:
                print(f"  FAIL {p}")
            for c in r.checks:
                print(f"  {'ok  ' if c.passed else 'FAIL'} {c}")
    n, v = len(report.failures()), len(report.results)
    if not report.ok:
        print(f"promptgov gate: FAILED ({n} failure{'s' if n != 1 else ''}; each is listed "
              f"above): release {report.release} v{report.version}", file=sys.stderr)
        raise typer.Exit(1)
    print(f"promptgov gate: ok: release {report.release} v{report.version}, {v} version"
          f"{'s' if v != 1 else ''} re-run, every gate holds")


_STATUS_HEADER = {"cost_per_1k_usd": "$/1k", "latency_p95_s": "p95 s", "failure_rate": "fail",
                  "accuracy": "acc"}
_STATUS_COLOR = {"locked": "green", "drifted": "red", "unlocked": "yellow", "deleted": "red",
                 "unreadable": "red", "approved": "green", "revoked": "red", "stale": "red"}


def _status_table(w: Workspace, rows: list[dict[str, Any]], metrics: tuple[str, ...]) -> Table:
    from rich import box
    from rich.table import Table

    t = Table(title=f"promptgov status · {w.root}", box=box.SIMPLE)
    cols = ["prompt", "lock", "content", "model", *metrics, "approval", "by", "aliases",
            "releases"]
    for c in cols:
        t.add_column(_STATUS_HEADER.get(c, c), justify="right" if c in metrics else "left")
    for r in rows:
        lock, appr = r["lock"], r["approval"]
        t.add_row(r["ref"], _colored(lock), r["content"], r["model"] or "-",
                  *(_fmt(r[m], 3) for m in metrics), _colored(appr) if appr else "-",
                  r["approved_by"] or "", r["aliases"], r["releases"])
    return t


def _colored(state: str) -> str:
    """A lock or approval state in rich markup: green when good, red when broken."""
    return f"[{_STATUS_COLOR[state]}]{state}[/]"


def _gate_line(g: GateRecord) -> str:
    from promptgov.governance._gates import GateCheck

    return str(GateCheck(g.gate, g.metric, g.value, g.limit, g.passed))

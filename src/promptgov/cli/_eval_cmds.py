"""``promptgov eval``, ``compare`` and ``loop``: run prompts on evalsets, log the runs to MLflow,
read them back side by side. MLflow, pandas and the models load inside the commands (``ui``,
``server`` and ``log`` live in ``_tracking_cmds``).
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from promptgov.cli._app import WorkspaceOpt, app, workspace
from promptgov.errors import PromptgovError

EvalsetOpt = Annotated[str | None, typer.Option(
    "--evalset", "-e", help="Evalset name (default: the one the prompt names).")]
ModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", help="Model id: local/knn, openai/gpt-4o-mini, replay:<cassette>, fake/... "
    "(default: the prompt's own model.id).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ConcurrencyOpt = Annotated[int, typer.Option(min=1, help="Model calls in flight at once.")]
ApiBaseOpt = Annotated[str | None, typer.Option(
    "--api-base", envvar="PROMPTGOV_API_BASE",
    help="Base URL of an OpenAI-compatible server for a provider model "
    "(e.g. http://localhost:11434 for ollama_chat/...).")]

# Run params that, with the same answers, make two runs the same run (``loop`` logs it once).
_SAME_RUN = ("content_hash", "render_fingerprint", "schema_hash", "evalset_hash", "model",
             "temperature", "max_tokens", "samples", "routing_auto", "routing_review")


def _quiet_mlflow() -> None:
    """A command's output is its own: no MLflow INFO lines (``Creating initial MLflow database
    tables...``). Set before MLflow is imported; an explicit MLFLOW_LOGGING_LEVEL wins."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


@contextmanager
def _errors(*also: type[Exception]):
    """Library errors (and ``also``, e.g. ValueError from a bad argument) → ``error: ...``."""
    try:
        yield
    except (PromptgovError, *also) as e:
        for line in str(e).splitlines() or [type(e).__name__]:
            print(f"error: {line}", file=sys.stderr)
        raise typer.Exit(1) from None


@app.command("eval")
def eval_cmd(
    ref: Annotated[str, typer.Argument(metavar="PROMPT@VERSION",
                                       help="e.g. ticket_triage@2 (no version: the latest).")],
    evalset: EvalsetOpt = None, model: ModelOpt = None, concurrency: ConcurrencyOpt = 8,
    api_base: ApiBaseOpt = None,
    budget_usd: Annotated[float | None, typer.Option(
        min=0, help="Stop sending calls once this much was paid in this run.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Bypass the response cache.")]
    = False,
    no_track: Annotated[bool, typer.Option("--no-track", help="Do not log to MLflow.")] = False,
    allow_drift: Annotated[bool, typer.Option(
        "--allow-drift", help="Evaluate a locked version whose file was edited since it was "
        "locked; the run is marked drifted and never counts as the version.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the cases, the prompt tokens and the estimated cost (price "
        "map); send nothing, log nothing.")] = False,
    as_json: JsonOpt = False, ws: WorkspaceOpt = None,
) -> None:
    """Evaluate one prompt version on its evalset and log the run to MLflow.

    Before a paid run it prints what it is about to send (cases, prompt tokens, estimated
    cost); `--dry-run` prints only that.

    A tracking server that does not answer stops the command before any model call; if logging
    fails after the cases ran, the result is printed and kept for `promptgov log --pending`.

    A missing key or an unknown model stops the run at once with one line and its fix (exit 1).
    Ctrl-C stops sending, keeps every answer received and exits 130; running the same command
    again resumes (answered cases come from the cache, nothing is paid twice).

    Example: promptgov eval ticket_triage@2 --model local/knn
    """
    _quiet_mlflow()
    w = workspace(ws)
    with _errors(ValueError):
        pv, es, m = _target(w, ref, evalset, model, api_base=api_base)
    if dry_run or not m.id.startswith(("local/", "replay:", "fake/")):
        if not dry_run and callable(getattr(m, "preflight", None)):
            with _errors():
                m.preflight()  # no key: that line first, before tokens are counted
        from dataclasses import asdict

        from promptgov.eval._estimate import estimate

        with _errors(ValueError):
            est = estimate(pv.ref, workspace=w, model=m.id, evalset=es.ref)
        if dry_run:
            print(json.dumps(asdict(est)) if as_json else est.summary())
            return
        print(f"sending: {est.summary()}", file=sys.stderr)
    from promptgov.errors import TrackingError

    failed = None
    with _errors():
        try:
            r = _run(w, pv, es, m, concurrency=concurrency, budget_usd=budget_usd,
                     cache=not no_cache, track=not no_track, allow_drift=allow_drift)
        except TrackingError as e:
            if e.result is None:
                raise
            r, failed = e.result, e  # the cases ran and were paid for: show them, then fail
    _print_result(r, as_json)
    if failed is not None:
        print(f"error: {failed}", file=sys.stderr)
        raise typer.Exit(1)


def _print_result(r, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"prompt": r.prompt, "evalset": r.evalset, "model": r.model,
                          "run_id": r.run_id, "calls": r.calls,
                          "metrics": {k: _num(v) for k, v in r.metrics.items()}}, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    print(f"{r.prompt} on {r.evalset} with {r.model}")
    t = Table()
    t.add_column("metric")
    t.add_column("value", justify="right")
    for k, v in r.metrics.items():
        t.add_row(k, _fmt(v))
    Console().print(t)
    cached = len(r.records) - sum(not rec["cached"] for rec in r.records)
    print(f"{r.calls} model calls, {cached} of {len(r.records)} answers from the cache")
    print(f"MLflow run: {r.run_id}" if r.run_id else "not logged to MLflow")


@app.command("compare")
def compare_cmd(
    prompt: Annotated[str, typer.Argument(help="Prompt name, e.g. ticket_triage.")],
    evalset: EvalsetOpt = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Only runs of this model.")]
    = None,
    baseline: Annotated[str | None, typer.Option(
        help="Version to compare against (default: the approved one, else the lowest).")] = None,
    no_log: Annotated[bool, typer.Option("--no-log", help="Do not log the comparison to MLflow.")]
    = False,
    as_json: JsonOpt = False, ws: WorkspaceOpt = None,
) -> None:
    """Compare the versions of a prompt from their latest MLflow runs.

    Each version's accuracy is tested against a baseline on the cases both runs share: the
    difference, its exact McNemar p-value and a bootstrap 95% CI. A comparison not logged
    before is logged as its own MLflow run (Δ, p, CI per version, Pareto plot) after the table
    is printed. Reads the workspace's run index: no MLflow import when nothing is new.

    Example: promptgov compare ticket_triage --model local/knn
    """
    _quiet_mlflow()
    from promptgov.eval._compare import compare

    w = workspace(ws)
    with _errors(ValueError):
        df = compare(prompt, workspace=w, evalset=evalset, model=model, baseline=baseline)
    if as_json:
        rows = [{"version": int(v), **{k: _num(x) for k, x in row.items()}}
                for v, row in df.iterrows()]
        print(json.dumps({"prompt": prompt, "baseline": df.attrs["baseline"], "versions": rows,
                          "drifted_runs": df.attrs.get("drifted", [])}, indent=1), flush=True)
    else:
        _print_compare(df)
    if not no_log:
        with _errors():
            _log_compare(w, df, quiet=as_json)


def _log_compare(w, df, quiet: bool = False) -> None:
    """Log the comparison as its own run unless exactly it is logged already."""
    from promptgov.eval._compare_run import already_logged, log_compare

    if len(df) < 2 or already_logged(w.root, df):
        return
    rid = log_compare(w.root, df)
    if not quiet:
        print(f"comparison logged as MLflow run {rid}")


@app.command()
def loop(
    model: ModelOpt = None, concurrency: ConcurrencyOpt = 8, ws: WorkspaceOpt = None,
) -> None:
    """Lock, check, evaluate every prompt version, log to MLflow, compare.

    Locks new versions (fails on drift), checks the workspace, evaluates every prompt version
    on its evalset, logs each run to MLflow and compares the versions of each prompt.

    Re-running it is cheap: unchanged evals answer from the cache (no model call) and are not
    logged again.

    Example: promptgov loop --model local/knn
    """
    _quiet_mlflow()
    from promptgov.eval._compare import compare
    from promptgov.eval._tracking import tracking_uri
    from promptgov.governance import check as do_check
    from promptgov.governance import lock as do_lock

    w = workspace(ws)
    with _errors():
        added, warnings = do_lock(w.root)
    for p in warnings:
        print(f"warning: {p}", file=sys.stderr)
    print(f"lock: {len(added)} new version(s) locked" + (f": {', '.join(added)}" if added else ""))
    result = do_check(w.root)
    for p in result.problems:
        print(f"error: {p}", file=sys.stderr)
    print(result.summary())
    if not result.ok:
        raise typer.Exit(1)
    with _errors(ValueError):
        targets = [_target(w, f"{n}@{v}", None, model) for n, v in w.prompt_files()]
    with _errors():
        from promptgov.eval._tracking import check_reachable

        check_reachable(w.root)  # an unreachable server: one line, before any eval
    calls = 0
    for name in w.prompt_names():
        mine = [t for t in targets if t[0].name == name]
        for pv, es, m in mine:
            with _errors():
                r = _run(w, pv, es, m, concurrency=concurrency, track=False)
                run_id, new = _log_once(w, r, pv)
            calls += r.calls
            print(f"{pv.ref} on {es.ref} with {m.id}: accuracy {_fmt(r.metrics['accuracy'])}, "
                  f"{r.calls} model calls; "
                  + (f"logged run {run_id}" if new else f"unchanged since run {run_id}"))
        pv, es, m = mine[-1]
        with _errors():
            df = compare(name, workspace=w, evalset=es.ref, model=m.id)
            _print_compare(df)
            _log_compare(w, df)
    print(f"{calls} model calls in total" + (
        ": every answer came from the response cache, nothing was re-run or re-logged"
        if calls == 0 else ""))
    print(f"Open the runs in MLflow: promptgov ui  →  http://127.0.0.1:5000\n"
          f"tracking URI: {tracking_uri(w.root)}")


# -- helpers ---------------------------------------------------------------------------------

def _target(w, ref: str, evalset: str | None, model: str | None, *,
            api_base: str | None = None):
    """Prompt version, evalset and model for one eval, validated before anything runs."""
    from promptgov.eval._engine import resolve

    options = {"api_base": api_base} if api_base else None
    _, pv, es, _, _, m = resolve(w, ref, evalset, model, model_options=options)
    return pv, es, m


def _run(w, pv, es, m, *, concurrency: int, budget_usd: float | None = None,
         cache: bool = True, track: bool = True, allow_drift: bool = False):
    """``evaluate()`` with a progress bar on stderr: cases, failures, cost so far, ETA.

    A systematic failure raises ``RunStopped`` (one line with the fix; the bar is hidden so that
    line is all the user sees); Ctrl-C prints the partial summary and how to resume, exit 130.
    """
    from promptgov.errors import EvalInterrupted, RunStopped

    preflight = getattr(m, "preflight", None)
    if callable(preflight):
        preflight()  # no key: one line, before a bar is drawn or anything heavy is imported
    if track:
        from promptgov.eval._tracking import check_reachable

        check_reachable(w.root)  # an unreachable server: one line, nothing spent
    try:
        return _run_with_bar(w, pv, es, m, concurrency=concurrency, budget_usd=budget_usd,
                             cache=cache, track=track, allow_drift=allow_drift)
    except RunStopped:
        raise
    except EvalInterrupted as e:
        print(str(e), file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted: every answer received so far is cached", file=sys.stderr)
    command = shlex.join(["promptgov", *sys.argv[1:]])
    print(f"resume: {command}   (answered cases come from the cache; nothing is paid twice)",
          file=sys.stderr)
    raise typer.Exit(130)


def _run_with_bar(w, pv, es, m, *, concurrency: int, budget_usd: float | None,
                  cache: bool, track: bool, allow_drift: bool = False):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from promptgov.eval import evaluate

    cols = (TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed · ${task.fields[paid]:.4f}"),
            TimeRemainingColumn())
    with Progress(*cols, console=Console(stderr=True)) as bar:
        task = bar.add_task(f"{pv.ref} on {es.ref}", total=len(es.cases), failed=0, paid=0.0)

        def progress(p: dict[str, Any]) -> None:
            bar.update(task, completed=p["done"], total=p["total"], failed=p["failed"],
                       paid=p["paid_usd"])

        try:
            return evaluate(pv, es, model=m, workspace=w, concurrency=concurrency,
                            budget_usd=budget_usd, cache=cache, track=track, progress=progress,
                            allow_drift=allow_drift)
        except BaseException:
            bar.update(task, visible=False)  # the error or summary line is the whole story
            raise


def _log_once(w, r, pv) -> tuple[str, bool]:
    """Log ``r`` unless the latest run of this version is the same run (same hashes, model and
    settings, every answer from the cache, same scores): ``(run_id, logged_now)``."""
    from promptgov.eval._compare import latest_runs
    from promptgov.eval._evaluate import lock_state
    from promptgov.eval._runlog import log_eval, snapshot

    if r.calls == 0:
        prev = latest_runs(w.root, pv.name, evalset=r.evalset, model=r.model).get(pv.version)
        if (prev is not None
                and all(prev.data.params.get(k) == str(r.params.get(k)) for k in _SAME_RUN)
                and all(prev.data.metrics.get(k) == r.metrics[k]
                        for k in ("cases", "accuracy", "failure_rate"))):
            return prev.info.run_id, False
    return log_eval(w.root, r, snapshot(pv, w, lock_state(w, pv))), True


_SHORT = {"accuracy": "acc", "macro_f1": "F1", "object_match": "obj match",
          "failure_rate": "fail", "cost_per_1k_usd": "$/1k", "latency_p95_s": "p95 s",
          "ece": "ECE", "automation_rate": "auto", "auto_precision": "auto prec",
          "intent_micro_f1": "intent µF1", "intent_macro_f1": "intent MF1",
          "field_f1": "slot F1"}


def _print_compare(df) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from promptgov.eval._compare import FIELD_F1, MAIN_METRICS

    one = {c: df[c].iloc[0] for c in ("evalset", "model") if df[c].nunique() == 1}
    t = Table(title=" · ".join([df.attrs["prompt"], *map(str, one.values())]), box=box.SIMPLE,
              caption="* baseline. Δacc, p (exact McNemar) and 95% CI (bootstrap): paired "
              "by case")
    varying = [c for c in ("evalset", "model") if c not in one]
    metrics = [c for c in df.columns if c in MAIN_METRICS or c.startswith(FIELD_F1)]
    for c in ["version", *varying, *(_SHORT.get(c, c.replace(FIELD_F1, "F1 ")) for c in metrics),
              "Δacc", "p", "95% CI", "sig", "run"]:
        t.add_column(c, justify="left" if c in ("version", "evalset", "model", "run")
                     else "right", no_wrap=True)
    for v, row in df.iterrows():
        stats = (["", "", "", ""] if row["baseline"] else
                 [f"{row['accuracy_delta']:+.3f}", f"{row['mcnemar_p']:.2g}",
                  f"{row['ci95_low']:+.3f}..{row['ci95_high']:+.3f}",
                  "yes" if row["significant"] else "no"])
        t.add_row(f"v{v}" + ("*" if row["baseline"] else ""), *(str(row[c]) for c in varying),
                  *(_fmt(row[c], 3) for c in metrics), *stats, str(row["run_id"])[:8])
    Console(width=max(140, Console().width)).print(t)
    for d in df.attrs.get("drifted", []):
        v = d["version"]
        print(f"v{v}: drifted run {d['run_id'][:8]} (content {str(d['content_hash'])[:12]}, "
              f"not the locked file) is not shown as v{v}")


def _num(v: Any) -> Any:
    """JSON-safe scalar: NaN → null, numpy scalars → Python."""
    if hasattr(v, "item"):
        v = v.item()
    return None if isinstance(v, float) and math.isnan(v) else v


def _fmt(v: Any, digits: int = 4) -> str:
    v = _num(v)
    if isinstance(v, float) and v.is_integer() and abs(v) >= 1:
        v = int(v)  # counts (cases, tokens) logged as floats
    return "—" if v is None else f"{v:.{digits}g}" if isinstance(v, float) else str(v)


from promptgov.cli import _tracking_cmds  # noqa: E402, F401  (registers ui, server, log)

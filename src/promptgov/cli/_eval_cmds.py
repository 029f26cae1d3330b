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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from promptgov._loop import LoopHooks
from promptgov.cli._app import WorkspaceOpt, app, workspace
from promptgov.errors import PromptgovError

if TYPE_CHECKING:
    import pandas as pd
    from rich.table import Table

    from promptgov._loop import LoopRun
    from promptgov.eval._engine import Progress
    from promptgov.eval._result import EvalResult
    from promptgov.governance._check import CheckResult
    from promptgov.governance._problem import Problem
    from promptgov.model._base import Model
    from promptgov.workspace import Workspace
    from promptgov.workspace._evalset import Evalset
    from promptgov.workspace._prompt import PromptVersion

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


def _quiet_mlflow() -> None:
    """A command's output is its own: no MLflow INFO lines (``Creating initial MLflow database
    tables...``). Set before MLflow is imported; an explicit MLFLOW_LOGGING_LEVEL wins."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


@contextmanager
def _errors(*also: type[Exception]) -> Iterator[None]:
    """Library errors (and ``also``, e.g. ValueError from a bad argument) → ``error: ...``."""
    caught: tuple[type[Exception], ...] = (PromptgovError, *also)
    try:
        yield
    except caught as e:
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
        preflight = getattr(m, "preflight", None)  # a provider model's; not part of Model
        if not dry_run and callable(preflight):
            with _errors():
                preflight()  # no key: that line first, before tokens are counted
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


def _print_result(r: EvalResult, as_json: bool) -> None:
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


def _log_compare(w: Workspace, df: pd.DataFrame, quiet: bool = False) -> None:
    """Log the comparison as its own run unless exactly it is logged already."""
    from promptgov._loop import log_comparison

    rid = log_comparison(w, df)
    if rid is not None and not quiet:
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
    from promptgov._loop import CheckFailed
    from promptgov._loop import loop as run_loop

    w = workspace(ws)
    with _errors(ValueError):
        try:
            r = run_loop(model=model, workspace=w, concurrency=concurrency,
                         hooks=_LoopPrinter())
        except CheckFailed:
            raise typer.Exit(1) from None  # each problem and the summary are printed already
    print(f"{r.calls} model calls in total" + (
        ": every answer came from the response cache, nothing was re-run or re-logged"
        if r.calls == 0 else ""))
    print(f"Open the runs in MLflow: promptgov ui  →  http://127.0.0.1:5000\n"
          f"tracking URI: {r.tracking_uri}")


class _LoopPrinter(LoopHooks):
    """``promptgov loop``'s output: each step printed as it happens, a bar per evaluation."""

    def locked(self, added: list[str], warnings: list[Problem]) -> None:
        for p in warnings:
            print(f"warning: {p}", file=sys.stderr)
        print(f"lock: {len(added)} new version(s) locked"
              + (f": {', '.join(added)}" if added else ""))

    def checked(self, result: CheckResult) -> None:
        for p in result.problems:
            print(f"error: {p}", file=sys.stderr)
        print(result.summary())

    def evaluate(self, pv: PromptVersion, es: Evalset, model: Model,
                 run: Callable[[Progress | None], EvalResult]) -> EvalResult:
        return _resumable(pv, es, model, run)

    def evaluated(self, run: LoopRun) -> None:
        print(f"{run.prompt} on {run.evalset} with {run.model}: accuracy "
              f"{_fmt(run.metrics['accuracy'])}, {run.result.calls} model calls; "
              + (f"logged run {run.run_id}" if run.logged else
                 f"unchanged since run {run.run_id}"))

    def compared(self, prompt: str, table: pd.DataFrame) -> None:
        _print_compare(table)

    def comparison_logged(self, prompt: str, run_id: str) -> None:
        print(f"comparison logged as MLflow run {run_id}")


# -- helpers ---------------------------------------------------------------------------------

def _target(w: Workspace, ref: str, evalset: str | None, model: str | None, *,
            api_base: str | None = None) -> tuple[PromptVersion, Evalset, Model]:
    """Prompt version, evalset and model for one eval, validated before anything runs."""
    from promptgov.eval._engine import resolve

    options = {"api_base": api_base} if api_base else None
    _, pv, es, _, _, m = resolve(w, ref, evalset, model, model_options=options)
    return pv, es, m


def _run(w: Workspace, pv: PromptVersion, es: Evalset, m: Model, *, concurrency: int,
         budget_usd: float | None = None, cache: bool = True, track: bool = True,
         allow_drift: bool = False) -> EvalResult:
    """``evaluate()`` with a progress bar on stderr (see :func:`_resumable`)."""
    from promptgov.eval import evaluate

    def run(progress: Progress | None) -> EvalResult:
        return evaluate(pv, es, model=m, workspace=w, concurrency=concurrency,
                        budget_usd=budget_usd, cache=cache, track=track, progress=progress,
                        allow_drift=allow_drift)

    return _resumable(pv, es, m, run, reachable=w.root if track else None)


def _resumable(pv: PromptVersion, es: Evalset, m: Model,
               run: Callable[[Progress | None], EvalResult], *,
               reachable: Path | None = None) -> EvalResult:
    """``run(progress)`` with a progress bar on stderr: cases, failures, cost so far, ETA.

    A systematic failure raises ``RunStopped`` (one line with the fix; the bar is hidden so that
    line is all the user sees); Ctrl-C prints the partial summary and how to resume, exit 130.
    ``reachable``: the workspace whose tracking server must answer first.
    """
    from promptgov.errors import EvalInterrupted, RunStopped

    preflight = getattr(m, "preflight", None)
    if callable(preflight):
        preflight()  # no key: one line, before a bar is drawn or anything heavy is imported
    if reachable is not None:
        from promptgov.eval._tracking import check_reachable

        check_reachable(reachable)  # an unreachable server: one line, nothing spent
    try:
        return _with_bar(f"{pv.ref} on {es.ref}", len(es.cases), run)
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


def _with_bar(label: str, total: int,
              run: Callable[[Progress | None], EvalResult]) -> EvalResult:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    cols = (TextColumn("{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed · ${task.fields[paid]:.4f}"),
            TimeRemainingColumn())
    with Progress(*cols, console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=total, failed=0, paid=0.0)

        def progress(p: dict[str, Any]) -> None:
            bar.update(task, completed=p["done"], total=p["total"], failed=p["failed"],
                       paid=p["paid_usd"])

        try:
            return run(progress)
        except BaseException:
            bar.update(task, visible=False)  # the error or summary line is the whole story
            raise


_SHORT = {"accuracy": "acc", "macro_f1": "F1", "object_match": "obj match",
          "failure_rate": "fail", "cost_per_1k_usd": "$/1k", "latency_p95_s": "p95 s",
          "ece": "ECE", "automation_rate": "auto", "auto_precision": "auto prec",
          "intent_micro_f1": "intent µF1", "intent_macro_f1": "intent MF1",
          "field_f1": "slot F1"}


def _print_compare(df: pd.DataFrame) -> None:
    from rich.console import Console

    Console(width=max(140, Console().width)).print(_compare_table(df))
    for d in df.attrs.get("drifted", []):
        v = d["version"]
        print(f"v{v}: drifted run {d['run_id'][:8]} (content {str(d['content_hash'])[:12]}, "
              f"not the locked file) is not shown as v{v}")


def _compare_table(df: pd.DataFrame) -> Table:
    """One row per version: its metrics, then the paired test against the baseline. Evalset
    and model are in the title when every version shares them, else columns."""
    from rich import box
    from rich.table import Table

    from promptgov.eval._compare import FIELD_F1, MAIN_METRICS

    one = {c: df[c].iloc[0] for c in ("evalset", "model") if df[c].nunique() == 1}
    t = Table(title=" · ".join([df.attrs["prompt"], *map(str, one.values())]), box=box.SIMPLE,
              caption="* baseline. Δacc, p (exact McNemar) and 95% CI (bootstrap): paired "
              "by case")
    varying = [c for c in ("evalset", "model") if c not in one]
    metrics = [c for c in df.columns if c in MAIN_METRICS or c.startswith(FIELD_F1)]
    _add_columns(t, ["version", *varying, *(_column(m, FIELD_F1) for m in metrics),
                     "Δacc", "p", "95% CI", "sig", "run"])
    for v, row in df.iterrows():
        t.add_row(f"v{v}" + ("*" if row["baseline"] else ""), *(str(row[c]) for c in varying),
                  *(_fmt(row[c], 3) for c in metrics), *_paired_cells(row),
                  str(row["run_id"])[:8])
    return t


def _add_columns(t: Table, names: list[str]) -> None:
    for c in names:
        t.add_column(c, justify="left" if c in ("version", "evalset", "model", "run")
                     else "right", no_wrap=True)


def _column(metric: str, field_f1: str) -> str:
    """A metric's column header: its short name, or ``F1 <field>`` for a per-field F1."""
    return _SHORT.get(metric, metric.replace(field_f1, "F1 "))


def _paired_cells(row: Any) -> list[str]:
    """Δacc, p, CI and significance against the baseline; blank in the baseline's own row."""
    if row["baseline"]:
        return ["", "", "", ""]
    return [f"{row['accuracy_delta']:+.3f}", f"{row['mcnemar_p']:.2g}",
            f"{row['ci95_low']:+.3f}..{row['ci95_high']:+.3f}",
            "yes" if row["significant"] else "no"]


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

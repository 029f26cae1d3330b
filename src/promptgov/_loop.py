"""``loop()``: the main job in one call, what ``promptgov loop`` (``make demo``) runs.

Lock new versions (refusing drift), check the workspace, evaluate every prompt version on its
evalset, log each run to MLflow unless the same run is logged already, and compare the versions
of each prompt (the comparison logged as its own run when it is new).

    >>> import promptgov as pg                                        # doctest: +SKIP
    >>> r = pg.loop(model="local/knn")                                # doctest: +SKIP
    >>> r.comparisons["ticket_triage"].table[["accuracy", "mcnemar_p"]]  # doctest: +SKIP

Re-running it is cheap: unchanged evals answer from the response cache (no model call) and are
not logged again. A caller that reports progress (the CLI) passes :class:`LoopHooks`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from promptgov.errors import GovernanceError

if TYPE_CHECKING:
    import pandas as pd

    from promptgov.eval._engine import Progress
    from promptgov.eval._result import EvalResult
    from promptgov.governance._check import CheckResult
    from promptgov.governance._problem import Problem
    from promptgov.model._base import Model
    from promptgov.workspace import Workspace
    from promptgov.workspace._evalset import Evalset
    from promptgov.workspace._prompt import PromptVersion

SAME_RUN = ("content_hash", "render_fingerprint", "schema_hash", "evalset_hash", "model",
            "temperature", "max_tokens", "samples", "routing_auto", "routing_review")
"""Run params that, with the same answers, make two runs the same run (logged once)."""


class CheckFailed(GovernanceError):
    """``check`` found problems: nothing was evaluated. ``result`` lists them."""

    def __init__(self, result: CheckResult):
        super().__init__("\n".join([result.summary(), *map(str, result.problems)]))
        self.result = result


@dataclass(frozen=True)
class LoopRun:
    """One evaluation of the loop.

    Attributes:
        prompt: ``name@version``; ``evalset`` and ``model`` what it ran on and with.
        result: the evaluation (metrics, per-case records, ``calls`` made).
        run_id: its MLflow run: logged now (``logged``), or the earlier run it repeats.
    """

    prompt: str
    evalset: str
    model: str
    result: EvalResult
    run_id: str
    logged: bool

    @property
    def metrics(self) -> dict[str, float]:
        return self.result.metrics


@dataclass(frozen=True)
class LoopComparison:
    """The versions of one prompt side by side (:func:`promptgov.compare`'s table).

    ``run_id`` is the comparison's MLflow run when this loop logged it; None when exactly this
    comparison was logged before, or the prompt has one version.
    """

    prompt: str
    table: pd.DataFrame
    run_id: str | None


@dataclass(frozen=True)
class LoopResult:
    """What :func:`loop` did: ``locked`` the versions it locked, ``check`` the workspace check,
    ``runs`` one per prompt version, ``comparisons`` one per prompt (by name)."""

    locked: list[str]
    check: CheckResult
    runs: list[LoopRun]
    comparisons: dict[str, LoopComparison]
    tracking_uri: str

    @property
    def calls(self) -> int:
        """Model calls made in total (0: every answer came from the response cache)."""
        return sum(r.result.calls for r in self.runs)

    def run(self, ref: str) -> LoopRun:
        """The run of ``name@version``."""
        for r in self.runs:
            if r.prompt == ref:
                return r
        raise KeyError(f"{ref}: not evaluated by this loop ({', '.join(self.prompts)})")

    @property
    def prompts(self) -> list[str]:
        return [r.prompt for r in self.runs]

    def __repr__(self) -> str:
        acc = {r.prompt: round(r.metrics["accuracy"], 4) for r in self.runs}
        return (f"LoopResult({len(self.runs)} runs, {self.calls} model calls, accuracy {acc}, "
                f"{sum(c.run_id is not None for c in self.comparisons.values())} comparisons "
                "logged)")


class LoopHooks:
    """What the loop reports as it goes; each hook does nothing here. The CLI overrides them to
    print each step as it happens and to draw a progress bar around each evaluation."""

    def locked(self, added: list[str], warnings: list[Problem]) -> None:
        """After ``lock``: the versions just locked, and its warnings."""

    def checked(self, result: CheckResult) -> None:
        """After ``check``, before :class:`CheckFailed` is raised when it failed."""

    def evaluate(self, pv: PromptVersion, es: Evalset, model: Model,
                 run: Callable[[Progress | None], EvalResult]) -> EvalResult:
        """Run one evaluation: ``run(progress)`` evaluates, calling ``progress`` per case."""
        return run(None)

    def evaluated(self, run: LoopRun) -> None:
        """After an evaluation and its logging (or not: the same run was logged before)."""

    def compared(self, prompt: str, table: pd.DataFrame) -> None:
        """After a prompt's versions are compared, before the comparison is logged."""

    def comparison_logged(self, prompt: str, run_id: str) -> None:
        """After a new comparison was logged as its own MLflow run."""


@dataclass(frozen=True)
class _Target:
    pv: PromptVersion
    es: Evalset
    model: Model


def loop(*, model: str | None = None,
         workspace: Workspace | str | os.PathLike[str] | None = None, concurrency: int = 8,
         hooks: LoopHooks | None = None) -> LoopResult:
    """Lock, check, evaluate every prompt version, log to MLflow, compare.

    Args:
        model: the model every version runs with (default: each prompt's own ``model.id``).
        workspace: a :class:`Workspace`, its root folder, or None (found from the current
            directory).
        concurrency: model calls in flight at once.
        hooks: called at each step (see :class:`LoopHooks`).

    Raises:
        GovernanceError: a locked version drifted (``lock`` refuses); :class:`CheckFailed`:
            the workspace check found problems. Nothing is evaluated in either case.
        ValueError: an unknown model, before any evaluation.
        TrackingError: the tracking server does not answer, before any evaluation.

    Example:
        >>> r = pg.loop(model="local/knn")                             # doctest: +SKIP
        >>> r.run("ticket_triage@2").metrics["accuracy"], r.calls       # doctest: +SKIP
    """
    from promptgov.eval._store import tracking_uri
    from promptgov.eval._tracking import check_reachable
    from promptgov.governance import check, lock
    from promptgov.workspace import Workspace

    h = hooks or LoopHooks()
    ws = Workspace.of(workspace)
    added, warnings = lock(ws.root)
    h.locked(added, warnings)
    checked = check(ws.root)
    h.checked(checked)
    if not checked.ok:
        raise CheckFailed(checked)
    targets = _targets(ws, model)  # every version resolved before the first call
    check_reachable(ws.root)  # an unreachable server: one line, before any eval
    runs: list[LoopRun] = []
    comparisons: dict[str, LoopComparison] = {}
    for name in ws.prompt_names():
        mine = [t for t in targets if t.pv.name == name]
        runs += [_evaluate(ws, t, concurrency, h) for t in mine]
        comparisons[name] = _compare(ws, name, mine[-1], h)
    return LoopResult(added, checked, runs, comparisons, tracking_uri(ws.root))


def _targets(ws: Workspace, model: str | None) -> list[_Target]:
    from promptgov.eval._engine import resolve

    out = []
    for n, v in ws.prompt_files():
        _, pv, es, _, _, m = resolve(ws, f"{n}@{v}", None, model)
        out.append(_Target(pv, es, m))
    return out


def _evaluate(ws: Workspace, t: _Target, concurrency: int, h: LoopHooks) -> LoopRun:
    """Evaluate untracked, then log the run unless the same run is logged already."""
    from promptgov.eval import evaluate

    def run(progress: Progress | None) -> EvalResult:
        return evaluate(t.pv, t.es, model=t.model, workspace=ws, concurrency=concurrency,
                        budget_usd=None, cache=True, track=False, progress=progress,
                        allow_drift=False)

    r = h.evaluate(t.pv, t.es, t.model, run)
    run_id, new = log_once(ws, r, t.pv)
    done = LoopRun(t.pv.ref, t.es.ref, t.model.id, r, run_id, new)
    h.evaluated(done)
    return done


def _compare(ws: Workspace, name: str, last: _Target, h: LoopHooks) -> LoopComparison:
    """Compare the versions of ``name`` on the evalset and model of its latest version."""
    from promptgov.eval._compare import compare

    df = compare(name, workspace=ws, evalset=last.es.ref, model=last.model.id)
    h.compared(name, df)
    rid = log_comparison(ws, df)
    if rid is not None:
        h.comparison_logged(name, rid)
    return LoopComparison(name, df, rid)


def log_once(ws: Workspace, r: EvalResult, pv: PromptVersion) -> tuple[str, bool]:
    """Log ``r`` unless the latest run of this version is the same run (same hashes, model and
    settings, every answer from the cache, same scores): ``(run_id, logged_now)``."""
    from promptgov.eval._evaluate import lock_state
    from promptgov.eval._runlog import log_eval, snapshot

    prev = _same_run(ws, r, pv) if r.calls == 0 else None
    if prev is not None:
        return prev, False
    return log_eval(ws.root, r, snapshot(pv, ws, lock_state(ws, pv))), True


def _same_run(ws: Workspace, r: EvalResult, pv: PromptVersion) -> str | None:
    """The id of the latest run of ``pv`` if ``r`` repeats it exactly, else None."""
    from promptgov.eval._compare import latest_runs

    # an MLflow Run: untyped
    prev: Any = latest_runs(ws.root, pv.name, evalset=r.evalset, model=r.model).get(pv.version)
    if prev is None:
        return None
    if not all(prev.data.params.get(k) == str(r.params.get(k)) for k in SAME_RUN):
        return None
    if not all(prev.data.metrics.get(k) == r.metrics[k]
               for k in ("cases", "accuracy", "failure_rate")):
        return None
    run_id: str = prev.info.run_id
    return run_id


def log_comparison(ws: Workspace, df: pd.DataFrame) -> str | None:
    """Log the comparison as its own run unless exactly it is logged already (or it has one
    version): the new run's id, else None."""
    from promptgov.eval._compare_run import already_logged, log_compare

    if len(df) < 2 or already_logged(ws.root, df):
        return None
    return log_compare(ws.root, df)

"""The public ``evaluate()``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptgov.errors import EvalInterrupted, GovernanceError, RunStopped, TrackingError
from promptgov.eval._engine import EvalTarget, Progress, resolve, run_cases
from promptgov.eval._record import CaseRecord
from promptgov.eval._result import EvalResult
from promptgov.eval._scoring import metrics as run_metrics
from promptgov.eval._scoring import score
from promptgov.model._base import Model
from promptgov.workspace._policy import RetryPolicy

if TYPE_CHECKING:
    from promptgov.eval._engine import WorkspaceLike
    from promptgov.eval._logger import Logger
    from promptgov.workspace import Workspace
    from promptgov.workspace._evalset import Evalset
    from promptgov.workspace._prompt import PromptVersion


def evaluate(prompt: str | PromptVersion, evalset: str | Evalset | None = None, *,
             model: str | Model | None = None, workspace: WorkspaceLike = None,
             concurrency: int = 8, samples: int = 1,
             budget_usd: float | None = None, cache: bool = True, track: bool = True,
             retry: RetryPolicy | None = None, progress: Progress | None = None,
             record: str | Path | None = None, allow_drift: bool = False) -> EvalResult:
    """Evaluate one prompt version on one evalset with one model.

    Args:
        prompt: ``"ticket_triage@2"`` or a loaded prompt version.
        evalset: evalset name (default: the one the prompt names).
        model: a model id (``local/knn``, ``openai/gpt-4o-mini``, ``replay:<cassette>``) or a
            model object; default: the prompt's own ``model.id``.
        concurrency: calls in flight at once.
        samples: answers per case (distinct cache entries at temperature > 0).
        budget_usd: stop sending calls once this much has been paid in this run; the cases
            not reached are recorded with failure ``budget_exhausted``.
        cache: answer from / write to the workspace response cache.
        track: log the run to MLflow.
        retry: override the policy's retry limits.
        record: append every answer of the run (cached ones included) to this JSONL cassette,
            which ``model="replay:<path>"`` later replays offline (see ``promptgov gate``).
        allow_drift: evaluate a locked version whose file no longer matches the lock; the run
            is tagged ``promptgov.lock=drifted`` and never counts as the version.

    Raises:
        RunStopped: a systematic failure (no key, unknown model, the same bad request again and
            again) stopped the run early; the message is one line with the fix, ``.result`` the
            partial result (unsent cases have failure ``not_sent``). Nothing is logged.
        EvalInterrupted: Ctrl-C (a ``KeyboardInterrupt``), raised after every answer received
            is cached; ``.result`` is the partial result. Evaluating again resumes.
        GovernanceError: the version is locked and its file drifted (without ``allow_drift``);
            nothing is sent.
        TrackingError: before any model call, a tracking server that does not answer; after
            the cases ran, logging failed: ``.result`` is complete and kept in
            ``.promptgov/pending/`` for ``promptgov log --pending``.

    Example:
        >>> import promptgov as pg                                       # doctest: +SKIP
        >>> r = pg.evaluate("ticket_triage@2", model="local/knn")        # doctest: +SKIP
        >>> r.metrics["accuracy"], r.cases.head()                        # doctest: +SKIP
    """
    logger = None
    if track:  # reachability first; then the connection to the logger service (started if
        # none runs: it imports MLflow while the model loads and the cases run)
        from promptgov.eval._logger import logger_for
        from promptgov.eval._tracking import check_reachable
        from promptgov.workspace import Workspace

        workspace = Workspace.of(workspace)
        check_reachable(workspace.root)
        logger = logger_for(workspace.root)
    target = resolve(workspace, prompt, evalset, model)
    state = lock_state(target.workspace, target.prompt, allow_drift)
    return _evaluate(target, logger, state, concurrency=concurrency, budget_usd=budget_usd,
                     cache=cache, samples=samples, retry=retry, progress=progress, record=record)


def _evaluate(target: EvalTarget, logger: Logger | None, state: str, *, concurrency: int,
              samples: int, budget_usd: float | None, cache: bool, retry: RetryPolicy | None,
              progress: Progress | None, record: str | Path | None) -> EvalResult:
    ws, pv, es, schema, policy, m = target
    from promptgov.eval._tracking import provenance

    params = provenance(ws, pv, es, m.id, temperature=pv.model.temperature,
                        max_tokens=pv.model.max_tokens, concurrency=concurrency,
                        samples=samples, routing_auto=policy.routing.auto,
                        routing_review=policy.routing.review, lock_state=state)
    run = None
    if logger is not None:  # the run starts in the logger service while the cases run
        from promptgov.eval._runlog import snapshot

        snap = snapshot(pv, ws, state)
        run = (snap, logger.start(pv.name, snap, params, m.id, len(es) * samples))
    try:
        records, totals, wall = run_cases(ws, pv, es, schema, policy, m,
                                          concurrency=concurrency, samples=samples,
                                          budget_usd=budget_usd, cache=cache, retry=retry,
                                          progress=progress, record=record)
        for r in records:
            _score(pv.kind, r)
        mets = run_metrics(pv.kind, records, policy.routing)
        mets.update(paid_usd=totals.paid_usd, model_calls=float(totals.calls), wall_s=wall)
        result = EvalResult(prompt=pv.ref, evalset=es.ref, model=m.id, kind=pv.kind,
                            metrics=mets, records=records, params=params, calls=totals.calls,
                            wall_s=wall)
        if totals.stop_reason is not None:  # a partial run is not logged: the resumed one is
            if totals.interrupted:
                raise EvalInterrupted(_partial(result), result)
            raise RunStopped(totals.stop_reason, result)
    except BaseException:
        if logger is not None and run is not None:
            logger.abandon(run[1])
        raise
    if logger is not None and run is not None:
        _log(ws, result, run, pv.name, logger)
    return result


def _score(kind: str, rec: CaseRecord) -> None:
    """``rec`` completed with its :class:`Score`; a case that cannot be scored fails alone."""
    try:
        score(kind, rec).apply_to(rec)
    except Exception as e:  # noqa: BLE001
        rec["correct"] = False
        rec["failure"] = rec["failure"] or "error"
        rec["error"] = rec["error"] or f"scoring failed: {type(e).__name__}: {e}"


def _log(ws: Workspace, result: EvalResult, run: tuple[dict[str, Any], str], name: str,
         logger: Logger) -> None:
    """Hand ``result`` to the logger service, which finishes the run it started (``run``:
    the prompt snapshot and the start token); if logging fails, the result is kept in
    ``.promptgov/pending/`` and the error says so (one line)."""
    from promptgov.eval._pending import publish, save

    snap, token = run
    path = save(ws.root, result, snap, in_flight=True)
    try:
        result.run_id = logger.log(path, name, token)
    except (RuntimeError, OSError) as e:
        rel = publish(path).relative_to(ws.root)
        raise TrackingError(f"logging to MLflow failed ({e}); the result is kept in {rel} "
                            "(fix: `promptgov log --pending` once the store is back)",
                            result, ws.root / rel) from None


def lock_state(ws: Workspace, pv: PromptVersion, allow_drift: bool = False) -> str:
    """``locked``, ``unlocked`` or ``drifted`` (a locked version whose file or rendered messages
    no longer match the lock). Drifted refuses with ``check``'s message unless ``allow_drift``."""
    from promptgov.hashing import short
    from promptgov.workspace._lock import read_lock

    entry = read_lock(ws.root)["prompts"].get(pv.ref)
    if entry is None:
        return "unlocked"
    if (entry["content_hash"], entry["render_fingerprint"]) == (pv.content_hash,
                                                                 pv.render_fingerprint):
        return "locked"
    if not allow_drift:
        nxt = max(ws.versions(pv.name), default=pv.version) + 1
        what = (f"changed since it was locked (locked {short(entry['content_hash'])}, now "
                f"{short(pv.content_hash)})" if entry["content_hash"] != pv.content_hash else
                "renders different messages than when it was locked")
        raise GovernanceError(
            f"prompts/{pv.name}/v{pv.version}.yaml: {pv.ref} {what} (fix: revert the edit, or "
            f"save it as prompts/{pv.name}/v{nxt}.yaml with `version: {nxt}` and run "
            "`promptgov lock`; --allow-drift evaluates it anyway, marked drifted)")
    return "drifted"


def _partial(result: EvalResult) -> str:
    """``interrupted: 80 of 400 cases answered, 320 not sent ...``: one line."""
    n = len(result.records)
    unsent = sum(r["failure"] in ("not_sent", "interrupted") for r in result.records)
    return (f"interrupted: {n - unsent} of {n} cases answered and kept, {unsent} not sent; "
            f"{result.calls} model calls, {result.metrics.get('paid_usd', 0.0):.4f} USD paid")

"""The optimization as one MLflow run: settings, each trial's validation score (a metric with a
step per trial), the chosen candidate (its file as an artifact) and links both ways to the
candidate's first eval run. Opened before the optimizer runs, so the candidate's provenance can
name it; a failed optimization ends the run FAILED and writes no candidate."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from promptgov.optimizers._optimize import OptimizeResult
    from promptgov.workspace._prompt import PromptVersion

OPT_TAG = "promptgov.optimization"
"""Tag of an optimization run (the parent's ``name@version``); eval runs carry ``promptgov.prompt``
instead, so ``compare`` never mistakes one for the other."""

_EVAL_METRICS = ("accuracy", "macro_f1", "field_f1", "intent_micro_f1")
"""The judging evals' metrics the optimization run repeats, as ``parent.*`` / ``candidate.*``."""


class OptimizationRun:
    def __init__(self, root: Path, pv: PromptVersion, *, track: bool):
        self.root, self.pv = root, pv
        self.run_id: str | None = None
        self._c: Any = None  # an MlflowClient (untyped)
        if not track:
            return
        from promptgov.eval._tracking import client, experiment_id

        self._c = client(root)
        exp = experiment_id(self._c, root, pv.name)
        run = self._c.create_run(exp, run_name=f"optimize {pv.ref}",
                                 tags={OPT_TAG: pv.ref, "promptgov.parent": pv.ref})
        self.run_id = run.info.run_id

    def finish(self, result: OptimizeResult, provenance: dict[str, Any],
               common: dict[str, object]) -> None:
        """``common``: the params every run kind logs (``eval._tracking.provenance`` of the
        parent on the judging evalset); the optimization's own follow."""
        c, rid = self._c, self.run_id
        if c is None or rid is None:
            return
        from mlflow.entities import Param

        params = {**_params(result, provenance), **common}
        c.log_batch(rid, metrics=_metrics(result, int(time.time() * 1000))[:1000],
                    params=[Param(k, str(v)[:6000]) for k, v in params.items()])
        c.log_text(rid, json.dumps(result.trials, indent=1, default=str), "trials.json")
        c.log_text(rid, result.path.read_text(encoding="utf-8"), f"candidate/{result.path.name}")
        c.set_tag(rid, "promptgov.candidate", result.candidate)
        cand_run = result.eval_run_ids.get("candidate")
        if cand_run:
            c.set_tag(rid, "promptgov.candidate_eval_run", cand_run)
            c.set_tag(cand_run, "promptgov.optimization_run", rid)
        c.set_terminated(rid, "FINISHED")

    def fail(self) -> None:
        if self._c is not None and self.run_id is not None:
            self._c.set_terminated(self.run_id, "FAILED")


def _params(result: OptimizeResult, provenance: dict[str, Any]) -> dict[str, Any]:
    return {"parent": result.parent, "parent_hash": provenance["parent_hash"],
            "candidate": result.candidate, "optimizer": result.optimizer,
            "seed": result.seed, "trainset": result.trainset,
            "trainset_hash": provenance["trainset_hash"], "evalset": result.evalset,
            "evalset_hash": provenance["judged_on_hash"], "metric": result.metric,
            "model": provenance["model"],
            **{f"setting.{k}": v for k, v in provenance["settings"].items()}}


def _metrics(result: OptimizeResult, now: int) -> list[Any]:
    """Validation scores, one step per trial, demo and token counts, the judging evals' scores
    (NaN scores left out)."""
    from mlflow.entities import Metric

    metrics = [Metric(f"val_{result.metric}.{k}", float(v), now, 0)
               for k, v in result.val_scores.items() if v == v]
    metrics += [Metric(f"trial_{result.metric}", float(t["score"]), now, i)
                for i, t in enumerate(result.trials)
                if isinstance(t.get("score"), int | float)]
    metrics += [Metric(f"demos.{k}", float(v), now, 0) for k, v in result.demos.items()]
    metrics += [Metric(f"prompt_tokens.{k}", float(v), now, 0)
                for k, v in result.prompt_tokens.items()]
    for who, m in result.eval_metrics.items():
        metrics += [Metric(f"{who}.{k}", float(m[k]), now, 0)
                    for k in _EVAL_METRICS if k in m and m[k] == m[k]]
    return metrics

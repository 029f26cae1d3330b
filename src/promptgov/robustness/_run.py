"""``adversarial()``: what noise costs a prompt, measured and logged as one MLflow run.

Build (or reuse) the reproducible noisy evalset, evaluate the clean source cases and their
noisy variants with the ordinary engine (both answer from the response cache when unchanged),
pair every variant with its clean twin, search the minimal failing inputs, and log one run
tagged ``promptgov.kind=adversarial`` in the prompt's experiment. The run deliberately carries
no ``promptgov.prompt`` tag: it is not an evaluation of the prompt on an evalset, so
``compare`` and approvals never mistake it for one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from promptgov.robustness._noisy import noisy_cases, noisy_name, save_noisy
from promptgov.robustness._result import (
    AdversarialResult,
    metric_rows,
    paired_rows,
    transform_rows,
)
from promptgov.robustness._shrink import default_decoys, minimal_failing
from promptgov.robustness._transforms import Transform, registry

if TYPE_CHECKING:
    import os
    from pathlib import Path

    import pandas as pd

    from promptgov.model._base import Model
    from promptgov.workspace import Workspace
    from promptgov.workspace._evalset import Evalset
    from promptgov.workspace._prompt import PromptVersion

KIND_TAG = "promptgov.kind"


def adversarial(prompt: str | PromptVersion, evalset: str | Evalset | None = None, *,
                model: str | Model | None = None,
                workspace: Workspace | str | os.PathLike[str] | None = None,
                n: int = 300, seed: int = 0, kinds: Sequence[str] | None = None,
                max_transforms: int = 2, transforms: Mapping[str, Transform] | None = None,
                minimal: int = 5, lock: bool = False,
                concurrency: int = 8, cache: bool = True, track: bool = True,
                progress: Callable[[str], None] | None = None) -> AdversarialResult:
    """Measure a prompt's robustness to realistic input noise.

    Args:
        prompt: ``"ticket_triage@2"`` or a loaded prompt version.
        evalset: the clean evalset (default: the prompt's).
        model: model id or object (default: the prompt's ``model.id``).
        n: noisy variants to generate (the clean cases in a seeded order, round robin).
        seed: the same seed (and ``n``, ``kinds``, ``max_transforms``) gives the same noisy
            evalset, byte for byte: ``evalsets/<evalset>-noisy-s<seed>/``.
        kinds: transformations to draw from (default: all of ``transforms``).
        transforms: the registry of transformations (default: ``TRANSFORMS``; extend it
            with ``{**TRANSFORMS, "my_noise": fn}``).
        max_transforms: at most this many transformations per variant.
        minimal: clean-correct cases to search for a minimal failing input (0: none).
        lock: run ``promptgov lock`` after writing the noisy evalset (otherwise lock it
            yourself before ``promptgov check`` runs).
        track: log one MLflow run (tag ``promptgov.kind=adversarial``).

    Example:
        >>> import promptgov as pg                                         # doctest: +SKIP
        >>> r = pg.adversarial("ticket_triage@2", model="local/knn", n=500)  # doctest: +SKIP
        >>> r.deltas            # per transformation: clean vs noisy accuracy  # doctest: +SKIP
        >>> r.minimal_failures  # the smallest noise that flips an answer      # doctest: +SKIP
    """
    from promptgov.eval import evaluate
    from promptgov.eval._engine import resolve
    from promptgov.eval._scoring import metrics as run_metrics
    from promptgov.workspace._evalset import Evalset

    say = progress or (lambda _msg: None)
    ws, pv, es, schema, policy, m = resolve(workspace, prompt, evalset, model)
    reg, name = registry(kinds, transforms), noisy_name(es, seed)
    decoys = default_decoys(pv, schema)
    cases = noisy_cases(es, n=n, seed=seed, decoys=decoys, kinds=kinds,
                        max_transforms=max_transforms, transforms=transforms)
    noisy_es, written = save_noisy(ws.root, es, cases, seed=seed, n=n, kinds=list(reg),
                                   max_transforms=max_transforms)
    ws._evalsets.pop(name, None)  # the workspace's memo of that folder may be stale now
    say(f"{'wrote' if written else 'reusing'} {ws.relpath(noisy_es.dir)} ({noisy_es.ref}, "
        f"{len(noisy_es)} variants, {noisy_es.hash})")
    locked: list[str] = []
    if lock:
        from promptgov.governance import lock as do_lock

        locked, _ = do_lock(ws.root)

    sources = {c.meta["source"] for c in noisy_es.cases}
    clean_es = Evalset(es.manifest, tuple(c for c in es.cases if c.id in sources), es.dir)
    say(f"evaluating {len(clean_es)} clean cases")
    clean = evaluate(pv, clean_es, model=m, workspace=ws, concurrency=concurrency, cache=cache,
                     track=False)
    say(f"evaluating {len(noisy_es)} noisy variants")
    noisy = evaluate(pv, noisy_es, model=m, workspace=ws, concurrency=concurrency, cache=cache,
                     track=False)

    rows = paired_rows(clean, noisy)
    by_id = {r["case_id"]: r for r in clean.records}
    twins = [by_id[r["meta"]["source"]] for r in noisy.records]  # clean, weighted like noisy
    clean_m = run_metrics(pv.kind, twins, policy.routing)
    table = metric_rows(clean_m, noisy.metrics)
    mets = {**_metric_values(table), **_transform_metrics(transform_rows(rows, list(reg)))}

    failures = None
    if minimal > 0:
        say(f"searching minimal failing inputs in up to {minimal} cases")
        failures = minimal_failing(pv, es, model=m, workspace=ws, cases=_fragile(rows) or None,
                                   max_cases=minimal, seed=seed, kinds=kinds, decoys=decoys,
                                   transforms=transforms, cache=cache)
        mets["minimal_failures"] = float(len(failures))

    result = AdversarialResult(
        prompt=pv.ref, evalset=es.ref, model=m.id, seed=seed, n=n, noisy_evalset=noisy_es,
        written=written, clean=clean, noisy=noisy, kinds=list(reg), metrics=mets, rows=rows,
        metric_table=table, minimal_failures=failures, locked=locked)
    if track:
        from promptgov.eval._tracking import provenance

        # "evalset" stays the ref (name@version): evidence lookups match eval runs by the name
        # alone, and an adversarial run must never pass for an evaluation on that evalset.
        params = provenance(ws, pv, es, m.id, evalset=es.ref, noisy_evalset=noisy_es.ref,
                            noisy_evalset_hash=noisy_es.hash, seed=seed, n=n,
                            max_transforms=max_transforms, transforms=",".join(reg),
                            minimal_cases=minimal)
        result.run_id = log_adversarial(ws.root, result, pv, params)
    return result


def _metric_values(table: list[dict[str, Any]]) -> dict[str, float]:
    """``clean.<metric>``, ``noisy.<metric>`` and ``delta.<metric>`` of every metric row."""
    return {f"{part}.{row['metric']}": row[part] for row in table
            for part in ("clean", "noisy", "delta")}


def _transform_metrics(by_transform: list[dict[str, Any]]) -> dict[str, float]:
    """The metrics of each transformation's row (the ``(all)`` row, first, is the headline's)."""
    mets: dict[str, float] = {}
    for row in by_transform[1:]:
        t = row["transform"]
        mets.update({f"delta.accuracy.{t}": row["delta"],
                     f"delta_alone.accuracy.{t}": row["delta_alone"],
                     f"clean.accuracy.{t}": row["clean_accuracy"],
                     f"noisy.accuracy.{t}": row["noisy_accuracy"],
                     f"variants.{t}": float(row["variants"]),
                     f"flipped.{t}": float(row["flipped"])})
    return mets


def _fragile(rows: list[dict[str, Any]]) -> list[str]:
    """The source cases some variant flipped from right to wrong, once each, in order."""
    return list(dict.fromkeys(r["source"] for r in rows
                              if r["clean_correct"] and not r["noisy_correct"]))


HEADLINE = ("clean.accuracy", "noisy.accuracy", "delta.accuracy", "clean.failure_rate",
            "noisy.failure_rate", "minimal_failures")
"""The adversarial run's own metrics; the per-transformation and per-metric ones go to a nested
child run, so they never crowd the experiment's run list."""


def log_adversarial(root: Path, r: AdversarialResult, pv: PromptVersion,
                    params: dict[str, Any]) -> str:
    """One MLflow run with the headline robustness metrics and the tables (per transformation,
    per metric, per variant, minimal failures) as artifacts; a nested run ``per transformation``
    holds every other metric."""
    from mlflow.entities import Metric, Param

    from promptgov.eval._runindex import writing
    from promptgov.eval._runlog import KIND_LABEL
    from promptgov.eval._tracking import client, experiment_id

    c = client(root)
    exp = experiment_id(c, root, pv.name)
    now = int(time.time() * 1000)
    ps = [Param(k, str(v)[:6000]) for k, v in params.items()]
    ms = [Metric(k, float(v), now, 0) for k, v in r.metrics.items() if v == v]  # no NaN
    head = [x for x in ms if x.key in HEADLINE]
    rest = [x for x in ms if x.key not in HEADLINE]
    name = (f"{KIND_LABEL.get(pv.kind, pv.kind)} v{pv.version} adversarial s{r.seed} · "
            f"{r.model}")
    with writing(root, c):
        run = c.create_run(exp, run_name=name,
                           tags={KIND_TAG: "adversarial", "promptgov.adversarial_of": pv.ref,
                                 "promptgov.evalset": r.evalset,
                                 "promptgov.noisy_evalset": r.noisy_evalset.ref,
                                 "promptgov.model": r.model})
        rid: str = run.info.run_id
        try:
            for i in range(0, max(len(ps), len(head)), 100):
                c.log_batch(rid, metrics=head[i:i + 100], params=ps[i:i + 100])
            c.log_table(rid, data=_columns(r.deltas.reset_index()), artifact_file="deltas.json")
            c.log_table(rid, data=_columns(r.metric_deltas.reset_index()),
                        artifact_file="metric_deltas.json")
            c.log_table(rid, data=_columns(r.variants.reset_index()),
                        artifact_file="variants.json")
            if r.minimal_failures is not None:
                c.log_table(rid, data=_columns(r.minimal_failures),
                            artifact_file="minimal_failures.json")
            c.log_dict(rid, r.noisy_evalset.manifest.model_dump(mode="json"),
                       "noisy_evalset/manifest.json")
            child = c.create_run(exp, run_name=f"{name} · per transformation", tags={
                "mlflow.parentRunId": rid, KIND_TAG: "adversarial-detail",
                "promptgov.adversarial_of": pv.ref})
            for i in range(0, len(rest), 500):
                c.log_batch(child.info.run_id, metrics=rest[i:i + 500])
            c.set_terminated(child.info.run_id, "FINISHED")
            c.set_tag(rid, "promptgov.detail_run", child.info.run_id)
            c.set_terminated(rid, "FINISHED")
        except BaseException:
            c.set_terminated(rid, "FAILED")
            raise
    return rid


def _columns(df: pd.DataFrame) -> dict[str, list[Any]]:
    """A DataFrame as columns of JSON-safe values (lists and dicts as JSON text)."""
    def safe(v: Any) -> Any:
        if isinstance(v, dict | list | tuple):
            return json.dumps(v, ensure_ascii=False)
        if hasattr(v, "item"):
            v = v.item()
        return None if isinstance(v, float) and v != v else v

    return {str(k): [safe(v) for v in df[k].tolist()] for k in df.columns}

"""One evaluation → one MLflow run, written once, in batches (principle 8), laid out for a
person reading the MLflow UI: a distinct run name (kind, version, model), the headline metrics
first, the evalset as a dataset input (content hash as digest), the prompt file's own bytes,
``cases.json`` with the columns a reader needs first, and the prompt-registry version linked to
the run and to the prompt's experiment.

The run is described by a *snapshot* of the prompt version (a plain dict), so that a result
kept in ``.promptgov/pending/`` is logged later exactly as it would have been at once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptgov.eval._record import TABLE_COLUMNS, CaseRecord
from promptgov.eval._store import RUN_TAG
from promptgov.eval._tracking import experiment_id

if TYPE_CHECKING:
    from promptgov.eval._result import EvalResult
    from promptgov.workspace import Workspace
    from promptgov.workspace._prompt import PromptVersion

HEADLINE = ("accuracy", "object_match", "pass_rate", "failure_rate", "cost_per_1k_usd",
            "latency_p95_s", "automation_rate")
"""Logged first (MLflow lists metrics in the order they arrive) and named in the run's
``promptgov.headline`` tag: the short list a reader compares runs by."""


KIND_LABEL = {"classification": "triage", "extraction": "extract", "draft": "draft"}


def snapshot(pv: PromptVersion, ws: Workspace | None = None, lock_state: str | None = None
             ) -> dict[str, Any]:
    """What the run needs of prompt version ``pv``, as JSON-safe data."""
    text = None
    if ws is not None:
        path = ws.prompt_files().get((pv.name, pv.version))
        text = path.read_text(encoding="utf-8") if path else None
    return {"name": pv.name, "version": pv.version, "ref": pv.ref, "kind": pv.kind,
            "system": pv.system, "user": pv.user, "content_hash": pv.content_hash,
            "render_fingerprint": pv.render_fingerprint, "demos": len(pv.demos),
            "rendered_probe": json.dumps(pv.render(pv.probe_input), ensure_ascii=False,
                                         indent=1),
            "file_text": text, "lock_state": lock_state}


def run_name(snap: dict[str, Any], model: str, suffix: str = "") -> str:
    """``triage v2 · local/knn``; a drifted file is never named as the version."""
    v = f"v{snap['version']}" + ("~drifted" if snap.get("lock_state") == "drifted" else "")
    return " ".join([KIND_LABEL.get(snap["kind"], snap["kind"]), v, *([suffix] if suffix
                                                                          else [])]) + f" · {model}"


def log_eval(root: Path, result: EvalResult, snap: dict[str, Any],
             opened: tuple[Any, str] | None = None) -> str:
    """Log ``result`` as one MLflow run; returns the run id. ``opened``: ``(client,
    experiment id)`` already opened (by the logger process, :mod:`promptgov.eval._logger`)."""
    from promptgov.eval._tracking import client

    if opened is not None:
        c, exp = opened
    else:
        c = client(root)
        exp = experiment_id(c, root, snap["name"])
    drifted = snap.get("lock_state") == "drifted"
    from promptgov.eval._runindex import writing

    with writing(root, c) as new:
        run = c.create_run(exp, run_name=run_name(snap, result.model),
                           tags=_tags(result, snap, drifted))
        rid: str = run.info.run_id
        new.append(rid)
        try:
            _log_data(c, rid, result, snap)
            if not drifted:
                link_prompt(c, rid, register_prompt(c, snap, exp), exp,
                            local=c.tracking_uri.startswith("sqlite:"))
            c.set_terminated(rid, "FINISHED")
        except BaseException:
            c.set_terminated(rid, "FAILED")
            raise
    return rid


def _tags(result: EvalResult, snap: dict[str, Any], drifted: bool) -> dict[str, str]:
    return {RUN_TAG: snap["ref"] if not drifted else f"{snap['ref']}~drifted",
            "promptgov.kind": "eval", "promptgov.evalset": result.evalset,
            "promptgov.model": result.model, "promptgov.lock": snap.get("lock_state") or "",
            "promptgov.headline": ",".join(k for k in HEADLINE if k in result.metrics),
            "mlflow.note.content": _note(result, snap),
            # what log_table would tag: the UI's artifact view shows cases.json as a table
            "mlflow.loggedArtifacts": '[{"path": "cases.json", "type": "table"}]'}


def _log_data(c: Any, rid: str, result: EvalResult, snap: dict[str, Any]) -> None:
    """Metrics (headline first) and params in batches, the evalset as a dataset input, the
    cases table, the rendered probe and the prompt file's own bytes."""
    from mlflow.entities import Metric, Param

    now = int(time.time() * 1000)
    order = [k for k in HEADLINE if k in result.metrics] + sorted(
        k for k in result.metrics if k not in HEADLINE)
    metrics = [Metric(k, float(result.metrics[k]), now, 0) for k in order
               if result.metrics[k] == result.metrics[k]]  # NaN (no case in a band): left out
    params = [Param(k, str(v)[:6000]) for k, v in result.params.items()]
    for i in range(0, max(len(params), len(metrics)), 100):
        c.log_batch(rid, metrics=metrics[i:i + 100], params=params[i:i + 100])
    c.log_inputs(rid, datasets=[_dataset_input(result)])
    # The table as MLflow's log_table writes it (pandas "split" JSON, no index), written directly:
    # log_table goes through a DataFrame and re-reads the run, 0.3 s of a 3,080-case log.
    c.log_text(rid, json.dumps({"columns": list(TABLE_COLUMNS), "data": rows(result.records)},
                               ensure_ascii=False), "cases.json")
    c.log_text(rid, snap["rendered_probe"], "prompt/rendered_probe.json")
    if snap.get("file_text") is not None:  # the file's own bytes, not a re-dump
        c.log_text(rid, snap["file_text"], f"prompt/v{snap['version']}.yaml")
    if result.kind == "classification":
        _log_reliability(c, rid, result)


def _log_reliability(c: Any, rid: str, result: EvalResult) -> None:
    """The reliability diagram (``pg.plot.reliability``), for a schema with a confidence."""
    try:
        from promptgov.plot import reliability

        fig = reliability(result)
    except (ImportError, ValueError):  # no matplotlib, or no confidence to plot
        return
    c.log_figure(rid, fig, "reliability.png")


def _note(result: EvalResult, snap: dict[str, Any]) -> str:
    m = result.metrics
    head = ", ".join(f"{k} {m[k]:.4g}" for k in HEADLINE if k in m and m[k] == m[k])
    drift = ("\n\n**Drifted**: the prompt file did not match the lock when this ran; it is "
             "not evidence for the version." if snap.get("lock_state") == "drifted" else "")
    return (f"{snap['ref']} (content {snap['content_hash'][:12]}) on {result.evalset} with "
            f"{result.model}: {head}.{drift}")


def _dataset_input(result: EvalResult) -> Any:
    from mlflow.entities import Dataset, DatasetInput, InputTag

    p = result.params
    ds = Dataset(name=result.evalset, digest=str(p.get("evalset_hash", ""))[:36],
                 source_type="local", source=json.dumps({"uri": f"evalsets/{p.get('evalset')}"}),
                 schema=json.dumps({"promptgov": {"cases": len(result.records),
                                                  "hash": p.get("evalset_hash")}}),
                 profile=json.dumps({"num_rows": len(result.records)}))
    return DatasetInput(ds, tags=[InputTag("mlflow.data.context", "eval")])


def register_prompt(c: Any, snap: dict[str, Any], experiment: str | None = None) -> Any:
    """The MLflow prompt-registry version holding ``snap``; registered once per content hash.
    Processes registering versions of one prompt at once on a server can collide on the next
    version number: the loser looks again (the winner may have registered the same content)
    and retries, with jitter."""
    import random

    from mlflow.exceptions import MlflowException

    for attempt in range(6):
        try:
            for v in c.search_prompt_versions(snap["name"]):
                if (v.tags or {}).get("promptgov.content_hash") == snap["content_hash"]:
                    return v
        except MlflowException:
            pass  # no such prompt yet
        # The registry holds the templates (its limit is 100k characters; 770 demos exceed
        # it); the demos and the full prompt file are in the run's artifacts.
        template = [{"role": "system", "content": snap["system"]},
                    {"role": "user", "content": snap["user"]}]
        # MLflow links a new prompt to the *active* experiment (experiment 0 here) in a thread
        # of its own; :func:`link_prompt` links it to the prompt's experiment instead.
        c._link_prompt_to_experiment = lambda *a, **k: None
        try:
            return c.register_prompt(
                snap["name"], template, commit_message=f"promptgov {snap['ref']} "
                f"(content {snap['content_hash'][:12]})",
                tags={"promptgov.version": str(snap["version"]),
                      "promptgov.content_hash": snap["content_hash"],
                      "promptgov.render_fingerprint": snap["render_fingerprint"],
                      "promptgov.demos": str(snap["demos"])})
        except MlflowException:
            if attempt == 5:
                raise
            time.sleep(random.uniform(0.1, 0.5) * (attempt + 1))
    raise AssertionError("unreachable")


_RUN_KEYS = ("mlflow.prompt.associatedRunIds", "mlflow.prompt.run_ids")


def link_prompt(c: Any, rid: str, pver: Any, exp: str | None, local: bool = False) -> None:
    """Run ↔ prompt version both ways, and the prompt to the experiment's Prompts tab, without
    the global tracking store MLflow's own linking helpers use."""
    from mlflow.tracing.utils.prompt import update_linked_prompts_tag

    c.set_tag(rid, "mlflow.linkedPrompts", update_linked_prompts_tag(None, [pver]))
    c.set_tag(rid, "promptgov.registry_version", str(pver.version))
    _link_version_to_run(c, rid, pver, local)
    if exp is not None:
        _link_prompt_to_experiment(c, pver.name, exp)


def _link_version_to_run(c: Any, rid: str, pver: Any, local: bool) -> None:
    """The Python client reads associatedRunIds, the UI's version page ("MLflow runs:")
    run_ids. A tag is read, extended and written back: on a server two processes may do that
    at once, so the write is checked after a moment and repeated if another one overwrote it;
    two first writes of one tag at once make the server's insert fail on its unique key
    (PostgreSQL: ``model_version_tag_pk``), and the loser tries again."""
    import random

    from mlflow.exceptions import MlflowException

    for attempt in range(8):
        tags = c.get_prompt_version(pver.name, pver.version).tags or {}
        if all(rid in (tags.get(k) or "").split(",") for k in _RUN_KEYS):
            break
        try:
            _add_run(c, pver, tags, rid)
        except MlflowException:
            if local or attempt == 7:
                raise
        else:
            if local:
                break  # the store lock serialises writers: nobody overwrote it
        time.sleep(random.uniform(0.05, 0.3))


def _add_run(c: Any, pver: Any, tags: dict[str, str], rid: str) -> None:
    """``rid`` appended to the version's run-list tags as read (``tags``)."""
    for key in _RUN_KEYS:
        runs = [r for r in (tags.get(key) or "").split(",") if r and r != rid]
        c.set_prompt_version_tag(pver.name, pver.version, key, ",".join([*runs, rid]))


def _link_prompt_to_experiment(c: Any, name: str, exp: str) -> None:
    """The experiment's Prompts tab lists the prompt."""
    from mlflow.exceptions import MlflowException
    from mlflow.prompt.constants import PROMPT_EXPERIMENT_IDS_TAG_KEY

    for attempt in range(4):  # two first writers at once: the loser's insert fails, it retries
        ids = [e for e in (c.get_prompt(name).tags or {}).get(
            PROMPT_EXPERIMENT_IDS_TAG_KEY, "").split(",") if e]
        if exp in ids:
            return
        try:
            c.set_prompt_tag(name, PROMPT_EXPERIMENT_IDS_TAG_KEY,
                             "," + ",".join([*ids, exp]) + ",")
            return
        except MlflowException:
            if attempt == 3:
                raise
            time.sleep(0.1 * (attempt + 1))


def rows(records: Sequence[CaseRecord]) -> list[list[Any]]:
    """Per-case records as rows of JSON-safe cells, in :data:`TABLE_COLUMNS` order."""
    return [[_cell(r.get(k)) for k in TABLE_COLUMNS] for r in records]


def _cell(v: Any) -> Any:
    if isinstance(v, dict | list):
        v = json.dumps(v, ensure_ascii=False)
    if isinstance(v, str):  # a lone surrogate in an answer must not sink the logging
        return v.encode("utf-8", "backslashreplace").decode("utf-8")
    return v

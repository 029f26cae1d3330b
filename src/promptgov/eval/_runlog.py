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
from collections.abc import Callable, Sequence
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
    experiment id)`` already opened (by the logger service, :mod:`promptgov.eval._logger`)."""
    from promptgov.eval._tracking import client

    if opened is not None:
        c, exp = opened
    else:
        c = client(root)
        exp = experiment_id(c, root, snap["name"])
    rid = start_run(root, c, exp, snap, result.params, result.model, len(result.records))
    finish_run(root, c, rid, result, snap)
    return rid


def start_run(root: Path, c: Any, exp: str, snap: dict[str, Any], params: dict[str, Any],
              model: str, rows: int) -> str:
    """The part of a run known before its cases run, written while they run (the logger
    process does it then): the run (RUNNING) with its name and tags, params, the evalset as a
    dataset input, the prompt file and rendered probe, the prompt-registry version linked.
    :func:`finish_run` adds the results; :func:`abandon_run` removes a run whose eval stopped."""
    from mlflow.entities import Param

    drifted = snap.get("lock_state") == "drifted"
    from promptgov.eval._runindex import writing

    with writing(root, c):
        run = c.create_run(exp, run_name=run_name(snap, model),
                           tags=_tags(snap, params, model, drifted))
        rid: str = run.info.run_id
        try:
            ps = [Param(k, str(v)[:6000]) for k, v in params.items()]
            for i in range(0, len(ps), 100):
                c.log_batch(rid, params=ps[i:i + 100])
            c.log_inputs(rid, datasets=[_dataset_input(params, rows)])
            c.log_text(rid, snap["rendered_probe"], "prompt/rendered_probe.json")
            if snap.get("file_text") is not None:  # the file's own bytes, not a re-dump
                c.log_text(rid, snap["file_text"], f"prompt/v{snap['version']}.yaml")
            if not drifted:
                link_prompt(c, rid, register_prompt(c, snap, exp), exp,
                            local=c.tracking_uri.startswith("sqlite:"))
        except BaseException:
            c.delete_run(rid)
            raise
    return rid


def finish_run(root: Path, c: Any, rid: str, result: EvalResult, snap: dict[str, Any],
               figure: bool = True) -> None:
    """The results of started run ``rid``: metrics (headline first) with the headline and note
    tags in one batch, the cases table, the reliability diagram; then FINISHED and indexed.
    ``figure=False``: the caller logs the diagram itself (:func:`log_reliability`), later."""
    from mlflow.entities import Metric, RunTag

    from promptgov.eval._runindex import writing

    now = int(time.time() * 1000)
    order = [k for k in HEADLINE if k in result.metrics] + sorted(
        k for k in result.metrics if k not in HEADLINE)
    metrics = [Metric(k, float(result.metrics[k]), now, 0) for k in order
               if result.metrics[k] == result.metrics[k]]  # NaN (no case in a band): left out
    tags = [RunTag("promptgov.headline", ",".join(k for k in HEADLINE if k in result.metrics)),
            RunTag("mlflow.note.content", _note(result, snap))]
    with writing(root, c) as new:
        new.append(rid)
        try:
            for i in range(0, len(metrics), 100):
                c.log_batch(rid, metrics=metrics[i:i + 100], tags=tags if i == 0 else [])
            # The table as MLflow's log_table writes it (pandas "split" JSON, no index),
            # written directly: log_table goes through a DataFrame and re-reads the run.
            c.log_text(rid, json.dumps({"columns": list(TABLE_COLUMNS),
                                        "data": rows(result.records)}, ensure_ascii=False),
                       "cases.json")
            if figure:
                log_reliability(c, rid, result)
            c.set_terminated(rid, "FINISHED")
        except BaseException:
            c.set_terminated(rid, "FAILED")
            raise


def abandon_run(root: Path, c: Any, rid: str) -> None:
    """A started run whose eval stopped (Ctrl-C, a systematic failure, a dead process) is
    deleted: a partial run is never evidence; the resumed eval logs a run of its own."""
    from promptgov.eval._runindex import writing

    with writing(root, c):
        c.delete_run(rid)


def _tags(snap: dict[str, Any], params: dict[str, Any], model: str, drifted: bool
          ) -> dict[str, str]:
    return {RUN_TAG: snap["ref"] if not drifted else f"{snap['ref']}~drifted",
            "promptgov.kind": "eval",
            "promptgov.evalset": f"{params.get('evalset')}@{params.get('evalset_version')}",
            "promptgov.model": model, "promptgov.lock": snap.get("lock_state") or "",
            # what log_table would tag: the UI's artifact view shows cases.json as a table
            "mlflow.loggedArtifacts": '[{"path": "cases.json", "type": "table"}]'}


def log_reliability(c: Any, rid: str, result: EvalResult) -> None:
    """The reliability diagram (``pg.plot.reliability``) of a classification run, for a schema
    with a confidence. It may be added to a finished run: the logger service draws it after
    answering the eval (drawing it costs ~0.25 s, which the eval then does not wait for)."""
    if result.kind != "classification":
        return
    try:
        from promptgov.plot import reliability

        fig = reliability(result, fast=True)
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


def _dataset_input(params: dict[str, Any], rows: int) -> Any:
    from mlflow.entities import Dataset, DatasetInput, InputTag

    ds = Dataset(name=f"{params.get('evalset')}@{params.get('evalset_version')}",
                 digest=str(params.get("evalset_hash", ""))[:36], source_type="local",
                 source=json.dumps({"uri": f"evalsets/{params.get('evalset')}"}),
                 schema=json.dumps({"promptgov": {"cases": rows,
                                                  "hash": params.get("evalset_hash")}}),
                 profile=json.dumps({"num_rows": rows}))
    return DatasetInput(ds, tags=[InputTag("mlflow.data.context", "eval")])


def register_prompt(c: Any, snap: dict[str, Any], experiment: str | None = None) -> Any:
    """The MLflow prompt-registry version holding ``snap``: registered once per content hash,
    and always the lowest-numbered version holding it. Several evals on a server may register
    one prompt at once:

    - the prompt itself is created first, on its own (a second creator's "already exists" is
      its answer): MLflow's ``register_prompt`` must not create it, since when it has created a
      prompt and then fails to add the version, it deletes the prompt, and with it the versions
      the others added meanwhile;
    - two that register the same content at once each look again afterwards and use the
      lowest-numbered version holding it, so their runs link to one version (the other one is
      left unused: deleting it would fail the searches of versions running at that moment);
    - a registration that fails (another took its version number) looks again (the winner may
      have registered the same content) and retries, with jitter.
    """
    from mlflow.exceptions import MlflowException

    from promptgov.eval._runindex import lost_race, pause

    name, content = snap["name"], snap["content_hash"]
    message = f"promptgov {snap['ref']} (content {content[:12]})"
    tags = {"promptgov.version": str(snap["version"]), "promptgov.content_hash": content,
            "promptgov.render_fingerprint": snap["render_fingerprint"],
            "promptgov.demos": str(snap["demos"])}

    def held() -> Any:  # the first version holding the content, or None
        vs = [v for v in c.search_prompt_versions(name)
              if (v.tags or {}).get("promptgov.content_hash") == content]
        return min(vs, key=lambda v: int(v.version), default=None)

    for attempt in range(6):
        try:
            try:
                found = held()
            except MlflowException as e:
                if e.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                try:
                    c.create_prompt(name, description=message, tags=tags)
                except MlflowException as lost:
                    if not lost_race(lost):
                        raise
                found = None
            if found is not None:
                return found
            # The registry holds the templates (its limit is 100k characters; 770 demos
            # exceed it); the demos and the full prompt file are in the run's artifacts.
            template = [{"role": "system", "content": snap["system"]},
                        {"role": "user", "content": snap["user"]}]
            # MLflow links a new prompt to the *active* experiment (experiment 0 here) in a
            # thread of its own; :func:`link_prompt` links it to the prompt's experiment.
            c._link_prompt_to_experiment = lambda *a, **k: None
            mine = c.register_prompt(name, template, commit_message=message, tags=tags)
        except MlflowException:
            if attempt == 5:
                raise
            pause(attempt)
            continue
        try:
            first = held()
        except MlflowException:
            return mine
        return mine if first is None or int(first.version) >= int(mine.version) else first
    raise AssertionError("unreachable")


_RUN_KEYS = ("mlflow.prompt.associatedRunIds", "mlflow.prompt.run_ids")


def link_prompt(c: Any, rid: str, pver: Any, exp: str | None, local: bool = False) -> None:
    """Run ↔ prompt version both ways, and the prompt to the experiment's Prompts tab, without
    the global tracking store MLflow's own linking helpers use."""
    from mlflow.tracing.utils.prompt import update_linked_prompts_tag

    c.set_tag(rid, "mlflow.linkedPrompts", update_linked_prompts_tag(None, [pver]))
    c.set_tag(rid, "promptgov.registry_version", str(pver.version))
    _link_version_to_run(c, rid, pver, local, exp)
    if exp is not None:
        _link_prompt_to_experiment(c, pver.name, exp, local)


def _link_version_to_run(c: Any, rid: str, pver: Any, local: bool,
                         exp: str | None = None) -> None:
    """The Python client reads associatedRunIds, the UI's version page ("MLflow runs:")
    run_ids: lists of run ids, each read, extended and written back. Locally the store lock
    serialises the writers. On a server several evals may do that at once, and MLflow has no
    compare-and-set: a writer that read a list before another's write and writes after it
    drops that one's run, even after that one checked its own write; and two first writes of
    one tag at once make the server's insert fail on its unique key (PostgreSQL:
    ``model_version_tag_pk``). So each writer also puts back every run of experiment ``exp``
    whose ``promptgov.registry_version`` tag (written before its list write) names this
    version, and looks again after a pause until one look finds both lists complete: the last
    write is always followed by its writer's look, which sees every run that was linked, so
    in the end none is missing."""
    from mlflow.exceptions import MlflowException

    from promptgov.eval._runindex import pause

    for attempt in range(10):
        tags = c.get_prompt_version(pver.name, pver.version).tags or {}
        want = [rid]
        if not local and exp is not None:
            found = c.search_runs([exp], f"tags.`promptgov.registry_version` = "
                                  f"'{pver.version}' and tags.`{RUN_TAG}` LIKE "
                                  f"'{pver.name}@%'", max_results=200,
                                  order_by=["attributes.start_time DESC"])
            want = [r.info.run_id for r in reversed(found) if r.info.run_id != rid] + want
        if all(set(want) <= set((tags.get(k) or "").split(",")) for k in _RUN_KEYS):
            break
        try:
            _add_run(c, pver, tags, want)
        except MlflowException:
            if local or attempt == 9:
                raise
        else:
            if local:
                break  # the store lock serialises writers: nobody overwrote it
        pause(attempt)


def _add_run(c: Any, pver: Any, tags: dict[str, str], rids: Sequence[str]) -> None:
    """``rids`` appended to the version's run-list tags as read (``tags``), where missing."""
    for key in _RUN_KEYS:
        runs = [r for r in (tags.get(key) or "").split(",") if r]
        new = [r for r in rids if r not in runs]
        if new:
            c.set_prompt_version_tag(pver.name, pver.version, key, ",".join([*runs, *new]))


def _link_prompt_to_experiment(c: Any, name: str, exp: str, local: bool = False) -> None:
    """The experiment's Prompts tab lists the prompt. The prompt's list of experiments is read,
    extended and written back, like a version's list of runs (:func:`_link_version_to_run`):
    on a server, a write is checked after a moment and repeated if another writer (linking
    another experiment) replaced it, or if it lost a first write of the tag (the server's
    insert fails on its unique key) to one."""
    from mlflow.exceptions import MlflowException
    from mlflow.prompt.constants import PROMPT_EXPERIMENT_IDS_TAG_KEY

    from promptgov.eval._runindex import pause

    for attempt in range(6):
        ids = [e for e in (c.get_prompt(name).tags or {}).get(
            PROMPT_EXPERIMENT_IDS_TAG_KEY, "").split(",") if e]
        if exp in ids:
            return
        try:
            c.set_prompt_tag(name, PROMPT_EXPERIMENT_IDS_TAG_KEY,
                             "," + ",".join([*ids, exp]) + ",")
        except MlflowException:
            if local or attempt == 5:
                raise
        else:
            if local:
                return  # the store lock serialises writers: nobody replaced it
        pause(attempt)


def rows(records: Sequence[CaseRecord]) -> list[list[Any]]:
    """Per-case records as rows of JSON-safe cells, in :data:`TABLE_COLUMNS` order: a dict or
    list (an input, an answer) as its JSON text, which the UI's table shows whole."""
    out = []
    for r in records:
        row = [r.get(k) for k in TABLE_COLUMNS]
        for i, v in enumerate(row):
            if type(v) is dict or type(v) is list:
                v = row[i] = _dumps(v)
            if type(v) is str and not v.isascii():
                row[i] = _utf8(v)
        out.append(row)
    return out


def _c_dumps() -> Callable[[Any], str]:
    """``json.dumps(v, ensure_ascii=False)`` with the C encoder built once: ``dumps`` and
    ``JSONEncoder.encode`` build one per call, which is two thirds of the cost of a table's
    cells (3,080 cases, 9,240 cells: 0.035 s -> 0.017 s). Python's own encoder where the C
    one is missing."""
    from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]

    if c_make_encoder is None:  # pragma: no cover - CPython always has it
        return json.JSONEncoder(ensure_ascii=False).encode
    enc = c_make_encoder(None, None, encode_basestring, None, ": ", ", ", False, False, True)
    return lambda v: "".join(enc(v, 0))


_dumps = _c_dumps()


def _utf8(v: str) -> str:
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate in an answer must not sink the logging
        return v.encode("utf-8", "backslashreplace").decode("utf-8")
    return v

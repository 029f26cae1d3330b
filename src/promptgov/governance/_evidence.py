"""Evidence for an approval, read from MLflow: the run and whether it is of exactly the locked
version, the run on each required evalset, the adversarial drop, the prompt-registry version,
and the replay cassette of the run's answers. MLflow is imported by the callers' clients only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptgov.errors import GovernanceError
from promptgov.hashing import short
from promptgov.workspace._refs import parse_ref

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from promptgov.governance._approvals import Approval, GateRecord
    from promptgov.workspace import Workspace
    from promptgov.workspace._prompt import PromptVersion

CASSETTES_DIR = "governance/cassettes"
ADVERSARIAL_TAG = "promptgov.adversarial_of"
"""Tag of a ``promptgov adversarial`` run: the ``name@version`` it measured."""


def tracking_kind(uri: str) -> str:
    """``sqlite``, ``file``, ``server``, ``databricks``...: what is recorded, never the URI
    (it may hold credentials)."""
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else "file"
    return {"http": "server", "https": "server"}.get(scheme, scheme)


def get_run(c: MlflowClient, run_id: str, root: Path) -> Run:
    """The FINISHED run ``run_id`` (or any unique prefix of its id), or a
    :class:`GovernanceError` saying what to pass."""
    from mlflow.exceptions import MlflowException

    from promptgov.eval._runindex import resolve_run_id
    from promptgov.eval._store import tracking_uri

    run_id = resolve_run_id(root, c, run_id)
    try:
        run = c.get_run(run_id)
    except MlflowException:
        raise GovernanceError(f"no MLflow run {run_id!r} in {tracking_kind(tracking_uri(root))} "
                              "store (fix: pass the run id `promptgov eval` printed, with the "
                              "same MLFLOW_TRACKING_URI)") from None
    if run.info.status != "FINISHED":
        raise GovernanceError(f"run {run_id} is {run.info.status}, not FINISHED (fix: approve "
                              "a finished evaluation)")
    return run


def mismatches(ws: Workspace, run: Run, pv: PromptVersion, entry: dict[str, Any],
               lock: dict[str, Any], es_ref: str) -> list[str]:
    """Why ``run`` is not evidence for locked ``pv`` (empty: it is)."""
    return _drift(ws, pv, entry, lock, es_ref) + _mismatch(run, pv, entry, lock, es_ref)


def _drift(ws: Workspace, pv: PromptVersion, entry: dict[str, Any], lock: dict[str, Any],
           es_ref: str) -> list[str]:
    """What on disk no longer matches the lock: approving it would approve something else."""
    out = []
    f = f"prompts/{pv.name}/v{pv.version}.yaml"
    if pv.content_hash != entry["content_hash"]:
        out.append(f"{f} changed since it was locked (locked {short(entry['content_hash'])}, "
                   f"now {short(pv.content_hash)}): save the change as a new version")
    elif pv.render_fingerprint != entry["render_fingerprint"]:
        out.append(f"{f} renders different messages than when it was locked "
                   f"({short(entry['render_fingerprint'])} → {short(pv.render_fingerprint)})")
    sid = pv.response_schema
    if sid and ws.schema(sid).hash != lock["schemas"].get(sid, {}).get("hash"):
        out.append(f"schema {sid} differs from the lock: run `promptgov check`")
    name, v = parse_ref(es_ref)
    if name in ws.evalset_dirs():
        es = ws.evalset(name)
        if es.ref == es_ref and es.hash != lock["evalsets"].get(es_ref, {}).get("hash"):
            out.append(f"evalset {es_ref} differs from the lock: run `promptgov check`")
    return out


def _mismatch(run: Run, pv: PromptVersion, entry: dict[str, Any], lock: dict[str, Any],
              es_ref: str) -> list[str]:
    """Where the run's recorded hashes differ from the locked version's."""
    p, out = run.data.params, []
    if p.get("prompt_ref") != pv.ref:
        return [f"the run evaluated {p.get('prompt_ref')}, not {pv.ref}"]
    for key in ("content_hash", "render_fingerprint", "schema_hash"):
        want = str(entry.get(key))
        if p.get(key) != want:
            out.append(f"{key}: the run has {short(str(p.get(key)))}, the lock "
                       f"{short(want)} (fix: evaluate the locked version again)")
    locked_es = lock["evalsets"].get(es_ref)
    if locked_es is None:
        out.append(f"the run's evalset {es_ref} is not locked (fix: `promptgov lock`, evaluate)")
    elif p.get("evalset_hash") != locked_es["hash"]:
        out.append(f"evalset_hash: the run has {short(str(p.get('evalset_hash')))}, the lock "
                   f"{short(locked_es['hash'])} for {es_ref} (fix: evaluate again)")
    return out


def evalset_run(c: MlflowClient, run: Run, evalset: str, lock: dict[str, Any]) -> str | None:
    """The latest finished run of the same version, content and model on ``evalset``
    (``name`` or ``name@version``) whose evalset hash is the locked one."""
    from promptgov.eval._compare import _quote

    p = run.data.params
    name, v = parse_ref(evalset)
    filt = [f"params.prompt_ref = {_quote(p['prompt_ref'])}",
            f"params.content_hash = {_quote(p['content_hash'])}",
            f"params.model = {_quote(p['model'])}", f"params.evalset = {_quote(name)}",
            "attributes.status = 'FINISHED'"]
    if v is not None:
        filt.append(f"params.evalset_version = '{v}'")
    for r in c.search_runs([run.info.experiment_id], " and ".join(filt), max_results=50,
                           order_by=["attributes.start_time DESC"]):
        q = r.data.params
        locked = lock["evalsets"].get(f"{q.get('evalset')}@{q.get('evalset_version')}")
        if locked and locked["hash"] == q.get("evalset_hash"):
            found: str = r.info.run_id  # typed str; mlflow's property decorator loses it
            return found
    return None


def adversarial_drop(metrics: dict[str, float]) -> float | None:
    """Clean minus noisy accuracy of an adversarial run (positive: noise costs accuracy)."""
    if "adversarial_drop" in metrics:
        return metrics["adversarial_drop"]
    if "clean.accuracy" in metrics and "noisy.accuracy" in metrics:
        return metrics["clean.accuracy"] - metrics["noisy.accuracy"]
    return None


def adversarial_drop_of(c: MlflowClient, root: Path, run: Run, ref: str, content_hash: str,
                        run_id: str | None) -> tuple[float | None, str | None]:
    """``(drop, run id)`` of adversarial run ``run_id``, or of the latest finished adversarial
    run of this exact content with the same model as the evaluation ``run``."""
    from promptgov.eval._compare import _quote

    if run_id:
        adv = get_run(c, run_id, root)
        if adv.data.params.get("content_hash") != content_hash:
            raise GovernanceError(f"adversarial run {run_id} did not measure locked {ref} "
                                  f"(content hash {short(str(adv.data.params.get('content_hash')))}"
                                  f", locked {short(content_hash)})")
        return adversarial_drop(adv.data.metrics), adv.info.run_id
    filt = (f"tags.`{ADVERSARIAL_TAG}` = {_quote(ref)} and attributes.status = 'FINISHED' and "
            f"params.content_hash = {_quote(content_hash)} and "
            f"params.model = {_quote(run.data.params['model'])}")
    for adv in c.search_runs([run.info.experiment_id], filt, max_results=20,
                             order_by=["attributes.start_time DESC"]):
        drop = adversarial_drop(adv.data.metrics)
        if drop is not None:
            return drop, adv.info.run_id
    return None, None


def registry_version(c: MlflowClient, run: Run, pv: PromptVersion) -> int:
    """The prompt-registry version the run links to (registered by content hash)."""
    reg = run.data.tags.get("promptgov.registry_version")
    if reg is not None:
        v = c.get_prompt_version(pv.name, reg)
        if v is not None and (v.tags or {}).get("promptgov.content_hash") == pv.content_hash:
            return int(reg)
    from promptgov.eval._runlog import register_prompt, snapshot

    return int(register_prompt(c, snapshot(pv)).version)


def record_cassette_of(ws: Workspace, pv: PromptVersion, es_ref: str, model: str) -> Path:
    """Record the run's answers to a temporary cassette next to where it will live."""
    import os
    import tempfile

    from promptgov.eval import evaluate

    d = ws.root / CASSETTES_DIR
    d.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{pv.ref}.", suffix=".jsonl", dir=d)
    os.close(fd)
    try:
        evaluate(pv, es_ref, model=model, workspace=ws, track=False, record=tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


# -- approvals checked against their runs (check --runs, gate) --------------------------------

def approval_evidence_problems(c: MlflowClient, a: Approval,
                               policy_limits: dict[str, Any] | None = None) -> list[str]:
    """How approval ``a`` (an :class:`Approval`) disagrees with the MLflow run it cites: the
    run must exist and be finished, its params must carry the approved hashes and model, and
    its metrics must be the recorded ones and pass every recorded gate. The record lives in the
    repository and can be edited; the run lives in the tracking store and is the evidence.
    ``policy_limits``: the limits the policy the approval names sets for this prompt, when that
    policy is the locked one; the recorded limits must be those."""
    from mlflow.exceptions import MlflowException

    try:
        run = c.get_run(a.run_id)
    except MlflowException:
        return [f"its run {a.run_id} is not in the tracking store (fix: point "
                "MLFLOW_TRACKING_URI at the store the approval was made with; a record citing "
                "no run is not evidence)"]
    out = []
    if run.info.status != "FINISHED":
        out.append(f"its run {a.run_id} is {run.info.status}, not FINISHED")
    out += _param_mismatches(a, run.data.params)
    for g in a.gates:
        if g.gate == "required_evalsets" or g.metric == "adversarial_drop":
            continue  # evidence in other runs
        problem = _gate_mismatch(a, g, run.data.metrics.get(g.metric))
        if problem is not None:
            out.append(problem)
    if policy_limits is not None:
        out += _limit_mismatches(a, policy_limits)
    return out


def _param_mismatches(a: Approval, params: dict[str, str]) -> list[str]:
    """The approved hashes and model the run's params do not carry."""
    want = {"prompt_ref": a.ref, "content_hash": a.content_hash,
            "render_fingerprint": a.render_fingerprint, "schema_hash": str(a.schema_hash),
            "evalset_hash": a.evalset_hash, "model": a.model}
    return [f"{key}: the record says {short(str(value))}, its run {a.run_id} has "
            f"{short(str(params.get(key)))}" for key, value in want.items()
            if params.get(key) != value]


def _gate_mismatch(a: Approval, g: GateRecord, ran: float | None) -> str | None:
    """Why recorded gate ``g`` is not borne out by the value its run measured (``ran``):
    another value, or one that fails the recorded limit."""
    import math

    if ran is None or g.value is None or not math.isclose(
            ran, float(g.value), rel_tol=1e-9, abs_tol=1e-12):
        return (f"{g.gate}: the record says {g.metric} {g.value}, its run {a.run_id} "
                f"measured {ran}")
    ok = ran >= float(g.limit) if g.gate.startswith("min_") else ran <= float(g.limit)
    if ok:
        return None
    return (f"{g.gate}: its run measured {g.metric} {ran:.4g}, which does not pass "
            f"the recorded limit {g.limit} (the record says it passed)")


def _limit_mismatches(a: Approval, policy_limits: dict[str, Any]) -> list[str]:
    """The recorded gate limits must be those of the (locked) policy the approval names."""
    recorded = {g.gate: float(g.limit) for g in a.gates if g.gate != "required_evalsets"}
    locked = {k: float(v) for k, v in policy_limits.items() if k != "required_evalsets"}
    if recorded == locked:
        return []
    return [f"its recorded gate limits {recorded} are not those of the policy it "
            f"names ({short(str(a.policy_hash))}, the locked one): {locked}"]

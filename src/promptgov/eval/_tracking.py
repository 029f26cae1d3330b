"""MLflow gets the run, not the traffic (principle 8): one run per evaluation, logged once at
the end, in batches: params, metrics, the per-case table, the rendered prompt, and a link to
the prompt version in MLflow's prompt registry.

The default store is a SQLite file in the workspace (``.promptgov/mlflow.db``, artifacts in
``.promptgov/mlartifacts``); ``MLFLOW_TRACKING_URI`` overrides it (e.g. a team's server).
Everything goes through an explicit ``MlflowClient``: no global MLflow state is changed.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

RUN_TAG = "promptgov.prompt"


def tracking_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / '.promptgov' / 'mlflow.db'}"


def check_store(root: Path) -> None:
    """Refuse a default SQLite store that is not a database (a damaged or foreign file) with one
    line, before anything is spent, instead of SQLAlchemy's traceback at the end of a run."""
    from promptgov.errors import WorkspaceError

    uri = tracking_uri(root)
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri.removeprefix("sqlite:///"))
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        return
    if head and head != b"SQLite format 3\x00":
        shown = path.relative_to(root) if path.is_relative_to(root) else path
        raise WorkspaceError(shown, "is not an SQLite database (damaged?); the MLflow runs it "
                             "held cannot be read", f"restore it from a backup, or move it aside "
                             f"(`mv {shown} {shown}.broken`) and a new store is created")


def client(root: Path):
    from mlflow import MlflowClient

    (root / ".promptgov").mkdir(exist_ok=True)
    check_store(root)
    uri = tracking_uri(root)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(c, root: Path, name: str) -> str:
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    art = None
    if c.tracking_uri.startswith("sqlite:"):  # keep artifacts in the workspace, not in the cwd
        art = (root / ".promptgov" / "mlartifacts" / name).as_uri()
    return c.create_experiment(name, artifact_location=art)


def git_info(root: Path) -> dict[str, str]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "prompts", "schemas",
                                "evalsets"], cwd=root, capture_output=True, text=True,
                               timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": commit, "git_dirty": str(bool(dirty))} if commit else {}


def log_eval(root: Path, result, pv) -> str:
    """Log ``result`` as one MLflow run; returns the run id."""
    from mlflow.entities import Metric, Param

    c = client(root)
    exp = experiment_id(c, root, pv.name)
    run = c.create_run(exp, run_name=f"{pv.ref} · {result.model}",
                       tags={RUN_TAG: pv.ref, "promptgov.evalset": result.evalset,
                             "promptgov.model": result.model})
    rid = run.info.run_id
    try:
        import time

        now = int(time.time() * 1000)
        params = [Param(k, str(v)[:6000]) for k, v in result.params.items()]
        metrics = [Metric(k, float(v), now, 0) for k, v in result.metrics.items()
                   if v == v]  # NaN (e.g. no case in the auto band) is left out, not logged
        for i in range(0, max(len(params), len(metrics)), 100):
            c.log_batch(rid, metrics=metrics[i:i + 100], params=params[i:i + 100])
        c.log_table(rid, data=_table(result.records), artifact_file="cases.json")
        c.log_text(rid, json.dumps(pv.render(pv.probe_input), ensure_ascii=False, indent=1),
                   "prompt/rendered_probe.json")
        c.log_dict(rid, pv.model_dump(mode="json"), "prompt/prompt.yaml")
        pver = register_prompt(c, pv)
        # MlflowClient.link_prompt_version_to_run looks the run up in the *global* tracking
        # store, not this client's; setting the same tag it writes keeps us off global state.
        from mlflow.tracing.utils.prompt import update_linked_prompts_tag

        c.set_tag(rid, "mlflow.linkedPrompts", update_linked_prompts_tag(None, [pver]))
        c.set_tag(rid, "promptgov.registry_version", str(pver.version))
        c.set_terminated(rid, "FINISHED")
    except BaseException:
        c.set_terminated(rid, "FAILED")
        raise
    return rid


def register_prompt(c, pv):
    """The MLflow prompt-registry version holding ``pv``; registered once per content hash."""
    from mlflow.exceptions import MlflowException

    try:
        for v in c.search_prompt_versions(pv.name):
            if (v.tags or {}).get("promptgov.content_hash") == pv.content_hash:
                return v
    except MlflowException:
        pass  # no such prompt yet
    # The registry holds the templates (its limit is 100k characters; 770 demos exceed it);
    # the demos and the full rendered prompt are in the run's artifacts and in the workspace.
    template = [{"role": "system", "content": pv.system}, {"role": "user", "content": pv.user}]
    return c.register_prompt(
        pv.name, template, commit_message=f"promptgov {pv.ref}",
        tags={"promptgov.version": str(pv.version), "promptgov.content_hash": pv.content_hash,
              "promptgov.render_fingerprint": pv.render_fingerprint,
              "promptgov.demos": str(len(pv.demos))})


def _table(records: list[dict[str, Any]]) -> dict[str, list]:
    """Per-case records as columns of JSON-safe values."""
    cols = ["case_id", "sample", "input", "expected", "output", "correct", "failure", "error",
            "confidence", "attempts", "retries", "reasks", "cached", "prompt_tokens",
            "completion_tokens", "cost_usd", "latency_s"]
    out: dict[str, list] = {k: [] for k in cols}
    for r in records:
        for k in cols:
            v = r.get(k)
            v = json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v
            if isinstance(v, str):  # a lone surrogate in an answer must not sink the logging
                v = v.encode("utf-8", "backslashreplace").decode("utf-8")
            out[k].append(v)
    return out

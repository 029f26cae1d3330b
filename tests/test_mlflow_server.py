"""MLflow gets the run, not the traffic (principle 8): one run per evaluation, with its params,
metrics, per-case table and a link to the prompt in the prompt registry; against a real
``mlflow server`` (the team setup) and against the default SQLite store in the workspace.

The server is started once for the module, in its own process group, as soon as the module's
first test starts (the SQLite test runs while it boots) and killed at the end. Two settings keep
its start-up short and offline: ``--workers 1`` and ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``
(no job-runner process), plus ``LITELLM_LOCAL_MODEL_COST_MAP`` (no price-map download).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from promptgov.eval import evaluate
from promptgov.model._fake import FakeModel
from promptgov.workspace._policy import RetryPolicy

FAST = RetryPolicy(backoff_base_s=0.001, backoff_max_s=0.01)
PARAMS = ("prompt", "prompt_version", "content_hash", "render_fingerprint", "schema_hash",
          "evalset", "evalset_hash", "model", "temperature", "concurrency", "promptgov_version")
METRICS = ("accuracy", "failure_rate", "cost_usd", "latency_p95_s")
MLFLOW = Path(sys.executable).parent / "mlflow"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, root: Path):
        self.root, self.port = root, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (root / "server.log").open("wb")
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true",
               "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
               "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        env.pop("MLFLOW_TRACKING_URI", None)
        self.proc = subprocess.Popen(
            [str(MLFLOW), "server", "--backend-store-uri", f"sqlite:///{root / 'm.db'}",
             "--default-artifact-root", str(root / "art"), "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1"],
            cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)

    def wait_healthy(self, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self.url
            except OSError:
                time.sleep(0.2)
        self.stop()
        pytest.fail(f"mlflow server did not become healthy (exit {self.proc.returncode}):\n"
                    + (self.root / "server.log").read_text(errors="replace")[-3000:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the server and its uvicorn worker
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module", autouse=True)
def mlflow_server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield server
    finally:
        server.stop()


def evaluate_two_versions(workspace):
    return {v: evaluate(f"ticket_triage@{v}", workspace=workspace, model=FakeModel(seed=1),
                        concurrency=8, retry=FAST) for v in (1, 2)}


def check_runs(client, results, workspace):
    exp = client.get_experiment_by_name("ticket_triage")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 2
    assert {r.info.run_id for r in runs} == {res.run_id for res in results.values()}
    for run in runs:
        assert run.info.status == "FINISHED"
        v = int(run.data.params["prompt_version"])
        res, pv = results[v], workspace.prompt(f"ticket_triage@{v}")
        for p in PARAMS:
            assert p in run.data.params, p
            assert run.data.params[p] == str(res.params[p]), p
        assert run.data.params["content_hash"] == pv.content_hash
        assert run.data.params["render_fingerprint"] == pv.render_fingerprint
        assert run.data.params["schema_hash"] == workspace.schema("ticket_triage@1").hash
        assert run.data.params["evalset_hash"] == workspace.evalset("ticket_triage").hash
        assert run.data.params["model"] == "fake/scripted"
        for m in METRICS:
            assert run.data.metrics[m] == pytest.approx(res.metrics[m]), m
        assert run.data.tags["promptgov.prompt"] == f"ticket_triage@{v}"
    return runs


# -- the default store: SQLite in the workspace (runs while the server boots) -----------------

def test_default_sqlite_store_in_workspace(workspace, monkeypatch, tmp_path):
    import mlflow
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    results = evaluate_two_versions(workspace)

    db = workspace.root / ".promptgov" / "mlflow.db"
    assert db.is_file()
    uri = f"sqlite:///{db}"
    client = MlflowClient(tracking_uri=uri)
    runs = check_runs(client, results, workspace)
    for run in runs:  # artifacts stay in the workspace, not in the current directory
        assert Path(run.info.artifact_uri.removeprefix("file://")).is_relative_to(
            workspace.root / ".promptgov" / "mlartifacts")
        assert "cases.json" in {a.path for a in client.list_artifacts(run.info.run_id)}
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    df = mlflow.search_runs(experiment_names=["ticket_triage"])
    assert sorted(df["params.prompt_version"]) == ["1", "2"]
    assert list(cwd.iterdir()) == []  # no mlflow.db / mlruns / mlartifacts in the cwd


# -- a real tracking server ------------------------------------------------------------------

@pytest.mark.slow  # ~25 s on its own (server start-up); still part of the default suite
def test_runs_params_metrics_artifacts_and_prompt_registry_on_server(
        mlflow_server, workspace, monkeypatch, tmp_path):
    import mlflow
    from mlflow import MlflowClient

    url = mlflow_server.wait_healthy()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    results = evaluate_two_versions(workspace)
    assert all(r.run_id for r in results.values())

    df = mlflow.search_runs(experiment_names=["ticket_triage"])
    assert len(df) == 2
    assert sorted(df["params.prompt_version"]) == ["1", "2"]
    for col in [f"params.{p}" for p in PARAMS] + [f"metrics.{m}" for m in METRICS]:
        assert col in df.columns and df[col].notna().all(), col

    client = MlflowClient(tracking_uri=url, registry_uri=url)
    runs = check_runs(client, results, workspace)

    versions = client.search_prompt_versions("ticket_triage")
    by_hash = {(pv.tags or {}).get("promptgov.content_hash"): pv for pv in versions}
    for run in runs:
        rid, v = run.info.run_id, int(run.data.params["prompt_version"])
        # the per-case table
        assert "cases.json" in {a.path for a in client.list_artifacts(rid)}
        path = client.download_artifacts(rid, "cases.json", str(tmp_path))
        table = json.loads(Path(path).read_text())
        assert len(table["data"]) == len(results[v].records) == 770
        assert "case_id" in table["columns"] and "failure" in table["columns"]
        # the prompt registry holds this version, found by its content hash ...
        pv = workspace.prompt(f"ticket_triage@{v}")
        registered = by_hash[pv.content_hash]
        assert registered.name == "ticket_triage"
        assert registered.tags["promptgov.version"] == str(v)
        # ... and the run links it
        linked = json.loads(run.data.tags["mlflow.linkedPrompts"])
        assert linked == [{"name": "ticket_triage", "version": str(registered.version)}]
        assert run.data.tags["promptgov.registry_version"] == str(registered.version)

    # re-evaluating a version: a new run, no new registry version, no model call
    fake = FakeModel(seed=1)
    again = evaluate("ticket_triage@1", workspace=workspace, model=fake, retry=FAST)
    assert fake.n_calls == 0 and again.run_id not in {r.run_id for r in results.values()}
    assert len(client.search_prompt_versions("ticket_triage")) == len(versions) == 2
    assert len(mlflow.search_runs(experiment_names=["ticket_triage"])) == 3

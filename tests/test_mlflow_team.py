"""Team mode: ``promptgov server`` on PostgreSQL (Debian's ``postgresql``, set up by
``scripts/postgres.sh``), four evals at once from four processes: every run and metric arrives,
nothing crashes. Each test run gets a fresh database, dropped at the end.
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
import uuid
from pathlib import Path

import pytest

from conftest import small_triage

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
EXE = Path(sys.executable).parent / "promptgov"
N = 20


def postgres_url() -> str:
    url = os.environ.get("PROMPTGOV_TEST_POSTGRES_URL")
    if url:
        return url
    if os.geteuid() != 0:
        pytest.fail("no PostgreSQL: set PROMPTGOV_TEST_POSTGRES_URL, or run as root so that "
                    "scripts/postgres.sh can install and start one (.ci/run does)")
    out = subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh")], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture(scope="module")
def database():
    """A fresh database on the test PostgreSQL; its URL."""
    import psycopg

    base = postgres_url()
    name = f"promptgov_t{uuid.uuid4().hex[:10]}"
    conn = psycopg.connect(base, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"create database {name}")
    yield base.rsplit("/", 1)[0] + f"/{name}"
    with conn.cursor() as cur:
        cur.execute(f"drop database if exists {name} with (force)")
    conn.close()


@pytest.fixture(scope="module")
def server(database, tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = tmp_path_factory.mktemp("team")
    log = (tmp / "server.log").open("wb")
    proc = subprocess.Popen([str(EXE), "server", "--backend-store-uri", database,
                             "--artifacts-destination", str(tmp / "artifacts"),
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp / "server.log").read_text(errors="replace")[-3000:]
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.3)
    else:
        pytest.fail("promptgov server did not become healthy")
    yield url
    os.killpg(proc.pid, signal.SIGTERM)  # promptgov server stops its own group
    proc.wait(timeout=30)


@pytest.fixture
def ws(workspace_dir: Path) -> Path:
    return small_triage(workspace_dir, N)


def test_four_evals_at_once_against_the_postgres_server(ws, server):
    env = {**os.environ, "MLFLOW_TRACKING_URI": server}
    procs = [subprocess.Popen([str(EXE), "eval", f"ticket_triage@{1 + i % 2}", "-e",
                               "triage_small", "-m", f"fake/team{i}", "--json", "-w", str(ws)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(4)]
    outs = [p.communicate(timeout=400) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [o[1][-4000:] for o in outs]
    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=server, registry_uri=server)
    exp = c.get_experiment_by_name("ticket_triage")
    runs = {r.info.run_id: r for r in c.search_runs([exp.experiment_id])}
    for out, _ in outs:
        got = json.loads(out)
        run = runs[got["run_id"]]
        assert run.info.status == "FINISHED" and run.data.params["model"] == got["model"]
        assert run.data.metrics == pytest.approx(
            {k: v for k, v in got["metrics"].items() if v is not None})
        assert {a.path for a in c.list_artifacts(got["run_id"])} >= {"cases.json", "prompt"}
    assert not (ws / ".promptgov" / "mlflow.db").exists()  # nothing went to the local store
    # the prompt registry on the server links each version to its runs
    linked = {rid for v in c.search_prompt_versions("ticket_triage")
              for rid in (v.tags or {}).get("mlflow.prompt.run_ids", "").split(",") if rid}
    assert {json.loads(o)["run_id"] for o, _ in outs} <= linked

"""MLflow done right (issue 12): logging that never costs the eval and survives faults, runs that
read well in the UI, run-id prefixes, drift marks, and ``status``/``compare`` from the
workspace's run index without importing MLflow."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import promptgov as pg
import promptgov.cli  # noqa: F401  (registers the commands on the app)
from conftest import small_triage
from promptgov.cli._app import app
from promptgov.errors import GovernanceError, TrackingError
from promptgov.eval import _runindex
from promptgov.eval._record import TABLE_COLUMNS
from promptgov.eval._tracking import client
from promptgov.model._fake import FakeModel

runner = CliRunner()
N = 20


@pytest.fixture
def ws(workspace_dir: Path) -> Path:
    """The example workspace copy with a 20-case triage evalset and no MLflow store yet."""
    return small_triage(workspace_dir, N)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def half_server():
    """An HTTP server whose /health says OK and whose every MLflow API call fails (503)."""
    class H(http.server.BaseHTTPRequestHandler):
        def _answer(self):
            ok = self.path.startswith("/health")
            self.send_response(200 if ok else 503)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        do_GET = do_POST = _answer

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_unreachable_server_stops_before_any_model_call(ws, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{closed_port()}")
    m = FakeModel(id="fake/counted")
    t0 = time.monotonic()
    with pytest.raises(TrackingError, match="is not reachable.*nothing was evaluated") as e:
        pg.evaluate("ticket_triage@1", "triage_small", model=m, workspace=ws)
    assert time.monotonic() - t0 < 5 and m.n_calls == 0 and e.value.result is None
    r = runner.invoke(app, ["eval", "ticket_triage@1", "-e", "triage_small", "-m",
                            "fake/scripted", "--workspace", str(ws)])
    assert r.exit_code == 1
    assert r.stderr.strip().count("\n") == 0 and "MLFLOW_TRACKING_URI" in r.stderr
    assert not (ws / ".promptgov" / "cache.sqlite").exists()  # nothing was spent or kept


def test_failed_logging_prints_and_keeps_the_result_then_log_pending(ws, monkeypatch,
                                                                      half_server):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", half_server)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    r = runner.invoke(app, ["eval", "ticket_triage@1", "-e", "triage_small", "-m",
                            "fake/scripted", "--workspace", str(ws)])
    assert r.exit_code == 1
    assert "accuracy" in r.stdout and "20 model calls" in r.stdout  # the result is printed
    err = r.stderr.strip()
    assert err.count("\n") == 0 and err.startswith("error: logging to MLflow failed")
    assert "promptgov log --pending" in err
    kept = list((ws / ".promptgov" / "pending").glob("*.json"))
    assert len(kept) == 1
    kept_result = json.loads(kept[0].read_text())["result"]
    assert len(kept_result["records"]) == N

    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # the store is back (here: the local one)
    up = runner.invoke(app, ["log", "--pending", "--workspace", str(ws)])
    assert up.exit_code == 0, up.output
    rid = up.stdout.split("MLflow run ")[1].split()[0]
    run = client(ws).get_run(rid)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["accuracy"] == pytest.approx(kept_result["metrics"]["accuracy"])
    assert run.data.params["evalset"] == "triage_small"
    assert not list((ws / ".promptgov" / "pending").glob("*.json"))
    again = runner.invoke(app, ["log", "--pending", "--workspace", str(ws)])
    assert again.exit_code == 0 and "nothing pending" in again.stdout


def test_a_lone_surrogate_in_an_answer_is_logged_escaped(ws):
    m = FakeModel(id="fake/odd", answer=lambda req: '{"label": "card_arrival\ud800", '
                                                    '"confidence": 0.5}')
    r = pg.evaluate("ticket_triage@1", "triage_small", model=m, workspace=ws)
    run = client(ws).get_run(r.run_id)
    assert run.info.status == "FINISHED"
    art = Path(run.info.artifact_uri.removeprefix("file://"))
    table = json.loads((art / "cases.json").read_text(encoding="utf-8"))
    assert len(table["data"]) == N and table["columns"] == list(TABLE_COLUMNS)
    assert table["data"][0][table["columns"].index("failure")] == "schema_violation"
    from promptgov.eval._runlog import rows  # a surrogate that does reach a cell is escaped
    cell = rows([{**r.records[0], "error": "bad \ud800"}])[0][TABLE_COLUMNS.index("error")]
    assert cell == "bad \\ud800" and cell.encode("utf-8")
    assert json.loads(run.data.tags["mlflow.loggedArtifacts"]) == [{"path": "cases.json",
                                                                     "type": "table"}]


def _eval_runs(ws: Path) -> list:
    from mlflow.entities import ViewType

    c = client(ws)
    exp = c.get_experiment_by_name("ticket_triage")
    return c.search_runs([exp.experiment_id], run_view_type=ViewType.ALL) if exp else []


def test_a_stopped_eval_deletes_the_run_it_started(ws):
    """The run starts while the cases run; an eval stopped by a systematic failure must not
    leave it behind as evidence (it is deleted), and the next eval's run is whole."""
    from promptgov.errors import AuthFailed, RunStopped

    def no_key(req):
        raise AuthFailed("HTTP 401: bad key")

    with pytest.raises(RunStopped):
        pg.evaluate("ticket_triage@1", "triage_small", model=FakeModel(id="fake/nokey",
                                                                       answer=no_key),
                    workspace=ws, concurrency=1)
    r = pg.evaluate("ticket_triage@1", "triage_small", model=FakeModel(id="fake/ok"),
                    workspace=ws)  # the logger serves requests in order: the abandon is done
    stages = sorted((x.info.lifecycle_stage, x.data.tags.get("promptgov.model"))
                    for x in _eval_runs(ws))
    assert stages == [("active", "fake/ok"), ("deleted", "fake/nokey")]
    assert client(ws).get_run(r.run_id).data.metrics["accuracy"] >= 0


def test_a_killed_eval_leaves_no_started_run(ws):
    """SIGKILL of the eval's process mid-run: its logger service sees the connection close and
    deletes the run it had started."""
    code = ("import promptgov as pg\n"
            "from promptgov.model._fake import FakeModel\n"
            f"pg.evaluate('ticket_triage@1', 'triage_small', model=FakeModel(id='fake/slow', "
            f"latency_s=5), workspace={str(ws)!r}, concurrency=1)\n")
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 120
        while not _eval_runs(ws):  # the run was started while the (slow) cases run
            assert proc.poll() is None and time.monotonic() < deadline, "no run was started"
            time.sleep(0.2)
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 30
        while any(x.info.lifecycle_stage == "active" for x in _eval_runs(ws)):
            assert time.monotonic() < deadline, "the started run outlived its eval"
            time.sleep(0.2)
    finally:
        proc.kill()
    assert [x.info.lifecycle_stage for x in _eval_runs(ws)] == ["deleted"]


def test_run_reads_well_in_the_ui(ws):
    m = FakeModel(id="fake/ui")
    r = pg.evaluate("ticket_triage@2", "triage_small", model=m, workspace=ws)
    c = client(ws)
    run = c.get_run(r.run_id)
    assert run.info.run_name == "triage v2 · fake/ui"
    head = run.data.tags["promptgov.headline"].split(",")
    assert head[:2] == ["accuracy", "failure_rate"] and "cost_per_1k_usd" in head
    assert run.data.tags["promptgov.lock"] == "locked"
    ds = run.inputs.dataset_inputs[0].dataset
    assert ds.name == "triage_small@1" and r.params["evalset_hash"].startswith(ds.digest)
    art = Path(run.info.artifact_uri.removeprefix("file://"))
    table = json.loads((art / "cases.json").read_text())
    # reading order: what was asked for and what came back first; derived from CaseRecord
    assert table["columns"] == list(TABLE_COLUMNS)
    assert table["columns"][:7] == ["case_id", "expected", "predicted", "correct", "confidence",
                                    "failure", "input"]
    assert (art / "prompt" / "v2.yaml").read_bytes() == (ws / "prompts" / "ticket_triage"
                                                          / "v2.yaml").read_bytes()
    # the diagram, which the logger service draws after the eval has its answer
    deadline = time.monotonic() + 30
    while not (art / "reliability.png").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (art / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the prompt version is linked to its run and to the prompt's experiment (not experiment 0)
    ver = c.get_prompt_version("ticket_triage", run.data.tags["promptgov.registry_version"])
    assert r.run_id in ver.tags["mlflow.prompt.run_ids"].split(",")
    assert ver.tags["promptgov.content_hash"] == r.params["content_hash"]
    time.sleep(0.5)  # MLflow's own experiment-linking thread would have run by now
    assert c.get_prompt("ticket_triage").tags["_mlflow_experiment_ids"] == \
        f",{run.info.experiment_id},"
    exp = c.get_experiment(run.info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    view = json.loads(exp.tags["mlflow.sharedViewState.promptgov"])
    assert "metrics.`accuracy`" in view["selectedColumns"]


def test_run_id_prefix_is_accepted(ws):
    from promptgov.governance._evidence import get_run

    r = pg.evaluate("ticket_triage@1", "triage_small", model=FakeModel(id="fake/p"),
                    workspace=ws)
    c = client(ws)
    assert get_run(c, r.run_id[:8], ws).info.run_id == r.run_id
    assert _runindex.resolve_run_id(ws, c, r.run_id[:8].upper()) == r.run_id
    with pytest.raises(GovernanceError, match="no MLflow run 'ffffffff'"):
        get_run(c, "ffffffff", ws)


def test_drifted_file_refuses_unless_allowed_and_never_counts_as_the_version(ws):
    m = FakeModel(id="fake/d")
    good = pg.evaluate("ticket_triage@1", "triage_small", model=m, workspace=ws)
    f = ws / "prompts" / "ticket_triage" / "v1.yaml"
    original = f.read_text()
    f.write_text(original.replace("Customer message:", "Customer message (edited):"))
    with pytest.raises(GovernanceError, match=r"changed since it was locked.*--allow-drift"):
        pg.evaluate("ticket_triage@1", "triage_small", model=m, workspace=pg.Workspace(ws))
    drifted = pg.evaluate("ticket_triage@1", "triage_small", model=m,
                          workspace=pg.Workspace(ws), allow_drift=True)
    run = client(ws).get_run(drifted.run_id)
    assert run.data.tags["promptgov.lock"] == "drifted" and "drifted" in run.info.run_name
    assert run.data.tags["promptgov.prompt"] == "ticket_triage@1~drifted"
    f.write_text(original)  # reverted: the drifted run still is not v1
    df = pg.compare("ticket_triage", workspace=pg.Workspace(ws), model="fake/d")
    assert df.loc[1, "run_id"] == good.run_id
    assert [d["run_id"] for d in df.attrs["drifted"]] == [drifted.run_id]
    from promptgov.governance._status import status_rows

    row = next(r for r in status_rows(ws) if r["ref"] == "ticket_triage@1")
    assert row["run_id"] == good.run_id and row["drifted_run"] == drifted.run_id


def test_status_and_compare_read_the_run_index_without_mlflow(ws):
    m = FakeModel(id="fake/i")
    for v in (1, 2):
        pg.evaluate(f"ticket_triage@{v}", "triage_small", model=m, workspace=ws)
    assert _runindex.runs(ws) is not None  # trusted: promptgov wrote the store last
    code = ("import sys\nfrom promptgov.cli import main\n"
            f"for args in (['status', '-w', {str(ws)!r}], "
            f"['compare', 'ticket_triage', '--no-log', '-w', {str(ws)!r}]):\n"
            "    sys.argv = ['promptgov', *args]\n"
            "    try:\n        main()\n    except SystemExit as e:\n"
            "        assert not e.code, e.code\n"
            "print('MLFLOW-IMPORTED' if 'mlflow' in sys.modules else 'NO-MLFLOW')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("NO-MLFLOW") and "fake/i" in out.stdout


def test_index_is_rebuilt_when_the_store_changed_behind_promptgov(ws):
    m = FakeModel(id="fake/r")
    r1 = pg.evaluate("ticket_triage@1", "triage_small", model=m, workspace=ws)
    c = client(ws)
    c.set_tag(r1.run_id, "someone", "else")  # a write promptgov did not index
    assert _runindex.runs(ws) is None
    c.delete_run(r1.run_id)
    from promptgov.eval._compare import latest_runs

    assert latest_runs(ws, "ticket_triage") == {}  # rebuilt from MLflow: the run is deleted
    assert _runindex.runs(ws) == []


def test_compare_logs_itself_once(ws):
    m = FakeModel(id="fake/c")
    for v in (1, 2):
        pg.evaluate(f"ticket_triage@{v}", "triage_small", model=m, workspace=ws)
    first = runner.invoke(app, ["compare", "ticket_triage", "-w", str(ws)])
    assert first.exit_code == 0, first.output
    rid = first.stdout.split("comparison logged as MLflow run ")[1].split()[0]
    run = client(ws).get_run(rid)
    assert run.data.tags["promptgov.kind"] == "compare"
    assert {"v2_vs_v1.delta_accuracy", "v2_vs_v1.p", "v2_vs_v1.ci95_low",
            "v2_vs_v1.ci95_high", "v1.accuracy"} <= set(run.data.metrics)
    arts = {a.path for a in client(ws).list_artifacts(rid)}
    assert {"compare.json", "pareto.png"} <= arts
    again = runner.invoke(app, ["compare", "ticket_triage", "-w", str(ws)])
    assert again.exit_code == 0 and "comparison logged" not in again.stdout


@pytest.mark.slow
def test_concurrent_first_use_of_a_sqlite_store(ws):
    """Four evals started at once on a fresh workspace: the store is created and migrated once,
    under the store lock; every run and metric arrives. Two share a logger service (both
    start one at once: one wins the socket), two have one each (a PROMPTGOV_LOGGER_*
    variable is part of a service's key), so three services create the store at once."""
    assert not (ws / ".promptgov" / "mlflow.db").exists()
    exe = Path(sys.executable).parent / "promptgov"
    procs = [subprocess.Popen([str(exe), "eval", f"ticket_triage@{1 + i % 2}", "-e",
                               "triage_small", "-m", f"fake/p{i}", "--json", "-w", str(ws)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PROMPTGOV_LOGGER_MACHINE": str(max(i, 1))})
             for i in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [o[1][-2000:] for o in outs]
    ids = [json.loads(o[0])["run_id"] for o in outs]
    c = client(ws)
    for rid, (out, _) in zip(ids, outs, strict=True):
        run = c.get_run(rid)
        assert run.info.status == "FINISHED"
        assert run.data.metrics == pytest.approx(
            {k: v for k, v in json.loads(out)["metrics"].items() if v is not None})
    assert len({r["run_id"] for r in _runindex.runs(ws) or ()}) == 4

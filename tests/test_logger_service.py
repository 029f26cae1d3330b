"""The logger service (promptgov.eval._logger): one process per workspace and store that
imports MLflow once and serves the tracked evals of every command, notebook and ``loop`` until
it is idle; and what it does when it is killed, left behind, or shared."""

from __future__ import annotations

import json
import os
import signal
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
from promptgov.errors import TrackingError
from promptgov.eval import _logger
from promptgov.eval._tracking import client
from promptgov.model._fake import FakeModel
from support.procs import alive, processes_with

N = 20


@pytest.fixture
def ws(workspace_dir: Path) -> Path:
    return small_triage(workspace_dir, N)


def service_pid(ws: Path) -> int:
    """The pid of the service of ``ws`` under this process's environment (it writes it into
    the lock file it holds)."""
    return int((_logger.runtime_dir() / f"{_logger._key(ws)}.lock").read_text())


def wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not alive(pid)


EVAL = ("import json, sys, promptgov as pg\n"
        "from promptgov.eval import _logger\n"
        "from promptgov.model._fake import FakeModel\n"
        "r = pg.evaluate('ticket_triage@1', 'triage_small', model=FakeModel(id='fake/p'), "
        "workspace=sys.argv[1])\n"
        "key = _logger._key(pg.Workspace.of(sys.argv[1]).root)\n"
        "pid = int((_logger.runtime_dir() / (key + '.lock')).read_text())\n"
        "print(json.dumps({'run': r.run_id, 'service': pid, 'key': key, "
        "'mlflow': 'mlflow' in sys.modules}))\n")


def run_eval(ws: Path, **env: str) -> dict:
    out = subprocess.run([sys.executable, "-c", EVAL, str(ws)], capture_output=True, text=True,
                         timeout=300, env={**os.environ, **env})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def services_of(ws: Path) -> list[int]:
    """Pids of the logger services running for workspace ``ws``."""
    return [p for p in processes_with(f"promptgov.eval._logger {ws} ") if alive(p)]


def test_one_service_serves_the_evals_of_many_commands(ws):
    """Evals in a row from separate processes, a notebook's ``pg.evaluate`` and the ``promptgov
    eval`` command (which sets MLflow's log level, a notebook does not): all are served by the
    service the first started, and no eval process imports MLflow."""
    a = run_eval(ws)
    cmd = subprocess.run([str(Path(sys.executable).parent / "promptgov"), "eval",
                          "ticket_triage@2", "-e", "triage_small", "-m", "fake/cli", "--json",
                          "-w", str(ws)], capture_output=True, text=True, timeout=300)
    assert cmd.returncode == 0, cmd.stderr[-2000:]
    b = run_eval(ws)
    assert a["service"] == b["service"] and services_of(ws) == [a["service"]]
    assert not a["mlflow"] and not b["mlflow"]
    c = client(ws)
    ids = [a["run"], json.loads(cmd.stdout)["run_id"], b["run"]]
    assert {c.get_run(x).info.status for x in ids} == {"FINISHED"} and len(set(ids)) == 3


def test_a_service_killed_mid_eval_keeps_the_result_and_is_replaced(ws):
    """SIGKILL of the service while the cases run: the eval ends with one line and the result
    kept for ``log --pending``; the next eval starts a new service."""
    pg.evaluate("ticket_triage@1", "triage_small", model=FakeModel(id="fake/a"), workspace=ws)
    pid = service_pid(ws)
    threading.Timer(1.0, os.kill, (pid, signal.SIGKILL)).start()
    with pytest.raises(TrackingError) as e:
        pg.evaluate("ticket_triage@2", "triage_small", workspace=ws, concurrency=1,
                    model=FakeModel(id="fake/slow", latency_s=0.15))
    assert "\n" not in str(e.value) and "promptgov log --pending" in str(e.value)
    assert e.value.result is not None and len(e.value.result.records) == N
    assert wait_gone(pid, 10)
    r = pg.evaluate("ticket_triage@1", "triage_small", model=FakeModel(id="fake/b"),
                    workspace=ws)
    assert service_pid(ws) != pid
    assert client(ws).get_run(r.run_id).info.status == "FINISHED"
    up = CliRunner().invoke(app, ["log", "--pending", "--workspace", str(ws)])
    assert up.exit_code == 0, up.output
    assert not list((ws / ".promptgov" / "pending").glob("*.json"))


def test_the_service_exits_when_idle_and_when_its_workspace_is_gone(ws, tmp_path):
    quick = run_eval(ws, PROMPTGOV_LOGGER_IDLE_S="1")
    assert wait_gone(quick["service"], 15), "an idle service outlived its idle time"
    left = list(_logger.runtime_dir().glob(f"{quick['key']}.*"))
    assert left == [], f"a service that exited cleanly left {left}"
    other = small_triage(__import__("conftest").copy_workspace(tmp_path / "other"), N)
    kept = run_eval(other)  # idle time 20 s: it goes because its workspace does
    assert alive(kept["service"])
    art = Path(client(other).get_run(kept["run"]).info.artifact_uri.removeprefix("file://"))
    deadline = time.monotonic() + 30  # the diagram it draws after the eval's answer
    while not (art / "reliability.png").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    import shutil

    shutil.rmtree(other / ".promptgov")
    assert wait_gone(kept["service"], 10), "the service outlived its workspace"


def test_a_socket_left_by_a_killed_service_is_replaced(ws):
    path = _logger.runtime_dir() / f"{_logger._key(ws)}.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # a socket file nobody listens on, as a SIGKILLed service leaves
    dead.close()
    r = pg.evaluate("ticket_triage@1", "triage_small", model=FakeModel(id="fake/s"),
                    workspace=ws)
    assert client(ws).get_run(r.run_id).info.status == "FINISHED"


def test_sockets_live_only_in_a_private_directory(ws, tmp_path, monkeypatch):
    """A runtime directory others may write to (where another user could plant a socket) is
    refused with one line before any model call."""
    monkeypatch.setattr(_logger, "_current", None)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    (tmp_path / "promptgov").mkdir()
    (tmp_path / "promptgov").chmod(0o777)
    calls = []
    m = FakeModel(id="fake/never", answer=lambda req: calls.append(1) or "{}")
    with pytest.raises(TrackingError, match="not a private directory") as e:
        pg.evaluate("ticket_triage@1", "triage_small", model=m, workspace=ws)
    assert "\n" not in str(e.value) and calls == []


def test_credentials_choose_the_service_and_model_keys_never_reach_it(ws, monkeypatch):
    """A changed MLflow token is served by another service (never one holding the old token);
    a model provider's key is not in the service's environment, nor in any file name."""
    monkeypatch.setattr(_logger, "_current", None)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "token-a")
    a = _logger._key(ws)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "token-b")
    assert _logger._key(ws) != a
    b = _logger._key(ws)
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "ERROR")  # the commands set it, notebooks not:
    assert _logger._key(ws) == b  # a command and a notebook share one service
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-do-not-leak")
    b = _logger._key(ws)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-other")
    assert _logger._key(ws) == b  # model keys do not choose the service
    pg.evaluate("ticket_triage@1", "triage_small", model=FakeModel(id="fake/k"), workspace=ws)
    environ = Path(f"/proc/{service_pid(ws)}/environ").read_bytes()
    assert b"MLFLOW_TRACKING_TOKEN=token-b" in environ
    assert b"sk-" not in environ and b"OPENAI_API_KEY" not in environ
    names = " ".join(p.name for p in _logger.runtime_dir().iterdir())
    assert "token" not in names and "sk-" not in names


def test_commands_that_start_a_service_at_once_share_one(ws):
    """Three commands at once on a workspace with no service: each starts one, one of them
    owns the socket, and all three are served by it."""
    outs: list[dict] = []
    threads = [threading.Thread(target=lambda: outs.append(run_eval(ws))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outs) == 3 and len({o["service"] for o in outs}) == 1
    c = client(ws)
    assert {c.get_run(o["run"]).info.status for o in outs} == {"FINISHED"}
    assert len(list(_logger.runtime_dir().glob(f"{_logger._key(ws)}.sock"))) == 1


def test_ctrl_c_deletes_the_started_run_and_the_service_serves_on(ws):
    """Ctrl-C mid-eval: the eval raises after keeping its answers, its started run is deleted
    (a partial run is never evidence), and the same service logs the next eval."""
    from mlflow.entities import ViewType

    code = ("import signal, sys, promptgov as pg\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "from promptgov.model._fake import FakeModel\n"
            "pg.evaluate('ticket_triage@1', 'triage_small', model=FakeModel(id='fake/slow', "
            "latency_s=0.5), workspace=sys.argv[1], concurrency=1)\n")
    first = run_eval(ws)  # the service is running
    proc = subprocess.Popen([sys.executable, "-c", code, str(ws)], stderr=subprocess.PIPE,
                            text=True)
    c = client(ws)
    exp = c.get_experiment_by_name("ticket_triage").experiment_id

    def runs() -> list:
        return c.search_runs([exp], run_view_type=ViewType.ALL)

    try:
        deadline = time.monotonic() + 60
        while len(runs()) < 2:  # the interrupted eval's run was started
            assert proc.poll() is None and time.monotonic() < deadline, "no run was started"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0 and "interrupted:" in err
    deadline = time.monotonic() + 30
    while sum(r.info.lifecycle_stage == "active" for r in runs()) > 1:
        assert time.monotonic() < deadline, "the interrupted eval's run was kept"
        time.sleep(0.1)
    again = run_eval(ws)
    assert again["service"] == first["service"]
    assert c.get_run(again["run"]).info.status == "FINISHED"


def test_a_bad_idle_setting_is_one_line_before_any_call(ws, monkeypatch):
    monkeypatch.setattr(_logger, "_current", None)
    monkeypatch.setenv("PROMPTGOV_LOGGER_IDLE_S", "ten minutes")
    calls = []
    m = FakeModel(id="fake/never", answer=lambda req: calls.append(1) or "{}")
    with pytest.raises(TrackingError, match="PROMPTGOV_LOGGER_IDLE_S='ten minutes' is not a "
                                            "number of seconds") as e:
        pg.evaluate("ticket_triage@1", "triage_small", model=m, workspace=ws)
    assert "\n" not in str(e.value) and calls == []

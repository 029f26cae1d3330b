"""``promptgov eval``, ``compare``, ``ui`` and ``loop`` through typer's CliRunner."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import promptgov.cli  # noqa: F401  (registers the commands on the app)
from promptgov.cli._app import app

runner = CliRunner()


@pytest.fixture
def ws(workspace_dir: Path, mlflow_template: Path) -> Path:
    """The workspace copy, with a small triage evalset and an initialised MLflow store."""
    (workspace_dir / ".promptgov").mkdir()
    shutil.copy(mlflow_template, workspace_dir / ".promptgov" / "mlflow.db")
    shrink_evalset(workspace_dir, "ticket_triage", 40, "triage_small")
    return workspace_dir


def shrink_evalset(root: Path, name: str, n: int, new_name: str | None = None) -> None:
    """Keep the first ``n`` cases of evalset ``name`` (as ``new_name``, or in place)."""
    from promptgov.workspace import Workspace
    from promptgov.workspace._evalset import write_evalset

    es = Workspace(root).evalset(name)
    m = es.manifest.model_copy(update={"name": new_name or name, "count": n})
    write_evalset(root / "evalsets" / (new_name or name), m, list(es.cases[:n]))


def run(ws: Path, *args: str):
    return runner.invoke(app, [*args, "--workspace", str(ws)])


def test_eval_json_then_cached(ws):
    args = ("eval", "ticket_triage@1", "--evalset", "triage_small", "--model", "fake/scripted")
    first = run(ws, *args, "--json")
    assert first.exit_code == 0, first.output
    out = json.loads(first.stdout)
    assert out["prompt"] == "ticket_triage@1" and out["evalset"] == "triage_small@1"
    assert out["model"] == "fake/scripted" and out["calls"] == 40
    assert out["run_id"] and 0 <= out["metrics"]["accuracy"] <= 1
    assert out["metrics"]["cases"] == 40
    assert "40/40" in first.stderr  # the progress bar
    again = json.loads(run(ws, *args, "--json", "--no-track").stdout)
    assert again["calls"] == 0 and again["run_id"] is None
    assert again["metrics"]["accuracy"] == out["metrics"]["accuracy"]


def test_eval_table_and_compare(ws):
    for v in ("1", "2"):
        r = run(ws, "eval", f"ticket_triage@{v}", "-e", "triage_small", "-m", "fake/scripted",
                "--concurrency", "4")
        assert r.exit_code == 0, r.output
        assert "accuracy" in r.stdout and "MLflow run: " in r.stdout
    r = run(ws, "compare", "ticket_triage")
    assert r.exit_code == 0, r.output
    assert "v1*" in r.stdout and "v2" in r.stdout and "fake/scripted" in r.stdout
    data = json.loads(run(ws, "compare", "ticket_triage", "--json").stdout)
    assert data["baseline"] == 1 and [v["version"] for v in data["versions"]] == [1, 2]
    assert data["versions"][1]["mcnemar_p"] is not None
    assert data["versions"][0]["mcnemar_p"] is None  # the baseline row has no test
    r = run(ws, "compare", "ticket_triage", "--baseline", "2", "--json")
    assert json.loads(r.stdout)["baseline"] == 2


@pytest.mark.parametrize("args", [
    ("eval", "ticket_triage@x"),
    ("eval", "nosuch@1"),
    ("eval", "ticket_triage@9"),
    ("eval", "ticket_triage@1", "--evalset", "nope"),
    ("eval", "ticket_triage@1", "--model", "nosuchprovider/some-model"),
    ("eval", "ticket_triage@1", "--model", "local/nope"),
    ("eval", "ticket_triage@1", "--model", "gpt4"),
    ("compare", "nosuch"),
    ("compare", "ticket_triage@1"),
    ("compare", "ticket_triage"),  # no run yet
])
def test_bad_arguments_give_one_line_error(ws, args):
    r = run(ws, *args)
    assert r.exit_code in (1, 2)
    assert r.exception is None or isinstance(r.exception, SystemExit)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.output


def test_ui_serves_mlflow_on_the_workspace_store(workspace_dir, monkeypatch):
    calls = []
    monkeypatch.setattr("promptgov.cli._tracking_cmds.serve",
                        lambda args, env=None: calls.append((args, env)) or 0)
    r = runner.invoke(app, ["ui", "--port", "5123", "--workspace", str(workspace_dir)])
    assert r.exit_code == 0, r.output
    assert "http://127.0.0.1:5123" in r.stdout
    args, env = calls[0]
    assert args[0] == "uvicorn" and args[-1] == "mlflow.server.fastapi_app:app"
    assert args[args.index("--workers") + 1] == "1"  # one worker on a 2-core machine
    assert args[args.index("--port") + 1] == "5123"
    assert args[args.index("--host") + 1] == "127.0.0.1"
    db = workspace_dir.resolve() / ".promptgov" / "mlflow.db"
    assert env["_MLFLOW_SERVER_FILE_STORE"] == f"sqlite:///{db}"
    assert db.exists()  # created (and migrated) under the store lock, not by the server


@pytest.mark.skipif(importlib.util.find_spec("promptgov.model._knn") is None,
                    reason="the local/knn model is not built yet")
def test_loop_is_idempotent(workspace_dir, mlflow_template):
    """The README's main job, on small evalsets: lock, check, eval all, log, compare; again."""
    (workspace_dir / ".promptgov").mkdir()
    shutil.copy(mlflow_template, workspace_dir / ".promptgov" / "mlflow.db")
    for name, n in (("ticket_triage", 60), ("ticket_extraction", 20), ("reply_draft", 5)):
        shrink_evalset(workspace_dir, name, n)
    (workspace_dir / "governance" / "lock.json").unlink()  # a fresh workspace: lock it all
    first = run(workspace_dir, "loop")
    assert first.exit_code == 0, first.output
    assert "promptgov check: ok" in first.stdout
    assert "ticket_triage@2 on ticket_triage@1 with local/knn" in first.stdout
    assert "v1*" in first.stdout and "promptgov ui" in first.stdout
    assert "165 model calls in total" in first.stdout  # 2 x 60 + 2 x 20 + 5
    second = run(workspace_dir, "loop")
    assert second.exit_code == 0, second.output
    assert "0 model calls in total: every answer came from the response cache" in second.stdout
    assert second.stdout.count("unchanged since run") == 5
    assert "0 new version(s)" in second.stdout


def test_loop_refuses_drift(workspace_dir):
    f = workspace_dir / "prompts" / "ticket_triage" / "v1.yaml"
    f.write_text(f.read_text().replace("Banking77", "Banking 77", 1))
    r = run(workspace_dir, "loop")
    assert r.exit_code == 1
    assert r.stderr.startswith("error: ") and "v1.yaml" in r.stderr

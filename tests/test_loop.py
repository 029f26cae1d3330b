"""``pg.loop()``: the main job as a library call, returning what it ran, logged and compared."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import promptgov as pg
from promptgov._loop import LoopHooks, LoopResult
from promptgov.errors import GovernanceError


def _shrink(root: Path, name: str, n: int) -> None:
    """Keep the first ``n`` cases of evalset ``name``, in place."""
    from promptgov.workspace import Workspace
    from promptgov.workspace._evalset import write_evalset

    es = Workspace(root).evalset(name)
    m = es.manifest.model_copy(update={"count": n})
    write_evalset(root / "evalsets" / name, m, list(es.cases[:n]))


class _Recorder(LoopHooks):
    def __init__(self) -> None:
        self.events: list[str] = []

    def checked(self, result):
        self.events.append("checked")

    def evaluated(self, run):
        self.events.append(run.prompt)

    def compared(self, prompt, table):
        self.events.append(f"compare {prompt}")


def test_loop_returns_its_runs_and_comparisons(workspace_dir, mlflow_template):
    (workspace_dir / ".promptgov").mkdir()
    shutil.copy(mlflow_template, workspace_dir / ".promptgov" / "mlflow.db")
    for name, n in (("ticket_triage", 40), ("ticket_extraction", 10), ("reply_draft", 5)):
        _shrink(workspace_dir, name, n)
    (workspace_dir / "governance" / "lock.json").unlink()  # the shrunk evalsets: lock anew
    hooks = _Recorder()

    r = pg.loop(model="local/knn", workspace=workspace_dir, hooks=hooks)

    assert isinstance(r, LoopResult) and r.check.ok
    assert "prompt ticket_triage@2" in r.locked
    assert r.prompts == ["reply_draft@1", "ticket_extraction@1", "ticket_extraction@2",
                         "ticket_triage@1", "ticket_triage@2"]
    assert r.calls == 2 * 40 + 2 * 10 + 5
    assert all(x.logged and x.run_id and x.model == "local/knn" for x in r.runs)
    triage = r.run("ticket_triage@2")
    assert triage.evalset == "ticket_triage@1" and triage.result.calls == 40
    assert 0.5 < triage.metrics["accuracy"] <= 1
    assert set(r.comparisons) == {"reply_draft", "ticket_extraction", "ticket_triage"}
    table = r.comparisons["ticket_triage"].table
    assert list(table.index) == [1, 2] and bool(table.loc[1, "baseline"])
    assert table.loc[2, "run_id"] == triage.run_id
    assert r.comparisons["ticket_triage"].run_id is not None  # logged as its own run
    assert r.comparisons["reply_draft"].run_id is None  # one version: nothing to compare
    assert hooks.events == ["checked", "reply_draft@1", "compare reply_draft",
                            "ticket_extraction@1", "ticket_extraction@2",
                            "compare ticket_extraction", "ticket_triage@1", "ticket_triage@2",
                            "compare ticket_triage"]
    assert r.tracking_uri.startswith("sqlite:///")

    again = pg.loop(model="local/knn", workspace=workspace_dir)
    assert again.calls == 0 and again.locked == []
    assert not any(x.logged for x in again.runs)  # the same runs: not logged twice
    assert [x.run_id for x in again.runs] == [x.run_id for x in r.runs]
    assert all(c.run_id is None for c in again.comparisons.values())


def test_loop_refuses_drift_before_any_eval(workspace_dir):
    f = workspace_dir / "prompts" / "ticket_triage" / "v1.yaml"
    f.write_text(f.read_text().replace("Banking77", "Banking 77", 1))
    with pytest.raises(GovernanceError, match="v1.yaml"):
        pg.loop(model="local/knn", workspace=workspace_dir)
    assert not (workspace_dir / ".promptgov" / "mlflow.db").exists()

"""compare(): versions side by side from their latest MLflow runs, tested against a baseline.

A FakeModel answers right for a chosen set of cases per prompt version, so each run's accuracy
and the discordant pairs between two runs are known in advance.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
from scipy.stats import binomtest

import promptgov as pg
from promptgov.errors import PromptgovError, WorkspaceError
from promptgov.eval._compare import MAIN_METRICS
from promptgov.eval._stats import bootstrap_diff_ci, mcnemar_exact
from promptgov.model._fake import FakeModel
from promptgov.workspace._evalset import write_evalset

ROOT = Path(__file__).resolve().parent.parent
N = 100
# model id → (cases v1 answers right, cases v2 answers right), by case index
SCENARIOS = {
    "fake/gap": (range(0, 50), range(0, 90)),      # 0.5 vs 0.9: b=0, c=40
    "fake/same": (range(0, 75), range(0, 75)),     # identical: no discordant pair
    "fake/close": (range(0, 60), range(5, 75)),    # 0.6 vs 0.7: b=5, c=15
}


def oracle(ws, right_by_version: dict[int, range], model_id: str) -> FakeModel:
    """A FakeModel right exactly on ``right_by_version[v]`` (case indices) for ``name@v``."""
    es = ws.evalset("triage_small")
    labels = list(ws.prompt("ticket_triage@1").labels)
    lookup = {}
    for v in right_by_version:
        pv = ws.prompt(f"ticket_triage@{v}")
        for i, case in enumerate(es.cases):
            lookup[(pv.ref, pv.render(case.input)[-1]["content"])] = (v, i, case.expected["label"])

    def answer(req):
        v, i, label = lookup[(req.label, req.messages[-1]["content"])]
        if i not in right_by_version[v]:
            label = labels[(labels.index(label) + 1) % len(labels)]
        return {"label": label, "confidence": 0.9}

    return FakeModel(answer=answer, id=model_id)


def small_triage_evalset(root: Path) -> None:
    """``evalsets/triage_small``: the first N Banking77 cases with distinct texts."""
    from promptgov.workspace import Workspace

    es = Workspace(root).evalset("ticket_triage")
    seen, cases = set(), []
    for c in es.cases:
        if c.input["text"] not in seen and len(cases) < N:
            seen.add(c.input["text"])
            cases.append(c)
    m = es.manifest.model_copy(update={"name": "triage_small", "count": N})
    write_evalset(root / "evalsets" / "triage_small", m, cases)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mlflow_template):
    """One workspace (a copy of the example) with v1 and v2 evaluated by each scenario's model;
    returns (workspace, {model id: {version: EvalResult}})."""
    root = tmp_path_factory.mktemp("cmp") / "ws"
    for d in ("prompts", "schemas", "evalsets", "governance"):
        shutil.copytree(ROOT / d, root / d)
    (root / ".promptgov").mkdir()
    shutil.copy(mlflow_template, root / ".promptgov" / "mlflow.db")
    small_triage_evalset(root)
    ws = pg.Workspace(root)
    out = {}
    for model_id, (right1, right2) in SCENARIOS.items():
        m = oracle(ws, {1: right1, 2: right2}, model_id)
        out[model_id] = {v: pg.evaluate(f"ticket_triage@{v}", "triage_small", model=m,
                                        workspace=ws, concurrency=4) for v in (1, 2)}
    return ws, out


def test_rows_are_the_runs_metrics(runs):
    ws, results = runs
    df = pg.compare("ticket_triage", workspace=ws, model="fake/gap")
    assert list(df.index) == [1, 2] and df.attrs["baseline"] == 1
    for v, r in results["fake/gap"].items():
        row = df.loc[v]
        assert row["run_id"] == r.run_id
        assert row["model"] == "fake/gap" and row["evalset"] == "triage_small@1"
        for k in MAIN_METRICS:
            if k in r.metrics and not math.isnan(r.metrics[k]):
                assert row[k] == pytest.approx(r.metrics[k]), k
    assert df.loc[1, "accuracy"] == pytest.approx(0.5)
    assert df.loc[2, "accuracy"] == pytest.approx(0.9)
    assert "object_match" not in df  # an extraction metric: absent for triage runs


def test_large_gap_is_significant(runs):
    df = pg.compare("ticket_triage", workspace=runs[0], model="fake/gap")
    v2 = df.loc[2]
    assert v2["accuracy_delta"] == pytest.approx(0.4)
    assert v2["n_paired"] == N
    assert v2["mcnemar_p"] == pytest.approx(2 / 2**40)  # b=0, c=40
    assert bool(v2["significant"]) is True
    assert 0 < v2["ci95_low"] <= 0.4 <= v2["ci95_high"]
    assert bool(df.loc[1, "baseline"]) and not bool(df.loc[1, "significant"])


def test_identical_runs_are_not_significant(runs):
    v2 = pg.compare("ticket_triage", workspace=runs[0], model="fake/same").loc[2]
    assert v2["accuracy_delta"] == 0
    assert v2["mcnemar_p"] == 1.0
    assert (v2["ci95_low"], v2["ci95_high"]) == (0.0, 0.0)
    assert bool(v2["significant"]) is False


def test_mcnemar_p_value_by_hand_and_by_scipy(runs):
    df = pg.compare("ticket_triage", workspace=runs[0], model="fake/close")
    p = df.loc[2, "mcnemar_p"]
    # b=5, c=15: 2 * sum_{k<=5} C(20, k) / 2^20 = 2 * 21700 / 1048576
    assert p == pytest.approx(2 * (1 + 20 + 190 + 1140 + 4845 + 15504) / 2**20)
    assert p == pytest.approx(binomtest(5, 20, 0.5).pvalue)
    assert bool(df.loc[2, "significant"]) is True  # 0.041 < 0.05
    strict = pg.compare("ticket_triage", workspace=runs[0], model="fake/close", alpha=0.01)
    assert bool(strict.loc[2, "significant"]) is False


def test_latest_run_per_version_and_filters(runs):
    ws, results = runs
    df = pg.compare("ticket_triage", workspace=ws)  # no filter: the latest runs (fake/close)
    assert list(df["run_id"]) == [results["fake/close"][v].run_id for v in (1, 2)]
    assert list(pg.compare("ticket_triage", workspace=ws, evalset="triage_small@1")["run_id"]) \
        == list(df["run_id"])
    with pytest.raises(PromptgovError, match="no finished MLflow run"):
        pg.compare("ticket_triage", workspace=ws, evalset="ticket_triage")
    with pytest.raises(PromptgovError, match="no finished MLflow run"):
        pg.compare("ticket_extraction", workspace=ws)


def test_baseline_argument_and_approvals(runs):
    ws, _ = runs
    df = pg.compare("ticket_triage", workspace=ws, model="fake/gap", baseline="ticket_triage@2")
    assert df.attrs["baseline"] == 2 and bool(df.loc[2, "baseline"])
    assert df.loc[1, "accuracy_delta"] == pytest.approx(-0.4)
    approval = ws.root / "governance" / "approvals" / "ticket_triage@2.toml"
    approval.parent.mkdir(exist_ok=True)
    approval.write_text('approved_by = "test"\n')
    try:
        assert pg.compare("ticket_triage", workspace=ws).attrs["baseline"] == 2
        # an approval of a version with no run is ignored
        approval.rename(approval.with_name("ticket_triage@7.json"))
        assert pg.compare("ticket_triage", workspace=ws).attrs["baseline"] == 1
    finally:
        shutil.rmtree(approval.parent)
    with pytest.raises(PromptgovError, match="baseline ticket_triage@3 has no matching"):
        pg.compare("ticket_triage", workspace=ws, baseline=3)


def test_bad_arguments(workspace_dir):
    with pytest.raises(WorkspaceError, match="no prompt named 'nosuch'"):
        pg.compare("nosuch", workspace=workspace_dir)
    with pytest.raises(ValueError, match="not a prompt name"):
        pg.compare("ticket_triage@2", workspace=workspace_dir)
    assert not (workspace_dir / ".promptgov").exists()  # nothing written for a bad call


def test_public_names():
    import promptgov.eval

    assert pg.compare is promptgov.eval.compare
    assert "compare" in promptgov.eval.__all__


@pytest.mark.parametrize("b,c", [(0, 0), (0, 1), (1, 0), (3, 3), (5, 15), (15, 5), (0, 40),
                                 (30, 45), (400, 370)])
def test_mcnemar_exact_matches_scipy(b, c):
    expected = binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_bootstrap_ci():
    a = [1] * 50 + [0] * 50
    b = [1] * 40 + [0] * 10 + [1] * 30 + [0] * 20
    lo, hi = bootstrap_diff_ci(a, b, seed=1)
    assert (lo, hi) == bootstrap_diff_ci(a, b, seed=1)  # seeded
    assert lo < 0.2 < hi and lo > 0
    assert bootstrap_diff_ci(a, a, seed=3) == (0.0, 0.0)
    with pytest.raises(ValueError):
        bootstrap_diff_ci([1, 0], [1])
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)

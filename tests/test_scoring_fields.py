"""Extraction scored the way the field reports it, checked against scikit-learn on generated
cases: per-field precision/recall/F1 over mentioned values, intent micro/macro-F1, label sets."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import f1_score, precision_recall_fscore_support
from sklearn.preprocessing import MultiLabelBinarizer

from promptgov.eval._fieldscore import case_f1
from promptgov.eval._scoring import metrics, score
from promptgov.workspace._policy import Routing

INTENTS = ["balance", "card", "deny", "pin", "refund", "when"]
values = {"amount": st.sampled_from([None, None, 10.0, 25.5, 99.0]),
          "date": st.sampled_from([None, None, "2022-03-15", "2022-04-01"]),
          "person": st.sampled_from([None, None, "ada", "grace"])}
labels = st.lists(st.sampled_from(INTENTS), max_size=3, unique=True)
expected_st = st.fixed_dictionaries({"intents": labels, **values})
output_st = st.one_of(st.none(), st.fixed_dictionaries({"intents": labels, **values}))


def _records(pairs):
    recs = []
    for i, (exp, out) in enumerate(pairs):
        r = {"case_id": str(i), "input": {"text": "x"}, "expected": exp, "output": out,
             "failure": None if out is not None else "invalid_json", "retries": 0, "reasks": 0,
             "attempts": 1, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0,
             "latency_s": 0.0}
        score("extraction", r).apply_to(r)
        recs.append(r)
    return recs


def _binarize(gold, pred):
    """Indicator matrices over the classes seen, plus one never-seen class: with a single
    class scikit-learn would read the matrix as a binary target, not a multilabel one."""
    classes = sorted({x for s in [*gold, *pred] for x in s}, key=repr)
    mlb = MultiLabelBinarizer(classes=[*classes, "<never>"]).fit([])
    return mlb.transform(gold), mlb.transform(pred), list(range(len(classes)))


def _pairs(exp, out, fields):
    """The (field, value) items a case states: scikit-learn's multilabel view of slot filling."""
    return ({(f, exp[f]) for f in fields if exp[f] is not None},
            {(f, out[f]) for f in fields if out is not None and out[f] is not None})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(expected_st, output_st), min_size=1, max_size=25))
def test_field_and_intent_f1_match_scikit_learn(pairs):
    m = metrics("extraction", _records(pairs), Routing())
    fields = list(values)
    for scope in [[f] for f in fields] + [fields]:
        gold, pred = zip(*(_pairs(e, o, scope) for e, o in pairs), strict=True)
        if not any(gold) and not any(pred):
            continue
        yt, yp, seen = _binarize(gold, pred)
        p, r, f1, _ = precision_recall_fscore_support(yt, yp, labels=seen, average="micro",
                                                      zero_division=0)
        key = f".{scope[0]}" if len(scope) == 1 else ""
        assert m[f"field_precision{key}"] == pytest.approx(p)
        assert m[f"field_recall{key}"] == pytest.approx(r)
        assert m[f"field_f1{key}"] == pytest.approx(f1)
    gold = [e["intents"] for e, _ in pairs]
    pred = [o["intents"] if o is not None else [] for _, o in pairs]
    if any(gold) or any(pred):
        yt, yp, seen = _binarize(gold, pred)
        assert m["intent_micro_f1"] == pytest.approx(f1_score(yt, yp, labels=seen,
                                                              average="micro", zero_division=0))
        assert m["intent_macro_f1"] == pytest.approx(f1_score(yt, yp, labels=seen,
                                                              average="macro", zero_division=0))
        assert m["micro_f1.intents"] == m["intent_micro_f1"]


def test_null_expected_and_null_predicted_is_no_hit():
    """The reason for F1: a field almost never mentioned scores 0, not ~1, when it is never
    found; exact match per field (kept as field_accuracy) hides that."""
    exp = {"intents": ["card"], "amount": None, "date": "2022-03-15", "person": None}
    miss = {"intents": ["card"], "amount": None, "date": None, "person": None}
    m = metrics("extraction", _records([(exp, miss)] * 9 + [(dict(exp, amount=5.0), miss)]),
                Routing())
    assert m["field_accuracy.amount"] == pytest.approx(0.9)  # 9 null == null
    assert m["field_f1.amount"] == 0.0 and m["field_recall.amount"] == 0.0
    assert m["field_support.amount"] == 1.0
    assert m["field_f1.date"] == 0.0 and m["field_f1"] == 0.0
    assert "field_f1.person" in m and m["field_f1.person"] == 0.0  # nothing to find: no credit
    assert m["intent_micro_f1"] == 1.0


def test_a_wrong_value_is_a_false_positive_and_a_false_negative():
    exp = {"intents": [], "amount": 10.0, "date": None, "person": "Ada Lovelace"}
    out = {"intents": [], "amount": 12.0, "date": "2022-03-15", "person": "ada  lovelace"}
    m = metrics("extraction", _records([(exp, out)]), Routing())
    assert (m["field_precision.amount"], m["field_recall.amount"]) == (0.0, 0.0)
    assert m["field_precision.date"] == 0.0 and m["field_support.date"] == 0.0
    assert m["field_f1.person"] == 1.0  # case and spacing of a name do not count
    assert m["field_precision"] == pytest.approx(1 / 3) and m["field_recall"] == pytest.approx(0.5)


def test_a_list_of_labels_is_a_set():
    exp = {"intents": ["balance", "card", "when"], "amount": None}
    out = {"intents": ["when", "balance", "card"], "amount": None}
    [r] = _records([(exp, out)])
    assert r["correct"] and r["field_correct"]["intents"]
    assert case_f1(exp, out) == 1.0
    [r] = _records([(exp, dict(out, intents=["when", "card"]))])
    assert not r["correct"]
    assert case_f1(exp, {"intents": ["when", "card"], "amount": None}) == pytest.approx(0.8)


def test_a_failed_case_misses_every_gold_item():
    exp = {"intents": ["card", "pin"], "amount": 5.0, "date": None, "person": None}
    m = metrics("extraction", _records([(exp, None)]), Routing())
    assert m["intent_micro_f1"] == 0.0 and m["field_recall"] == 0.0
    assert m["object_match"] == 0.0 and m["failure_rate"] == 1.0
    assert not math.isnan(m["field_f1"])


def test_extraction_gates_read_the_f1_metrics(workspace):
    from promptgov.governance._gates import check_gates
    from promptgov.workspace._policy import Gates, load_policy

    gates = load_policy(workspace.root).gates.kinds["extraction"]
    assert (gates.min_field_f1, gates.min_intent_f1) == (0.80, 0.80)
    checks = {c.gate: c for c in check_gates(
        Gates(min_field_f1=0.8, min_intent_f1=0.5),
        {"field_f1": 0.79, "intent_micro_f1": 0.5, "intent_macro_f1": 0.99})}
    assert not checks["min_field_f1"].passed and checks["min_field_f1"].metric == "field_f1"
    assert checks["min_intent_f1"].passed and checks["min_intent_f1"].metric == "intent_micro_f1"


def test_compare_shows_extraction_f1_per_field(workspace_dir, mlflow_template):
    import shutil

    import promptgov as pg

    (workspace_dir / ".promptgov").mkdir()
    shutil.copy(mlflow_template, workspace_dir / ".promptgov" / "mlflow.db")
    w = pg.Workspace(workspace_dir)
    r = pg.evaluate("ticket_extraction@1", workspace=w)
    df = pg.compare("ticket_extraction", workspace=w)
    row = df.loc[1]
    for k in ("intent_micro_f1", "intent_macro_f1", "field_f1", "field_f1.amount",
              "field_f1.person", "object_match"):
        assert row[k] == pytest.approx(r.metrics[k]), k
    assert r.metrics["intent_micro_f1"] == pytest.approx(0.487, abs=1e-3)  # README figure
    assert r.metrics["field_f1"] == pytest.approx(0.667, abs=1e-3)

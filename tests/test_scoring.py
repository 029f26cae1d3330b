"""Scores and run metrics checked against scikit-learn / numpy / hand-computed values; routing
bands of the default policy; fact checks of drafts."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, brier_score_loss, f1_score

from promptgov.eval import evaluate
from promptgov.eval._scoring import (
    draft_checks,
    expected_calibration_error,
    macro_f1,
    metrics,
    score,
)
from promptgov.model._fake import FakeModel
from promptgov.workspace._policy import RetryPolicy, Routing, load_policy

ROOT = Path(__file__).resolve().parent.parent
FAILED = "__no_output__"  # what a failed case predicts, for scikit-learn
ORDER = {"legacy_fallback": 0, "queue_for_human": 1, "auto_process": 2}


def record(expected, output, failure=None, latency=0.0):
    return {"case_id": "x", "input": {}, "expected": expected, "output": output,
            "failure": failure, "retries": 0, "reasks": 0, "attempts": 1, "prompt_tokens": 0,
            "completion_tokens": 0, "cost_usd": 0.0, "latency_s": latency}


def triage_records(rng: random.Random, n: int, labels: list[str], p_fail: float = 0.05,
                   p_right: float = 0.6) -> list[dict]:
    out = []
    for _ in range(n):
        truth = rng.choice(labels)
        if rng.random() < p_fail:
            rec = record({"label": truth}, None, failure=rng.choice(["timeout", "invalid_json"]))
        else:
            pred = truth if rng.random() < p_right else rng.choice(labels)
            rec = record({"label": truth}, {"label": pred, "confidence": rng.random()},
                         latency=rng.random())
        score("classification", rec).apply_to(rec)
        out.append(rec)
    return out


def sklearn_view(records):
    y_true = [r["expected"]["label"] for r in records]
    y_pred = [r["predicted"] if r["predicted"] is not None else FAILED for r in records]
    conf = [r["confidence"] if r["confidence"] is not None else 0.0 for r in records]
    correct = [bool(r["correct"]) for r in records]
    return y_true, y_pred, conf, correct


def assert_matches_sklearn(records, m):
    y_true, y_pred, conf, correct = sklearn_view(records)
    labels = sorted(set(y_true) | (set(y_pred) - {FAILED}))
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert m["macro_f1"] == pytest.approx(
        f1_score(y_true, y_pred, average="macro", labels=labels, zero_division=0))
    assert m["brier"] == pytest.approx(brier_score_loss(correct, conf))
    assert m["ece"] == pytest.approx(numpy_ece(conf, correct))
    assert m["failure_rate"] == pytest.approx(
        sum(r["failure"] is not None for r in records) / len(records))


def numpy_ece(conf, correct, bins=10):
    """Independent ECE: equal-width bins (lo, hi], with 0 in the first bin."""
    conf, correct = np.asarray(conf, float), np.asarray(correct, float)
    idx = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += abs(correct[sel].mean() - conf[sel].mean()) * sel.sum() / len(conf)
    return total


# -- classification metrics against scikit-learn -------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_metrics_match_sklearn(seed):
    rng = random.Random(seed)
    labels = [f"intent_{i}" for i in range(12)]
    records = triage_records(rng, 600, labels)
    m = metrics("classification", records, Routing())
    assert_matches_sklearn(records, m)
    lat = [r["latency_s"] for r in records if r["failure"] is None]
    assert m["latency_p50_s"] == pytest.approx(np.quantile(lat, 0.5))
    assert m["latency_p95_s"] == pytest.approx(np.quantile(lat, 0.95))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcde"), st.sampled_from("abcdefg") | st.none(),
                          st.floats(0, 1)), min_size=1, max_size=60))
def test_classification_metrics_match_sklearn_for_any_predictions(rows):
    records = []
    for truth, pred, conf in rows:
        rec = record({"label": truth}, None if pred is None else
                     {"label": pred, "confidence": conf},
                     failure="schema_violation" if pred is None else None)
        score("classification", rec).apply_to(rec)
        records.append(rec)
    m = metrics("classification", records, Routing())
    assert_matches_sklearn(records, m)
    y_true = [t for t, _, _ in rows]
    y_pred = [p for _, p, _ in rows]
    assert macro_f1(y_true, y_pred) == pytest.approx(m["macro_f1"])


def test_evaluate_metrics_match_sklearn_end_to_end(workspace):
    es = workspace.evalset("ticket_triage")
    truth = {c.id: c.expected["label"] for c in es.cases}
    labels = sorted(set(truth.values()))

    def answer(req):
        rng = random.Random(req.case_id)
        right = rng.random() < 0.7
        return {"label": truth[req.case_id] if right else rng.choice(labels),
                "confidence": round(rng.uniform(0.5, 1.0) if right else rng.random(), 3)}

    fake = FakeModel(answer=answer, server_error_rate=0.2, malformed_rate=0.2, seed=9)
    r = evaluate("ticket_triage@1", workspace=workspace, model=fake, track=False, cache=False,
                 retry=RetryPolicy(max_retries=1, backoff_base_s=0.001, backoff_max_s=0.01))
    assert any(rec["failure"] for rec in r.records)
    assert_matches_sklearn(r.records, r.metrics)
    routing = load_policy(workspace.root).routing
    actions = [routing.route(rec["confidence"] if rec["output"] is not None else None)
               for rec in r.records]
    n = len(r.records)
    auto = [rec for rec, a in zip(r.records, actions, strict=True) if a == "auto_process"]
    assert r.metrics["automation_rate"] == pytest.approx(len(auto) / n)
    assert r.metrics["auto_precision"] == pytest.approx(
        sum(rec["correct"] for rec in auto) / len(auto))
    assert r.metrics["review_load"] == pytest.approx(actions.count("queue_for_human") / n)
    assert r.metrics["fallback_rate"] == pytest.approx(actions.count("legacy_fallback") / n)


# -- calibration -----------------------------------------------------------------------------

CONF = [0.95, 0.92, 1.0, 0.75, 0.72, 0.78, 0.35, 0.05, 0.0]
CORRECT = [True, False, True, True, True, False, False, False, False]
# bins (lo, hi]: (0.9, 1]: acc 2/3, conf 2.87/3 -> |diff| 0.29, 3 cases
#                (0.7, 0.8]: acc 2/3, conf 0.75  -> 1/12,       3 cases
#                (0.3, 0.4]: acc 0, conf 0.35     -> 0.35,       1 case
#                [0, 0.1]:   acc 0, conf 0.025    -> 0.025,      2 cases
ECE_BY_HAND = (0.29 * 3 + (1 / 12) * 3 + 0.35 * 1 + 0.025 * 2) / 9  # = 1.52 / 9


def test_ece_matches_hand_computed_value():
    assert abs(ECE_BY_HAND - 1.52 / 9) < 1e-12
    assert expected_calibration_error(CONF, CORRECT) == pytest.approx(ECE_BY_HAND)
    assert numpy_ece(CONF, CORRECT) == pytest.approx(ECE_BY_HAND)
    records = []
    for c, ok in zip(CONF, CORRECT, strict=True):
        rec = record({"label": "a"}, {"label": "a" if ok else "b", "confidence": c})
        score("classification", rec).apply_to(rec)
        records.append(rec)
    m = metrics("classification", records, Routing())
    assert m["ece"] == pytest.approx(ECE_BY_HAND)
    assert m["brier"] == pytest.approx(brier_score_loss(CORRECT, CONF))


def test_ece_of_perfect_calibration_and_of_overconfidence():
    assert expected_calibration_error([1.0] * 4, [True] * 4) == 0
    assert expected_calibration_error([0.0] * 4, [False] * 4) == 0
    assert expected_calibration_error([1.0] * 4, [False] * 4) == pytest.approx(1.0)
    assert expected_calibration_error([], []) == 0.0


# -- routing ---------------------------------------------------------------------------------

def test_default_policy_routing_bands(workspace_dir):
    routing = load_policy(workspace_dir).routing
    assert (routing.auto, routing.review) == (0.85, 0.60) == (Routing().auto, Routing().review)
    assert routing.route(1.0) == "auto_process"
    assert routing.route(0.85) == "auto_process"
    assert routing.route(0.8499) == "queue_for_human"
    assert routing.route(0.60) == "queue_for_human"
    assert routing.route(0.5999) == "legacy_fallback"
    assert routing.route(0.0) == "legacy_fallback"
    assert routing.route(None) == "legacy_fallback"


@given(st.floats(0, 1), st.floats(0, 1))
def test_route_is_monotone_in_confidence_default_policy(a, b):
    lo, hi = sorted((a, b))
    r = load_policy(ROOT).routing
    assert ORDER[r.route(lo)] <= ORDER[r.route(hi)]
    assert ORDER[r.route(None)] <= ORDER[r.route(lo)]


@given(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1))
def test_route_is_monotone_for_any_valid_bands(t1, t2, a, b):
    review, auto = sorted((t1, t2))
    lo, hi = sorted((a, b))
    r = Routing(auto=auto, review=review)
    assert ORDER[r.route(lo)] <= ORDER[r.route(hi)]
    assert (r.route(hi) == "auto_process") == (hi >= auto)


def test_routing_metrics_count_failures_as_fallback():
    recs = []
    for conf, failed in [(0.9, False), (0.86, False), (0.7, False), (0.99, True), (0.1, False)]:
        rec = record({"label": "a"}, None if failed else {"label": "a", "confidence": conf},
                     failure="timeout" if failed else None)
        score("classification", rec).apply_to(rec)
        recs.append(rec)
    m = metrics("classification", recs, Routing())
    assert m["automation_rate"] == pytest.approx(2 / 5)
    assert m["auto_precision"] == 1.0
    assert m["review_load"] == pytest.approx(1 / 5)
    assert m["fallback_rate"] == pytest.approx(2 / 5)


# -- extraction ------------------------------------------------------------------------------

def test_extraction_scores_count_nulls():
    exp = {"intents": ["card"], "amount": None, "date": "2022-03-15"}
    right = record(exp, dict(exp))
    wrong_null = record(exp, {**exp, "amount": 5.0})
    failed = record(exp, None, failure="invalid_json")
    for r in (right, wrong_null, failed):
        score("extraction", r).apply_to(r)
    assert right["correct"] and not wrong_null["correct"] and not failed["correct"]
    assert wrong_null["field_correct"] == {"intents": True, "amount": False, "date": True}
    m = metrics("extraction", [right, wrong_null, failed], Routing())
    assert m["object_match"] == pytest.approx(1 / 3)
    assert m["field_accuracy.amount"] == pytest.approx(1 / 3)
    assert m["field_accuracy.intents"] == pytest.approx(2 / 3)
    assert m["validation_failure_rate"] == pytest.approx(1 / 3)


# -- drafts ----------------------------------------------------------------------------------

def _draft_case():
    case = json.loads((ROOT / "evalsets" / "reply_draft" / "cases.jsonl").open().readline())
    return case["input"]["facts"], case["expected"]


def good_draft(f):
    return (f"Hi {f['customer_name']}, your order {f['order_id']} is {f['order_state']}. "
            f"You will receive a refund of {f['refund_amount']} (policy {f['policy_version']}).")


def test_draft_using_only_the_facts_passes():
    facts, exp = _draft_case()
    assert draft_checks(good_draft(facts), facts, exp) == {
        "numbers_from_facts": True, "required_facts": True, "length": True}


@pytest.mark.parametrize("invention", [
    " We will add a 10% voucher.",
    " It will arrive within 3 days.",
    " Your refund was issued on 2026-05-01.",
])
def test_draft_that_invents_a_number_fails_numbers_from_facts(invention):
    facts, exp = _draft_case()
    checks = draft_checks(good_draft(facts) + invention, facts, exp)
    assert checks["numbers_from_facts"] is False
    assert checks["required_facts"] is True


def test_draft_with_a_changed_amount_fails():
    facts, exp = _draft_case()
    text = good_draft(facts).replace(str(facts["refund_amount"]), "80.00")
    checks = draft_checks(text, facts, exp)
    assert not checks["numbers_from_facts"] and not checks["required_facts"]


def test_draft_missing_a_required_fact_fails():
    facts, exp = _draft_case()
    assert "order_id" in exp["required_facts"]
    text = good_draft(facts).replace(f" {facts['order_id']}", "")
    checks = draft_checks(text, facts, exp)
    assert checks == {"numbers_from_facts": True, "required_facts": False, "length": True}


def test_draft_over_the_length_limit_and_no_draft_fail():
    facts, exp = _draft_case()
    long = good_draft(facts) + " Thanks!" * 100
    assert draft_checks(long, facts, exp)["length"] is False
    assert draft_checks(None, facts, exp) == {
        "numbers_from_facts": False, "required_facts": False, "length": False}
    rec = record(exp, good_draft(facts))
    rec["input"] = {"facts": facts}
    score("draft", rec).apply_to(rec)
    assert rec["correct"] is True and all(rec["fact_checks"].values())

"""Scores per task kind, computed from per-case records (plain dicts, no pandas).

A failed case (no valid output) counts as wrong in every accuracy: nothing is dropped.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from promptgov.eval._fieldscore import case_counts, field_metrics, same
from promptgov.eval._record import CaseRecord, Score
from promptgov.workspace._policy import Routing


def score(kind: str, rec: CaseRecord) -> Score:
    """Whether one record is correct, and the per-kind detail (a failed case is wrong)."""
    out, exp = rec["output"], rec["expected"] or {}
    conf = out.get("confidence") if isinstance(out, dict) else None
    if kind == "classification":
        predicted = out.get("label") if isinstance(out, dict) else None
        return Score(out is not None and predicted == exp.get("label"), conf,
                     {"predicted": predicted})
    if kind == "extraction":
        # lists of labels are sets: an unsorted but correct answer is correct
        fields = {f: (out is not None and same(out.get(f), v)) for f, v in exp.items()}
        return Score(out is not None and all(fields.values()), conf,
                     {"field_correct": fields, "field_counts": case_counts(exp, out)})
    checks = draft_checks(out, rec["input"].get("facts", {}), exp)
    return Score(out is not None and all(checks.values()), conf, {"fact_checks": checks})


_NUM = re.compile(r"\d+(?:[.,]\d+)*")


def _numbers(text: str) -> set[str]:
    return {n.replace(",", "").rstrip(".") for n in _NUM.findall(text)}


def draft_checks(text: str | None, facts: dict[str, Any], expected: dict[str, Any]
                 ) -> dict[str, bool]:
    """Principle 6 for drafts: every number in the draft is one the facts hold; every required
    fact is stated; the length limit holds."""
    if text is None:
        return {"numbers_from_facts": False, "required_facts": False, "length": False}
    fact_text = " ".join(str(v) for v in facts.values())
    allowed = _numbers(fact_text) | {_fmt(v) for v in facts.values()
                                     if isinstance(v, int | float) and not isinstance(v, bool)}
    stated = _numbers(text)
    required = expected.get("required_facts", [])
    low = text.lower()
    return {
        "numbers_from_facts": stated <= allowed,
        "required_facts": all(_fmt(facts.get(f)).lower() in low for f in required),
        "length": len(text) <= expected.get("max_chars", 10_000),
    }


def _fmt(v: Any) -> str:
    return str(v)  # as the template rendered it into the prompt


# -- run-level metrics ------------------------------------------------------------------------

def metrics(kind: str, records: Sequence[CaseRecord], routing: Routing) -> dict[str, float]:
    """Run-level metrics: accuracy, failures, spend and latency, then the kind's own."""
    n = len(records) or 1
    failures = Counter(r["failure"] for r in records if r["failure"])
    m = {"cases": float(len(records)),
         "accuracy": sum(r.get("correct", False) for r in records) / n,
         **_spend_metrics(records, failures, n)}
    if kind == "classification":
        m.update(classification_metrics(records, routing))
    elif kind == "extraction":
        m.update(extraction_metrics(records))
        m["validation_failure_rate"] = (failures["schema_violation"]
                                        + failures["invalid_json"]) / n
    else:
        for check in ("numbers_from_facts", "required_facts", "length"):
            m[f"draft.{check}"] = sum(r.get("fact_checks", {})[check] for r in records) / n
    return m


def _spend_metrics(records: Sequence[CaseRecord], failures: Counter[str], n: int
                   ) -> dict[str, float]:
    """Failure rates (overall and per kind), retries, tokens, cost and latency."""
    m: dict[str, float] = {"failure_rate": sum(failures.values()) / n}
    for k, c in failures.items():
        m[f"failure_rate.{k}"] = c / n
    m["retry_rate"] = sum(r["retries"] > 0 for r in records) / n
    m["reask_rate"] = sum(r["reasks"] > 0 for r in records) / n
    m["attempts_per_case"] = sum(r["attempts"] for r in records) / n
    m["prompt_tokens"] = float(sum(r["prompt_tokens"] for r in records))
    m["completion_tokens"] = float(sum(r["completion_tokens"] for r in records))
    m["cost_usd"] = sum(r["cost_usd"] for r in records)
    m["cost_per_1k_usd"] = 1000 * m["cost_usd"] / n
    lat = sorted(r["latency_s"] for r in records if r["failure"] is None)
    m["latency_p50_s"] = _quantile(lat, 0.50)
    m["latency_p95_s"] = _quantile(lat, 0.95)
    return m


def classification_metrics(records: Sequence[CaseRecord], routing: Routing
                           ) -> dict[str, float]:
    y_true = [(r["expected"] or {}).get("label") for r in records]
    y_pred = [r.get("predicted") for r in records]
    conf = [float(r["confidence"]) if r["confidence"] is not None else 0.0 for r in records]
    correct = [bool(r["correct"]) for r in records]
    actions = [routing.route(c if r["output"] is not None else None)
               for c, r in zip(conf, records, strict=True)]
    n = len(records) or 1
    auto = [ok for ok, a in zip(correct, actions, strict=True) if a == "auto_process"]
    return {
        "macro_f1": macro_f1(y_true, y_pred),
        "ece": expected_calibration_error(conf, correct),
        "brier": sum((c - ok) ** 2 for c, ok in zip(conf, correct, strict=True)) / n,
        "automation_rate": len(auto) / n,
        "auto_precision": sum(auto) / len(auto) if auto else float("nan"),
        "review_load": actions.count("queue_for_human") / n,
        "fallback_rate": actions.count("legacy_fallback") / n,
    }


def extraction_metrics(records: Sequence[CaseRecord]) -> dict[str, float]:
    per_field: dict[str, list[bool]] = {}
    for r in records:
        for f, ok in (r.get("field_correct") or {}).items():
            per_field.setdefault(f, []).append(ok)
    out = {f"field_accuracy.{f}": sum(v) / len(v) for f, v in per_field.items()}
    out["object_match"] = sum(r["correct"] for r in records) / (len(records) or 1)
    out.update(field_metrics(records))  # per-field P/R/F1 over mentioned values; intent F1
    return out


def macro_f1(y_true: list[Any], y_pred: list[Any]) -> float:
    """Macro-averaged F1 over the labels in ``y_true`` ∪ ``y_pred`` (as scikit-learn does).
    One pass over the cases (per-label counting was labels × cases)."""
    labels = {y for y in y_true if y is not None} | {y for y in y_pred if y is not None}
    if not labels:
        return 0.0
    tp: Counter[Any] = Counter()
    fp: Counter[Any] = Counter()
    fn: Counter[Any] = Counter()
    for t, p in zip(y_true, y_pred, strict=True):
        if t == p:
            tp[t] += 1
        else:
            fp[p] += 1
            fn[t] += 1
    f1s = [2 * tp[lab] / (2 * tp[lab] + fp[lab] + fn[lab]) if tp[lab] + fp[lab] + fn[lab]
           else 0.0 for lab in labels]
    return sum(f1s) / len(f1s)


def expected_calibration_error(conf: list[float], correct: list[bool], bins: int = 10) -> float:
    """ECE with equal-width bins: Σ_b |acc_b − conf_b| · n_b / n."""
    n = len(conf)
    if not n:
        return 0.0
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, c in enumerate(conf) if (lo < c <= hi) or (b == 0 and c == 0)]
        if idx:
            acc = sum(correct[i] for i in idx) / len(idx)
            avg = sum(conf[i] for i in idx) / len(idx)
            total += abs(acc - avg) * len(idx) / n
    return total


def _quantile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    pos = q * (len(xs) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

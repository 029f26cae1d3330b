"""Extraction scored the way the field reports it (slot filling and multi-label intent detection).

* **Scalar fields** (slots): precision, recall and F1 over the values the utterance mentions.
  A non-null expected value is a gold item, a non-null predicted value a predicted item; a hit is
  a predicted value equal to the expected one. A null expected and a null predicted value is no
  hit and no miss (it says nothing about extraction); a wrong value is both a false positive and
  a false negative. ``field_f1`` pools every scalar field (micro).
* **List fields** (intents): each list is a set of labels (order and duplicates do not count);
  micro-F1 pools every (case, label) decision, macro-F1 averages the per-label F1 over the labels
  that occur in the gold or the predicted sets (as scikit-learn does with the labels it sees).
* **Whole-object match**: every field equal, lists compared as sets.

A failed case (no output) predicts nothing: its gold items are all misses. Values compare after
light normalisation: strings case-folded with whitespace collapsed, lists as sets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from promptgov.eval._record import CaseRecord


def norm(v: Any) -> Any:
    """The value as compared: strings case-folded, whitespace collapsed; lists as sets."""
    if isinstance(v, str):
        return " ".join(v.casefold().split())
    if isinstance(v, list):
        return frozenset(norm(x) for x in v if x is not None)
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int | float):
        return float(v)
    return v


def same(a: Any, b: Any) -> bool:
    return bool(norm(a) == norm(b))


def _f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)


def case_counts(expected: dict[str, Any], output: dict[str, Any] | None
                ) -> dict[str, Any]:
    """Per field of one case: ``(tp, fp, fn)`` for a scalar field, ``{label: (tp, fp, fn)}``
    for a list field."""
    out: dict[str, Any] = {}
    got = output if isinstance(output, dict) else {}
    for f, exp in (expected or {}).items():
        pred = got.get(f)
        if isinstance(exp, list):
            e = norm(exp)
            p = norm(pred) if isinstance(pred, list) else frozenset()
            out[f] = {lab: (int(lab in e and lab in p), int(lab in p and lab not in e),
                            int(lab in e and lab not in p)) for lab in e | p}
        else:
            hit = exp is not None and pred is not None and same(exp, pred)
            out[f] = (int(hit), int(pred is not None and not hit),
                      int(exp is not None and not hit))
    return out


def field_metrics(records: Sequence[CaseRecord]) -> dict[str, float]:
    """Run metrics from each record's ``field_counts`` (see :func:`case_counts`)."""
    scalar: dict[str, Counter[str]] = {}
    labels: dict[str, dict[str, Counter[str]]] = {}
    for r in records:
        for f, c in (r.get("field_counts") or {}).items():
            if isinstance(c, dict):
                per = labels.setdefault(f, {})
                for lab, (tp, fp, fn) in c.items():
                    per.setdefault(lab, Counter()).update(tp=tp, fp=fp, fn=fn)
            else:
                scalar.setdefault(f, Counter()).update(tp=c[0], fp=c[1], fn=c[2])
    return {**_scalar_metrics(scalar), **_label_metrics(labels)}


def _scalar_metrics(scalar: dict[str, Counter[str]]) -> dict[str, float]:
    """Per scalar field P/R/F1 and support; pooled (micro) over every field."""
    m: dict[str, float] = {}
    pooled: Counter[str] = Counter()
    for f, c in scalar.items():
        p, r, f1 = _f1(c["tp"], c["fp"], c["fn"])
        m[f"field_precision.{f}"], m[f"field_recall.{f}"], m[f"field_f1.{f}"] = p, r, f1
        m[f"field_support.{f}"] = float(c["tp"] + c["fn"])
        pooled.update(c)
    if scalar:
        m["field_precision"], m["field_recall"], m["field_f1"] = _f1(
            pooled["tp"], pooled["fp"], pooled["fn"])
    return m


def _label_metrics(labels: dict[str, dict[str, Counter[str]]]) -> dict[str, float]:
    """Per list field micro/macro-F1 over its labels; both pooled over every list field."""
    m: dict[str, float] = {}
    all_micro: Counter[str] = Counter()
    all_macro: list[float] = []
    for f, per in labels.items():
        micro: Counter[str] = Counter()
        f1s = []
        for c in per.values():
            micro.update(c)
            f1s.append(_f1(c["tp"], c["fp"], c["fn"])[2])
        m[f"micro_f1.{f}"] = _f1(micro["tp"], micro["fp"], micro["fn"])[2]
        m[f"macro_f1.{f}"] = sum(f1s) / len(f1s) if f1s else 0.0
        all_micro.update(micro)
        all_macro += f1s
    if labels:
        m["intent_micro_f1"] = _f1(all_micro["tp"], all_micro["fp"], all_micro["fn"])[2]
        m["intent_macro_f1"] = sum(all_macro) / len(all_macro) if all_macro else 0.0
    return m


def case_f1(expected: dict[str, Any], output: dict[str, Any] | None) -> float:
    """F1 of one case over every item it holds (scalar values and labels); 1.0 when the case
    mentions nothing and nothing is predicted. The per-case metric an optimizer maximises."""
    tp = fp = fn = 0
    for c in case_counts(expected, output).values():
        for a, b, d in (c.values() if isinstance(c, dict) else (c,)):
            tp, fp, fn = tp + a, fp + b, fn + d
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)

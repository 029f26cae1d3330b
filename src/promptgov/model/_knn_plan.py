"""How ``local/knn`` fills one response schema for one prepared prompt (:class:`_Plan`: a fill
function per field, compiled once) and the per-call state that runs it (:class:`_Ctx`: the
message's similarity to every demo, centroid and description in one matrix product).
"""

from __future__ import annotations

import json
import math
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np

from promptgov.model import _extractors as ex
from promptgov.model._embedding import _embed_one
from promptgov.model._knn_cue import _StringCue
from promptgov.model._knn_enum import _Enum
from promptgov.model._knn_params import CONFIDENCE_BIAS, CONFIDENCE_SLOPE, TEMPERATURE, K
from promptgov.model._knn_schema import (
    _MISSING,
    _MONEY,
    _enum_of,
    _fits,
    _path_get,
    _type_ok,
    _unwrap,
    _value_descriptions,
    _words,
)

if TYPE_CHECKING:
    from promptgov.model._knn_prompt import _Prepared


class _Plan:
    """How to fill one response schema for one prepared prompt: a fill function per field."""

    def __init__(self, prep: _Prepared, schema: dict):
        self.prep = prep
        self.root = schema
        self.enums: list[_Enum] = []
        self.today, self.now = prep.today, prep.now
        self.fill = self._compile(schema, (), "")
        # one fused matrix: a message's similarity to every demo, centroid and description
        # is one matrix-vector product
        blocks, off = [prep.E], len(prep.E)
        for e in self.enums:
            e.c_off = off
            blocks += [e.C, e.D]
            off += 2 * len(e.values)
        self.M = np.ascontiguousarray(np.vstack(blocks), np.float32) if off else \
            np.zeros((0, prep.E.shape[1]), np.float32)

    def _compile(self, node: Any, path: tuple[str, ...], name: str):
        prep, root = self.prep, self.root
        node, nullable = _unwrap(node, root)
        desc = str(node.get("description", ""))
        answers = [_path_get(a, path) for a in prep.demos_out]
        t = node.get("type")
        enum = _enum_of(node, root)
        if enum is not None:
            values, descs = enum
            descs = {**_value_descriptions(desc), **descs}
            if len(values) == 1 and not nullable:
                return lambda ctx, v=values[0]: v
            e = _Enum(prep, values, answers, nullable, descs, multi=False)
            self.enums.append(e)
            return lambda ctx: ctx.decide(e)[0]
        if t == "array":
            items, _ = _unwrap(node.get("items", {}), root)
            ienum = _enum_of(items, root)
            if ienum is not None:
                values, descs = ienum
                descs = {**_value_descriptions(desc), **_value_descriptions(
                    str(items.get("description", ""))), **descs}
                e = _Enum(prep, values, answers, False, descs, multi=True)
                self.enums.append(e)
                least, most = int(node.get("minItems", 0)), node.get("maxItems")

                def fill_list(ctx, e=e, least=least, most=most):
                    return e.decide(ctx.scores(e), least, most)[0]
                return fill_list
            least = int(node.get("minItems", 0))
            return lambda ctx: None if nullable else ([] if not least else ctx.majority(
                answers, []))
        if t == "object" or "properties" in node:
            props = node.get("properties", {})
            fills = {k: self._compile(v, (*path, k), k) for k, v in props.items()}
            return lambda ctx: {k: f(ctx) for k, f in fills.items()}
        words = _words(name)
        text_about = f"{name} {desc}"
        if t in ("number", "integer") and "confidence" in words:
            lo, hi = float(node.get("minimum", 0.0)), float(node.get("maximum", 1.0))
            return lambda ctx: ctx.confidence(lo, hi, t == "integer")
        extractor = self._extractor(t, words, text_about, node)
        if extractor is None and t == "string":
            cue = _StringCue(prep, answers)
            extractor = cue.find
        default = {"string": "", "number": 0.0, "integer": 0, "boolean": False}.get(
            t if isinstance(t, str) else "")

        dated = getattr(extractor, "dated", False)

        def fill(ctx, extractor=extractor, dated=dated):
            v = extractor(ctx.text, ctx.today) if dated else \
                extractor(ctx.text) if extractor else None
            if v is not None and _fits(v, node):
                return v
            if nullable:
                return None
            v = ctx.majority(answers, default)
            return v if _type_ok(v, t) and _fits(v, node) else default
        return fill

    def _extractor(self, t, words: set[str], about: str, node: dict):
        fmt = node.get("format", "")
        if t == "string":
            if fmt == "date" or words & {"date", "day"} or "YYYY-MM-DD" in about:
                today = ex.reference_date(about) or self.today

                def date_of(s, own=None):  # own: the message's `Today is` line, if it has one
                    return ex.extract_date(s, own or today)
                date_of.dated = True
                return date_of
            if fmt == "time" or "time" in words or "HH:MM" in about:
                now = ex.reference_time(about) or self.now
                return lambda s: ex.extract_time(s, now)
            if words & {"id", "identifier", "reference", "ref"}:
                return ex.extract_id
            return None
        if t == "number":
            return ex.extract_amount if _MONEY.search(about) else ex.extract_number
        if t == "integer":
            if _MONEY.search(about):
                return lambda s: (lambda a: int(a) if a is not None and a == int(a) else None)(
                    ex.extract_amount(s))
            return ex.extract_integer
        return None


class _Ctx:
    """The per-call state: the message, its embedding and its similarity to every demo."""

    __slots__ = ("text", "today", "sims", "ex", "plan", "_scored", "_decided")

    def __init__(self, plan: _Plan, text: str, today=None):
        self.text, self.today = text, today
        self.plan = plan
        self.sims = plan.M @ _embed_one(text) if len(plan.M) else plan.M[:, 0]
        self.ex = np.exp(self.sims * (1.0 / TEMPERATURE))
        self._scored: dict[int, tuple] = {}
        self._decided: dict[int, tuple] = {}

    def scores(self, e: _Enum) -> np.ndarray:
        p = self._scored.get(id(e))
        if p is None:
            p = self._scored[id(e)] = e.scores(self.sims, self.ex)
        return p

    def decide(self, e: _Enum) -> tuple[Any, float]:
        """(value, margin) of a single-value enum field, computed once per call."""
        d = self._decided.get(id(e))
        if d is None:
            d = self._decided[id(e)] = e.decide(self.scores(e))
        return d

    def majority(self, answers: list, default: Any) -> Any:
        """The value most of the nearest demos answered for this field (ties: the nearest)."""
        ok = [i for i, a in enumerate(answers) if a is not _MISSING and a is not None]
        if not ok:
            return default
        order = sorted(ok, key=lambda i: -float(self.sims[i]))[:K]
        counts: dict[str, list] = {}
        for i in order:
            counts.setdefault(json.dumps(answers[i], sort_keys=True), [0, answers[i]])[0] += 1
        return max(counts.values(), key=itemgetter(0))[1]

    def confidence(self, lo: float, hi: float, integer: bool) -> float:
        """From the margin of the schema's first single-value enum field (else its first list
        field; with no enum field at all, a margin of 0: no evidence)."""
        enums = self.plan.enums
        e = next((e for e in enums if not e.multi), enums[0] if enums else None)
        margin = (self.decide(e)[1] if not e.multi else e.decide(self.scores(e))[1]) \
            if e is not None else 0.0
        c = 1.0 / (1.0 + math.exp(-(CONFIDENCE_SLOPE * margin + CONFIDENCE_BIAS)))
        v = lo + (hi - lo) * c
        return int(round(v)) if integer else round(v, 4)

"""How ``local/knn`` fills one response schema for one prepared prompt (:class:`_Plan`: a fill
function per field, compiled once) and the per-call state that runs it (:class:`_Ctx`: the
message's similarity to every demo, centroid and description in one matrix product).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import date
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from promptgov.model import _extractors as ex
from promptgov.model._embedding import _embed_one
from promptgov.model._knn_cue import _StringCue
from promptgov.model._knn_enum import _Enum, _Scored
from promptgov.model._knn_group import _Group, kind_of
from promptgov.model._knn_params import CONFIDENCE_BIAS, CONFIDENCE_SLOPE, TEMPERATURE, K
from promptgov.model._knn_schema import (
    _MISSING,
    _MONEY,
    _enum_of,
    _fits,
    _path_get,
    _Schema,
    _type_ok,
    _unwrap,
    _value_descriptions,
    _words,
)

if TYPE_CHECKING:
    from promptgov.model._knn_prompt import _Prepared

_Fill = Callable[["_Ctx"], Any]
"""A field's fill function: its value (any JSON) for one call."""
_Extract = Callable[..., str | float | None]
"""A value from the message text (a dated extractor also takes the message's own date)."""


class _Plan:
    """How to fill one response schema for one prepared prompt: a fill function per field."""

    def __init__(self, prep: _Prepared, schema: _Schema):
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

    def _compile(self, node: Any, path: tuple[str, ...], name: str) -> _Fill:
        """The fill function of the field ``name`` at ``path``: an enum (a value, or a list of
        values), an object of fields, or a scalar (in that order of precedence)."""
        node, nullable = _unwrap(node, self.root)
        answers = [_path_get(a, path) for a in self.prep.demos_out]
        enum = _enum_of(node, self.root)
        if enum is not None:
            return self._compile_enum(node, enum, nullable, answers)
        t = node.get("type")
        if t == "array":
            return self._compile_array(node, nullable, answers)
        if t == "object" or "properties" in node:
            props = node.get("properties", {})
            fills = {k: self._compile(v, (*path, k), k) for k, v in props.items()}
            for g in self._groups(props, path):
                for k in g.names:
                    fills[k] = _grouped(g, k)
            return lambda ctx: {k: f(ctx) for k, f in fills.items()}
        return self._compile_scalar(node, t, name, nullable, answers)

    def _groups(self, props: dict[str, Any], path: tuple[str, ...]) -> list[_Group]:
        """The groups of two or more nullable scalar fields of one kind (dates; counts) among
        ``props``, told apart jointly (:mod:`promptgov.model._knn_group`)."""
        kinds: dict[str, list[tuple[str, set[str], _Schema]]] = {}
        for k, v in props.items():
            node, nullable = _unwrap(v, self.root)
            if not nullable or _enum_of(node, self.root) is not None:
                continue
            words = _words(k)
            about = f"{k} {node.get('description', '')}"
            kind = kind_of(node.get("type"), words, about, node.get("format", ""),
                           bool(_MONEY.search(about)))
            if kind is not None:
                kinds.setdefault(kind, []).append((k, words | _words(about), node))
        groups = []
        for kind, fields in kinds.items():
            if len(fields) >= 2:  # a date field's description may name its reference date
                today = next((d for d in (ex.reference_date(str(n.get("description", "")))
                                          for _, _, n in fields) if d), self.today)
                groups.append(_Group(self.prep, kind, [(k, w) for k, w, _ in fields], [
                    [_path_get(a, (*path, k)) for a in self.prep.demos_out]
                    for k, _, _ in fields], today, [n for _, _, n in fields]))
        return groups

    def _compile_enum(self, node: _Schema, enum: tuple[list[Any], dict[str, str]],
                      nullable: bool, answers: list[Any]) -> _Fill:
        """One value of several, decided by its :class:`_Enum` (a lone value is a constant)."""
        values, descs = enum
        if len(values) == 1 and not nullable:
            only = values[0]
            return lambda ctx: only
        descs = {**_value_descriptions(str(node.get("description", ""))), **descs}
        e = _Enum(self.prep, values, answers, nullable, descs, multi=False)
        self.enums.append(e)
        return lambda ctx: ctx.decide(e)[0]

    def _compile_array(self, node: _Schema, nullable: bool, answers: list[Any]) -> _Fill:
        """A list of enum values is decided by its own :class:`_Enum`; any other list is
        null, empty, or (with ``minItems``) the demos' majority."""
        items, _ = _unwrap(node.get("items", {}), self.root)
        ienum = _enum_of(items, self.root)
        least = int(node.get("minItems", 0))
        if ienum is None:
            return lambda ctx: None if nullable else ([] if not least else ctx.majority(
                answers, []))
        values, descs = ienum
        descs = {**_value_descriptions(str(node.get("description", ""))), **_value_descriptions(
            str(items.get("description", ""))), **descs}
        e = _Enum(self.prep, values, answers, False, descs, multi=True)
        self.enums.append(e)
        most: int | None = node.get("maxItems")

        def fill_list(ctx: _Ctx, e: _Enum = e, least: int = least, most: int | None = most) -> Any:
            return e.decide(ctx.scores(e), least, most)[0]
        return fill_list

    def _compile_scalar(self, node: _Schema, t: Any, name: str, nullable: bool,
                        answers: list[Any]) -> _Fill:
        """A confidence, or an extracted value; failing that null (when allowed), else the
        demos' majority, else the type's empty value."""
        words = _words(name)
        desc = str(node.get("description", ""))
        about = f"{name} {desc}"
        if t in ("number", "integer") and "confidence" in words:
            lo, hi = float(node.get("minimum", 0.0)), float(node.get("maximum", 1.0))
            return lambda ctx: ctx.confidence(lo, hi, t == "integer")
        extract, dated = self._extractor(t, words, about, node)
        if extract is None and t == "string":
            extract = _StringCue(self.prep, answers).find
        default = _EMPTY.get(t) if isinstance(t, str) else None

        def fill(ctx: _Ctx, extract: _Extract | None = extract, dated: bool = dated) -> Any:
            if extract is None:
                v = None
            elif dated:
                v = extract(ctx.text, ctx.today)
            else:
                v = extract(ctx.text)
            if v is not None and _fits(v, node):
                return v
            if nullable:
                return None
            v = ctx.majority(answers, default)
            return v if _type_ok(v, t) and _fits(v, node) else default
        return fill

    def _extractor(self, t: Any, words: set[str], about: str,
                   node: _Schema) -> tuple[_Extract | None, bool]:
        """The extractor of a scalar field of type ``t`` and whether it takes the message's
        own reference date too (``dated``); None for a type with none."""
        if t == "string":
            return self._string_extractor(words, about, node.get("format", ""))
        if t == "number":
            return (ex.extract_amount if _MONEY.search(about) else ex.extract_number), False
        if t == "integer":
            return (_whole_amount if _MONEY.search(about) else ex.extract_integer), False
        return None, False

    def _string_extractor(self, words: set[str], about: str,
                          fmt: Any) -> tuple[_Extract | None, bool]:
        """A date, a time or an id, by the field's format, name words or description."""
        if fmt == "date" or words & {"date", "day"} or "YYYY-MM-DD" in about:
            today = ex.reference_date(about) or self.today

            def date_of(s: str, own: date | None = None) -> str | None:
                return ex.extract_date(s, own or today)  # own: the message's `Today is` line
            return date_of, True
        if fmt == "time" or "time" in words or "HH:MM" in about:
            now = ex.reference_time(about) or self.now
            return (lambda s: ex.extract_time(s, now)), False
        if words & {"id", "identifier", "reference", "ref"}:
            return ex.extract_id, False
        return None, False


def _grouped(g: _Group, name: str) -> _Fill:
    """The fill function of field ``name`` of group ``g`` (the group is filled once per call)."""
    def fill(ctx: _Ctx) -> Any:
        out = ctx.groups.get(id(g))
        if out is None:
            out = ctx.groups[id(g)] = g.fill(ctx.text, ctx.today, ctx.sims)
        return out[name]
    return fill


def _whole_amount(s: str) -> int | None:
    """An amount of money in ``s`` for an integer field: only a whole one."""
    a = ex.extract_amount(s)
    return int(a) if a is not None and a == int(a) else None


_EMPTY: dict[str, Any] = {"string": "", "number": 0.0, "integer": 0, "boolean": False}
"""A required, non-nullable scalar's last resort, by type."""


class _Ctx:
    """The per-call state: the message, its embedding and its similarity to every demo."""

    __slots__ = ("text", "today", "sims", "ex", "plan", "_scored", "_decided", "groups")

    def __init__(self, plan: _Plan, text: str, today: date | None = None):
        self.text, self.today = text, today
        self.plan = plan
        self.sims: NDArray[np.float32] = plan.M @ _embed_one(text) if len(plan.M) else \
            plan.M[:, 0]
        self.ex: NDArray[np.float32] = np.exp(self.sims * (1.0 / TEMPERATURE))
        self._scored: dict[int, _Scored] = {}
        self._decided: dict[int, tuple[Any, float]] = {}
        self.groups: dict[int, dict[str, Any]] = {}

    def scores(self, e: _Enum) -> _Scored:
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

    def majority(self, answers: list[Any], default: Any) -> Any:
        """The value most of the nearest demos answered for this field (ties: the nearest)."""
        ok = [i for i, a in enumerate(answers) if a is not _MISSING and a is not None]
        if not ok:
            return default
        order = sorted(ok, key=lambda i: -float(self.sims[i]))[:K]
        counts: dict[str, list[Any]] = {}  # JSON of a value -> [count, the value]
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

"""The fixed part of a ``local/knn`` prompt (system message and demos), prepared once: the
template text common to its user messages, the demos' embeddings and answers, the value
descriptions, the reference date and time, its token count and its schema plans.
"""

from __future__ import annotations

import copy
import json
from collections import OrderedDict
from datetime import date
from typing import Any

import numpy as np
from numpy.typing import NDArray

from promptgov.model import _extractors as ex
from promptgov.model._embedding import embed, token_count
from promptgov.model._knn_plan import _Plan
from promptgov.model._knn_schema import _Schema, _value_descriptions


def _common_prefix(a: str, b: str) -> str:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return a[:i]


def _cut_prefix(p: str) -> str:
    """Cut a common prefix back to a template boundary: after its last newline, else after
    its last whitespace, so that no part of a word is ever stripped."""
    for sep in ("\n", " ", "\t"):
        i = p.rfind(sep)
        if i >= 0 and (sep != " " or "\n" not in p):
            return p[:i + 1]
    return ""


def _cut_suffix(s: str) -> str:
    for sep in ("\n", " ", "\t"):
        i = s.find(sep)
        if i >= 0 and (sep != " " or "\n" not in s):
            return s[i:]
    return ""


def _demos(fixed: tuple[dict[str, str], ...]) -> tuple[list[str], list[Any], list[date | None]]:
    """The demos: each user message followed by an assistant message, as (the user message
    without its ``Today is`` line, the answer parsed as JSON, else its text, that line's date)."""
    demos_in: list[str] = []
    demos_out: list[Any] = []
    days: list[date | None] = []
    for a, b in zip(fixed, fixed[1:], strict=False):
        if a["role"] == "user" and b["role"] == "assistant":
            core, day = ex.split_reference(a["content"])
            demos_in.append(core)
            days.append(day)
            try:
                demos_out.append(json.loads(b["content"]))
            except ValueError:
                demos_out.append(b["content"])
    return demos_in, demos_out, days


def _template_edges(demos_in: list[str]) -> tuple[str, str]:
    """The template text common to the start and to the end of every demo message, cut back to
    a template boundary when there are several demos (one demo is re-cut per message)."""
    prefix = suffix = None
    for t in demos_in:
        prefix = t if prefix is None else _common_prefix(prefix, t)
        suffix = t if suffix is None else _common_prefix(suffix[::-1], t[::-1])[::-1]
    if len(demos_in) > 1:
        return _cut_prefix(prefix or ""), _cut_suffix(suffix or "")
    return prefix or "", suffix or ""


class _Prepared:
    """Everything derived from the fixed messages (system + demos) of one prompt."""

    def __init__(self, fixed: tuple[dict[str, str], ...]):
        self.system = "\n".join(m["content"] for m in fixed if m["role"] == "system")
        demos_in, self.demos_out, self.demos_today = _demos(fixed)
        self.prefix, self.suffix = _template_edges(demos_in)
        self.single = len(demos_in) == 1  # prefix learnt from one demo: re-cut per message
        self.demos_in = [self.strip_template(t) for t in demos_in]
        self.E: NDArray[np.float32] = embed(self.demos_in)
        self.descriptions = _value_descriptions(self.system)
        self.today = ex.reference_date(self.system)
        self.now = ex.reference_time(self.system)
        # 3 tokens of chat framing per message (OpenAI's published count), +3 for the reply
        self.fixed_tokens = sum(token_count(m["content"]) + 3 for m in fixed) + 3
        self.plans: OrderedDict[str, _Plan] = OrderedDict()
        self.last_plan: tuple[_Schema, _Plan] | None = None

    def strip_template(self, text: str) -> str:
        """``text`` without the template text common to every user message of the prompt."""
        p, s = self.prefix, self.suffix
        if self.single:
            p = _cut_prefix(_common_prefix(p, text))
            s = _cut_suffix(_common_prefix(s[::-1], text[::-1])[::-1])
        if p and not text.startswith(p):
            p = _cut_prefix(_common_prefix(p, text))
        if s and not text.endswith(s):
            s = _cut_suffix(_common_prefix(s[::-1], text[::-1])[::-1])
        core = text[len(p):len(text) - len(s)] if len(p) + len(s) < len(text) else text
        return core.strip() or text.strip()

    def plan(self, schema: _Schema) -> _Plan:
        """The fill plan of ``schema``. Fast path: a schema equal to the last one (a deep copy is
        kept, so an edit in place is seen); comparing is a few µs, serialising would be 20."""
        last = self.last_plan
        if last is not None and last[0] == schema:
            return last[1]
        key = json.dumps(schema, sort_keys=True, default=str)
        plan = self.plans.get(key)
        if plan is None:
            plan = _Plan(self, schema)
            self.plans[key] = plan
            while len(self.plans) > 8:
                self.plans.popitem(last=False)
        self.last_plan = (copy.deepcopy(schema), plan)
        return plan

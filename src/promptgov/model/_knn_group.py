"""Several nullable fields of one type in one object (``date``, ``date_from``, ``date_to``;
``people``, ``adults``, ``kids``, ``rooms``), filled together by ``local/knn`` so that they are
told apart instead of all taking the message's first value.

Every value of the type the message mentions (every date; every whole number, digits or a
number word) is a candidate. A candidate goes to at most one field of the group (two fields
may share one only when the demos show them sharing it), and a field takes at most one. Which
field gets it is decided by

* cues: the words just before and after the value (3 before, 2 after; the nearer, the
  stronger) matched against each field's cue words: the words of its name and description
  that the group's other fields do not share, their usual synonyms ("from": "arriving";
  "kids": "children"), and the words found near the field's values in the demos, weighted
  by how specific to the field they are there;
* the demos: of the ``K`` nearest demos that fill any field of the group (weighted as the kNN
  vote of an enum field), the share that fill this one.

A pair (candidate, field) is allowed when the field is cued, or, for a value written in
digits, when the nearest demos fill that field most (or most of them fill it); a field that no
more than ``RARE`` of the demos fill needs a cue (a strong one). Allowed pairs are taken
greedily by ``2 * cue + demo share``, a value only where it fits the field's bounds.
Everything but the candidates and the nearest demos is computed once per prompt and schema.
Measured on NLU++ hotels (see README, *Models*): slot F1 0.33 -> 0.60.
"""

from __future__ import annotations

import re
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from promptgov.model import _extractors as ex
from promptgov.model._knn_cue import _STOPWORDS
from promptgov.model._knn_params import TEMPERATURE, K
from promptgov.model._knn_schema import _MISSING, _fits, _Schema

if TYPE_CHECKING:
    from promptgov.model._knn_prompt import _Prepared

_Mention = tuple[tuple[int, int], Any, bool]
"""(span, value, weak): a weak mention (a number word) needs a cue."""

_TOKEN = re.compile(r"[a-z]+")
BEFORE, AFTER = 3, 2
"""Words of context read before and after a value."""
RARE = 0.05
"""A field at most this share of the demos fill takes a value only when cued."""
SHARED = 0.5
"""Two fields may take one value when at least this share of the demos filling both do."""
_SYNONYMS = {
    "from": "from since starting start arriving arrive arrival checking check in",
    "start": "from since starting arriving arrive arrival",
    "to": "to until till through leaving leave departing depart departure out",
    "end": "to until till through leaving leave departing departure",
    "kids": "kids kid children child childs baby babies toddler toddlers teens",
    "children": "kids kid children child babies",
    "adults": "adults adult grown grownups",
    "rooms": "rooms room suites suite",
    "people": "people persons person guests guest us pax",
    "guests": "people persons guests guest us",
    "nights": "nights night",
}
_GENERIC = frozenset(("a", "an", "the", "of", "or", "and", "in", "on", "at", "for", "number",
                      "count", "specific", "mentioned", "date", "yyyy", "mm", "dd", "iso",
                      "total"))


def kind_of(t: Any, words: set[str], about: str, fmt: Any, money: bool) -> str | None:
    """``"date"`` or ``"count"`` for a scalar field a group can hold, else None."""
    if t == "string" and (fmt == "date" or words & {"date", "day"} or "YYYY-MM-DD" in about):
        return "date"
    if t in ("integer", "number") and not money and "confidence" not in words:
        return "count"
    return None


def _mentions(kind: str, text: str, today: date | None) -> list[_Mention]:
    if kind == "date":
        return [(span, v, False) for span, v in ex.date_mentions(text, today)]
    return ex.integer_mentions(text)


def _context(text: str, span: tuple[int, int], kind: str) -> list[tuple[str, int]]:
    """The words around ``span`` with their distance to it (1: adjacent); a date's cue
    ("from", "until") precedes it, a count's ("2 adults") mostly follows it."""
    before = _TOKEN.findall(text[:span[0]].lower())[-BEFORE:]
    after = _TOKEN.findall(text[span[1]:].lower())[:AFTER if kind == "count" else 0]
    return [(w, len(before) - i) for i, w in enumerate(before)] + [
        (w, i + 1) for i, w in enumerate(after)]


class _Group:
    """Nullable fields of one kind in one object, filled jointly (see the module)."""

    def __init__(self, prep: _Prepared, kind: str, fields: list[tuple[str, set[str]]],
                 answers: list[list[Any]], today: date | None, nodes: list[_Schema]):
        self.kind, self.today, self.nodes = kind, today, nodes
        self.names = [name for name, _ in fields]
        n, m = len(prep.demos_in), len(fields)
        filled = np.array([[_has(a) for a in col] for col in answers],
                          np.float32).T.reshape(n, m)
        self.filled: NDArray[np.float32] = filled
        self.rows: NDArray[np.intp] = np.flatnonzero(filled.any(axis=1))
        self.rate = filled.mean(axis=0) if n else np.zeros(m, np.float32)
        self.shared: set[tuple[int, int]] = set()
        self.cues = self._cue_words(prep, fields, answers)

    def _cue_words(self, prep: _Prepared, fields: list[tuple[str, set[str]]],
                   answers: list[list[Any]]) -> list[dict[str, float]]:
        """Each field's cue words with their weight: its own name/description words and their
        synonyms (1.0), and content words near its values in 2 or more demos (their share among
        the fields' counts of that word, plus one)."""
        common = set.intersection(*(w for _, w in fields)) | _GENERIC
        cues = [{s: 1.0 for w in words - common for s in [w, *_SYNONYMS.get(w, "").split()]}
                for _, words in fields]
        seen = self._demo_contexts(prep, answers)
        for f, counts in enumerate(seen):
            for w, c in counts.items():
                share = c / (sum(s.get(w, 0) for s in seen) + 1.0)
                if c >= 2 and w not in _STOPWORDS and share > cues[f].get(w, 0.0):
                    cues[f][w] = share
        return cues

    def _demo_contexts(self, prep: _Prepared, answers: list[list[Any]]) -> list[dict[str, int]]:
        """Per field, how often each word is near its value in a demo; sets :attr:`shared`."""
        m = len(answers)
        seen: list[dict[str, int]] = [{} for _ in range(m)]
        both: dict[tuple[int, int], list[int]] = {}  # [demos filling both, sharing one mention]
        for d, text in enumerate(prep.demos_in):
            found = _mentions(self.kind, text, prep.demos_today[d] or self.today)
            vals = [v for _, v, _ in found]
            row = [col[d] for col in answers]
            _count_shared(row, vals, both)
            for f, (span, _, _) in ((f, x) for f in range(m) for x in found if x[1] == row[f]):
                for w, _dist in _context(text, span, self.kind):
                    seen[f][w] = seen[f].get(w, 0) + 1
        self.shared = {p for p, (n, s) in both.items() if s >= 3 and s >= SHARED * n}
        return seen

    def prior(self, sims: NDArray[np.float32]) -> NDArray[np.float32]:
        """Each field's share among the nearest demos filling any field of the group (their
        kNN weights): which field similar messages' values went to."""
        rows = self.rows
        if not len(rows):
            return np.zeros(len(self.names), np.float32)
        s = sims[rows]
        k = min(K, len(rows))
        idx = np.argpartition(s, -k)[-k:] if k < len(rows) else np.arange(len(rows))
        w = np.exp((s[idx] - s[idx].max()) / TEMPERATURE)
        p: NDArray[np.float32] = ((w @ self.filled[rows[idx]]) / w.sum()).astype(np.float32)
        return p

    def fill(self, text: str, today: date | None, sims: NDArray[np.float32]) -> dict[str, Any]:
        out: dict[str, Any] = dict.fromkeys(self.names)
        found = _mentions(self.kind, text, today or self.today)
        if not found:
            return out
        holders: dict[int, list[int]] = {}
        for _, c, f in sorted(self._pairs(text, found, self.prior(sims))):
            name = self.names[f]
            if out[name] is None and all((h, f) in self.shared for h in holders.get(c, [])):
                out[name] = found[c][1]
                holders.setdefault(c, []).append(f)
        return out

    def _pairs(self, text: str, found: list[_Mention],
               prior: NDArray[np.float32]) -> list[tuple[float, int, int]]:
        """The allowed (-(cue + prior), candidate, field) pairs: a cued field (a rare one only
        strongly cued), or an uncued field most of the nearest demos fill, or that they fill
        the most, for a value in digits."""
        top = float(prior.max())
        pairs = []
        for c, (span, v, weak) in enumerate(found):
            ctx = _context(text, span, self.kind)
            for f, cues in enumerate(self.cues):
                if not _fits(v, self.nodes[f]):
                    continue
                cue = max((cues.get(w, 0.0) / dist for w, dist in ctx), default=0.0)
                pf, common = float(prior[f]), bool(self.rate[f] > RARE)
                if (cue > 0 and (common or cue >= 0.5)) or (
                        not weak and common and pf > 0 and (pf >= 0.5 or pf == top)):
                    pairs.append((-(2 * cue + pf), c, f))
        return pairs


def _count_shared(row: list[Any], vals: list[Any], both: dict[tuple[int, int], list[int]]) -> None:
    """Count, for each pair of fields one demo's answer ``row`` fills, the demo, and whether
    they share a value its text mentions once (``vals``: the values it mentions)."""
    m = len(row)
    for i, j in ((i, j) for i in range(m) for j in range(m)
                 if i != j and _has(row[i]) and _has(row[j])):
        b = both.setdefault((i, j), [0, 0])
        b[0] += 1
        b[1] += row[i] == row[j] and vals.count(row[i]) == 1


def _has(a: Any) -> bool:
    """Whether a demo's answer fills the field."""
    return a is not _MISSING and a is not None and a != "" and not isinstance(a, (dict, list))

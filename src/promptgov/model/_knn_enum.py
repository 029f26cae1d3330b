"""One enum field of ``local/knn``: the score of each value, an equal mixture of three sources
of evidence (the k nearest demos' vote, the similarity to each value's demo centroid and to its
description), and the decision (a value, or the ``n`` best values of a list) with its margin.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from promptgov.model._embedding import embed
from promptgov.model._knn_params import LIST_THRESHOLD, W_CENTROID, W_DESCRIPTION, W_KNN, K
from promptgov.model._knn_schema import _MISSING, _NAME_WORDS

if TYPE_CHECKING:
    from promptgov.model._knn_prompt import _Prepared

_Scored = tuple[NDArray[np.floating[Any]], float]
"""Each value's score and how many values a list takes (:meth:`_Enum.scores`)."""


class _Enum:
    """One enum field: value scores from demos, centroids and descriptions."""

    def __init__(self, prep: _Prepared, values: list[Any], answers: list[Any], nullable: bool,
                 descs: dict[str, str], multi: bool):
        self.multi = multi
        self.values: list[Any] = list(values) + ([None] if nullable and not multi else [])
        n, m = len(answers), len(self.values)
        Y = _one_hot(self.values, answers, multi)
        keep = Y.sum(axis=1) > 0 if not multi else np.array(
            [isinstance(a, list) for a in answers], bool)
        self.rows: NDArray[np.intp] = np.flatnonzero(keep) if n else np.zeros(0, np.intp)
        self.all_rows = len(self.rows) == n  # then demo similarities need no gather
        self.Y: NDArray[np.float32] = Y[self.rows]
        has_demo = self.Y.sum(axis=0) > 0
        self.C = _centroids(self.Y, prep.E, self.rows, m)
        texts = [_value_text(v, descs, prep.descriptions) for v in self.values]
        # true/false/null or a number alone say nothing: no text, no description score
        has_desc = np.array([bool(t) for t in texts], bool)
        self.D: NDArray[np.float32] = embed(texts)
        self.label: NDArray[np.intp] = self.Y.argmax(axis=1)  # single value: each demo's value
        # 0/1 masks: a value with no demo (or no text) gets no centroid (description) score
        # (a row with no value at all stays unmasked: its mixture weight is 0 anyway)
        self.cd_mask = np.stack([has_demo | ~has_demo.any(), has_desc | ~has_desc.any()]
                                ).astype(np.float32)
        self.mix = _mixture(bool(len(self.rows)), bool(has_desc.any()))
        self.cd_w = np.array(self.mix[1:], np.float32)
        self.c_off = 0  # rows of [C; D] in the plan's fused matrix (set by _Plan)

    def scores(self, sims: NDArray[np.float32], ex: NDArray[np.float32]) -> _Scored:
        """The probability-like score of each value, from the message's similarities ``sims``
        to the plan's fused matrix (demos, then each enum's centroids and descriptions) and
        their ``ex = exp(sims / TEMPERATURE)`` (cosines are within [-1, 1], so no overflow and
        no max-shift is needed), and how many values to choose (1; for a list, the
        neighbours' weighted mean count)."""
        m = len(self.values)
        wk = self.mix[0]
        count = 1.0
        if wk:
            if self.all_rows:
                s, e = sims[:len(self.rows)], ex[:len(self.rows)]
            else:
                s, e = sims[self.rows], ex[self.rows]
            k = min(K, len(s))
            idx = np.argpartition(s, -k)[-k:] if k < len(s) else np.arange(len(s))
            w = e[idx]
            w = w * (wk / w.sum())
            if self.multi:
                Yk = self.Y[idx]
                p = w @ Yk
                count = float(w @ Yk.sum(axis=1)) / wk
            else:
                p = np.bincount(self.label[idx], weights=w, minlength=m)
        else:
            p = np.zeros(m)
        if self.mix[1] or self.mix[2]:
            # centroid and description softmaxes at once: rows c_off.. hold [C; D]
            e = ex[self.c_off:self.c_off + 2 * m].reshape(2, m) * self.cd_mask
            p += (self.cd_w / e.sum(axis=1)) @ e
        elif not wk:
            p += 1.0 / m
        return p, count

    def decide(self, scored: _Scored, least: int = 0,
               most: int | None = None) -> tuple[Any, float]:
        """(value, margin) from :meth:`scores`: the best value and its lead over the second.
        A list takes the values scoring at least ``LIST_THRESHOLD`` (bounded by
        ``least``/``most``, in enum order);
        its margin is the lead of the last value taken over the first value left out."""
        p, count = scored
        if not self.multi:
            best = int(np.argmax(p))
            if len(p) < 2:
                return self.values[best], 1.0
            second = float(np.partition(p, len(p) - 2)[len(p) - 2])
            return self.values[best], float(p[best]) - second
        # every value over the threshold (co-occurring values pass together), within the
        # list's bounds; at least the best one when the neighbours have any (count >= 0.5)
        n = max(least, int((p >= LIST_THRESHOLD).sum()), int(round(count) >= 1))
        n = min(n, len(p) if most is None else most)
        order = np.argsort(-p, kind="stable")
        chosen = sorted(order[:n].tolist())
        inner = p[order[n - 1]] if n else 1.0
        outer = p[order[n]] if n < len(p) else 0.0
        return [self.values[i] for i in chosen], float(inner - outer)


def _one_hot(values: list[Any], answers: list[Any], multi: bool) -> NDArray[np.float32]:
    """Demos x values: 1 where a demo answered the value (values compared as JSON); a demo
    with no answer, or a list answer for a single value (or the reverse), is a row of 0s."""
    index = {json.dumps(v): i for i, v in enumerate(values)}
    Y = np.zeros((len(answers), len(values)), np.float32)
    for i, a in enumerate(answers):
        if a is _MISSING or isinstance(a, list) != multi:
            continue
        for v in a if multi else (a,):
            j = index.get(json.dumps(v))
            if j is not None:
                Y[i, j] = 1.0
    return Y


def _centroids(Y: NDArray[np.float32], E: NDArray[np.float32], rows: NDArray[np.intp],
               m: int) -> NDArray[np.float32]:
    """Each value's unit-length mean embedding of the demos answering it (0s with none)."""
    C = Y.T @ E[rows] if len(rows) else np.zeros((m, E.shape[1]))
    norms = np.linalg.norm(C, axis=1, keepdims=True)
    return (C / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def _value_text(v: Any, descs: dict[str, str], prompt_descs: dict[str, str]) -> str:
    """``"<v as words>: <description>"``, either part alone when the other is empty; the
    field's own descriptions first, then the prompt's (then case-insensitively)."""
    words = " ".join(_NAME_WORDS.findall(v.lower())) if isinstance(v, str) else ""
    d = descs.get(str(v)) or prompt_descs.get(str(v))
    if d is None and v is not None:  # case-insensitive fallback
        lk = str(v).lower()
        d = next((dv for k, dv in prompt_descs.items() if k.lower() == lk), None)
    return f"{words}: {d}" if d and words else (d or words)


def _mixture(has_demos: bool, has_texts: bool) -> list[float]:
    """The weights of (kNN, centroid, description): a source with no evidence drops out and
    the others are renormalised (all 0 when none has any)."""
    w = [W_KNN if has_demos else 0.0, W_CENTROID if has_demos else 0.0,
         W_DESCRIPTION if has_texts else 0.0]
    return [x / sum(w) for x in w] if sum(w) else w

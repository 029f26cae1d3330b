"""One enum field of ``local/knn``: the score of each value, an equal mixture of three sources
of evidence (the k nearest demos' vote, the similarity to each value's demo centroid and to its
description), and the decision (a value, or the ``n`` best values of a list) with its margin.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from promptgov.model._embedding import embed
from promptgov.model._knn_params import LIST_THRESHOLD, W_CENTROID, W_DESCRIPTION, W_KNN, K
from promptgov.model._knn_schema import _MISSING, _NAME_WORDS

if TYPE_CHECKING:
    from promptgov.model._knn_prompt import _Prepared


class _Enum:
    """One enum field: value scores from demos, centroids and descriptions."""

    def __init__(self, prep: _Prepared, values: list, answers: list, nullable: bool,
                 descs: dict[str, str], multi: bool):
        self.multi = multi
        self.values = list(values) + ([None] if nullable and not multi else [])
        index = {json.dumps(v): i for i, v in enumerate(self.values)}
        n, m = len(answers), len(self.values)
        Y = np.zeros((n, m), np.float32)
        for i, a in enumerate(answers):
            if a is _MISSING or isinstance(a, list) != multi:
                continue
            for v in a if multi else (a,):
                j = index.get(json.dumps(v))
                if j is not None:
                    Y[i, j] = 1.0
        keep = Y.sum(axis=1) > 0 if not multi else np.array(
            [isinstance(a, list) for a in answers], bool)
        self.rows = np.flatnonzero(keep) if n else np.zeros(0, np.intp)
        self.all_rows = len(self.rows) == n  # then demo similarities need no gather
        self.Y = Y[self.rows]
        has_demo = self.Y.sum(axis=0) > 0
        C = self.Y.T @ prep.E[self.rows] if len(self.rows) else np.zeros((m, prep.E.shape[1]))
        norms = np.linalg.norm(C, axis=1, keepdims=True)
        self.C = (C / np.where(norms > 0, norms, 1.0)).astype(np.float32)
        texts, has_text = [], []
        for v in self.values:
            words = " ".join(_NAME_WORDS.findall(v.lower())) if isinstance(v, str) else ""
            d = descs.get(str(v)) or prep.descriptions.get(str(v))
            if d is None and v is not None:  # case-insensitive fallback
                lk = str(v).lower()
                d = next((dv for k, dv in prep.descriptions.items() if k.lower() == lk), None)
            texts.append(f"{words}: {d}" if d and words else (d or words))
            has_text.append(bool(d or words))  # true/false/null or a number alone say nothing
        has_desc = np.array(has_text, bool)
        self.D = embed(texts)
        self.label = self.Y.argmax(axis=1)  # single-value field: each demo's value index
        # additive masks: a value with no demo (or no text) gets no centroid (description) score
        # 0/1 masks: a value with no demo (or no text) gets no centroid (description) score
        # (a row with no value at all stays unmasked: its mixture weight is 0 anyway)
        self.cd_mask = np.stack([has_demo | ~has_demo.any(), has_desc | ~has_desc.any()]
                                ).astype(np.float32)
        w = [W_KNN if len(self.rows) else 0.0, W_CENTROID if len(self.rows) else 0.0,
             W_DESCRIPTION if has_desc.any() else 0.0]
        self.mix = [x / sum(w) for x in w] if sum(w) else w
        self.cd_w = np.array(self.mix[1:], np.float32)
        self.c_off = 0  # rows of [C; D] in the plan's fused matrix (set by _Plan)

    def scores(self, sims: np.ndarray, ex: np.ndarray) -> tuple[np.ndarray, float]:
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

    def decide(self, scored: tuple[np.ndarray, float], least: int = 0,
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

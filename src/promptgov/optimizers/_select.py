"""Demo selection and the demo budget.

:class:`HerdingFewShot` is a DSPy ``Teleprompter``: for each label it picks the demos whose mean
embedding tracks the mean of all the label's training examples most closely, one at a time
(kernel herding, Welling 2009), so a few demos stand for the whole pool: representative and
spread out rather than the most typical or the hardest. With ``candidates > 1`` it also herds on
seeded random subsamples of the pool and keeps the candidate that scores best on the validation
split (``dspy.Evaluate``), a random search over representative sets; the chosen candidate is
then herded again from the whole trainset (``refit``), its validation score the one before.

:func:`apply_budget` enforces the budget on any optimizer's result: at most ``demos_per_label``
demos per label, and a fixed prompt part (system + demos) of at most ``max_prompt_tokens``.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
from dspy.teleprompt.teleprompt import Teleprompter


def label_of(ex: Any, label_field: str | None) -> str:
    """The group a demo counts against in the per-label budget (one group without a label)."""
    if label_field is None:
        return ""
    v = ex.get(label_field) if hasattr(ex, "get") else None
    return json.dumps(sorted(v) if isinstance(v, list) else v, default=str)


def interleave(groups: dict[str, list[Any]]) -> list[Any]:
    """Round-robin over the labels (first demo of each label, then the second...), so that a
    truncated or scrolled prompt still shows every label."""
    out: list[Any] = []
    k = 0
    while any(k < len(g) for g in groups.values()):
        out += [g[k] for g in groups.values() if k < len(g)]
        k += 1
    return out


def herd(X: np.ndarray, k: int) -> list[int]:
    """Indices of ``k`` rows of ``X`` chosen greedily so that their running mean stays closest to
    the mean of all rows."""
    mu = X.mean(axis=0)
    chosen: list[int] = []
    total = np.zeros_like(mu)
    for t in range(1, min(k, len(X)) + 1):
        dist = np.linalg.norm((total[None, :] + X) / t - mu[None, :], axis=1)
        dist[chosen] = np.inf
        i = int(np.argmin(dist))
        chosen.append(i)
        total += X[i]
    return chosen


# dspy ships no type information: its Teleprompter is Any to mypy
class HerdingFewShot(Teleprompter):  # type: ignore[misc]
    """Representative demos per label by kernel herding (see the module documentation).

    Example:
        >>> opt = HerdingFewShot(demos_per_label=10, label_field="label")   # doctest: +SKIP
        >>> best = opt.compile(program, trainset=train, valset=val)          # doctest: +SKIP
    """

    def __init__(self, *, demos_per_label: int = 10, label_field: str | None = None,
                 max_demos: int | None = None, candidates: int = 1, subsample: float = 0.7,
                 seed: int = 0, metric: Callable[..., float] | None = None,
                 num_threads: int = 1, refit: bool = True):
        self.demos_per_label, self.label_field = demos_per_label, label_field
        self.max_demos = max_demos
        self.candidates, self.subsample, self.seed = candidates, subsample, seed
        self.metric, self.num_threads, self.refit = metric, num_threads, refit
        self.trials: list[dict[str, Any]] = []
        self.best_score: float | None = None

    def _select(self, trainset: list[Any], inputs: list[str],
                rng: random.Random | None) -> list[Any]:
        from promptgov.model._embedding import embed

        groups: dict[str, list[Any]] = defaultdict(list)
        for ex in trainset:
            groups[label_of(ex, self.label_field)].append(ex)
        per = self.demos_per_label if self.label_field else (self.max_demos or
                                                             self.demos_per_label)
        chosen: dict[str, list[Any]] = {}
        for lab in sorted(groups):
            pool = groups[lab]
            if rng is not None and len(pool) > per:
                pool = rng.sample(pool, max(per, round(len(pool) * self.subsample)))
            X = embed([" ".join(str(ex[v]) for v in inputs) for ex in pool])
            chosen[lab] = [pool[i] for i in herd(np.asarray(X, np.float64), per)]
        return interleave(chosen)

    def compile(self, student: Any, *, trainset: list[Any],
                valset: list[Any] | None = None) -> Any:
        from dspy.evaluate.evaluate import Evaluate

        inputs = list(trainset[0].inputs().keys()) if trainset else []
        rngs = [None] + [random.Random(f"{self.seed}:{c}") for c in range(1, self.candidates)]
        states = [r.getstate() if r else None for r in rngs]

        def build(pool: list[Any], c: int) -> Any:
            prog = student.reset_copy()
            rng = None
            state = states[c]
            if state is not None:
                rng = random.Random()
                rng.setstate(state)
            demos = self._select(pool, inputs, rng)
            for p in prog.predictors():
                p.demos = demos
            return prog

        programs = [build(trainset, c) for c in range(self.candidates)]
        if not valset or self.metric is None:
            self.trials = [{"trial": c, "score": None} for c in range(self.candidates)]
            return programs[0]
        ev = Evaluate(devset=valset, metric=self.metric, num_threads=self.num_threads,
                      display_progress=False, display_table=False)
        scores = [float(ev(p).score) / 100.0 for p in programs]  # Evaluate reports percent
        self.trials = [{"trial": c, "score": s, "subsample": None if c == 0 else self.subsample}
                       for c, s in enumerate(scores)]
        best = int(np.argmax(scores))  # ties: the first (the full pool)
        self.best_score = scores[best]
        if not self.refit:
            return programs[best]
        # chosen on the validation split, then fitted on the whole trainset (train + validation):
        # the validation cases are good demos too once they have done their job
        return build(list(trainset) + list(valset), best)


def apply_budget(demos: list[Any], *, label_field: str | None, demos_per_label: int | None,
                 max_prompt_tokens: int | None,
                 fixed_tokens: Callable[[list[Any]], int] | None) -> list[Any]:
    """``demos`` cut to the budget, keeping their order: per label the first
    ``demos_per_label``; then demos dropped from the end while ``fixed_tokens(demos)`` (the
    prompt's system + demo tokens) exceeds ``max_prompt_tokens``."""
    out = list(demos)
    if demos_per_label is not None:
        seen: dict[str, int] = defaultdict(int)
        kept = []
        for d in out:
            lab = label_of(d, label_field)
            if seen[lab] < demos_per_label:
                kept.append(d)
                seen[lab] += 1
        out = kept
    if max_prompt_tokens is not None:
        if fixed_tokens is None:
            raise TypeError("apply_budget: max_prompt_tokens needs fixed_tokens")
        lo, hi = 0, len(out)  # the longest prefix that fits: binary search, tokens grow with n
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if fixed_tokens(out[:mid]) <= max_prompt_tokens:
                lo = mid
            else:
                hi = mid - 1
        out = out[:lo]
    return out

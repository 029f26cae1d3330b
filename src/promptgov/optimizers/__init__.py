"""Optimization: DSPy optimizers propose candidate prompt versions, written as new version files
with their provenance (never edits), judged on an evalset disjoint from their training data.

    >>> import promptgov as pg                                                   # doctest: +SKIP
    >>> r = pg.optimize("ticket_triage@2", trainset="ticket_triage_train", seed=0)  # doctest: +SKIP
    >>> r.candidate, r.eval_metrics["candidate"]["accuracy"]                     # doctest: +SKIP

:func:`optimize` is ``pg.optimize``.
"""

from __future__ import annotations

from promptgov.optimizers._optimize import (
    OPTIMIZERS,
    OptimizeResult,
    TrainsetOverlap,
    check_disjoint,
    optimize,
)

__all__ = ["OPTIMIZERS", "OptimizeResult", "TrainsetOverlap", "check_disjoint", "optimize"]

"""Optimization: DSPy optimizers propose candidate prompt versions, written as new version files
with their provenance (never edits), judged on an evalset disjoint from their training data.

    >>> import promptgov as pg                                                   # doctest: +SKIP
    >>> r = pg.optimize("ticket_triage@2", trainset="ticket_triage_train", seed=0)  # doctest: +SKIP
    >>> r.candidate, r.eval_metrics["candidate"]["accuracy"]                     # doctest: +SKIP

``pg.optimize`` is this package and is callable: calling it runs :func:`optimize`.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

from promptgov.optimize._optimize import (
    OPTIMIZERS,
    OptimizeResult,
    TrainsetOverlap,
    check_disjoint,
    optimize,
)

__all__ = ["OPTIMIZERS", "OptimizeResult", "TrainsetOverlap", "check_disjoint", "optimize"]


class _CallablePackage(ModuleType):
    """``promptgov.optimize`` is both this package and, called, :func:`optimize`: the lazy
    top-level name ``pg.optimize`` and the subpackage are then one callable either way."""

    def __call__(self, *args: Any, **kwargs: Any) -> OptimizeResult:
        return optimize(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage

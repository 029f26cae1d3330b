"""Evaluation: run a prompt version on an evalset, score it, log it to MLflow, compare.

Names load on first use, so that ``promptgov compare`` and ``status`` do not pay for the
engine (models, cache) they never run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from promptgov.eval._compare import compare
    from promptgov.eval._evaluate import evaluate
    from promptgov.eval._result import EvalResult

__all__ = ["EvalResult", "compare", "evaluate"]
_WHERE = {"EvalResult": "_result", "compare": "_compare", "evaluate": "_evaluate"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'promptgov.eval' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"promptgov.eval.{_WHERE[name]}"), name)
    globals()[name] = value
    return value

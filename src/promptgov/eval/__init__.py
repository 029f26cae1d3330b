"""Evaluation: run a prompt version on an evalset, score it, log it to MLflow, compare."""

from promptgov.eval._compare import compare
from promptgov.eval._evaluate import evaluate
from promptgov.eval._result import EvalResult

__all__ = ["EvalResult", "compare", "evaluate"]

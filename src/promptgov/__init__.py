"""promptgov: versioned, hashed prompts under governance, evaluated offline or against real
models, with every run in MLflow.

    >>> import promptgov as pg                                   # doctest: +SKIP
    >>> ws = pg.Workspace.find()                                 # doctest: +SKIP
    >>> r = pg.evaluate("ticket_triage@2", workspace=ws)          # doctest: +SKIP

Heavy parts load on first use, so ``import promptgov`` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from promptgov._version import __version__

_LAZY = {
    "Workspace": "promptgov.workspace",
    "evaluate": "promptgov.eval",
    "estimate": "promptgov.eval._estimate",
    "EvalResult": "promptgov.eval",
    "compare": "promptgov.eval._compare",
    "optimize": "promptgov.optimizers",
    "loop": "promptgov._loop",
    "check": "promptgov.governance",
    "lock": "promptgov.governance",
    "get_model": "promptgov.model._registry",
    "FakeModel": "promptgov.model._fake",
    "approve": "promptgov.governance._approvals",
    "revoke": "promptgov.governance._approvals",
    "status": "promptgov.governance._status",
    "release": "promptgov.governance._releasing",
    "gate": "promptgov.governance._regression",
    "adversarial": "promptgov.robustness",
    "export": "promptgov.packaging",
    "new_schema": "promptgov.workspace._scaffold",
    "new_prompt": "promptgov.workspace._scaffold",
    "new_evalset": "promptgov.workspace._scaffold",
    "new_version": "promptgov.workspace._scaffold",
    "evalset_from_frame": "promptgov.workspace._import",
    "read_table": "promptgov.workspace._import",
    "PromptgovError": "promptgov.errors",
    "GateFailed": "promptgov.errors",
}
_SUBMODULES = ("plot", "robustness")
"""Modules a notebook reaches as attributes: ``pg.plot.pareto(...)``,
``pg.robustness.ocr_typos()``."""

__all__ = ["__version__", *_LAZY, *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return import_module(f"promptgov.{name}")
    raise AttributeError(f"module 'promptgov' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names too (loaded on first use), so `dir(pg)` and completion list them."""
    return sorted({*globals(), *__all__})

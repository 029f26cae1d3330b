"""Governance: the lock of content hashes, the checks CI runs before a release, policy gates,
approvals, release manifests and the regression gate.

``check`` and ``lock`` import nothing heavy (they run as a pre-commit hook); the rest loads on
first use.
"""

from importlib import import_module
from typing import Any

from promptgov.governance._check import CheckResult, check, lock
from promptgov.governance._problem import Problem

_LAZY = {
    "Approval": "promptgov.governance._approvals",
    "approve": "promptgov.governance._approvals",
    "revoke": "promptgov.governance._approvals",
    "load_approval": "promptgov.governance._approvals",
    "GateCheck": "promptgov.governance._gates",
    "GateReport": "promptgov.governance._regression",
    "gate": "promptgov.governance._regression",
    "Release": "promptgov.governance._releases",
    "load_release": "promptgov.governance._releases",
    "release": "promptgov.governance._releasing",
    "status": "promptgov.governance._status",
    "load_policy": "promptgov.workspace._policy",
}

__all__ = ["CheckResult", "Problem", "check", "lock", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'promptgov.governance' has no attribute {name!r}")

"""Governance: the lock of content hashes and the checks CI runs before a release."""

from promptgov.governance._check import CheckResult, Problem, check, lock

__all__ = ["CheckResult", "Problem", "check", "lock"]

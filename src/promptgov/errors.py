"""Errors raised by promptgov.

One base class; each subclass says when it is raised::

    PromptgovError
    ├── WorkspaceError        a file in the workspace is malformed or references something missing
    ├── GovernanceError       drift, an unlocked version, a failed gate or approval
    │   └── GateFailed        an approval or a release gate refused: ``failed`` lists each gate
    ├── IntegrityError        an exported package no longer matches its manifest
    ├── RunStopped            an evaluation stopped sending after a systematic failure; the
    │                         partial ``result`` is attached, every unsent case ``not_sent``
    ├── TrackingError         the MLflow store cannot be reached (before anything is spent), or
    │                         logging failed after the cases ran (``result`` attached, kept in
    │                         ``.promptgov/pending/`` for ``promptgov log --pending``)
    └── ModelError            a model call failed; ``kind`` names it in the per-case record
        ├── RateLimited       the provider answered 429 (carries ``retry_after`` when known)
        ├── ModelTimeout      no answer within the time limit
        ├── ServerError       the provider answered 5xx
        ├── Refused           the model declined to answer
        ├── BadRequest        the provider rejected the request (4xx other than 429); not retried
        ├── AuthFailed        no key, or the provider refused the key (401/403): systematic
        ├── ModelNotFound     the provider does not know the model or the endpoint: systematic
        ├── InvalidOutput     the answer is not valid JSON / does not fit the schema
        └── ReplayMiss        a replay cassette has no answer for this request

``EvalInterrupted`` (a ``KeyboardInterrupt``, not a ``PromptgovError``) is what ``evaluate()``
raises after Ctrl-C, once it has kept every answer and recorded the rest ``not_sent``.

Messages name the file (and line), the bad value and the fix, on one line, so that the CLI can
print them as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: errors sit below every layer that defines these
    from promptgov.eval._result import EvalResult
    from promptgov.governance._gates import GateCheck


class PromptgovError(Exception):
    """Base class of every error promptgov raises on purpose."""


class WorkspaceError(PromptgovError):
    """A workspace file is malformed or references something that does not exist."""

    def __init__(self, path: Path | str, problem: str, fix: str = "", line: int | None = None):
        self.path, self.problem, self.fix, self.line = str(path), problem, fix, line
        where = _shown(path) + (f":{line}" if line is not None else "")
        super().__init__(f"{where}: {problem}" + (f" (fix: {fix})" if fix else ""))


def _shown(path: Path | str) -> str:
    """``path`` as a person reads it: relative to the current folder when it is inside it."""
    p = Path(path)
    if p.is_absolute():
        try:
            return str(p.relative_to(Path.cwd()))
        except (ValueError, OSError):
            pass
    return str(path)


class GovernanceError(PromptgovError):
    """A governance rule does not hold: drift, a missing lock entry, a failed gate."""


class GateFailed(GovernanceError):
    """``promptgov approve`` / ``gate`` refused: ``failed`` holds every gate that does not hold
    (each with its value and limit); nothing was written."""

    def __init__(self, message: str, failed: list[GateCheck] | None = None):
        super().__init__(message)
        self.failed = list(failed or [])


class IntegrityError(PromptgovError):
    """Content no longer matches the hashes recorded for it."""


class ModelError(PromptgovError):
    """A model call failed. ``kind`` is what the per-case record stores; ``transient`` says
    whether a retry may succeed; ``systematic`` that every other call would fail the same way,
    so a run stops sending (a missing key, an unknown model)."""

    kind = "error"
    transient = False
    systematic = False

    def __init__(self, message: str = "", *, model: str | None = None):
        self.model = model
        super().__init__(message or self.kind)


class RateLimited(ModelError):
    kind, transient = "rate_limit", True

    def __init__(self, message: str = "", *, model: str | None = None,
                 retry_after: float | None = None):
        super().__init__(message, model=model)
        self.retry_after = retry_after


class ModelTimeout(ModelError):
    kind, transient = "timeout", True


class ServerError(ModelError):
    kind, transient = "server_error", True


class Refused(ModelError):
    kind = "refused"


class BadRequest(ModelError):
    kind = "bad_request"


class AuthFailed(ModelError):
    """No credential for the provider, or the provider refused it (HTTP 401/403)."""

    kind, systematic = "auth", True


class ModelNotFound(ModelError):
    """The provider does not serve this model, or ``api_base`` has no such endpoint (404)."""

    kind, systematic = "not_found", True


class InvalidOutput(ModelError):
    """The answer could not be parsed or validated. ``kind`` is ``invalid_json`` or
    ``schema_violation``."""

    def __init__(self, message: str, *, kind: str = "invalid_json", model: str | None = None):
        super().__init__(message, model=model)
        self.kind = kind


class ReplayMiss(ModelError):
    kind = "replay_miss"


class RunStopped(PromptgovError):
    """An evaluation stopped sending after a systematic failure. The message is one line with the
    fix; ``result`` is the partial result (answered cases kept, the rest ``not_sent``)."""

    def __init__(self, message: str, result: EvalResult | None = None):
        super().__init__(message)
        self.result = result


class TrackingError(PromptgovError):
    """MLflow cannot be reached or written. Raised before the first model call when a tracking
    server does not answer; after the cases ran, ``result`` is the complete result and
    ``pending`` the file that keeps it until ``promptgov log --pending`` uploads it."""

    def __init__(self, message: str, result: EvalResult | None = None,
                 pending: Path | None = None):
        super().__init__(message)
        self.result, self.pending = result, pending


class EvalInterrupted(KeyboardInterrupt):
    """Ctrl-C during an evaluation, raised once every received answer is kept (cached) and the
    rest recorded ``not_sent``. ``result`` is the partial result; re-running resumes."""

    def __init__(self, message: str, result: EvalResult | None = None):
        super().__init__(message)
        self.result = result

"""Errors raised by the exported package. One base class; each subclass says when::

    Error
    ├── IntegrityError       an embedded file no longer matches manifest.json (raised on import)
    ├── ConfigurationError   no usable model: a missing extra, an unknown model spec
    ├── RenderError          the input lacks a variable the prompt's template uses
    └── ModelError           the model gave no usable answer; ``kind`` says why, ``transient``
        │                    whether a retry may succeed (rate_limit, timeout, server_error are)
        └── InvalidOutput    the answer is not valid JSON / breaks the schema, after the re-asks
            └── DraftRejected    the draft states something the facts do not hold
"""

from __future__ import annotations


class Error(Exception):
    """Base class of every error this package raises on purpose."""


class IntegrityError(Error):
    """Embedded content differs from the hashes recorded in ``manifest.json`` at export."""


class ConfigurationError(Error):
    """The configured model cannot be used (an extra is not installed, a spec is unknown)."""


class RenderError(Error, ValueError):
    """The input does not supply a variable the prompt's user template uses."""


class ModelError(Error):
    """The model call failed. Raise it from your own model callable (``transient=True`` for a
    failure worth retrying) to use the package's retry policy."""

    def __init__(self, message: str = "", *, kind: str = "error", transient: bool = False,
                 retry_after: float | None = None):
        super().__init__(message or kind)
        self.kind, self.transient, self.retry_after = kind, transient, retry_after


class InvalidOutput(ModelError):
    """The answer could not be parsed or validated; ``kind`` is ``invalid_json`` or
    ``schema_violation``."""

    def __init__(self, message: str, *, kind: str = "invalid_json"):
        super().__init__(message, kind=kind)


class DraftRejected(InvalidOutput):
    """The draft states a number, amount, date or state that is not in the facts; ``unsupported``
    lists them."""

    def __init__(self, message: str, unsupported: list[str]):
        super().__init__(message, kind="unsupported_facts")
        self.unsupported = list(unsupported)


# Tracebacks name the package's own classes (``support_bot.IntegrityError``), as they are
# imported from there.
for _cls in (Error, IntegrityError, ConfigurationError, RenderError, ModelError, InvalidOutput,
             DraftRejected):
    _cls.__module__ = __name__.rpartition(".")[0]

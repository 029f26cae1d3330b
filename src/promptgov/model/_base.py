"""The one interface every model sits behind (principle 3).

Messages plus an optional JSON Schema response format in (a :class:`Request`); text, token
usage, latency and cost out (a :class:`Completion`). The records live in
:mod:`promptgov._portable._calls`, so that the offline baseline vendored into an exported
package takes and returns the very same ones. Failures are raised as the typed
:mod:`promptgov.errors` ``ModelError`` subclasses, so the eval engine can decide what to retry
and what to record. Calls are synchronous: the engine runs
them on a bounded thread pool, which also works unchanged inside a Jupyter kernel's event loop.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from promptgov._portable._calls import Completion, Request, Usage

__all__ = ["Completion", "Model", "Request", "Usage"]


@runtime_checkable
class Model(Protocol):
    """A model promptgov can call. ``id`` is what MLflow records and what the cache keys on."""

    id: str

    def complete(self, request: Request) -> Completion:
        """Answer ``request`` or raise a ``promptgov.errors.ModelError`` subclass."""
        ...

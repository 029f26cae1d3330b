"""Tokens and cost of the model calls made while a job runs, for its trace.

The model adapters report each answered call with :func:`note`; a job attempt opens a
:func:`collect` scope and reads the calls back. Outside such a scope :func:`note` does nothing,
so plain ``extract``/``triage``/``draft`` calls pay for a context-variable lookup, no more.
Your own model callable may report its usage too: ``<package>.jobs.note_usage(...)``.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Iterator


class Call(NamedTuple):
    """One answered model call."""

    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None


_sink: contextvars.ContextVar[list[Call] | None] = contextvars.ContextVar("usage", default=None)


def note(model: str, prompt_tokens: int | None = None, completion_tokens: int | None = None,
         cost_usd: float | None = None) -> None:
    """Record one answered call in the current job attempt (if any)."""
    calls = _sink.get()
    if calls is not None:
        calls.append(Call(model, prompt_tokens, completion_tokens, cost_usd))


def active() -> bool:
    """Whether a job attempt is collecting (else computing a call's cost is wasted work)."""
    return _sink.get() is not None


@contextmanager
def collect() -> Iterator[list[Call]]:
    """The calls noted inside the ``with`` block (this thread or task only)."""
    calls: list[Call] = []
    token = _sink.set(calls)
    try:
        yield calls
    finally:
        _sink.reset(token)

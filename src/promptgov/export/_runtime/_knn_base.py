"""What the vendored ``local/knn`` modules import from promptgov, for an exported package.

Copied to ``<package>/_knn/_base.py`` (never imported in the workbench): the request, usage and
completion records and the two errors the offline baseline raises, as promptgov defines them,
with the errors based on the package's own :class:`ModelError` so its engine handles them.
Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the checker reads this file here, as _runtime/_knn_base.py, where the
    # package's _errors.py is its sibling
    from ._errors import ModelError as _PackageModelError
else:  # in a package it is <package>/_knn/_base.py, one level down from _errors.py
    from .._errors import ModelError as _PackageModelError


class ModelError(_PackageModelError):
    """The offline model failed (its embedding model is missing from the wordllama wheel)."""

    def __init__(self, message: str = "", *, model: str | None = None):
        super().__init__(message, kind="error")
        self.model = model


class BadRequest(ModelError):
    """A request the offline model cannot answer (no user message, a schema that is no object)."""

    def __init__(self, message: str = "", *, model: str | None = None):
        super().__init__(message, model=model)
        self.kind = "bad_request"


@dataclass(frozen=True)
class Request:
    messages: tuple[dict[str, str], ...]
    response_schema: dict[str, Any] | None = None
    schema_name: str | None = None
    temperature: float = 0.0
    max_tokens: int = 512
    timeout_s: float = 60.0
    prefix_len: int = 0
    label: str | None = None


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    cost_usd: float = 0.0

"""The errors the vendored ``local/knn`` modules import from ``promptgov.errors``, for an
exported package.

Copied to ``<package>/_knn/_base.py`` (never imported in the workbench): the two errors the
offline baseline raises, as promptgov names them, based on the package's own
:class:`ModelError` so that its engine handles them. (The records of a call, ``Request`` and
``Completion``, are the package's ``_calls.py``: promptgov's own, copied verbatim.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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

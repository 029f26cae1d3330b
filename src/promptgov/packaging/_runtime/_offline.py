"""``local/knn`` in an exported package: the offline baseline without promptgov.

The exporter vendors the baseline's modules into ``_knn/`` (see
:mod:`promptgov.packaging._vendor`); they need ``wordllama`` (the embedding model ships inside its
wheel, nothing is downloaded) and ``numpy``: the package's ``[offline]`` extra. They load on
the first call, never at import.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ._errors import ConfigurationError, ModelError
from ._usage import note

if TYPE_CHECKING:
    from ._calls import Completion
    from ._models import CallOptions, Messages


class Offline:
    """The vendored ``local/knn``, called like any other model of the package."""

    def __init__(self, spec: str):
        if spec != "local/knn":
            raise ConfigurationError(f"unknown offline model {spec!r}; the offline baseline is "
                                     "local/knn")
        try:
            import numpy  # noqa: F401
            import wordllama  # noqa: F401
        except ImportError as e:
            raise ConfigurationError(f"model 'local/knn' is the offline baseline and needs "
                                     f"wordllama and numpy ({e.name} is not installed) (fix: "
                                     "install this package with its [offline] extra)") from None
        # Without tiktoken (not in the extra) token counts in job traces are estimates: that is
        # expected here, not worth the baseline's warning in a service's log.
        logging.getLogger("promptgov.model._knn").setLevel(logging.ERROR)
        # _knn/ exists only in an exported package (_vendor.py writes it), never here; it takes
        # the package's _calls.Request, which is promptgov's own
        from ._calls import Request
        from ._knn._knn import KnnModel  # type: ignore[import-not-found]

        self.model: Any = KnnModel()
        self._request = Request

    def __call__(self, messages: Messages, o: CallOptions) -> str:
        req = o.request(self._request, messages)
        try:
            c: Completion = self.model.complete(req)
        except ModelError:
            raise
        note(c.model, c.usage.prompt_tokens, c.usage.completion_tokens, c.cost_usd)  # job traces
        return c.text

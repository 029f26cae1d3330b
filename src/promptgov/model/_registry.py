"""Model ids → models. ``local/knn`` is the offline baseline, ``replay:<cassette>`` answers
from a recording, ``fake/...`` is the scripted fake; anything else is a LiteLLM id for a real
provider, called through DSPy."""

from __future__ import annotations

from typing import Any

from promptgov.model._base import Model


def get_model(spec: str | Model, *, prices: dict | None = None, **options: Any) -> Model:
    """Resolve ``spec`` to a model; a :class:`Model` instance is returned as it is.

    Example:
        >>> get_model("local/knn").id
        'local/knn'
    """
    if not isinstance(spec, str):
        return spec
    if spec.startswith("local/"):
        if spec != "local/knn":
            raise ValueError(f"unknown offline model {spec!r}; the offline baseline is local/knn")
        from promptgov.model._knn import KnnModel

        return KnnModel()
    if spec.startswith("replay:"):
        from promptgov.model._replay import ReplayModel

        return ReplayModel(spec.removeprefix("replay:"), **options)
    if spec.startswith("fake/"):
        from promptgov.model._fake import FakeModel

        return FakeModel(id=spec, **options)
    from promptgov.model._dspy import DSPyModel

    return DSPyModel(spec, prices=prices, **options)

"""Model ids → models. ``local/knn`` is the offline baseline, ``replay:<cassette>`` answers
from a recording, ``fake/...`` is the scripted fake; anything else is a LiteLLM id for a real
provider, called through DSPy."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptgov.model._base import Model

if TYPE_CHECKING:  # annotations only
    from promptgov.model._cost import PriceTable


def get_model(spec: str | Model, *, prices: PriceTable | None = None, **options: Any) -> Model:
    """Resolve ``spec`` to a model; a :class:`Model` instance is returned as it is.

    Example:
        >>> get_model("local/knn").id
        'local/knn'
    """
    if not isinstance(spec, str):
        return spec
    if "api_base" in options and spec.startswith(("local/", "replay:", "fake/")):
        raise ValueError(f"api_base applies to provider models (openai/..., ollama_chat/...), "
                         f"not to {spec!r}")
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
    provider, _, name = spec.partition("/")
    known = _litellm_providers()
    if not name or (known and provider not in known):
        raise ValueError(f"unknown model {spec!r}: write PROVIDER/MODEL (local/knn, "
                         "openai/gpt-4o-mini, ollama_chat/llama3.2), replay:<cassette> or "
                         "fake/<name>")
    from promptgov.model._dspy import DSPyModel

    # The eval engine retries transient failures itself (policy limits, jitter, and every retry
    # counted in the per-case record), so DSPy's own retry loop is off unless asked for.
    options.setdefault("num_retries", 0)
    return DSPyModel(spec, prices=prices, **options)


@lru_cache(maxsize=1)
def _litellm_providers() -> frozenset[str]:
    """LiteLLM's provider names, read from the data file in its wheel: importing LiteLLM to
    validate an argument would take seconds. Empty (no check) if the file is not there."""
    spec = find_spec("litellm")
    for d in (spec.submodule_search_locations or []) if spec else []:
        f = Path(d) / "provider_endpoints_support_backup.json"
        if f.exists():
            return frozenset(json.loads(f.read_text(encoding="utf-8")).get("providers", {}))
    return frozenset()

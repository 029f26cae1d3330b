"""What a model call cost, in US dollars, from its token usage.

Prices come from, in order:

1. local models (``local/...``, ``replay:...``, ``fake...``): always free;
2. the caller's ``prices`` table: ``{model_id: {"input_per_1m": 0.15, "output_per_1m": 0.60}}``
   (US dollars per million tokens);
3. LiteLLM's price map, read straight from the JSON file shipped inside the installed ``litellm``
   package (``model_prices_and_context_window_backup.json``). LiteLLM itself is *not* imported
   here: importing it takes seconds and may try to fetch a newer map over the network.

A model found nowhere costs 0.0; :func:`is_priced` tells the caller so it can warn rather than
report a free run.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from promptgov.model._base import Usage

__all__ = ["PriceTable", "is_priced", "price_usd"]

PriceTable = Mapping[str, Mapping[str, float]]
"""The caller's prices: ``{model_id: {"input_per_1m": ..., "output_per_1m": ...}}``."""

PRICE_MAP_FILE = "model_prices_and_context_window_backup.json"
_LOCAL_PREFIXES = ("local/", "replay:", "fake")


def _is_local(model_id: str) -> bool:
    return model_id.startswith(_LOCAL_PREFIXES)


def _candidates(model_id: str) -> list[str]:
    """The id as given, then without its provider prefix.

    ``openai/gpt-4o-mini`` → ``["openai/gpt-4o-mini", "gpt-4o-mini"]``.
    """
    names = [model_id]
    if "/" in model_id:
        names.append(model_id.split("/", 1)[1])
    return names


_price_map_lock = threading.Lock()


def _litellm_price_map() -> dict[str, Any]:
    """LiteLLM's bundled price map (3.5 MB of JSON, ~60 ms to parse), parsed once per process.
    The lock matters: lru_cache alone let the 16 workers whose first answers land together each
    parse it, 0.9 s of GIL time in bench_providers' 1,000-case run."""
    with _price_map_lock:
        return _read_price_map()


@functools.lru_cache(maxsize=1)
def _read_price_map() -> dict[str, Any]:
    """The map as read from litellm's package folder; empty when litellm is not installed."""
    try:
        spec = importlib.util.find_spec("litellm")  # locates the package without importing it
    except (ImportError, ValueError):
        return {}
    if spec is None:
        return {}
    folders = list(spec.submodule_search_locations or [])
    if not folders and spec.origin:
        folders = [str(Path(spec.origin).parent)]
    for folder in folders:
        path = Path(folder) / PRICE_MAP_FILE
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return {}
            return data if isinstance(data, dict) else {}
    return {}


def _override_rates(model_id: str, prices: PriceTable | None) -> tuple[float, float] | None:
    """(input, output) US dollars per token from the caller's table, per-million in the table."""
    if not prices:
        return None
    for name in _candidates(model_id):
        entry = prices.get(name)
        if entry is not None:
            return (float(entry.get("input_per_1m", 0.0)) / 1_000_000,
                    float(entry.get("output_per_1m", 0.0)) / 1_000_000)
    return None


def _litellm_rates(model_id: str) -> tuple[float, float] | None:
    table = _litellm_price_map()
    for name in _candidates(model_id):
        entry = table.get(name)
        if not isinstance(entry, dict):
            continue
        if "input_cost_per_token" in entry or "output_cost_per_token" in entry:
            return (float(entry.get("input_cost_per_token") or 0.0),
                    float(entry.get("output_cost_per_token") or 0.0))
    return None


def _rates(model_id: str, prices: PriceTable | None) -> tuple[float, float] | None:
    if _is_local(model_id):
        return (0.0, 0.0)
    return _override_rates(model_id, prices) or _litellm_rates(model_id)


def price_usd(model_id: str, usage: Usage, prices: PriceTable | None = None) -> float:
    """US dollars for ``usage`` on ``model_id``; 0.0 for local and for unpriced models."""
    rates = _rates(model_id, prices)
    if rates is None:
        return 0.0
    per_input, per_output = rates
    return usage.prompt_tokens * per_input + usage.completion_tokens * per_output


def is_priced(model_id: str, prices: PriceTable | None = None) -> bool:
    """Whether :func:`price_usd` knows a price for ``model_id``.

    Local models count as priced (they are free); False means "unknown, reported as 0.0".
    """
    return _rates(model_id, prices) is not None

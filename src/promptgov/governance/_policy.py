"""``governance/policy.toml``: routing bands, retry limits and prices, as typed objects."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from promptgov.errors import WorkspaceError

Action = Literal["auto_process", "queue_for_human", "legacy_fallback"]


@dataclass(frozen=True)
class Routing:
    auto: float = 0.85
    review: float = 0.60

    def route(self, confidence: float | None) -> Action:
        """The action for a triage answer; monotone in confidence."""
        if confidence is not None and confidence >= self.auto:
            return "auto_process"
        if confidence is not None and confidence >= self.review:
            return "queue_for_human"
        return "legacy_fallback"


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 4
    max_reasks: int = 1
    backoff_base_s: float = 0.5
    backoff_max_s: float = 20.0
    timeout_s: float = 60.0


@dataclass(frozen=True)
class Policy:
    routing: Routing = field(default_factory=Routing)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    prices: dict[str, dict[str, float]] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


def load_policy(root: Path) -> Policy:
    path = root / "governance" / "policy.toml"
    if not path.exists():
        return Policy()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise WorkspaceError(path, f"invalid TOML: {e}", "fix the TOML syntax") from None
    try:
        routing = Routing(**raw.get("routing", {}))
        retry = RetryPolicy(**raw.get("retry", {}))
    except TypeError as e:
        raise WorkspaceError(path, f"unknown setting: {e}",
                             "see governance/policy.toml in the example workspace") from None
    if not 0 <= routing.review <= routing.auto <= 1:
        raise WorkspaceError(path, f"routing bands must satisfy 0 <= review ({routing.review}) "
                             f"<= auto ({routing.auto}) <= 1", "correct [routing]")
    return Policy(routing, retry, raw.get("prices", {}), raw)

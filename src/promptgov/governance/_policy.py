"""``governance/policy.toml``: routing bands, retry limits, prices and approval gates, as typed
objects. Stdlib only (``tomllib``): the fast ``promptgov check`` may read it.

Gates come in three tables, merged most-specific-wins, key by key::

    [gates.default]                  every prompt
    [gates.kind.<kind>]              prompts of one task kind (classification, extraction, draft)
    [gates.prompt.<name>]            one prompt
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from promptgov.errors import WorkspaceError

Action = Literal["auto_process", "queue_for_human", "legacy_fallback"]
POLICY_FILE = "governance/policy.toml"
KINDS = ("classification", "extraction", "draft")


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
class Gates:
    """What an approval needs. ``None`` means "no such gate"; each limit is inclusive."""

    min_accuracy: float | None = None
    max_failure_rate: float | None = None
    max_cost_per_1k_usd: float | None = None
    max_latency_p95_s: float | None = None
    max_adversarial_drop: float | None = None
    """Clean accuracy minus noisy accuracy, from the prompt version's adversarial run."""
    min_auto_precision: float | None = None
    """Classification: accuracy of the answers routed to ``auto_process``."""
    min_macro_f1: float | None = None
    max_ece: float | None = None
    min_cases: int | None = None
    """The run must cover at least this many cases (no approval on a toy evalset)."""
    required_evalsets: tuple[str, ...] | None = None
    """Evalsets (``name`` or ``name@version``) this exact version must have a run on."""

    def merged(self, over: Gates) -> Gates:
        """``self`` overridden by every gate ``over`` sets."""
        return replace(self, **{f.name: getattr(over, f.name) for f in fields(over)
                                if getattr(over, f.name) is not None})

    def limits(self) -> dict[str, Any]:
        """The gates that are set, in declaration order."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class GatePolicy:
    default: Gates = field(default_factory=Gates)
    kinds: dict[str, Gates] = field(default_factory=dict)
    prompts: dict[str, Gates] = field(default_factory=dict)

    def for_prompt(self, name: str, kind: str) -> Gates:
        """The gates of prompt ``name`` (of task ``kind``): prompt > kind > default."""
        g = self.default.merged(self.kinds.get(kind, Gates()))
        return g.merged(self.prompts.get(name, Gates()))


@dataclass(frozen=True)
class Policy:
    routing: Routing = field(default_factory=Routing)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    prices: dict[str, dict[str, float]] = field(default_factory=dict)
    gates: GatePolicy = field(default_factory=GatePolicy)
    raw: dict[str, Any] = field(default_factory=dict)


_FIX = "see governance/policy.toml in the example workspace for every setting"


def load_policy(root: Path) -> Policy:
    path = root / POLICY_FILE
    if not path.exists():
        return Policy()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise WorkspaceError(path, f"invalid TOML: {e}", "fix the TOML syntax") from None
    _known(path, "", raw, ("routing", "retry", "prices", "gates"))
    routing = _typed(path, "routing", Routing, raw.get("routing", {}))
    retry = _typed(path, "retry", RetryPolicy, raw.get("retry", {}))
    if not 0 <= routing.review <= routing.auto <= 1:
        raise WorkspaceError(path, f"routing bands must satisfy 0 <= review ({routing.review}) "
                             f"<= auto ({routing.auto}) <= 1", "correct [routing]")
    return Policy(routing, retry, raw.get("prices", {}), _gates(root, path, raw.get("gates", {})),
                  raw)


def _gates(root: Path, path: Path, raw: Any) -> GatePolicy:
    _table(path, "gates", raw)
    _known(path, "gates.", raw, ("default", "kind", "prompt"))
    kinds, prompts = raw.get("kind", {}), raw.get("prompt", {})
    _table(path, "gates.kind", kinds)
    _table(path, "gates.prompt", prompts)
    for k in kinds:
        if k not in KINDS:
            raise WorkspaceError(path, f"unknown task kind [gates.kind.{k}]",
                                 f"kinds are: {', '.join(KINDS)}")
    for name in prompts:
        if not (root / "prompts" / name).is_dir():
            raise WorkspaceError(path, f"[gates.prompt.{name}] names no prompt in prompts/",
                                 "correct the prompt name or remove the table")
    return GatePolicy(_gate(path, "gates.default", raw.get("default", {})),
                      {k: _gate(path, f"gates.kind.{k}", v) for k, v in kinds.items()},
                      {k: _gate(path, f"gates.prompt.{k}", v) for k, v in prompts.items()})


def _gate(path: Path, where: str, raw: Any) -> Gates:
    _table(path, where, raw)
    _known(path, f"{where}.", raw, [f.name for f in fields(Gates)])
    out: dict[str, Any] = {}
    for k, v in raw.items():
        if k == "required_evalsets":
            if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
                raise WorkspaceError(path, f"[{where}] required_evalsets = {v!r} is not a list "
                                     "of evalset names", 'write e.g. ["ticket_triage"]')
            out[k] = tuple(v)
        elif isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
                or v < 0 or (k == "min_cases" and not isinstance(v, int)):
            want = "a whole number" if k == "min_cases" else "a non-negative number"
            raise WorkspaceError(path, f"[{where}] {k} = {v!r} is not {want}",
                                 f"write e.g. {k} = {1 if k == 'min_cases' else 0.5}")
        else:
            out[k] = v
    return Gates(**out)


def _typed(path: Path, where: str, cls: type, raw: Any):
    _table(path, where, raw)
    _known(path, f"{where}.", raw, [f.name for f in fields(cls)])
    return cls(**raw)


def _table(path: Path, where: str, raw: Any) -> None:
    if not isinstance(raw, dict):
        raise WorkspaceError(path, f"{where} must be a table, got {raw!r}", f"write [{where}]")


def _known(path: Path, prefix: str, raw: dict, allowed) -> None:
    for k in raw:
        if k not in allowed:
            raise WorkspaceError(path, f"unknown setting {prefix}{k}",
                                 f"known in {prefix.rstrip('.') or 'the top level'}: "
                                 f"{', '.join(allowed)}; {_FIX}")

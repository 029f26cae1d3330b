"""``governance/policy.toml``: routing bands, retry limits, prices and approval gates, as typed
objects. Stdlib only (``tomllib``): the fast ``promptgov check`` may read it.

Gates come in three tables, merged most-specific-wins, key by key::

    [gates.default]                  every prompt
    [gates.kind.<kind>]              prompts of one task kind (classification, extraction, draft)
    [gates.prompt.<name>]            one prompt

The policy is governed content like a prompt: ``promptgov lock`` records its hash and its
content, ``check`` fails while it differs from the lock and lists every gate it weakens per
prompt (:func:`weakened`), and every approval records the hash it was judged under. Every value
is type-checked on load; an error names the file, the line and the fix.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from promptgov.errors import GovernanceError, WorkspaceError

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
    min_field_f1: float | None = None
    """Extraction: F1 over the values the inputs mention, pooled over the scalar fields."""
    min_intent_f1: float | None = None
    """Extraction: micro-F1 of the label-set fields (intents)."""
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

    @property
    def hash(self) -> str:
        """Content hash of the policy (comments and layout do not count)."""
        from promptgov.hashing import content_hash

        return content_hash(self.raw)


_FIX = "see governance/policy.toml in the example workspace for every setting"


class _File:
    """The policy file, for errors that name the line of a ``[table] key``."""

    def __init__(self, path: Path, text: str):
        self.path, self.lines = path, text.splitlines()

    def line(self, table: str, key: str | None = None) -> int | None:
        current = ""
        for n, line in enumerate(self.lines, 1):
            t = line.strip()
            if t.startswith("[") and not t.startswith("[["):
                current = t.strip("[]").replace('"', "").replace(" ", "")
                if key is None and current == table:
                    return n
            elif key is not None and current == table and t.split("=", 1)[0].strip() \
                    .strip('"') == key:
                return n
        return None

    def error(self, table: str, key: str | None, problem: str, fix: str) -> WorkspaceError:
        return WorkspaceError(self.path, problem, fix, line=self.line(table, key))


def load_policy(root: Path) -> Policy:
    path = root / POLICY_FILE
    if not path.exists():
        return Policy()
    try:
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text)
    except UnicodeDecodeError:
        raise WorkspaceError(path, "not UTF-8 text", "save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise WorkspaceError(path, f"invalid TOML: {e}", "fix the TOML syntax") from None
    pf = _File(path, text)
    _known(pf, "", raw, ("routing", "retry", "prices", "gates"))
    routing = _typed(pf, "routing", Routing, raw.get("routing", {}))
    retry = _typed(pf, "retry", RetryPolicy, raw.get("retry", {}))
    if not 0 <= routing.review <= routing.auto <= 1:
        raise pf.error("routing", None, f"routing bands must satisfy 0 <= review "
                       f"({routing.review}) <= auto ({routing.auto}) <= 1", "correct [routing]")
    return Policy(routing, retry, _prices(pf, raw.get("prices", {})),
                  _gates(root, pf, raw.get("gates", {})), raw)


def locked_policy(root: Path, lock: dict[str, Any]) -> Policy:
    """The policy, refused unless it is the one in the lock: a gate lowered in the working tree
    must go through `promptgov lock` (and its review) before it can approve anything."""
    policy = load_policy(root)
    locked = lock.get("policy")
    if (locked is None and (root / POLICY_FILE).exists()) or (
            locked is not None and locked["hash"] != policy.hash):
        raise GovernanceError(f"refused: {POLICY_FILE} differs from the locked policy; nothing "
                              "was written (fix: run `promptgov check` to see what changed, then "
                              "revert it or `promptgov lock` it)")
    return policy


def _prices(pf: _File, raw: Any) -> dict[str, dict[str, float]]:
    _table(pf, "prices", raw)
    for model, p in raw.items():
        where = f'prices."{model}"'
        if not isinstance(p, dict) or set(p) != {"input_per_1m", "output_per_1m"} or not all(
                _number(v) and v >= 0 for v in p.values()):
            raise WorkspaceError(pf.path, f"[prices] {model!r} = {p!r} is not "
                                 "{ input_per_1m = <USD>, output_per_1m = <USD> }",
                                 f'write "{model}" = {{ input_per_1m = 0.15, output_per_1m = '
                                 "0.6 }", line=pf.line("prices", model) or pf.line(where))
    prices: dict[str, dict[str, float]] = raw  # every entry checked just above
    return prices


def _number(v: object) -> bool:
    return not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)


def _gates(root: Path, pf: _File, raw: Any) -> GatePolicy:
    _table(pf, "gates", raw)
    _known(pf, "gates.", raw, ("default", "kind", "prompt"))
    kinds, prompts = raw.get("kind", {}), raw.get("prompt", {})
    _table(pf, "gates.kind", kinds)
    _table(pf, "gates.prompt", prompts)
    for k in kinds:
        if k not in KINDS:
            raise pf.error(f"gates.kind.{k}", None, f"unknown task kind [gates.kind.{k}]",
                           f"kinds are: {', '.join(KINDS)}")
    for name in prompts:
        if not (root / "prompts" / name).is_dir():
            raise pf.error(f"gates.prompt.{name}", None, f"[gates.prompt.{name}] names no "
                           "prompt in prompts/", "correct the prompt name or remove the table")
    return GatePolicy(_gate(pf, "gates.default", raw.get("default", {})),
                      {k: _gate(pf, f"gates.kind.{k}", v) for k, v in kinds.items()},
                      {k: _gate(pf, f"gates.prompt.{k}", v) for k, v in prompts.items()})


def _gate(pf: _File, where: str, raw: Any) -> Gates:
    _table(pf, where, raw)
    _known(pf, f"{where}.", raw, [f.name for f in fields(Gates)])
    out: dict[str, Any] = {}
    for k, v in raw.items():
        if k == "required_evalsets":
            if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
                raise pf.error(where, k, f"[{where}] required_evalsets = {v!r} is not a list "
                               "of evalset names", 'write e.g. ["ticket_triage"]')
            out[k] = tuple(v)
        elif not _number(v) or v < 0 or (k == "min_cases" and not isinstance(v, int)):
            want = "a whole number" if k == "min_cases" else "a non-negative number"
            raise pf.error(where, k, f"[{where}] {k} = {v!r} is not {want}",
                           f"write e.g. {k} = {1 if k == 'min_cases' else 0.5}")
        else:
            out[k] = v
    return Gates(**out)


_Settings = TypeVar("_Settings", Routing, RetryPolicy)


def _typed(pf: _File, where: str, cls: type[_Settings], raw: Any) -> _Settings:
    """``cls`` from table ``[where]``, each value checked against the field's default's type:
    a whole number where the default is an int, a finite number >= 0 where it is a float."""
    _table(pf, where, raw)
    _known(pf, f"{where}.", raw, [f.name for f in fields(cls)])
    for f in fields(cls):
        if f.name not in raw:
            continue
        v, whole, low = raw[f.name], isinstance(f.default, int), f.name == "timeout_s"
        ok = _number(v) and (v > 0 if low else v >= 0) and (isinstance(v, int) or not whole)
        if not ok:
            want = "a whole number >= 0" if whole else "a number > 0" if low else "a number >= 0"
            raise pf.error(where, f.name, f"[{where}] {f.name} = {v!r} is not {want}",
                           f"write e.g. {f.name} = {f.default!r} (no quotes)")
    return cls(**raw)


def _table(pf: _File, where: str, raw: object) -> None:
    if not isinstance(raw, dict):
        raise pf.error(where, None, f"{where} must be a table, got {raw!r}", f"write [{where}]")


def _known(pf: _File, prefix: str, raw: dict[str, Any], allowed: Sequence[str]) -> None:
    table = prefix.rstrip(".")
    for k in raw:
        if k not in allowed:
            raise pf.error(table, k, f"unknown setting {prefix}{k}",
                           f"known in {table or 'the top level'}: {', '.join(allowed)}; {_FIX}")


# -- what a policy change weakens -----------------------------------------------------------

def weakened(old: GatePolicy, new: GatePolicy, prompts: dict[str, str]) -> list[str]:
    """Each gate that ``new`` lowers, raises or removes relative to ``old``, per prompt
    (``prompts``: name → kind), e.g. ``ticket_extraction: min_accuracy 0.85 → 0.05``."""
    out = []
    for name, kind in sorted(prompts.items()):
        a, b = old.for_prompt(name, kind), new.for_prompt(name, kind)
        for f in fields(Gates):
            was, now = getattr(a, f.name), getattr(b, f.name)
            if was is None or was == now:
                continue
            if now is None:
                out.append(f"{name}: {f.name} {_show(was)} removed")
            elif f.name == "required_evalsets":
                if set(was) - set(now):
                    out.append(f"{name}: required_evalsets drops "
                               f"{', '.join(sorted(set(was) - set(now)))}")
            elif (now < was) if f.name.startswith("min_") else (now > was):
                out.append(f"{name}: {f.name} {_show(was)} → {_show(now)}")
    return out


def _show(v: Any) -> str:
    return ", ".join(v) if isinstance(v, tuple) else f"{v:g}" if isinstance(v, float) else str(v)


def policy_from_raw(root: Path, raw: dict[str, Any]) -> GatePolicy:
    """The gates of a policy as recorded in the lock (its content, already validated once)."""
    return _gates(root, _File(root / POLICY_FILE, ""), raw.get("gates", {}))

"""Gates: a policy's limits checked against a run's metrics (``promptgov approve``), and the
regression gate ``promptgov gate RELEASE`` that re-runs each released version and checks them
again under the current policy.

A gate is data, never an exception: :func:`check_gates` returns one :class:`GateCheck` per gate,
passed or not, so a refusal can list every failing gate with its value and limit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from promptgov.workspace._policy import Gates

GATE_METRICS: dict[str, str] = {
    "min_accuracy": "accuracy", "max_failure_rate": "failure_rate",
    "max_cost_per_1k_usd": "cost_per_1k_usd", "max_latency_p95_s": "latency_p95_s",
    "max_adversarial_drop": "adversarial_drop", "min_auto_precision": "auto_precision",
    "min_macro_f1": "macro_f1", "max_ece": "ece", "min_cases": "cases",
    "min_field_f1": "field_f1", "min_intent_f1": "intent_micro_f1"}
"""Each numeric gate and the run metric it limits (``min_*``: value >= limit; ``max_*``: <=)."""


@dataclass(frozen=True)
class GateCheck:
    """One gate against one piece of evidence."""

    gate: str
    metric: str
    value: float | str | None
    """The measured value; for ``required_evalsets`` the id of the run on that evalset."""
    limit: float | str
    passed: bool

    def __str__(self) -> str:
        if self.gate == "required_evalsets":
            return (f"required_evalsets: {self.limit} was run (run {self.value})" if self.passed
                    else f"required_evalsets: no finished run of this exact version on "
                    f"{self.limit} (fix: promptgov eval PROMPT@VERSION --evalset {self.limit})")
        if self.value is None:
            fix = (" (fix: promptgov adversarial PROMPT@VERSION --model MODEL, the run's model)"
                   if self.metric == "adversarial_drop" else "")
            return f"{self.gate}: {self.metric} was not measured (limit {self.limit:g}){fix}"
        low = self.gate.startswith("min_")
        op = (">=" if low else "<=") if self.passed else ("<" if low else ">")
        return f"{self.gate}: {self.metric} {float(self.value):.4g} {op} {self.limit:g}"


def check_gates(gates: Gates, metrics: Mapping[str, float],
                evalset_runs: Mapping[str, str | None] | None = None) -> list[GateCheck]:
    """Every gate set in ``gates`` checked against ``metrics`` (a missing or NaN metric fails:
    what was not measured is not approved) and ``evalset_runs`` (required evalset → run id)."""
    out: list[GateCheck] = []
    for gate, limit in gates.limits().items():
        if gate == "required_evalsets":
            for es in limit:
                run = (evalset_runs or {}).get(es)
                out.append(GateCheck(gate, "evalset", run, es, run is not None))
            continue
        metric = GATE_METRICS[gate]
        v = metrics.get(metric)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(GateCheck(gate, metric, None, limit, False))
            continue
        ok = v >= limit if gate.startswith("min_") else v <= limit
        out.append(GateCheck(gate, metric, float(v), limit, bool(ok)))
    return out

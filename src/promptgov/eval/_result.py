"""The result of one evaluation: per-case records, metrics, provenance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from promptgov.eval._record import CaseRecord


@dataclass
class EvalResult:
    """What ``evaluate()`` returns.

    Attributes:
        prompt: ``name@version`` evaluated.
        evalset: ``name@version`` it was scored on.
        model: the model id.
        metrics: run-level metrics (accuracy, failure_rate, cost_usd, latency_p95_s, ...).
        records: one dict per case (and sample): input, expected, output, correct, failure...
        params: provenance logged to MLflow (hashes, versions, git commit).
        run_id: the MLflow run, when tracked.
    """

    prompt: str
    evalset: str
    model: str
    kind: str
    metrics: dict[str, float]
    records: list[CaseRecord]
    params: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    calls: int = 0
    """Model calls actually made (0 when every answer came from the cache)."""
    wall_s: float = 0.0

    @property
    def cases(self) -> pd.DataFrame:
        """Per-case records as a DataFrame, one row per case."""
        import pandas as pd

        return pd.DataFrame(self.records).set_index("case_id")

    def worst(self, n: int = 10) -> pd.DataFrame:
        """Failures first, then wrong answers given with the highest confidence."""
        df = self.cases
        conf = df["confidence"].astype(float).fillna(1.0) if "confidence" in df else 1.0
        df = df.assign(_failed=df["failure"].notna(), _conf=conf)
        df = df[~df["correct"].astype(bool)]
        cols = [c for c in ("input", "expected", "output", "failure", "error", "confidence")
                if c in df]
        return df.sort_values(["_failed", "_conf"], ascending=False)[cols].head(n)

    def __repr__(self) -> str:
        keys = ("accuracy", "failure_rate", "cost_usd", "latency_p95_s")
        ms = ", ".join(f"{k}={self.metrics[k]:.4g}" for k in keys if k in self.metrics)
        return (f"EvalResult({self.prompt} on {self.evalset} with {self.model}: {ms}; "
                f"{len(self.records)} cases, {self.calls} calls, run {self.run_id})")

    def _repr_html_(self) -> str:  # Jupyter
        rows = "".join(f"<tr><td>{k}</td><td>{v:.4g}</td></tr>" for k, v in self.metrics.items())
        return (f"<b>{self.prompt}</b> on {self.evalset} with <code>{self.model}</code> "
                f"({self.calls} model calls, run <code>{self.run_id}</code>)"
                f"<table>{rows}</table>")

"""What a robustness run returns: clean vs noisy, per metric and per transformation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from promptgov.eval import EvalResult
    from promptgov.eval._record import CaseRecord
    from promptgov.workspace._evalset import Evalset

# Bookkeeping, not properties of the answers: not compared.
_NOT_COMPARED = {"cases", "wall_s", "model_calls", "paid_usd"}


def paired_rows(clean: EvalResult, noisy: EvalResult) -> list[dict[str, Any]]:
    """One row per noisy variant, next to the clean answer of its source case."""
    by_id = {r["case_id"]: r for r in clean.records}
    rows = []
    for r in noisy.records:
        src = by_id[r["meta"]["source"]]
        rows.append({"case_id": r["case_id"], "source": src["case_id"],
                     "transforms": list(r["meta"]["transforms"]), "input": r["input"],
                     "expected": r["expected"], "clean_answer": _answer(src),
                     "noisy_answer": _answer(r), "clean_correct": bool(src["correct"]),
                     "noisy_correct": bool(r["correct"]), "failure": r["failure"]})
    return rows


def _answer(rec: CaseRecord) -> Any:
    return rec.get("predicted", rec["output"]) if rec["output"] is not None else None


def transform_rows(rows: list[dict[str, Any]], kinds: list[str]) -> list[dict[str, Any]]:
    """Accuracy on the variants a transformation took part in vs the clean accuracy of the
    same source cases (``delta``), and the same for variants made by it alone."""
    out = []
    for kind in ["(all)", *kinds]:
        sel = rows if kind == "(all)" else [r for r in rows if kind in r["transforms"]]
        alone = [r for r in rows if r["transforms"] == [kind]]
        clean, noisy = _accuracy(sel, "clean_correct"), _accuracy(sel, "noisy_correct")
        out.append({
            "transform": kind, "variants": len(sel), "clean_accuracy": clean,
            "noisy_accuracy": noisy, "delta": noisy - clean,
            "flipped": sum(r["clean_correct"] and not r["noisy_correct"] for r in sel),
            "fixed": sum(r["noisy_correct"] and not r["clean_correct"] for r in sel),
            "alone": len(alone),
            "delta_alone": (sum(r["noisy_correct"] - r["clean_correct"] for r in alone)
                            / len(alone)) if alone else float("nan")})
    return out


def _accuracy(rows: list[dict[str, Any]], correct: str) -> float:
    """The share of ``rows`` whose ``correct`` column is true (NaN for none)."""
    return sum(r[correct] for r in rows) / len(rows) if rows else float("nan")


def metric_rows(clean_m: dict[str, float], noisy_m: dict[str, float]) -> list[dict[str, Any]]:
    return [{"metric": k, "clean": clean_m[k], "noisy": noisy_m[k],
             "delta": noisy_m[k] - clean_m[k]}
            for k in clean_m if k in noisy_m and k not in _NOT_COMPARED]


@dataclass
class AdversarialResult:
    """What :func:`promptgov.robustness` returns.

    Attributes:
        noisy_evalset: the saved noisy evalset (``.ref``, ``.hash``, ``.dir``).
        clean / noisy: the two evaluations (the clean one on the variants' source cases).
        metrics: everything logged to MLflow: ``clean.<m>``, ``noisy.<m>``, ``delta.<m>``,
            ``delta.accuracy.<transformation>``...
        minimal_failures: the shrunk answer-flipping variants (see ``minimal_failing``).
        run_id: the MLflow run, when tracked.

    Example:
        >>> r = pg.adversarial("ticket_triage@2", model="local/knn", n=300)  # doctest: +SKIP
        >>> r.deltas.sort_values("delta").head(3)                          # doctest: +SKIP
    """

    prompt: str
    evalset: str
    model: str
    seed: int
    n: int
    noisy_evalset: Evalset
    written: bool
    """True when this call wrote the noisy evalset (False: an identical one was there)."""
    clean: EvalResult
    noisy: EvalResult
    kinds: list[str]
    metrics: dict[str, float]
    rows: list[dict[str, Any]] = field(repr=False, default_factory=list)
    """One per noisy variant (see :attr:`variants`)."""
    metric_table: list[dict[str, Any]] = field(repr=False, default_factory=list)
    minimal_failures: pd.DataFrame | None = None
    locked: list[str] = field(default_factory=list)
    run_id: str | None = None

    @property
    def deltas(self) -> pd.DataFrame:
        """Per transformation (and ``(all)``): variants, clean and noisy accuracy, delta,
        answers flipped/fixed, and the delta on variants made by that transformation alone."""
        import pandas as pd

        return pd.DataFrame(transform_rows(self.rows, self.kinds)).set_index("transform")

    @property
    def metric_deltas(self) -> pd.DataFrame:
        """Every metric: clean, noisy, delta."""
        import pandas as pd

        return pd.DataFrame(self.metric_table).set_index("metric")

    @property
    def variants(self) -> pd.DataFrame:
        """One row per noisy variant with its clean twin's answer."""
        import pandas as pd

        return pd.DataFrame(self.rows).set_index("case_id")

    def __repr__(self) -> str:
        m = self.metrics
        return (f"AdversarialResult({self.prompt} with {self.model} on {self.noisy_evalset.ref}: "
                f"accuracy {m.get('clean.accuracy', float('nan')):.3f} clean → "
                f"{m.get('noisy.accuracy', float('nan')):.3f} noisy; "
                f"{0 if self.minimal_failures is None else len(self.minimal_failures)} minimal "
                f"failures; run {self.run_id})")

    def _repr_html_(self) -> str:  # Jupyter
        deltas: str = self.deltas.to_html(float_format="{:.3f}".format)
        return (f"<p>{self.__repr__()}</p>" + deltas
                + ("" if self.minimal_failures is None else self.minimal_failures.to_html()))

"""The per-case record: one per case and sample, created once by the engine, filled by the call,
completed by its :class:`Score`.

A record is a typed dict rather than a dataclass on purpose: it is written as JSON (the pending
store, MLflow's ``cases.json``) and read as a DataFrame row (``EvalResult.cases``), and a
``TypedDict`` types it for the checker with no conversion at those boundaries. The MLflow table's
columns (:data:`TABLE_COLUMNS`) are derived from the fields declared here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

if TYPE_CHECKING:
    from promptgov.workspace._evalset import Case


class CaseRecord(TypedDict):
    """One case's run. Declared in the reading order of the MLflow ``cases.json`` table."""

    case_id: str
    expected: Any
    predicted: NotRequired[Any]
    """classification: the label answered (scored)."""
    correct: NotRequired[bool]
    """Scored: a failed case is never correct."""
    confidence: NotRequired[float | None]
    """Scored: the answer's own ``confidence``, when it has one."""
    failure: str | None
    """``None``, or the failure kind (``timeout``, ``schema_violation``, ``not_sent``, ...)."""
    input: dict[str, Any]
    output: Any
    """The validated answer (a dict, or text for drafts); ``None`` on failure."""
    error: str | None
    sample: int
    attempts: int
    retries: int
    reasks: int
    cached: bool
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float
    # Not in the table: the raw text, detail and per-kind scores stay in the DataFrame.
    raw: str | None
    repairs: list[str]
    finish_reason: str | None
    meta: dict[str, Any]
    field_correct: NotRequired[dict[str, bool]]
    """extraction (scored): per expected field, equal or not."""
    field_counts: NotRequired[dict[str, Any]]
    """extraction (scored): per field ``(tp, fp, fn)``, per label for list fields."""
    fact_checks: NotRequired[dict[str, bool]]
    """draft (scored): numbers from facts, required facts stated, length."""


_NOT_IN_TABLE = frozenset({"raw", "repairs", "finish_reason", "meta", "field_correct",
                           "field_counts", "fact_checks"})
TABLE_COLUMNS: tuple[str, ...] = tuple(k for k in CaseRecord.__annotations__
                                       if k not in _NOT_IN_TABLE)
"""``cases.json`` columns in MLflow, in reading order: what was asked for and what came back
first."""


def new_record(case: Case, sample: int, **fields: Any) -> CaseRecord:
    """A case's record before (or instead of) its call: nothing answered, nothing spent."""
    rec: dict[str, Any] = {
        "case_id": case.id, "sample": sample, "input": case.input,
        "expected": case.expected, "output": None, "raw": None, "failure": None,
        "error": None, "attempts": 0, "retries": 0, "reasks": 0, "repairs": [],
        "cached": True, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0,
        "latency_s": 0.0, "finish_reason": None, "meta": case.meta}
    rec.update(fields)
    return rec  # type: ignore[return-value]  # the keys above are CaseRecord's required ones


@dataclass(frozen=True)
class Score:
    """What scoring says of one record; :meth:`fields` are merged into it."""

    correct: bool
    confidence: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    """Per kind: ``predicted``; ``field_correct`` and ``field_counts``; ``fact_checks``."""

    def fields(self) -> dict[str, Any]:
        return {"confidence": self.confidence, **self.detail, "correct": self.correct}

    def apply_to(self, rec: CaseRecord) -> CaseRecord:
        """``rec`` completed with this score (its scored fields set)."""
        rec.update(self.fields())  # type: ignore[typeddict-item]  # keys: CaseRecord's scored
        return rec

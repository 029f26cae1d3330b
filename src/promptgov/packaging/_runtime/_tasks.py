"""The three workflows: extraction to a schema object, confidence-routed triage, and a draft
anchored to its facts. The generated ``__init__.py`` wraps each with the package's own types."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from ._engine import REASK_DRAFT, ask
from ._errors import DraftRejected, InvalidOutput, ModelError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pydantic import BaseModel

    from ._bundle import Action, Bundle

T = TypeVar("T", bound="BaseModel")


class Decision(NamedTuple):
    """Where a triaged message goes.

    Attributes:
        action: ``auto_process``, ``queue_for_human`` or ``legacy_fallback``, by the approved
            confidence bands.
        label: the predicted label (None when the model gave no usable answer).
        confidence: the model's confidence in ``label`` (None without an answer).
        error: why there is no answer (``timeout: ...``); the action is then legacy_fallback.
    """

    action: Action
    label: str | None
    confidence: float | None
    error: str | None = None


def extract(bundle: Bundle, ref: str, inputs: Mapping[str, Any]) -> Any:
    """The schema object the model extracts; raises :class:`ModelError` (or its subclass
    :class:`InvalidOutput`) when no valid answer came within the retry policy."""
    sid = bundle.prompts[ref].schema
    # extraction and classification prompts always name a schema: sid is never None here
    schema = bundle.schema_class(sid)  # type: ignore[arg-type]
    js = bundle.json_schemas[sid]  # type: ignore[index]
    return ask(bundle, ref, inputs, lambda text: parse(text, schema, js))


def parse(text: str, model: type[T], json_schema: dict[str, Any]) -> T:
    """``text`` as a ``model`` object (whose JSON Schema is ``json_schema``), as the workbench
    parses it (the same ``_parse.py``); :class:`InvalidOutput` when it is none."""
    from ._parse import OutputError, parse_output

    try:
        return parse_output(text, json_schema, model.model_validate)[0]
    except OutputError as e:
        raise InvalidOutput(str(e), kind=e.kind) from None


def triage(bundle: Bundle, ref: str, inputs: Mapping[str, Any]) -> Decision:
    """Classify and route. A model that gives no usable answer within the retry policy
    (timeouts, rate limits, invalid or refused answers) routes to legacy_fallback with the
    reason in ``error``; a request the provider rejects as bad (``bad_request``) raises."""
    try:
        out = extract(bundle, ref, inputs)
    except ModelError as e:
        if e.kind == "bad_request":
            raise
        return Decision("legacy_fallback", None, None, f"{e.kind}: {e}")
    label, confidence = out.label, out.confidence  # checked at export: the schema has both
    confidence = None if confidence is None else float(confidence)
    return Decision(bundle.routing.route(confidence), label, confidence)


def draft(bundle: Bundle, ref: str, inputs: Mapping[str, Any]) -> str:
    """The model's reply rendered from ``inputs`` only; raises :class:`DraftRejected` when,
    after the re-asks, it still states a number, amount, date or state the facts do not hold."""
    from ._facts import unsupported_facts

    def accept(text: str) -> str:
        if not text.strip():
            raise InvalidOutput("empty answer", kind="invalid_json")
        bad = unsupported_facts(text, inputs)
        if bad:
            raise DraftRejected(f"it states {', '.join(map(repr, bad))}, which the facts do not "
                                "hold", bad)
        return text

    return ask(bundle, ref, inputs, accept, reask=REASK_DRAFT)

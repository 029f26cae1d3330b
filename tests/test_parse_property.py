"""``parse_output`` under any model output (hypothesis).

For any output built from a valid triage or extraction object passed through any combination of
the malformations of :func:`promptgov.model._fake.malform`, wrapped in arbitrary text, or just
arbitrary text / JSON: ``parse_output`` returns an object the schema model accepts, or raises
``InvalidOutput`` with kind ``invalid_json`` or ``schema_violation``; never another exception,
never an invalid object. Where only repairable malformations were applied (each at most once,
no truncation), the original object comes back, with the repairs named.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from promptgov.errors import InvalidOutput
from promptgov.eval._parse import parse_output
from promptgov.model._fake import MALFORMED_KINDS, malform
from promptgov.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
_WS = Workspace(ROOT)
MODELS = {"triage": _WS.schema("ticket_triage@1").model,
          "extraction": _WS.schema("ticket_extraction@1").model}
SCHEMAS = {k: m.model_json_schema() for k, m in MODELS.items()}
LABELS = list(typing.get_args(MODELS["triage"].model_fields["label"].annotation))
INTENTS = list(typing.get_args(typing.get_args(
    MODELS["extraction"].model_fields["intents"].annotation)[0]))
REPAIR_OF = {"fenced": "fenced", "single_quotes": "single_quotes", "extra_keys": "extra_keys",
             "wrong_enum_case": "enum_case"}
REPAIRS = set(REPAIR_OF.values())
KINDS = {"invalid_json", "schema_violation"}

texts = st.text(max_size=40)
nullable_text = st.none() | texts
VALID = {
    "triage": st.fixed_dictionaries({
        "label": st.sampled_from(LABELS),
        "confidence": st.floats(0, 1, allow_nan=False)}),
    "extraction": st.fixed_dictionaries({
        "intents": st.lists(st.sampled_from(INTENTS), max_size=5),
        "amount": st.none() | st.floats(allow_nan=False, allow_infinity=False),
        "date": nullable_text, "time": nullable_text, "company": nullable_text,
        "number": st.none() | st.integers(-10**15, 10**15),
        "person": nullable_text, "shopping_category": nullable_text}),
}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12)


@st.composite
def model_outputs(draw):
    """(which schema, the model's text, what was done to a valid object or None)."""
    which = draw(st.sampled_from(["triage", "extraction"]))
    source = draw(st.sampled_from(["malformed"] * 4 + ["text", "json", "near_miss"]))
    if source == "text":
        return which, draw(st.text()), None
    if source == "json":
        return which, json.dumps(draw(json_values)), None
    obj = draw(VALID[which])
    if source == "near_miss":  # a valid object with one field replaced by any JSON value
        key = draw(st.sampled_from(sorted(obj)))
        obj = {**obj, key: draw(json_values)}
        return which, json.dumps(obj), None
    text = json.dumps(obj, ensure_ascii=draw(st.booleans()))
    applied = []
    for kind in draw(st.lists(st.sampled_from(MALFORMED_KINDS), max_size=4)):
        try:
            text = malform(text, kind, SCHEMAS[which])
        except ValueError:  # e.g. extra_keys on text that is no longer JSON
            continue
        applied.append(kind)
    wrap = draw(st.sampled_from(["none", "none", "whitespace", "prefix", "suffix"]))
    if wrap == "whitespace":
        text = draw(st.sampled_from([" ", "\n", "\n\n  ", "\t"])) + text + "\n"
    elif wrap == "prefix":
        text = draw(texts) + text
    elif wrap == "suffix":
        text = text + draw(texts)
    return which, text, {"object": obj, "applied": applied, "wrap": wrap}


def parse_or_reject(model, text):
    """The property itself: a valid object, or InvalidOutput of a known kind; nothing else."""
    try:
        obj, repairs = parse_output(text, model)
    except InvalidOutput as e:
        assert e.kind in KINDS, (e.kind, text)
        return None
    assert isinstance(obj, dict)
    again = model.model_validate(obj).model_dump(mode="json")
    assert json.dumps(again, sort_keys=True) == json.dumps(obj, sort_keys=True)
    assert isinstance(repairs, list) and set(repairs) <= REPAIRS
    return obj, repairs


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_outputs())
@example(("triage", "{[1]: 2}", None))
@example(("triage", "[" * 5000, None))
@example(("extraction", '{"number": ' + "7" * 5000 + "}", None))
def test_parse_output_returns_valid_object_or_invalid_output(case):
    which, text, made = case
    model = MODELS[which]
    got = parse_or_reject(model, text)
    if made is None:
        return
    applied = made["applied"]
    repairable_only = ("truncated" not in applied and len(set(applied)) == len(applied)
                       and made["wrap"] in ("none", "whitespace"))
    if not repairable_only:
        return
    assert got is not None, (text, applied)
    obj, repairs = got
    assert obj == model.model_validate(made["object"]).model_dump(mode="json")
    expected = {REPAIR_OF[k] for k in applied}
    if "wrong_enum_case" in applied and which == "extraction" and not made["object"]["intents"]:
        expected.discard("enum_case")  # no enum value to re-case
    assert set(repairs) == expected, (text, applied, repairs)


@pytest.mark.parametrize("text", [
    "{[1]: 2}",                                   # Python literal with an unhashable key
    "{'label': 'card_arrival', {1}: 0}",          # ... and a set key
    "[" * 100_000,                                # nesting deeper than the JSON decoder allows
    '{"a":' * 100_000,
    '{"confidence": ' + "1" * 5000 + "}",         # an int beyond Python's digit limit
    "",
    "```json\n```",
    "null",
])
def test_pathological_outputs_are_invalid_not_crashes(text):
    for model in MODELS.values():
        with pytest.raises(InvalidOutput) as e:
            parse_output(text, model)
        assert e.value.kind in KINDS


def test_truncated_object_is_invalid_json():
    obj = {"label": LABELS[0], "confidence": 0.5}
    with pytest.raises(InvalidOutput) as e:
        parse_output(malform(json.dumps(obj), "truncated"), MODELS["triage"])
    assert e.value.kind == "invalid_json"


def test_wrong_type_is_schema_violation():
    with pytest.raises(InvalidOutput) as e:
        parse_output('{"label": "card_arrival", "confidence": "very"}', MODELS["triage"])
    assert e.value.kind == "schema_violation" and "confidence" in str(e.value)
    with pytest.raises(InvalidOutput) as e:
        parse_output('["card_arrival", 0.5]', MODELS["triage"])
    assert e.value.kind == "schema_violation"

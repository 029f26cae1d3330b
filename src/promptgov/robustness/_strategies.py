"""hypothesis strategies: noisy inputs that keep the expected output, malformed model outputs.

Input strategies are the pure transformations of :mod:`promptgov.robustness._transforms`
driven by ``st.randoms(use_true_random=False)``: hypothesis records every choice a
transformation makes and shrinks it towards 0, i.e. towards fewer, shorter, earlier noise.
Output strategies turn schema-valid objects into what models really send back, through
:func:`promptgov.model._fake.malform`.

Example (a test a prompt engineer might write)::

    from hypothesis import given
    from promptgov.robustness import NoiseContext, forwarded_chain, noisy_text

    @given(noisy_text("Where is my card?", NoiseContext(decoys=("card_linking",))))
    def test_triage_survives_noise(v):
        assert my_triage(v.text) == "card_arrival", v.transforms

    @given(forwarded_chain("Where is my card?"))
    def test_triage_survives_forwarding(v): ...
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from promptgov.model._fake import MALFORMED_KINDS, _resolve, malform
from promptgov.robustness._noisy import require_text, vary_case
from promptgov.robustness._transforms import (
    NoiseContext,
    Transform,
    Variant,
    apply,
    registry,
)
from promptgov.workspace._evalset import Case

_NO_CTX = NoiseContext()


def _randoms() -> st.SearchStrategy:
    return st.randoms(use_true_random=False, note_method_calls=False)


def _kinds(reg: Mapping[str, Transform], max_transforms: int) -> st.SearchStrategy[list[str]]:
    """One to ``max_transforms`` distinct names in registry order. A list, not draws from the
    random: hypothesis shrinks it by deleting elements, towards the first kinds."""
    if max_transforms < 1:
        raise ValueError(f"max_transforms={max_transforms}: a variant needs at least one")
    names = list(reg)
    return st.lists(st.sampled_from(names), min_size=1, max_size=min(max_transforms, len(names)),
                    unique=True).map(lambda ks: [n for n in names if n in ks])


# -- inputs ----------------------------------------------------------------------------------

def transformed(kind: str, text: str, ctx: NoiseContext = _NO_CTX, *,
                transforms: Mapping[str, Transform] | None = None) -> st.SearchStrategy[Variant]:
    """Variants of ``text`` made by the one transformation ``kind`` (built-in or in
    ``transforms``)."""
    reg = registry([kind], transforms)
    return _randoms().map(lambda rng: apply(text, [kind], rng, ctx, reg))


def ocr_typos(text: str, ctx: NoiseContext = _NO_CTX) -> st.SearchStrategy[Variant]:
    """OCR confusions and typos."""
    return transformed("ocr_typos", text, ctx)


def case_whitespace(text: str, ctx: NoiseContext = _NO_CTX) -> st.SearchStrategy[Variant]:
    """Case and whitespace noise."""
    return transformed("case_whitespace", text, ctx)


def forwarded_chain(text: str, ctx: NoiseContext = _NO_CTX) -> st.SearchStrategy[Variant]:
    """The message inside a forwarded e-mail chain."""
    return transformed("forwarded_chain", text, ctx)


def quoted_reply(text: str, ctx: NoiseContext = _NO_CTX) -> st.SearchStrategy[Variant]:
    """The message above a quoted earlier message."""
    return transformed("quoted_reply", text, ctx)


def signature_headers(text: str, ctx: NoiseContext = _NO_CTX) -> st.SearchStrategy[Variant]:
    """Signature, disclaimer and mail-header blocks."""
    return transformed("signature_headers", text, ctx)


def html_remnants(text: str, ctx: NoiseContext = _NO_CTX) -> st.SearchStrategy[Variant]:
    """HTML tags and entities left by a mail client."""
    return transformed("html_remnants", text, ctx)


def foreign_language(text: str, ctx: NoiseContext = _NO_CTX) -> st.SearchStrategy[Variant]:
    """A greeting or sentence in another language."""
    return transformed("foreign_language", text, ctx)


def emoji(text: str, ctx: NoiseContext = _NO_CTX) -> st.SearchStrategy[Variant]:
    """Emoji around and between the words."""
    return transformed("emoji", text, ctx)


def prompt_injection(text: str, ctx: NoiseContext = _NO_CTX) -> st.SearchStrategy[Variant]:
    """A line telling the model to ignore its instructions (and answer one of
    ``ctx.decoys``)."""
    return transformed("prompt_injection", text, ctx)


def noisy_text(text: str, ctx: NoiseContext = _NO_CTX, *, kinds: Sequence[str] | None = None,
               max_transforms: int = 3, transforms: Mapping[str, Transform] | None = None
               ) -> st.SearchStrategy[Variant]:
    """Variants of ``text`` made by one to ``max_transforms`` of ``kinds`` (default: every
    transformation), each recording the transformations that made it."""
    reg = registry(kinds, transforms)
    return st.tuples(_kinds(reg, max_transforms), _randoms()).map(
        lambda kr: apply(text, kr[0], kr[1], ctx, reg))


def noisy_case(case: Case, *, decoys: Sequence[str] = (), kinds: Sequence[str] | None = None,
               max_transforms: int = 3, transforms: Mapping[str, Transform] | None = None
               ) -> st.SearchStrategy[Case]:
    """Noisy copies of an evalset case: every string field of its input perturbed, the same
    expected output, ``meta.transforms`` naming what was applied and ``meta.source`` the
    clean case's id. ``decoys`` are wrong answers an injection line may push."""
    reg = registry(kinds, transforms)
    require_text(case)
    return st.tuples(_kinds(reg, max_transforms), _randoms()).map(lambda kr: vary_case(
        case, kr[1], index="noisy", decoys=decoys, reg=reg, max_transforms=max_transforms,
        names=kr[0]))


# -- outputs ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class MalformedOutput:
    """A model's text answer made from a valid ``value`` by ``malformations`` (in order)."""

    text: str
    malformations: tuple[str, ...]
    value: Any


def schema_values(schema: dict[str, Any], _node: dict[str, Any] | None = None,
                  _depth: int = 0) -> st.SearchStrategy[Any]:
    """Values valid against a JSON Schema (the subset pydantic emits: ``$ref``, ``anyOf``,
    ``enum``/``const``, objects, arrays, strings, bounded numbers, booleans, null)."""
    node = _resolve(schema if _node is None else _node, schema)
    if _depth > 16:
        return st.none()
    if "const" in node:
        return st.just(node["const"])
    if node.get("enum"):
        return st.sampled_from(node["enum"])
    alts = node.get("anyOf") or node.get("oneOf")
    if alts:
        return st.one_of([schema_values(schema, a, _depth + 1) for a in alts])
    t = node.get("type") or ("object" if "properties" in node else "string")
    if isinstance(t, list):
        return st.one_of([schema_values(schema, {**node, "type": x}, _depth + 1) for x in t])
    of_type = _VALUES_OF_TYPE.get(t) if isinstance(t, str) else None
    return of_type(schema, node, _depth) if of_type is not None else st.none()


def _objects(schema: dict[str, Any], node: dict[str, Any], depth: int
             ) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries({k: schema_values(schema, sub, depth + 1)
                                  for k, sub in node.get("properties", {}).items()})


def _arrays(schema: dict[str, Any], node: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    return st.lists(schema_values(schema, node.get("items", {}), depth + 1),
                    min_size=node.get("minItems", 0), max_size=node.get("maxItems", 5),
                    unique_by=_json_key if node.get("uniqueItems") else None)


def _json_key(v: Any) -> str:
    return json.dumps(v, sort_keys=True)


def _strings(schema: dict[str, Any], node: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    if "pattern" in node:
        return st.from_regex(node["pattern"], fullmatch=True)
    return st.text(min_size=node.get("minLength", 0), max_size=node.get("maxLength", 40))


def _integers(schema: dict[str, Any], node: dict[str, Any], depth: int
              ) -> st.SearchStrategy[Any]:
    lo = node.get("minimum", node.get("exclusiveMinimum", -(2**63) - 1) + 1)
    hi = node.get("maximum", node.get("exclusiveMaximum", 2**63) - 1)
    return st.integers(lo, hi)


def _numbers(schema: dict[str, Any], node: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    return st.floats(node.get("minimum", node.get("exclusiveMinimum")),
                     node.get("maximum", node.get("exclusiveMaximum")), allow_nan=False,
                     allow_infinity=False, exclude_min="exclusiveMinimum" in node,
                     exclude_max="exclusiveMaximum" in node)


def _booleans(schema: dict[str, Any], node: dict[str, Any], depth: int
              ) -> st.SearchStrategy[Any]:
    return st.booleans()


_VALUES_OF_TYPE: dict[str, Callable[[dict[str, Any], dict[str, Any], int],
                                    st.SearchStrategy[Any]]] = {
    "object": _objects, "array": _arrays, "string": _strings, "integer": _integers,
    "number": _numbers, "boolean": _booleans}
"""The strategy for each JSON Schema ``type`` (any other, ``null`` included, is None)."""


def model_outputs(schema: dict[str, Any], values: st.SearchStrategy[Any] | None = None, *,
                  kinds: Sequence[str] = MALFORMED_KINDS, max_malformations: int = 3
                  ) -> st.SearchStrategy[MalformedOutput]:
    """What a model sends back for ``schema``: a valid value (from ``values``, default
    :func:`schema_values`) as JSON, then up to ``max_malformations`` of ``kinds`` (fenced,
    truncated, single_quotes, extra_keys, wrong_enum_case) applied in turn."""
    unknown = [k for k in kinds if k not in MALFORMED_KINDS]
    if unknown:
        raise ValueError(f"unknown malformation(s) {unknown}; known: {', '.join(MALFORMED_KINDS)}")
    values = values if values is not None else schema_values(schema)

    @st.composite
    def outputs(draw: st.DrawFn) -> MalformedOutput:
        value = draw(values)
        text, applied = json.dumps(value, ensure_ascii=draw(st.booleans())), []
        for kind in draw(st.lists(st.sampled_from(list(kinds)), max_size=max_malformations)):
            try:
                text = malform(text, kind, schema)
            except ValueError:  # e.g. extra_keys on text that is no longer JSON
                continue
            applied.append(kind)
        return MalformedOutput(text, tuple(applied), value)

    return outputs()

"""The workspace YAML loader gives exactly PyYAML's safe loader's values (it only skips PyYAML's
generic construction machinery), refuses aliases, and hands unusual documents to PyYAML."""

from __future__ import annotations

import math

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from promptgov.workspace._yamlio import _AliasFound, _load

SAFE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text()
           | st.floats(allow_nan=False) | st.dates() | st.datetimes())
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=8) | st.integers(), inner, max_size=4), max_leaves=25)


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b and repr(a) == repr(b)


@settings(max_examples=300)
@given(values, st.sampled_from([None, False, True]))
def test_equal_to_the_safe_loader_on_generated_documents(value, flow):
    text = yaml.safe_dump({"v": value}, default_flow_style=flow, allow_unicode=True)
    assert same(_load(text), yaml.load(text, Loader=SAFE))


@pytest.mark.parametrize("text", [
    "t: 13:30\n", "o: 0o17\nx: 0x1F\nb: 0b101\n", "u: 1_000\n", "f: [.inf, -.Inf, .nan, 1e3]\n",
    "n: [~, null, Null, '']\n", "b: [yes, No, on, OFF, true]\n",
    "d: 2001-12-14t21:59:43.10-05:00\ne: 2002-12-14\n", "s: !!set {a, b}\n",
    "m: {<<: {a: 1}, b: 2}\n", "bin: !!binary aGVsbG8=\n", "k: {[1, 2]: x}\n",
    "lit: |\n  a\n  b\nfold: >\n  a\n  b\n", "q: \"\\u00e9\\t\"\n",
])
def test_equal_to_the_safe_loader_on_edge_cases(text):
    try:
        want = yaml.load(text, Loader=SAFE)
    except yaml.YAMLError as e:
        with pytest.raises(type(e)):
            _load(text)
        return
    got = _load(text)
    assert repr(got) == repr(want)


def test_aliases_are_refused_before_construction():
    with pytest.raises(_AliasFound) as e:
        _load("a: &x [1, 2]\nb: *x\n")
    assert e.value.line == 1  # the aliased value (nodes keep no mark of the alias itself)

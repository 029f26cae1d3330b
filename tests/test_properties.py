"""Properties of the whole pipeline on generated inputs (hypothesis).

* rendering never fails on any unicode input, for every example prompt, noisy or not;
* hashing is canonical: an evalset's hash ignores key order and JSON layout of its lines (the
  hash function itself: ``test_hashing.py``; YAML layout of prompts: ``test_hashing.py`` too);
* the cache key is stable: equal requests give equal keys across objects, prompt loads and
  processes; what changes the answer (sample, model, messages) changes the key, what does not
  (labels, timeout, key order) does not;
* any model output built by ``promptgov.robustness.model_outputs`` ends, through the engine
  (parse, validate, re-ask), in a schema-valid object or a recorded failure (1,000 examples;
  ``test_parse_property.py`` proves the parser alone on another 1,000).

Routing of any confidence in [0, 1] to one of the three actions, monotone in confidence, is
proved in ``test_scoring.py`` (``test_route_is_monotone_*``) and not repeated here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promptgov.eval._engine import Runner
from promptgov.hashing import content_hash
from promptgov.model._base import Request
from promptgov.model._fake import FakeModel
from promptgov.robustness import model_outputs, noisy_text
from promptgov.workspace import Workspace
from promptgov.workspace._evalset import Case, Evalset
from promptgov.workspace._policy import Policy

ROOT = Path(__file__).resolve().parent.parent
_WS = Workspace(ROOT)
PROMPTS = [f"{n}@{v}" for n, v in _WS.prompt_files()]
FAST = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))

# Any code point a Python string can hold, lone surrogates included (json.loads makes them
# from a "\ud800" escape).
any_text = st.text(st.characters(exclude_categories=()))
valid_text = st.text()  # what UTF-8 can encode
texts = any_text | valid_text.flatmap(lambda t: noisy_text(t)).map(lambda v: v.text)


def inputs_like(value):
    """A strategy for inputs shaped like ``value`` (a probe input), every leaf any text."""
    if isinstance(value, dict):
        return st.fixed_dictionaries({k: inputs_like(v) for k, v in value.items()})
    if isinstance(value, list):
        return st.lists(inputs_like(value[0]) if value else texts, max_size=3)
    return texts


def leaves(value):
    if isinstance(value, dict):
        return [x for v in value.values() for x in leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in leaves(v)]
    return [value]


# -- rendering -------------------------------------------------------------------------------

@pytest.mark.parametrize("ref", PROMPTS)
@FAST
@given(data=st.data())
def test_rendering_never_fails_on_any_unicode_input(ref, data):
    pv = _WS.prompt(ref)
    inputs = data.draw(inputs_like(pv.probe_input))
    msgs = pv.render(inputs)
    assert len(msgs) == pv.prefix_len + 1 and msgs[-1]["role"] == "user"
    assert all(isinstance(m["content"], str) for m in msgs)
    for s in leaves(inputs):  # rendered verbatim: no escaping, no template re-interpretation
        assert s in msgs[-1]["content"]


# -- hashing ---------------------------------------------------------------------------------

json_leaf = st.none() | st.booleans() | st.integers(-10**9, 10**9) | valid_text
json_value = st.recursive(json_leaf, lambda c: st.lists(c, max_size=3)
                          | st.dictionaries(valid_text, c, max_size=3), max_leaves=8)
cases = st.lists(st.fixed_dictionaries({
    "input": st.dictionaries(valid_text, json_value, min_size=1, max_size=3),
    "expected": json_value, "meta": st.dictionaries(valid_text, json_value, max_size=2)}),
    min_size=1, max_size=5)


def _write(d: Path, objs: list[dict], layout: dict) -> str:
    d.mkdir(parents=True, exist_ok=True)
    (d / "manifest.yaml").write_text(f"name: {d.name}\nversion: 1\nsource: generated\n"
                                     f"license: CC0-1.0\ncount: {len(objs)}\n", encoding="utf-8")
    (d / "cases.jsonl").write_text("".join(json.dumps(o, **layout) + "\n" for o in objs),
                                   encoding="utf-8")
    return Evalset.from_dir(d).hash


@FAST
@given(objs=cases, data=st.data())
def test_evalset_hash_ignores_key_order_and_json_layout(tmp_path_factory, objs, data):
    objs = [{"id": f"c{i}", **o} for i, o in enumerate(objs)]

    def shuffled(v):
        if isinstance(v, dict):
            return {k: shuffled(v[k]) for k in data.draw(st.permutations(list(v)))}
        return [shuffled(x) for x in v] if isinstance(v, list) else v

    base = tmp_path_factory.mktemp("es")
    a = _write(base / "a", objs, {"ensure_ascii": False})
    b = _write(base / "b", [shuffled(o) for o in objs],
               {"ensure_ascii": True, "indent": None, "separators": (" ,", ":  ")})
    assert a == b


def test_lone_surrogate_in_an_evalset_is_a_workspace_error(tmp_path):
    """A lone-surrogate escape loads as JSON but cannot be hashed: a one-line error naming
    the line, not a crash in eval/check/lock."""
    from promptgov.errors import WorkspaceError

    d = tmp_path / "es"
    with pytest.raises(WorkspaceError, match=r"cases.jsonl:1: .*surrogate"):
        _write(d, [{"id": "a", "input": {"text": "\ud800"}}], {"ensure_ascii": True})


# -- the cache key ---------------------------------------------------------------------------

messages = st.lists(st.fixed_dictionaries({
    "role": st.sampled_from(["system", "user", "assistant"]), "content": valid_text}),
    min_size=1, max_size=4)


@FAST
@given(msgs=messages, prefix=st.integers(0, 4), sample=st.integers(0, 5),
       temperature=st.sampled_from([0.0, 0.7]), model=st.sampled_from(["local/knn", "openai/x"]))
def test_cache_key_depends_on_what_determines_the_answer(msgs, prefix, sample, temperature,
                                                         model):
    schema = {"type": "object", "properties": {"label": {"enum": ["a", "b"]}}}
    prefix = min(prefix, len(msgs))
    a = Request(messages=tuple(msgs), response_schema=schema, temperature=temperature,
                sample=sample, prefix_len=prefix)
    same = Request(messages=tuple({k: m[k] for k in reversed(m)} for m in msgs),
                   response_schema=dict(reversed(list(schema.items()))),
                   temperature=temperature, sample=sample, prefix_len=prefix,
                   prefix_hash=content_hash(list(msgs[:prefix])), label="another label",
                   case_id="another case", timeout_s=1.0)
    assert a.key(model) == same.key(model)
    assert a.key(model) != replace(a, sample=sample + 1).key(model)
    assert a.key(model) != a.key(model + "-mini")
    changed = [*msgs[:-1], {**msgs[-1], "content": msgs[-1]["content"] + "."}]
    assert a.key(model) != replace(a, messages=tuple(changed)).key(model)


def _engine_keys(root: str, texts: list[str]) -> list[str]:
    """Cache keys the engine computes for ``ticket_triage@2`` on ``texts`` (fresh loads)."""
    from promptgov.eval._engine import resolve

    ws, pv, es, schema, policy, m = resolve(Workspace(root), "ticket_triage@2", None,
                                            "fake/scripted")
    runner = Runner(pv, es, m, cache=None, policy=policy, concurrency=1, budget_usd=None,
                    schema_model=schema)
    return [runner._request(Case(id=f"c{i}", input={"text": t}), 0).key(m.id)
            for i, t in enumerate(texts)]


def test_cache_key_is_stable_across_loads_and_processes():
    import random

    rng = random.Random(0)
    pool = "aé€😀\u0301\u200b\n\t \"'{}<>\\ßİﬁ中"
    texts = ["", "Where is my card?"] + ["".join(rng.choice(pool) for _ in range(rng.randrange(1,
                                                                                          30)))
                                         for _ in range(40)]
    here = _engine_keys(str(ROOT), texts)
    assert here == _engine_keys(str(ROOT), texts) and len(set(here)) == len(set(texts))
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            "from test_properties import _engine_keys; "
            f"print(json.dumps(_engine_keys({str(ROOT)!r}, json.load(sys.stdin))))")
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(texts), text=True,
                         capture_output=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "4242"})
    assert json.loads(out.stdout) == here


# -- model output through the engine ---------------------------------------------------------

PVS = {"triage": _WS.prompt("ticket_triage@2"), "extraction": _WS.prompt("ticket_extraction@1")}
MODELS = {k: _WS.schema(pv.response_schema).model for k, pv in PVS.items()}
SCHEMAS = {k: m.model_json_schema() for k, m in MODELS.items()}
OUTPUTS = st.one_of([st.tuples(st.just(k), model_outputs(SCHEMAS[k])) for k in sorted(PVS)])
_ANSWER: list[str] = [""]
RUNNERS = {k: Runner(pv, None, FakeModel(answer=lambda _req: _ANSWER[0]), cache=None,
                     policy=Policy(), concurrency=1, budget_usd=None, schema_model=MODELS[k])
           for k, pv in PVS.items()}


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(OUTPUTS)
def test_engine_yields_a_valid_object_or_a_recorded_failure_for_any_model_output(drawn):
    which, out = drawn
    model = MODELS[which]
    _ANSWER[0] = out.text
    rec = RUNNERS[which]._case(Case(id="c", input={"text": "Where is my card?"}), 0)  # no raise
    if rec["failure"] is not None:
        assert rec["failure"] in ("invalid_json", "schema_violation") and rec["output"] is None
        assert rec["reasks"] == 1 and rec["error"]
    else:
        valid = model.model_validate(rec["output"]).model_dump(mode="json")
        assert json.dumps(valid, sort_keys=True) == json.dumps(rec["output"], sort_keys=True)
    applied = out.malformations
    if "truncated" not in applied and len(set(applied)) == len(applied):
        assert rec["failure"] is None, (out.text, applied, rec["error"])
        assert rec["output"] == model.model_validate(out.value).model_dump(mode="json")

from __future__ import annotations

import ast
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from promptgov.errors import ModelError, ModelTimeout, RateLimited, ServerError
from promptgov.model import Model, Request
from promptgov.model._fake import MALFORMED_KINDS, FakeModel, malform, minimal_instance

SCHEMA = {
    "type": "object",
    "properties": {
        "category": {"$ref": "#/$defs/Category"},
        "priority": {"enum": ["low", "high"], "type": "string"},
        "summary": {"type": "string"},
        "confidence": {"type": "number"},
        "count": {"type": "integer", "minimum": 1},
        "tags": {"type": "array", "items": {"type": "string"}},
        "assignee": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        "urgent": {"type": "boolean"},
    },
    "required": ["category", "priority", "summary", "confidence", "count", "tags", "urgent"],
    "additionalProperties": False,
    "$defs": {"Category": {"enum": ["billing", "bug", "other"], "type": "string"}},
}

VALID = {"category": "bug", "priority": "high", "summary": "app crashes on login",
         "confidence": 0.9, "count": 2, "tags": ["login"], "assignee": None, "urgent": True}


def req(i: int = 0, schema=SCHEMA, **kw) -> Request:
    return Request(messages=({"role": "system", "content": "Classify the ticket."},
                             {"role": "user", "content": f"ticket number {i}"}),
                   response_schema=schema, **kw)


def run(model: FakeModel, requests, workers: int, attempts: int = 3) -> dict[str, list[str]]:
    """Call every request ``attempts`` times (sequentially per request, like a retry loop)
    and return the outcome sequence per key."""

    def one(r: Request) -> tuple[str, list[str]]:
        seq = []
        for _ in range(attempts):
            try:
                c = model.complete(r)
                seq.append("ok:" + c.text)
            except ModelError as e:
                seq.append(e.kind)
        return r.key(model.id), seq

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(pool.map(one, requests))


FAULTY = dict(rate_limit_rate=0.1, timeout_rate=0.1, server_error_rate=0.1,
              malformed_rate=0.2, seed=7)


def test_is_a_model():
    assert isinstance(FakeModel(), Model)


def test_default_answer_is_minimal_valid_instance():
    c = FakeModel().complete(req())
    assert json.loads(c.text) == {"category": "billing", "priority": "low", "summary": "",
                                  "confidence": 0, "count": 1, "tags": [], "assignee": None,
                                  "urgent": False}
    assert FakeModel().complete(req(schema=None)).text == "ok"
    assert c.model == "fake/scripted"


def test_minimal_instance_constraints():
    assert minimal_instance({"type": "string", "minLength": 3}) == "xxx"
    assert minimal_instance({"type": "integer", "exclusiveMinimum": 0}) == 1
    assert minimal_instance({"type": "array", "minItems": 2, "items": {"const": "a"}}) == [
        "a", "a"]
    assert minimal_instance({"type": ["string", "null"]}) is None
    assert minimal_instance({"allOf": [{"$ref": "#/$defs/A"}],
                             "$defs": {"A": {"type": "object",
                                             "properties": {"a": {"type": "boolean"}}}}}) == {
        "a": False}


def test_answer_callable_constant_and_dict():
    assert FakeModel(answer="hello").complete(req()).text == "hello"
    assert json.loads(FakeModel(answer=VALID).complete(req()).text) == VALID
    m = FakeModel(answer=lambda r: {"echo": r.messages[-1]["content"]})
    assert json.loads(m.complete(req(5)).text) == {"echo": "ticket number 5"}


def test_usage_cost_and_id():
    r = req()
    c = FakeModel(answer="abcdefgh", cost_per_call_usd=0.002, id="fake/x").complete(r)
    chars = sum(len(m["content"]) for m in r.messages)
    assert c.usage.prompt_tokens == chars // 4
    assert c.usage.completion_tokens == 2
    assert c.cost_usd == 0.002
    assert c.model == "fake/x"
    from promptgov.model import Usage
    assert FakeModel(usage=Usage(10, 3)).complete(r).usage == Usage(10, 3)


def test_calls_recorded():
    m = FakeModel(rate_limit_rate=1.0)
    with pytest.raises(RateLimited):
        m.complete(req())
    assert m.n_calls == 1
    assert m.calls[0][1] == "rate_limit"
    assert m.calls[0][0] == req()
    ok = FakeModel()
    ok.complete(req())
    assert ok.calls == [(req(), "ok")]


def test_deterministic_across_thread_pools():
    requests = [req(i) for i in range(200)]
    serial = run(FakeModel(**FAULTY), requests, workers=1)
    parallel = run(FakeModel(**FAULTY), requests, workers=16)
    assert serial == parallel
    # the fault mix is actually non-trivial
    flat = [o for seq in serial.values() for o in seq]
    assert {"rate_limit", "timeout", "server_error"} <= set(flat)
    assert any(o.startswith("ok:") for o in flat)
    # a different seed gives a different sequence
    assert run(FakeModel(**{**FAULTY, "seed": 8}), requests, workers=16) != serial


def test_same_seed_same_outcome_table():
    a, b = FakeModel(**FAULTY), FakeModel(**FAULTY)
    keys = [req(i).key(a.id) for i in range(50)]
    assert [a.outcome_for(k, n) for k in keys for n in range(4)] == [
        b.outcome_for(k, n) for k in keys for n in range(4)]


def test_transient_fault_does_not_always_repeat():
    m = FakeModel(server_error_rate=0.5, seed=3)
    recovered = 0
    for i in range(100):
        r = req(i)
        try:
            m.complete(r)
        except ServerError:
            for _ in range(10):
                try:
                    m.complete(r)
                    recovered += 1
                    break
                except ServerError:
                    continue
    assert recovered > 30


def test_reset_restarts_attempt_numbering():
    m = FakeModel(**FAULTY)
    first = run(m, [req(i) for i in range(30)], workers=4)
    m.reset()
    assert m.n_calls == 0
    assert run(m, [req(i) for i in range(30)], workers=4) == first


@pytest.mark.parametrize("name,kw,kind", [
    ("rate_limit", dict(rate_limit_rate=0.1), "rate_limit"),
    ("timeout", dict(timeout_rate=0.05), "timeout"),
    ("server_error", dict(server_error_rate=0.2), "server_error"),
    ("malformed", dict(malformed_rate=0.15), "malformed"),
])
def test_rates_roughly_honoured(name, kw, kind):
    m = FakeModel(**kw, seed=11)
    for i in range(2000):
        _swallow(m, req(i))
    observed = sum(1 for _, o in m.calls if o.split(":")[0] == kind) / 2000
    assert abs(observed - next(iter(kw.values()))) <= 0.03, observed


def test_combined_rates_roughly_honoured():
    m = FakeModel(**FAULTY)
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda i: _swallow(m, req(i)), range(2000)))
    outcomes = [o.split(":")[0] for _, o in m.calls]
    for kind, rate in [("rate_limit", 0.1), ("timeout", 0.1), ("server_error", 0.1),
                       ("malformed", 0.2), ("ok", 0.5)]:
        assert abs(outcomes.count(kind) / 2000 - rate) <= 0.03, (kind, outcomes.count(kind))


def _swallow(m, r):
    try:
        return m.complete(r)
    except ModelError as e:
        return e


def test_invalid_configuration():
    with pytest.raises(ValueError):
        FakeModel(rate_limit_rate=1.5)
    with pytest.raises(ValueError):
        FakeModel(rate_limit_rate=0.6, server_error_rate=0.6)
    with pytest.raises(ValueError):
        FakeModel(malformed_rate=0.1, malformed_kinds=("nope",))


def test_latency_honoured():
    m = FakeModel(latency_s=0.05)
    t0 = time.perf_counter()
    c = m.complete(req())
    assert time.perf_counter() - t0 >= 0.045
    assert c.latency_s == 0.05


def test_zero_latency_never_sleeps(monkeypatch):
    import promptgov.model._fake as fake

    def boom(_):
        raise AssertionError("slept")

    monkeypatch.setattr(fake.time, "sleep", boom)
    m = FakeModel(timeout_rate=0.5)
    for i in range(20):
        _swallow(m, req(i))


def test_timeout_sleeps_at_most_request_timeout():
    m = FakeModel(timeout_rate=1.0, latency_s=5.0)
    t0 = time.perf_counter()
    with pytest.raises(ModelTimeout):
        m.complete(req(timeout_s=0.05))
    assert time.perf_counter() - t0 < 1.0


def test_every_malformed_kind_is_produced():
    seen = set()
    for kind in MALFORMED_KINDS:
        m = FakeModel(answer=VALID, malformed_rate=1.0, malformed_kinds=(kind,))
        c = m.complete(req())
        assert m.calls[-1][1] == f"malformed:{kind}"
        assert c.text == malform(json.dumps(VALID), kind, SCHEMA)
        seen.add(kind)
    m = FakeModel(answer=VALID, malformed_rate=1.0)
    for i in range(200):
        m.complete(req(i))
    assert {o.split(":")[1] for _, o in m.calls} == set(MALFORMED_KINDS) == seen


def _not_json(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return True
    return False


def test_malform_fenced():
    valid = json.dumps(VALID)
    out = malform(valid, "fenced", SCHEMA)
    assert out.startswith("```json\n") and out.endswith("\n```")
    assert _not_json(out)
    assert json.loads(out.removeprefix("```json").removesuffix("```")) == VALID


def test_malform_truncated():
    valid = json.dumps(VALID)
    out = malform(valid, "truncated", SCHEMA)
    assert _not_json(out)
    assert valid.startswith(out) and 0 < len(out) < len(valid)
    assert _not_json(malform("{}", "truncated"))


def test_malform_single_quotes():
    out = malform(json.dumps(VALID), "single_quotes", SCHEMA)
    assert _not_json(out)
    assert "'category': 'bug'" in out
    assert ast.literal_eval(out) == VALID


def test_malform_extra_keys():
    out = malform(json.dumps(VALID), "extra_keys", SCHEMA)
    value = json.loads(out)
    extra = set(value) - set(SCHEMA["properties"])
    assert len(extra) == 1
    assert {k: v for k, v in value.items() if k not in extra} == VALID


def test_malform_wrong_enum_case():
    out = json.loads(malform(json.dumps(VALID), "wrong_enum_case", SCHEMA))
    assert out["category"] == "BUG"  # enum behind a $ref
    assert out["priority"] == "HIGH"
    assert out["summary"] == VALID["summary"]  # not an enum: untouched
    assert {k: v for k, v in out.items() if k not in ("category", "priority")} == {
        k: v for k, v in VALID.items() if k not in ("category", "priority")}
    assert {k: v.lower() if k in ("category", "priority") else v
            for k, v in out.items()} == VALID
    # without a schema every string value is upper-cased
    assert json.loads(malform('{"a": "x", "b": 1}', "wrong_enum_case")) == {"a": "X", "b": 1}
    # nested enums in arrays and nullable unions
    nested = {"type": "object", "properties": {
        "labels": {"type": "array", "items": {"enum": ["a", "b"]}},
        "maybe": {"anyOf": [{"enum": ["yes", "no"]}, {"type": "null"}]}}}
    assert json.loads(malform('{"labels": ["a", "b"], "maybe": "yes"}', "wrong_enum_case",
                              nested)) == {"labels": ["A", "B"], "maybe": "YES"}


def test_malform_rejects_unknown_kind_and_non_json():
    with pytest.raises(ValueError):
        malform("{}", "bogus")
    with pytest.raises(ValueError):
        malform("not json", "single_quotes")
    with pytest.raises(ValueError):
        malform("[1]", "extra_keys")


def test_malformed_plain_text_falls_back_to_truncated():
    m = FakeModel(malformed_rate=1.0, malformed_kinds=("extra_keys",))
    c = m.complete(req(schema=None))
    assert m.calls[-1][1] == "malformed:truncated"
    assert c.text == "o"

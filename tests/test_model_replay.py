from __future__ import annotations

import contextlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from promptgov.errors import ModelError, ReplayMiss, ServerError, WorkspaceError
from promptgov.model import Model, Request, Usage
from promptgov.model._fake import FakeModel
from promptgov.model._replay import (
    Cassette,
    CassetteEntry,
    RecordingModel,
    ReplayModel,
)

SCHEMA = {"type": "object", "properties": {"label": {"enum": ["spam", "ham"]}},
          "required": ["label"]}


def req(i: int, schema=SCHEMA) -> Request:
    return Request(messages=({"role": "system", "content": "SECRET-SYSTEM-PROMPT"},
                             {"role": "user", "content": f"message number {i}"}),
                   response_schema=schema)


def answer(r: Request) -> dict:
    n = int(r.messages[-1]["content"].split()[-1])
    return {"label": "spam" if n % 3 == 0 else "ham"}


@pytest.fixture
def cassette_path(tmp_path):
    return tmp_path / "cassettes" / "run.jsonl"


def record(path, n=20, **fake_kw):
    inner = FakeModel(answer=answer, id="openai/gpt-4o-mini", **fake_kw)
    texts = {}
    with RecordingModel(inner, path) as rec:
        assert rec.id == inner.id
        for i in range(n):
            with contextlib.suppress(ModelError):
                texts[i] = rec.complete(replace(req(i), label="spam_filter@2",
                                                case_id=f"c{i}")).text
    return texts


def test_models_satisfy_protocol(cassette_path):
    record(cassette_path, n=1)
    assert isinstance(RecordingModel(FakeModel(), cassette_path), Model)
    assert isinstance(ReplayModel(cassette_path), Model)


def test_record_then_replay_gives_identical_texts(cassette_path):
    texts = record(cassette_path)
    replay = ReplayModel(cassette_path)
    assert replay.id == f"replay:{cassette_path}"
    assert replay.model == "openai/gpt-4o-mini"
    assert len(replay) == 20
    for i, text in texts.items():
        c = replay.complete(req(i))
        assert c.text == text
        assert c.model == replay.id
        assert c.cost_usd == 0.0
        assert c.usage.prompt_tokens > 0


def test_replay_keeps_usage_and_zeroes_cost(cassette_path):
    inner = FakeModel(usage=Usage(123, 45), cost_per_call_usd=0.5, latency_s=0.01)
    with RecordingModel(inner, cassette_path) as rec:
        recorded = rec.complete(req(1))
    assert recorded.cost_usd == 0.5
    c = ReplayModel(cassette_path).complete(req(1))
    assert c.usage == Usage(123, 45)
    assert c.cost_usd == 0.0
    assert c.latency_s == pytest.approx(0.01)


def test_cassette_lines_hold_no_messages(cassette_path):
    record(cassette_path, n=3)
    raw = cassette_path.read_text()
    assert "SECRET-SYSTEM-PROMPT" not in raw
    assert "message number" not in raw
    lines = [json.loads(line) for line in raw.splitlines()]
    assert len(lines) == 3
    assert set(lines[0]) == {"key", "model", "prompt", "case", "text", "usage", "latency_s"}
    assert lines[0]["key"] == req(0).key("openai/gpt-4o-mini")
    assert lines[0]["prompt"] == "spam_filter@2" and lines[0]["case"] == "c0"
    assert set(lines[0]["usage"]) == {"prompt_tokens", "completion_tokens"}


def test_failed_calls_are_not_recorded(cassette_path):
    texts = record(cassette_path, n=200, server_error_rate=0.3, seed=1)
    assert 100 < len(texts) < 180
    entries = Cassette(cassette_path).entries()
    assert len(entries) == len(texts)
    replay = ReplayModel(cassette_path)
    for i in range(200):
        if i in texts:
            assert replay.complete(req(i)).text == texts[i]
        else:
            with pytest.raises(ReplayMiss):
                replay.complete(req(i))


def test_concurrent_recording_writes_whole_lines(cassette_path):
    inner = FakeModel(answer=answer, id="m")
    with RecordingModel(inner, cassette_path) as rec, ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: rec.complete(req(i)), range(500)))
    assert rec.n_recorded == 500
    entries = Cassette(cassette_path).entries()
    assert len(entries) == 500
    assert {e.key for e in entries} == {req(i).key("m") for i in range(500)}


def test_recording_appends_to_existing_cassette(cassette_path):
    record(cassette_path, n=5)
    inner = FakeModel(answer=answer, id="openai/gpt-4o-mini")
    with RecordingModel(inner, cassette_path) as rec:
        rec.complete(req(100))
    replay = ReplayModel(cassette_path)
    assert len(replay) == 6
    assert replay.complete(req(100)).text == json.dumps({"label": "ham"})


def test_miss_raises_replay_miss_with_details(cassette_path):
    record(cassette_path, n=2)
    replay = ReplayModel(cassette_path)
    long_msg = "please classify " + "x" * 200
    r = Request(messages=({"role": "user", "content": long_msg},), response_schema=SCHEMA)
    with pytest.raises(ReplayMiss) as e:
        replay.complete(r)
    msg = str(e.value)
    assert r.key("openai/gpt-4o-mini") in msg
    assert long_msg[:80] in msg and long_msg[:81] not in msg
    assert e.value.kind == "replay_miss"
    assert e.value.model == replay.id
    with pytest.raises(ReplayMiss) as e:
        replay.complete(replace(r, label="spam_filter@3", case_id="c9"))
    assert "spam_filter@3" in str(e.value) and "c9" in str(e.value)


def test_lookup_uses_recorded_model_id(cassette_path):
    record(cassette_path, n=3)
    replay = ReplayModel(cassette_path)
    entry = replay.lookup(req(0).key("openai/gpt-4o-mini"))
    assert isinstance(entry, CassetteEntry)
    assert entry.case == "c0" and entry.prompt == "spam_filter@2"
    assert replay.lookup(req(0).key(replay.id)) is None
    assert replay.lookup("sha256:nope") is None


def test_several_models_require_choice(cassette_path):
    record(cassette_path, n=3)
    other = FakeModel(answer={"label": "spam"}, id="anthropic/claude")
    with RecordingModel(other, cassette_path) as rec:
        rec.complete(req(1))
    with pytest.raises(WorkspaceError, match="several models"):
        ReplayModel(cassette_path)
    a = ReplayModel(cassette_path, model="openai/gpt-4o-mini")
    b = ReplayModel(cassette_path, model="anthropic/claude")
    assert json.loads(a.complete(req(1)).text) == {"label": "ham"}
    assert json.loads(b.complete(req(1)).text) == {"label": "spam"}
    with pytest.raises(ReplayMiss):
        b.complete(req(2))
    with pytest.raises(WorkspaceError, match="no answers from model"):
        ReplayModel(cassette_path, model="other/model")
    assert Cassette(cassette_path).models() == ["openai/gpt-4o-mini", "anthropic/claude"]


def test_custom_id(cassette_path):
    record(cassette_path, n=1)
    assert ReplayModel(cassette_path, id="replay:fixture").id == "replay:fixture"


@pytest.mark.parametrize("bad", [
    '{"key": "sha256:x", "model": "m", "text": "ok"',  # truncated JSON
    '["not", "an", "object"]',
    '{"key": "sha256:x", "model": "m"}',  # no text
    '{"key": "sha256:x", "model": "m", "text": "t", "usage": {"prompt_tokens": -1}}',
])
def test_corrupt_line_raises_workspace_error_with_line(cassette_path, bad):
    record(cassette_path, n=3)
    with cassette_path.open("a") as f:
        f.write("\n" + bad + "\n")  # line 4 is blank, line 5 is bad
    with pytest.raises(WorkspaceError) as e:
        ReplayModel(cassette_path)
    assert e.value.line == 5
    assert e.value.path == str(cassette_path)
    assert f"{cassette_path}:5" in str(e.value)


def test_missing_cassette_is_workspace_error(tmp_path):
    with pytest.raises(WorkspaceError, match="does not exist"):
        ReplayModel(tmp_path / "nope.jsonl")


def test_cassette_append_batch_and_roundtrip(cassette_path):
    entries = [CassetteEntry(key=f"sha256:{i}", model="m", text=f"t{i}", usage=Usage(i, 1),
                             latency_s=0.1 * i) for i in range(3)]
    with Cassette(cassette_path) as c:
        c.append(entries)
        c.append([])
    assert Cassette(cassette_path).entries() == entries


def test_inner_errors_pass_through(cassette_path):
    inner = FakeModel(server_error_rate=1.0)
    with RecordingModel(inner, cassette_path) as rec, pytest.raises(ServerError):
        rec.complete(req(0))
    assert not cassette_path.exists()

"""The offline baseline ``local/knn``: loads without network, deterministic, valid answers,
a confidence that means something, extractors, fact-anchored drafts, accounting."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

import pytest

from promptgov.errors import BadRequest
from promptgov.model import Request
from promptgov.model._extractors import (
    extract_amount,
    extract_date,
    extract_id,
    extract_integer,
    extract_time,
    reference_date,
    reference_time,
)
from promptgov.model._knn import KnnModel, draft_reply, embed, token_count
from promptgov.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
TODAY = date(2022, 3, 15)  # a Tuesday, as in the extraction prompt


@pytest.fixture(scope="module")
def ws() -> Workspace:
    return Workspace(ROOT)


@pytest.fixture(scope="module")
def model() -> KnnModel:
    return KnnModel()


def _request(ws, ref: str, inputs: dict, schema: str | None) -> Request:
    msgs = tuple(ws.prompt(ref).render(inputs))
    return Request(messages=msgs, response_schema=ws.schema(schema).json_schema if schema
                   else None, schema_name=schema)


# -- no network --------------------------------------------------------------------------------

def test_loads_and_answers_with_the_network_blocked(tmp_path):
    """A fresh process with every socket connection refused and the HF hub offline loads the
    embedding model and the tokenizer from the installed wheels and answers."""
    script = textwrap.dedent("""
        import os, socket
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        def refuse(*a, **k):
            raise OSError("network access attempted")
        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.create_connection = refuse
        from promptgov.model import Request
        from promptgov.model import _knn
        assert _knn._get_encoding() is not None, "tiktoken cl100k_base not loaded offline"
        assert _knn.token_count("hello world") == 2
        assert "TIKTOKEN_CACHE_DIR" not in os.environ
        m = _knn.KnnModel()
        msgs = ({"role": "system", "content": "- yes: agree\\n- no: disagree"},
                {"role": "user", "content": "Q: sure"}, {"role": "assistant",
                "content": '{"a": "yes"}'}, {"role": "user", "content": "Q: never"})
        schema = {"type": "object", "properties": {"a": {"enum": ["yes", "no"]}}}
        c = m.complete(Request(messages=msgs, response_schema=schema))
        assert c.text in ('{"a": "yes"}', '{"a": "no"}'), c.text
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().endswith("ok")


def test_embedding_of_one_text_matches_the_batch_embedding():
    from promptgov.model._knn import _embed_one

    texts = ["I still have not received my card", "What is the exchange rate?"]
    batch = embed(texts)
    for t, row in zip(texts, batch, strict=True):
        assert abs(float(_embed_one(t) @ row) - 1.0) < 1e-5


# -- triage ------------------------------------------------------------------------------------

def test_deterministic_across_calls_and_instances(ws, model):
    cases = ws.evalset("ticket_triage").cases[:20]
    reqs = [_request(ws, "ticket_triage@2", c.input, "ticket_triage@1") for c in cases]
    first = [model.complete(r).text for r in reqs]
    assert [model.complete(r).text for r in reqs] == first
    assert [KnnModel().complete(r).text for r in reqs[:5]] == first[:5]
    # equal messages that are other objects (a JSON round trip) give the same answer
    copies = [Request(messages=tuple(json.loads(json.dumps(r.messages))),
                      response_schema=json.loads(json.dumps(r.response_schema))) for r in reqs]
    assert [model.complete(r).text for r in copies] == first


def test_concurrent_calls_answer_as_sequential_ones(ws):
    from concurrent.futures import ThreadPoolExecutor

    cases = ws.evalset("ticket_triage").cases[:40]
    reqs = [_request(ws, f"ticket_triage@{1 + i % 2}", c.input, "ticket_triage@1")
            for i, c in enumerate(cases)]
    sequential = KnnModel()
    expected = [sequential.complete(r).text for r in reqs]
    model = KnnModel()
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda r: model.complete(r).text, reqs)) == expected
    small = KnnModel(cache_size=1)  # two prompts through a 1-entry LRU: evicted, rebuilt, same
    assert [small.complete(r).text for r in reqs[:4]] == expected[:4]
    assert len(small._cache) == 1


def test_triage_answers_validate_and_confidence_ranks_right_answers_higher(ws, model):
    schema = ws.schema("ticket_triage@1")
    cases = ws.evalset("ticket_triage").cases[:200]
    scored = []
    for c in cases:
        out = schema.model.model_validate_json(
            model.complete(_request(ws, "ticket_triage@2", c.input, "ticket_triage@1")).text)
        assert 0.0 <= out.confidence <= 1.0
        scored.append((out.confidence, out.label == c.expected["label"]))
    scored.sort(key=lambda x: -x[0])
    top, bottom = scored[:100], scored[100:]
    acc_top = sum(ok for _, ok in top) / len(top)
    acc_bottom = sum(ok for _, ok in bottom) / len(bottom)
    assert sum(ok for _, ok in scored) / len(scored) > 0.7
    assert acc_top > acc_bottom + 0.15, (acc_top, acc_bottom)


def test_usage_tokens_cost_and_latency(ws, model):
    c = ws.evalset("ticket_triage").cases[0]
    req = _request(ws, "ticket_triage@1", c.input, "ticket_triage@1")
    out = model.complete(req)
    assert out.model == "local/knn" == model.id
    assert out.cost_usd == 0.0 and not out.cached
    assert out.usage.completion_tokens == token_count(out.text) > 0
    content = sum(token_count(m["content"]) for m in req.messages)
    assert out.usage.prompt_tokens == content + 3 * len(req.messages) + 3
    assert 0.0 <= out.latency_s < 5.0


def test_template_text_common_to_user_messages_is_stripped(model):
    from promptgov.model._knn import _Prepared

    fixed = ({"role": "system", "content": "Classify."},
             {"role": "user", "content": "Customer message:\nI lost my card"},
             {"role": "assistant", "content": '{"label": "lost"}'},
             {"role": "user", "content": "Customer message:\nIs there a fee?"},
             {"role": "assistant", "content": '{"label": "fee"}'})
    prep = _Prepared(fixed)
    assert prep.demos_in == ["I lost my card", "Is there a fee?"]
    assert prep.strip_template("Customer message:\nIs my card here?") == "Is my card here?"
    assert prep.strip_template("Something else entirely") == "Something else entirely"


# -- extraction --------------------------------------------------------------------------------

def test_extraction_answers_validate(ws, model):
    schema = ws.schema("ticket_extraction@1")
    for c in ws.evalset("ticket_extraction").cases[:60]:
        text = model.complete(_request(ws, "ticket_extraction@1", c.input,
                                       "ticket_extraction@1")).text
        out = schema.model.model_validate_json(text)
        assert out.intents, c.input  # the neighbours always vote for at least one intent


def test_extraction_fills_typed_fields_from_the_message(ws, model):
    schema = ws.schema("ticket_extraction@1")
    req = _request(ws, "ticket_extraction@1",
                   {"text": "I paid £40 to the gym tomorrow at 10 past 9 in the evening"},
                   "ticket_extraction@1")
    out = json.loads(model.complete(req).text)
    schema.model.model_validate(out)
    assert out["amount"] == 40.0
    assert out["date"] == "2022-03-16"  # "Today is 2022-03-15" in the system message
    assert out["time"] == "21:10"
    assert out["person"] is None and out["number"] is None


def test_schema_with_refs_nullable_enums_booleans_and_nested_objects(model):
    schema = {
        "$defs": {"Color": {"enum": ["red", "green", "blue"], "type": "string"},
                  "Ref": {"type": "object", "properties": {
                      "order_id": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                      "when": {"type": ["string", "null"], "format": "date"}},
                      "required": ["order_id", "when"]}},
        "type": "object",
        "properties": {"color": {"anyOf": [{"$ref": "#/$defs/Color"}, {"type": "null"}]},
                       "urgent": {"type": "boolean"},
                       "ref": {"$ref": "#/$defs/Ref"},
                       "count": {"type": "integer", "minimum": 0},
                       "note": {"type": "string"},
                       "confidence": {"type": "number", "minimum": 0, "maximum": 1}},
        "required": ["color", "urgent", "ref", "count", "note", "confidence"],
    }
    msgs = ({"role": "system", "content": "Today is 2024-01-10.\n- red: warm\n- blue: cold"},
            {"role": "user", "content": "Msg: my red thing broke, urgent"},
            {"role": "assistant", "content": json.dumps(
                {"color": "red", "urgent": True, "ref": {"order_id": None, "when": None},
                 "count": 1, "note": "x", "confidence": 1})},
            {"role": "user", "content": "Msg: the sea is blue and calm"},
            {"role": "assistant", "content": json.dumps(
                {"color": "blue", "urgent": False, "ref": {"order_id": None, "when": None},
                 "count": 2, "note": "y", "confidence": 1})},
            {"role": "user", "content": "Msg: order B-20451 arrived yesterday, red and broken"})
    out = json.loads(model.complete(Request(messages=msgs, response_schema=schema)).text)
    assert set(out) == set(schema["properties"])
    assert out["color"] in ("red", "green", "blue")
    assert isinstance(out["urgent"], bool)
    assert out["ref"] == {"order_id": "B-20451", "when": "2024-01-09"}
    assert isinstance(out["count"], int) and out["count"] >= 0
    assert isinstance(out["note"], str)
    assert 0 <= out["confidence"] <= 1


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"x": {"anyOf": [{"type": "null"}],
                                            "oneOf": [{"type": "string"}]}}},
    {"type": "object", "properties": {"x": {"anyOf": ["str"]}}},
    {"type": "object", "properties": {"x": {"anyOf": 5}}},
    {"type": "object", "properties": {"x": {"type": "array", "minItems": "abc"}}},
    {"type": "object", "properties": {"x": {"type": "integer", "minimum": "x"}}},
])
def test_a_schema_it_cannot_read_is_a_bad_request_naming_the_problem(model, schema):
    msgs = ({"role": "system", "content": "Extract."}, {"role": "user", "content": "Msg: hi"})
    with pytest.raises(BadRequest, match="response_schema is not a JSON Schema it can read"):
        model.complete(Request(messages=msgs, response_schema=schema))


def test_the_last_message_must_be_the_users(model):
    with pytest.raises(BadRequest):
        model.complete(Request(messages=({"role": "assistant", "content": "hi"},)))
    with pytest.raises(BadRequest):
        model.complete(Request(messages=()))


@pytest.mark.parametrize("text, expected", [
    ("£40", 40.0), ("40€", 40.0), ("I want my 40 pounds back", 40.0),
    ("it cost $1,200.50 in total", 1200.5), ("GBP 5 fee", 5.0), ("about 2k euros", 2000.0),
    ("a transfer of 56.79 to France", 56.79), ("did I spend more than 400 in groceries", 400.0),
    ("I have 3 cards", None), ("on the 5th at 9:30", None), ("", None),
])
def test_extract_amount(text, expected):
    assert extract_amount(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("on 2022-04-02 please", "2022-04-02"), ("the 22nd of April", "2022-04-22"),
    ("April 22nd", "2022-04-22"), ("Jan the 19th", "2023-01-19"), ("3/4/2021", "2021-04-03"),
    ("tomorrow", "2022-03-16"), ("yesterday", "2022-03-14"), ("last night", "2022-03-14"),
    ("in 7 days", "2022-03-22"), ("4 weeks ago", "2022-02-15"), ("6 months ago", "2021-09-15"),
    ("on Thursday", "2022-03-17"), ("on Tuesday", "2022-03-22"), ("last Thursday", "2022-03-10"),
    ("the 18th at 20:50", "2022-03-18"), ("between May 22 and May 29th", None),
    ("for 3 days", None), ("no date here", None),
])
def test_extract_date(text, expected):
    assert extract_date(text, TODAY) == expected


def test_relative_dates_need_a_reference_date():
    assert extract_date("tomorrow", None) is None
    assert extract_date("the 22nd of April", None) is None
    assert extract_date("2022-04-02", None) == "2022-04-02"


@pytest.mark.parametrize("text, expected", [
    ("9:05", "09:05"), ("at 10 past 9", "09:10"), ("10 past 9 night", "21:10"), ("5pm", "17:00"),
    ("5 p.m.", "17:00"), ("12am", "00:00"), ("quarter to 7", "06:45"), ("20 to 2", "01:40"),
    ("half past 3 in the afternoon", "15:30"), ("7:25 in the evening", "19:25"),
    ("0 35 a.m.", "00:35"), ("at 3 night", "03:00"), ("noon", "12:00"),
    ("15 minutes ago", "08:45"), ("from 9:00 to 17:00", None), ("I paid 12.50", None),
    ("no time", None),
])
def test_extract_time(text, expected):
    assert extract_time(text, (9, 0)) == expected


def test_extract_id_integer_and_references():
    assert extract_id("my order A-12345 is late") == "A-12345"
    assert extract_id("ref INV-2020-7, thanks") == "INV-2020-7"
    assert extract_id("no id here, just A-1") is None
    assert extract_integer("Create 6 new standing orders.") == 6
    assert extract_integer("for 11 years") is None
    assert extract_integer("£40 please") is None
    assert reference_date("Answer. Today is 2022-03-15 and it is 09:00.") == TODAY
    assert reference_time("Answer. Today is 2022-03-15 and it is 09:00.") == (9, 0)
    assert reference_date("no date") is None


# -- the plain-text draft ----------------------------------------------------------------------

def test_draft_states_only_the_given_facts(ws, model):
    prompt = ws.prompt("reply_draft@1")
    for c in ws.evalset("reply_draft").cases:
        msgs = tuple(prompt.render(c.input))
        out = model.complete(Request(messages=msgs))
        facts = msgs[-1]["content"]
        assert len(out.text) <= c.expected["max_chars"]
        for number in re.findall(r"\d+(?:[.,]\d+)*", out.text):
            assert number in facts, (number, out.text)
        for key in c.expected["required_facts"]:
            assert str(c.input["facts"][key]) in out.text, (key, out.text)
        f = c.input["facts"]
        assert ("not eligible" in out.text) == (not f["refund_eligible"])
        assert out.cost_usd == 0.0 and out.usage.prompt_tokens > 0


def test_draft_without_facts_invents_nothing():
    reply = draft_reply("Please write to the customer.")
    assert not re.search(r"\d", reply)
    assert reply.startswith("Hello,")
    assert len(draft_reply("- note: " + "x" * 2000)) <= 600


def test_a_messages_own_today_line_is_its_reference_date_and_not_its_text():
    """A prompt's ``today`` variable renders ``Today is YYYY-MM-DD.``: relative dates resolve
    against it, and the date itself is never the extracted date."""
    from promptgov.model import Request
    from promptgov.model._knn import KnnModel

    schema = {"type": "object", "required": ["date"], "properties": {"date": {
        "anyOf": [{"type": "string"}, {"type": "null"}], "description": "YYYY-MM-DD"}}}
    demos = [("it came 4 weeks ago", "2022-02-15"), ("where is my card", None)]
    m = KnnModel()

    def ask(today: str, text: str):
        msgs = ({"role": "system", "content": "Extract the date."},)
        for said, answer in demos:
            msgs += ({"role": "user", "content": f"Today is 2022-03-15.\nMessage:\n{said}"},
                     {"role": "assistant", "content": json.dumps({"date": answer})})
        msgs += ({"role": "user", "content": f"Today is {today}.\nMessage:\n{text}"},)
        return json.loads(m.complete(Request(messages=msgs, response_schema=schema)).text)

    assert ask("2026-01-10", "I paid 3 days ago") == {"date": "2026-01-07"}
    assert ask("2022-03-15", "I paid 3 days ago") == {"date": "2022-03-12"}
    assert ask("2026-01-10", "where is my card") == {"date": None}


# -- several fields of one type ------------------------------------------------------------------
def _nullable(t: str, description: str) -> dict:
    return {"anyOf": [{"type": t}, {"type": "null"}], "description": description}


HOTEL_SCHEMA = {"type": "object", "properties": {
    "date": _nullable("string", "Specific date mentioned, YYYY-MM-DD."),
    "date_from": _nullable("string", "Start date of the stay, YYYY-MM-DD."),
    "date_to": _nullable("string", "End date of the stay, YYYY-MM-DD."),
    "people": _nullable("integer", "Number of people in total."),
    "adults": _nullable("integer", "Number of adults."),
    "kids": _nullable("integer", "Number of kids."),
    "rooms": _nullable("integer", "Number of rooms.")}}
_HOTEL_DEMOS = [
    ("We arrive on the 2nd of June and leave on the 5th of June",
     {"date_from": "2022-06-02", "date_to": "2022-06-05"}),
    ("2 adults and 1 kid please", {"adults": 2, "kids": 1}),
    ("a table for 4 on the 9th of April", {"date": "2022-04-09", "people": 4}),
    ("I need 3 rooms", {"rooms": 3}),
    ("what time is breakfast", {}),
]


def _hotel(model: KnnModel, text: str) -> dict:
    msgs: list[dict] = [{"role": "system", "content": "Extract the booking. Today is 2022-03-15."}]
    for t, out in _HOTEL_DEMOS:
        msgs += [{"role": "user", "content": f"Message: {t}"}, {"role": "assistant", "content":
                 json.dumps({k: out.get(k) for k in HOTEL_SCHEMA["properties"]})}]
    msgs.append({"role": "user", "content": f"Message: {text}"})
    return json.loads(model.complete(Request(messages=tuple(msgs),
                                             response_schema=HOTEL_SCHEMA)).text)


def test_fields_of_one_type_are_told_apart_by_their_cues(model):
    out = _hotel(model, "2 adults and 3 kids in 2 rooms from the 3rd of May until the 7th of May")
    assert out == {"date": None, "date_from": "2022-05-03", "date_to": "2022-05-07",
                   "people": None, "adults": 2, "kids": 3, "rooms": 2}
    out = _hotel(model, "8 adults")  # one value: one field, not all four
    assert out["adults"] == 8 and [out[k] for k in ("people", "kids", "rooms")] == [None] * 3
    out = _hotel(model, "leaving on the 12th of May")
    assert out["date_to"] == "2022-05-12" and out["date_from"] is None and out["date"] is None


def test_fields_share_a_value_only_when_the_demos_show_it(model):
    schema = {"type": "object", "properties": {k: HOTEL_SCHEMA["properties"][k]
                                               for k in ("date", "date_from")}}
    msgs: list[dict] = [{"role": "system", "content": "Today is 2022-03-15."}]
    for text, d in (("staying from the 2nd of June", "2022-06-02"),
                    ("a room from the 3rd of July please", "2022-07-03"),
                    ("we come on the 4th of August", "2022-08-04")):
        msgs += [{"role": "user", "content": f"Message: {text}"},
                 {"role": "assistant", "content": json.dumps({"date": d, "date_from": d})}]
    msgs.append({"role": "user", "content": "Message: from the 9th of May"})
    out = json.loads(model.complete(Request(messages=tuple(msgs), response_schema=schema)).text)
    assert out == {"date": "2022-05-09", "date_from": "2022-05-09"}

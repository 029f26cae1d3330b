"""DSPyModel end to end: the real dspy.LM (default engine, lm15 requests) against a loopback
OpenAI server.

Nothing inside dspy or LiteLLM is mocked; the only fake is the server (tests/support). No test
reaches the internet (the ``no_internet`` guard fails any non-loopback connection).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from promptgov.errors import (
    AuthFailed,
    BadRequest,
    ModelNotFound,
    ModelTimeout,
    RateLimited,
    Refused,
    ServerError,
)
from promptgov.model._base import Completion, Model, Request, Usage
from promptgov.model._cost import PRICE_MAP_FILE, is_priced, price_usd
from promptgov.model._dspy import DSPyModel
from support.fixtures import no_internet, openai_server  # noqa: F401 - pytest fixtures
from support.openai_server import OpenAIServer, Reply

MODEL = "openai/gpt-4o-mini"
FAKE_KEY = "sk-test-fake-key-0123456789"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _offline_env(monkeypatch: pytest.MonkeyPatch, no_internet: None) -> None:  # noqa: F811
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    for name in ("OPENAI_API_BASE", "OPENAI_BASE_URL"):  # would redirect the client
        monkeypatch.delenv(name, raising=False)


def _model(server: OpenAIServer, model_id: str = MODEL, **kwargs) -> DSPyModel:
    return DSPyModel(model_id, api_base=server.base_url, **kwargs)


def _request(**kwargs) -> Request:
    return Request(messages=({"role": "system", "content": "Classify."},
                             {"role": "user", "content": "win a free cruise"}), **kwargs)


def _litellm_rates(name: str) -> tuple[float, float]:
    import importlib.util

    folder = Path(importlib.util.find_spec("litellm").origin).parent
    entry = json.loads((folder / PRICE_MAP_FILE).read_text())[name]
    return entry["input_cost_per_token"], entry["output_cost_per_token"]


# --- successful calls --------------------------------------------------------------------------


def test_completion_reads_text_usage_and_sends_the_request(openai_server: OpenAIServer):  # noqa: F811
    openai_server.reply('{"label": "spam"}', prompt_tokens=123, completion_tokens=7)
    model = _model(openai_server)
    assert isinstance(model, Model)

    out = model.complete(_request(temperature=0.0, max_tokens=64))

    assert isinstance(out, Completion)
    assert out.text == '{"label": "spam"}'
    assert out.model == MODEL
    assert out.usage == Usage(prompt_tokens=123, completion_tokens=7)
    assert out.latency_s > 0 and not out.cached
    [seen] = openai_server.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.authorization == f"Bearer {FAKE_KEY}"
    assert seen.body["model"] == "gpt-4o-mini"
    assert seen.body["messages"] == [{"role": "system", "content": "Classify."},
                                     {"role": "user", "content": "win a free cruise"}]
    assert seen.body["temperature"] == 0.0
    assert seen.body["max_completion_tokens"] == 64  # lm15 spells max_tokens the new way
    assert "response_format" not in seen.body
    assert out.finish_reason == "stop"


def test_finish_reason_length_is_kept_with_the_text(openai_server: OpenAIServer):  # noqa: F811
    openai_server.push(Reply(text='{"label": "sp', finish_reason="length"))
    out = _model(openai_server).complete(_request())
    assert (out.text, out.finish_reason) == ('{"label": "sp', "length")


def test_demos_and_later_system_messages_keep_their_roles(openai_server: OpenAIServer):  # noqa: F811
    openai_server.reply("ok")
    messages = ({"role": "system", "content": "Classify."},
                {"role": "user", "content": "demo in"},
                {"role": "assistant", "content": "demo out"},
                {"role": "system", "content": "Be brief."}, {"role": "user", "content": "real"})
    _model(openai_server).complete(Request(messages=messages))
    sent = [(m["role"], m["content"]) for m in openai_server.requests[0].body["messages"]]
    assert sent[0] == ("system", "Classify.")
    assert sent[1:3] == [("user", "demo in"), ("assistant", "demo out")]
    assert sent[-1] == ("user", "real") and sent[3][1] == "Be brief."


def test_no_deprecated_messages_call_and_no_litellm(openai_server: OpenAIServer):  # noqa: F811
    import warnings

    openai_server.reply("ok")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # dspy warns on the deprecated messages= call
        _model(openai_server).complete(_request())
    code = ("import os, sys; sys.path.insert(0, 'tests')\n"
            "from support.openai_server import OpenAIServer\n"
            "from promptgov.model._dspy import DSPyModel\n"
            "from promptgov.model._base import Request\n"
            "with OpenAIServer() as s:\n"
            "    DSPyModel('openai/gpt-4o-mini', api_base=s.base_url).complete(\n"
            "        Request(messages=({'role': 'user', 'content': 'hi'},)))\n"
            "print('litellm' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"  # the default engine never loaded LiteLLM


def test_response_schema_reaches_the_server_as_response_format(openai_server: OpenAIServer):  # noqa: F811
    schema = {"type": "object", "properties": {"label": {"type": "string"}},
              "required": ["label"]}
    openai_server.reply('{"label": "spam"}')

    _model(openai_server).complete(_request(response_schema=schema, schema_name="verdict"))

    assert openai_server.requests[0].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "verdict", "schema": schema, "strict": False}}


def test_api_key_env_is_read_at_call_time_and_never_shown(openai_server: OpenAIServer,  # noqa: F811
                                                          monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PROMPTGOV_TEST_KEY", "sk-other-secret-98765")
    model = _model(openai_server, api_key_env="PROMPTGOV_TEST_KEY")
    model.complete(_request())
    assert openai_server.requests[0].authorization == "Bearer sk-other-secret-98765"
    assert "sk-other" not in repr(model) and "sk-other" not in repr(vars(model))

    monkeypatch.delenv("PROMPTGOV_TEST_KEY")
    with pytest.raises(AuthFailed, match="PROMPTGOV_TEST_KEY is not set") as caught:
        model.complete(_request())
    assert caught.value.systematic and not caught.value.transient
    assert len(openai_server.requests) == 1


def test_missing_provider_key_fails_before_anything_is_sent(openai_server: OpenAIServer,  # noqa: F811
                                                           monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    model = _model(openai_server)
    with pytest.raises(AuthFailed) as caught:
        model.preflight()
    assert str(caught.value) == ("OPENAI_API_KEY is not set (fix: export OPENAI_API_KEY=..., "
                                 "or --model local/knn)")
    with pytest.raises(AuthFailed, match="OPENAI_API_KEY is not set"):
        model.complete(_request())  # dspy's own check, mapped the same way
    assert openai_server.requests == []
    DSPyModel("ollama_chat/llama3.2").preflight()  # no key needed: not pre-checked


def test_unknown_model_is_not_found_and_systematic(openai_server: OpenAIServer):  # noqa: F811
    openai_server.fail(404, message="The model `gpt-9` does not exist", code="model_not_found")
    with pytest.raises(ModelNotFound) as caught:
        _model(openai_server, "openai/gpt-9", num_retries=3).complete(_request())
    assert caught.value.kind == "not_found" and caught.value.systematic
    assert "gpt-9" in str(caught.value) and "fix:" in str(caught.value)
    assert len(openai_server.requests) == 1


# --- failures ----------------------------------------------------------------------------------


def test_rate_limit_is_retried_with_backoff_then_succeeds(openai_server: OpenAIServer):  # noqa: F811
    openai_server.fail(429, times=2, retry_after=0.1).reply("finally")

    out = _model(openai_server, num_retries=3).complete(_request())

    assert out.text == "finally"
    assert len(openai_server.requests) == 3
    at = [r.at for r in openai_server.requests]
    assert all(later - earlier >= 0.08 for earlier, later in zip(at, at[1:], strict=False)), at


def test_rate_limit_out_of_retries_raises_rate_limited_with_retry_after(
        openai_server: OpenAIServer):  # noqa: F811
    openai_server.fail(429, retry_after=7)
    with pytest.raises(RateLimited) as caught:
        _model(openai_server, num_retries=0).complete(_request())
    assert caught.value.retry_after == 7.0
    assert caught.value.transient and caught.value.model == MODEL
    assert len(openai_server.requests) == 1


def test_stall_longer_than_the_timeout_raises_model_timeout(openai_server: OpenAIServer):  # noqa: F811
    openai_server.stall(5)
    started = time.monotonic()
    with pytest.raises(ModelTimeout):
        _model(openai_server, timeout_s=1, num_retries=0).complete(_request())
    assert time.monotonic() - started < 3


def test_request_timeout_can_only_lower_the_model_timeout(openai_server: OpenAIServer):  # noqa: F811
    openai_server.stall(5)
    started = time.monotonic()
    with pytest.raises(ModelTimeout):
        _model(openai_server, timeout_s=60, num_retries=0).complete(_request(timeout_s=0.5))
    assert time.monotonic() - started < 2.5


def test_server_error_without_retries_raises_server_error(openai_server: OpenAIServer):  # noqa: F811
    openai_server.fail(500)
    with pytest.raises(ServerError) as caught:
        _model(openai_server, num_retries=0).complete(_request())
    assert caught.value.transient
    assert len(openai_server.requests) == 1  # no hidden retries in LiteLLM or the OpenAI SDK


def test_bad_request_raises_bad_request_and_is_not_retried(openai_server: OpenAIServer):  # noqa: F811
    openai_server.fail(400, message="Invalid schema for response_format")
    with pytest.raises(BadRequest, match="Invalid schema"):
        _model(openai_server, num_retries=3).complete(_request())
    assert len(openai_server.requests) == 1


def test_refused_key_is_auth_without_the_key(openai_server: OpenAIServer):  # noqa: F811
    openai_server.fail(401, message=f"Incorrect API key provided: {FAKE_KEY}")
    with pytest.raises(AuthFailed) as caught:
        _model(openai_server, num_retries=3).complete(_request())
    assert FAKE_KEY not in str(caught.value)
    assert caught.value.kind == "auth" and not caught.value.transient
    assert "fix: check the key in OPENAI_API_KEY" in str(caught.value)
    assert len(openai_server.requests) == 1


def test_content_filter_is_refused(openai_server: OpenAIServer):  # noqa: F811
    openai_server.fail(400, code="content_filter", message="blocked by the content policy")
    openai_server.push(Reply(text="", finish_reason="content_filter"))
    model = _model(openai_server, num_retries=0)
    with pytest.raises(Refused):
        model.complete(_request())
    with pytest.raises(Refused):
        model.complete(_request())


def test_error_messages_are_one_line(openai_server: OpenAIServer):  # noqa: F811
    openai_server.fail(401, message="bad credentials")
    with pytest.raises(AuthFailed) as caught:
        _model(openai_server, num_retries=0).complete(_request(label="triage@2", case_id="c17"))
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(
        f"{MODEL} (triage@2, case c17): LMAuthError HTTP 401: bad credentials")


def test_litellm_engine_is_still_supported(openai_server: OpenAIServer):  # noqa: F811
    """engine="litellm" (slower) goes through LiteLLM with the same lm15 request."""
    model = _model(openai_server, engine="litellm", num_retries=0)
    openai_server.reply('{"label": "ham"}', prompt_tokens=1000, completion_tokens=200)
    out = model.complete(_request(response_schema={"type": "object"}))
    assert out.text == '{"label": "ham"}' and out.usage == Usage(1000, 200)
    assert out.cost_usd == pytest.approx(price_usd(MODEL, out.usage))
    body = openai_server.requests[0].body
    assert body["response_format"]["json_schema"]["schema"] == {"type": "object"}


def test_provider_reported_cost_wins_over_the_price_map(openai_server: OpenAIServer):  # noqa: F811
    openai_server.push(Reply(text="ok", prompt_tokens=1000, completion_tokens=200,
                             usage_extra={"cost": 0.0123}))
    out = _model(openai_server).complete(_request())
    assert out.cost_usd == pytest.approx(0.0123)


# --- cost --------------------------------------------------------------------------------------


def test_cost_of_a_priced_model_follows_the_price_map(openai_server: OpenAIServer):  # noqa: F811
    openai_server.reply("ok", prompt_tokens=1000, completion_tokens=200)
    out = _model(openai_server).complete(_request())

    per_in, per_out = _litellm_rates("gpt-4o-mini")
    expected = 1000 * per_in + 200 * per_out
    assert out.cost_usd > 0
    assert out.cost_usd == pytest.approx(expected)
    assert price_usd(MODEL, out.usage) == pytest.approx(expected)
    assert price_usd("gpt-4o-mini", out.usage) == pytest.approx(expected)
    assert is_priced(MODEL)


def test_price_override_table_prices_an_unknown_model(openai_server: OpenAIServer):  # noqa: F811
    unknown = "openai/acme-private-model-v9"
    table = {unknown: {"input_per_1m": 2.0, "output_per_1m": 8.0}}
    assert not is_priced(unknown) and is_priced(unknown, table)
    assert price_usd(unknown, Usage(1000, 500)) == 0.0

    openai_server.reply("ok", prompt_tokens=1000, completion_tokens=500)
    out = _model(openai_server, unknown, prices=table).complete(_request())

    assert out.cost_usd == pytest.approx((1000 * 2.0 + 500 * 8.0) / 1_000_000)
    assert openai_server.requests[0].body["model"] == "acme-private-model-v9"


def test_price_override_wins_over_the_price_map():
    table = {"gpt-4o-mini": {"input_per_1m": 1.0, "output_per_1m": 1.0}}
    assert price_usd(MODEL, Usage(1_000_000, 0), table) == pytest.approx(1.0)


def test_the_price_map_is_parsed_once_when_first_answers_land_together(
        monkeypatch: pytest.MonkeyPatch):
    """16 workers whose first answers land at once each parsed the 3.5 MB price map (0.9 s of
    GIL time in bench_providers); the first parses it under _cost's lock, the rest reuse it."""
    import threading
    import types

    from promptgov.model import _cost

    parses = []

    def slow_loads(text: str) -> object:
        parses.append(1)
        time.sleep(0.05)  # widens the window in which the others would parse it too
        return json.loads(text)

    monkeypatch.setattr(_cost, "json", types.SimpleNamespace(loads=slow_loads))
    _cost._read_price_map.cache_clear()
    try:
        model = DSPyModel(MODEL, api_base="http://127.0.0.1:9/v1")
        start, costs = threading.Barrier(16), []

        def answer() -> None:
            start.wait()
            costs.append(model._cost(types.SimpleNamespace(provider_data={}), Usage(1000, 200)))

        threads = [threading.Thread(target=answer) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        _cost._read_price_map.cache_clear()  # the next test parses the real file again
    per_in, per_out = _litellm_rates("gpt-4o-mini")
    assert len(parses) == 1
    assert costs == [pytest.approx(1000 * per_in + 200 * per_out)] * 16


@pytest.mark.parametrize("model_id", ["local/knn", "replay:cassettes/run1.jsonl", "fake",
                                      "fake:flaky"])
def test_local_models_cost_nothing(model_id: str):
    table = {model_id: {"input_per_1m": 5.0, "output_per_1m": 5.0}}
    assert price_usd(model_id, Usage(10_000, 10_000)) == 0.0
    assert price_usd(model_id, Usage(10_000, 10_000), table) == 0.0
    assert is_priced(model_id)


# --- import cost -------------------------------------------------------------------------------


def test_importing_the_adapter_loads_neither_dspy_nor_litellm():
    code = (
        "import json, sys\n"
        "from promptgov.model._dspy import DSPyModel\n"
        "from promptgov.model._cost import price_usd\n"
        "from promptgov.model._base import Usage\n"
        "m = DSPyModel('openai/gpt-4o-mini', api_base='http://127.0.0.1:9/v1')\n"
        "assert price_usd('openai/gpt-4o-mini', Usage(10, 10)) > 0\n"
        "print(json.dumps(sorted(n for n in sys.modules\n"
        "                        if n.split('.')[0] in ('dspy', 'litellm', 'openai'))))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_enum_schema_answers_keep_the_providers_exact_text(openai_server: OpenAIServer):  # noqa: F811
    """lm15 folds a JSON answer to a schema with enum fields into a parsed data part; the
    adapter returns the provider's own text, which promptgov parses and validates itself."""
    schema = {"type": "object", "properties": {"label": {"type": "string",
                                                         "enum": ["spam", "ham"]}}}
    text = '{"label":   "spam"}'
    openai_server.reply(text)
    out = _model(openai_server).complete(_request(response_schema=schema))
    assert out.text == text

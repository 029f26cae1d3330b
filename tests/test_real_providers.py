"""The real-provider path end to end: ``openai/gpt-4o-mini`` (dspy's default engine) against the
loopback OpenAI server, through ``evaluate()`` and through the ``promptgov eval`` process.

What a user with a provider key relies on (principle 11): a systematic failure stops the run at
once with one line and its fix; Ctrl-C stops sending within a second, keeps what was answered and
resumes; no answer text can sink the run or hang it; a killed run pays nothing twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

import promptgov as pg
from promptgov.errors import EvalInterrupted, RunStopped
from promptgov.eval._cache import ResponseCache
from promptgov.model._base import Completion, Usage
from support.openai_server import OpenAIServer, Reply

MODEL = "openai/gpt-4o-mini"
KEY = "sk-test-loopback-0123456789"
ANSWER = '{"label": "card_arrival", "confidence": 0.9}'
CLI = Path(sys.executable).parent / "promptgov"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    for name in ("OPENAI_API_BASE", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def ws(workspace_dir: Path) -> Path:
    """The workspace with a zero-shot ticket_triage@1 (no demos: small requests) and its first
    ``N`` triage cases."""
    p = workspace_dir / "prompts" / "ticket_triage" / "v1.yaml"
    data = yaml.safe_load(p.read_text())
    data["demos"] = []
    p.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    from promptgov.workspace import Workspace
    from promptgov.workspace._evalset import write_evalset

    es = Workspace(workspace_dir).evalset("ticket_triage")
    write_evalset(workspace_dir / "evalsets" / "ticket_triage",
                  es.manifest.model_copy(update={"count": N}), list(es.cases[:N]))
    # A scratch variant of the example: nothing in it is locked, so the edited v1 and the cut
    # evalset are evaluated as they are (a locked version that drifted is refused).
    (workspace_dir / "governance" / "lock.json").unlink()
    return workspace_dir


N = 120


def user_text(body: dict) -> str:
    """The case's message: the first user message (a re-ask appends another)."""
    return [m for m in body["messages"] if m["role"] == "user"][0]["content"]


def case_texts(ws: Path) -> list[str]:
    w = pg.Workspace(ws)
    pv = w.prompt("ticket_triage@1")
    return [pv.messages(c.input)[-1]["content"] for c in w.evalset("ticket_triage").cases]


def cli(ws: Path, server: OpenAIServer, *args: str, env: dict | None = None,
        **popen) -> subprocess.Popen:
    cmd = [str(CLI), "eval", "ticket_triage@1", "--model", MODEL, "--api-base",
           server.base_url, "--no-track", "--workspace", str(ws), *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, **popen)


def evaluate(ws: Path, server: OpenAIServer, **kwargs):
    model = pg.get_model(MODEL, api_base=server.base_url)
    return pg.evaluate("ticket_triage@1", workspace=pg.Workspace(ws), model=model,
                       track=False, **kwargs)


# -- systematic failures --------------------------------------------------------------------

def test_missing_key_stops_the_cli_in_one_line_with_the_fix(ws: Path):
    with OpenAIServer(lambda body: ANSWER) as server:
        env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
        started = time.monotonic()
        proc = subprocess.run(
            [str(CLI), "eval", "ticket_triage@1", "--model", MODEL, "--api-base",
             server.base_url, "--no-track", "--workspace", str(ws)],
            capture_output=True, text=True, env=env, timeout=60)
        elapsed = time.monotonic() - started
        sent = len(server.requests)
    assert proc.returncode != 0
    assert elapsed < 3, elapsed
    assert sent <= 1
    assert proc.stderr.strip().splitlines() == [
        "error: OPENAI_API_KEY is not set (fix: export OPENAI_API_KEY=..., or --model local/knn)"]


def test_refused_key_stops_sending_and_records_the_rest_not_sent(ws: Path):
    with OpenAIServer(lambda body: ANSWER, api_key="sk-the-right-key-000000") as server:
        with pytest.raises(RunStopped) as caught:
            evaluate(ws, server, concurrency=4)
        elapsed = time.monotonic() - server.requests[0].at  # dspy's import is before that
        sent = len(server.requests)
    message = str(caught.value)
    assert "\n" not in message and "HTTP 401" in message
    assert "fix: check the key in OPENAI_API_KEY, or --model local/knn" in message
    assert KEY not in message
    assert sent <= 4  # at most the calls already in flight
    assert elapsed < 1, elapsed
    records = caught.value.result.records
    assert len(records) == N
    kinds = Counter(r["failure"] for r in records)
    assert kinds["auth"] == sent and kinds["not_sent"] == N - sent
    assert all(r["error"] == message for r in records if r["failure"] == "not_sent")


def test_unknown_model_stops_the_run(ws: Path):
    server = OpenAIServer()
    server.fail(404, message="The model `gpt-4o-mini` does not exist", code="model_not_found",
                times=1000)
    with server, pytest.raises(RunStopped, match="does not exist.*fix: check the model id"):
        evaluate(ws, server, concurrency=2)
    assert len(server.requests) <= 2


def test_the_same_bad_request_again_and_again_stops_the_run(ws: Path):
    server = OpenAIServer()
    server.fail(400, message="Invalid schema for response_format 'ticket_triage_1'", times=1000)
    with server, pytest.raises(RunStopped, match="same bad request on 5 cases in a row"):
        evaluate(ws, server, concurrency=1)
    assert len(server.requests) == 5


def test_a_bad_request_now_and_then_does_not_stop_the_run(ws: Path):
    def answer(body: dict) -> str | Reply:
        if user_text(body).endswith(("a", "e")):
            return Reply(status=400, error_body={"error": {
                "message": "This message is flagged", "type": "invalid_request_error"}})
        return ANSWER

    with OpenAIServer(answer) as server:
        r = evaluate(ws, server, concurrency=4)
        sent = len(server.requests)
    assert sent == N
    assert {rec["failure"] for rec in r.records} <= {None, "bad_request"}


# -- Ctrl-C ------------------------------------------------------------------------------------

def test_sigint_stops_sending_within_a_second_and_the_same_command_resumes(ws: Path):
    texts = case_texts(ws)
    with OpenAIServer(lambda body: ANSWER, latency_s=0.05) as server:
        proc = cli(ws, server, "--concurrency", "4")
        try:
            deadline = time.monotonic() + 60
            while len(server.requests) < 30:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the eval never got going"
                time.sleep(0.01)
            proc.send_signal(signal.SIGINT)
            interrupted_at = time.monotonic()
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        first = list(server.requests)
        assert proc.returncode == 130, err
        assert max(r.at for r in first) - interrupted_at < 1.0  # nothing sent a second later
        assert len(first) < N
        assert "interrupted:" in err and "cases answered and kept" in err
        resume = next(line for line in err.splitlines() if line.startswith("resume: "))
        assert f"promptgov eval ticket_triage@1 --model {MODEL}" in resume

        proc = cli(ws, server, "--concurrency", "4", "--json")
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert json.loads(out)["calls"] == N - len(first)  # only the unsent are sent now
    sent = Counter(user_text(r.body) for r in server.requests)
    assert set(sent) == set(texts) and set(sent.values()) == {1}  # each case paid once


def test_keyboard_interrupt_in_a_kernel_raises_after_keeping_the_answers(ws: Path):
    main = threading.main_thread().ident

    def interrupt_after_20(body: dict) -> str:
        if len(server.requests) == 20:
            import _thread

            assert threading.get_ident() != main
            _thread.interrupt_main()  # what a notebook's interrupt button does
        return ANSWER

    server = OpenAIServer(interrupt_after_20, latency_s=0.02)
    with server:
        with pytest.raises(EvalInterrupted) as caught:
            evaluate(ws, server, concurrency=4)
        assert isinstance(caught.value, KeyboardInterrupt)
        records = caught.value.result.records
        answered = [r for r in records if r["failure"] is None]
        assert len(records) == N and len(answered) >= 16
        assert {r["failure"] for r in records} <= {None, "not_sent", "interrupted"}
        sent_before = len(server.requests)

        r = evaluate(ws, server, concurrency=4)  # resumes
    assert r.calls == len(server.requests) - sent_before == N - sent_before  # only the unsent
    assert all(rec["failure"] is None for rec in r.records)


# -- nothing can sink or hang the run ------------------------------------------------------------

def test_surrogates_nuls_and_a_megabyte_answer_are_stored_and_scored(ws: Path):
    texts = case_texts(ws)
    odd = {texts[0]: '{"label": "card_arrival", "confidence": 0.9}' + " " * 1_000_000,
           texts[1]: "\ud800",
           texts[2]: '{"label": "card_arrival\ud800", "confidence": 0.5}',
           texts[3]: '{"label": "card_arrival", "confidence": 0.9}\x00'}
    with OpenAIServer(lambda body: odd.get(user_text(body), ANSWER)) as server:
        r = evaluate(ws, server, concurrency=4)
        calls = len(server.requests)
        again = evaluate(ws, server, concurrency=4)
        assert len(server.requests) == calls and again.calls == 0  # all from the cache
    by_text = {texts[i]: rec for i, rec in enumerate(r.records)}
    assert len(r.records) == N
    assert by_text[texts[0]]["output"]["label"] == "card_arrival"
    assert len(by_text[texts[0]]["raw"]) > 1_000_000
    assert by_text[texts[1]]["failure"] == "invalid_json"
    assert by_text[texts[2]]["failure"] == "schema_violation"
    assert by_text[texts[2]]["raw"] == odd[texts[2]]
    assert by_text[texts[3]]["failure"] in (None, "invalid_json")
    # the cached copies are the exact texts, lone surrogate included
    assert [x["raw"] for x in again.records] == [x["raw"] for x in r.records]


def test_a_raising_custom_model_fails_its_case_only(ws: Path):
    first = pg.Workspace(ws).evalset("ticket_triage").cases[7].id

    class Flaky:
        id = "custom/flaky"

        def complete(self, request):
            if request.case_id == first:
                raise KeyError("confidence")
            return Completion(text=ANSWER, model=self.id, usage=Usage(1, 1))

    r = pg.evaluate("ticket_triage@1", workspace=pg.Workspace(ws), model=Flaky(),
                    track=False, concurrency=4)
    failed = [rec for rec in r.records if rec["failure"]]
    assert len(r.records) == N and [rec["case_id"] for rec in failed] == [first]
    assert failed[0]["failure"] == "error" and "KeyError: 'confidence'" in failed[0]["error"]


def test_a_failing_cache_write_reaches_the_caller_and_loses_nothing(ws: Path, monkeypatch):
    def broken(self, rows):
        raise OSError("disk full")

    with OpenAIServer(lambda body: ANSWER) as server:
        with monkeypatch.context() as m:
            m.setattr(ResponseCache, "_insert", broken)
            with pytest.raises(RuntimeError, match="disk full.*journal"):
                evaluate(ws, server, concurrency=4)
        sent = len(server.requests)
        assert sent == N
        r = evaluate(ws, server, concurrency=4)  # the kept journal is folded in: no re-send
    assert r.calls == 0 and len(server.requests) == N


# -- SIGKILL ---------------------------------------------------------------------------------------

def test_sigkill_then_resume_sends_nothing_already_answered(ws: Path):
    answered: list[str] = []
    lock = threading.Lock()

    def first_30_then_stall(body: dict) -> str | Reply:
        with lock:
            if len(answered) < 30:
                answered.append(user_text(body))
                return ANSWER
        return Reply(text=ANSWER, stall_s=120)  # in flight when the client dies

    with OpenAIServer(first_30_then_stall) as server:
        proc = cli(ws, server, "--concurrency", "4")
        try:
            deadline = time.monotonic() + 60
            while len(server.requests) < 34:  # 30 answered, 4 stalled in flight
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline
                time.sleep(0.01)
            time.sleep(0.5)  # every answer has reached the client
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == -signal.SIGKILL
        before = len(server.requests)

        server.responder = lambda body: ANSWER
        proc = cli(ws, server, "--concurrency", "4", "--json")
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        resent = [user_text(r.body) for r in server.requests[before:]]
    assert not set(resent) & set(answered)  # nothing answered was paid again
    assert len(resent) == N - 30 and json.loads(out)["calls"] == N - 30

"""An API key in the environment reaches no file a run writes: cache, cassette, MLflow store
and artifacts, the lock. The run goes through the real DSPy/LiteLLM path to a loopback server,
including a failing call whose error message is recorded."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from promptgov.errors import BadRequest
from promptgov.model._dspy import DSPyModel
from promptgov.model._replay import RecordingModel

SECRET = "sk-live-DO-NOT-LEAK-7f3a9c0e11b24d"


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_api_key_never_written(workspace, openai_server, monkeypatch, capsys, caplog):
    import promptgov as pg

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    es = workspace.evalset("ticket_triage")
    es = replace(es, cases=es.cases[:24])

    def answer(body):
        text = body["messages"][-1]["content"]
        if "card" in text.lower():  # some calls fail with an error that echoes the key
            from support.openai_server import Reply

            # 400, not 401: a refused key is systematic and would stop the run (tested in
            # test_real_providers); a message that differs per case is no streak either.
            return Reply(status=400, error_body={"error": {
                "message": f"Rejected request {text[-40:]!r} made with key {SECRET}",
                "type": "invalid_request_error", "code": None}})
        return json.dumps({"label": "card_arrival", "confidence": 0.5})

    openai_server.responder = answer
    inner = DSPyModel("openai/gpt-4o-mini", api_base=openai_server.base_url, num_retries=0)
    cassette = workspace.root / "cassettes" / "run.jsonl"
    model = RecordingModel(inner, cassette)
    r = pg.evaluate("ticket_triage@1", es, model=model, workspace=workspace, concurrency=4)
    model.close()

    assert openai_server.requests, "the run must have reached the loopback server"
    assert openai_server.requests[0].authorization == f"Bearer {SECRET}"  # it was really used
    assert len(r.records) == 24 and r.run_id
    kinds = {rec["failure"] for rec in r.records}
    assert BadRequest.kind in kinds and None in kinds  # both paths were exercised

    written = _files(workspace.root / ".promptgov") + _files(cassette.parent)
    assert any(p.suffix == ".db" for p in written) and any("cases" in p.name for p in written)
    leaks = [p for p in written if SECRET.encode() in p.read_bytes()]
    assert leaks == []
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err
    assert SECRET not in caplog.text

"""The eval engine under faults (principle 5): nothing is lost, nothing is paid twice.

Every test runs ``evaluate()`` end to end on a private copy of the example workspace with a
seeded :class:`FakeModel`, ``track=False`` (MLflow has its own tests) and a fast retry backoff.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from promptgov.eval import evaluate
from promptgov.eval._cache import ResponseCache
from promptgov.eval._engine import REASK, Runner
from promptgov.model._fake import MALFORMED_KINDS, FakeModel
from promptgov.workspace._policy import RetryPolicy, load_policy

FAST = RetryPolicy(backoff_base_s=0.001, backoff_max_s=0.01)
FAILURE_KINDS = {"rate_limit", "timeout", "server_error", "invalid_json", "schema_violation",
                 "refused", "budget_exhausted"}
REPAIR_NAME = {"fenced": "fenced", "single_quotes": "single_quotes",
               "extra_keys": "extra_keys", "wrong_enum_case": "enum_case"}


def expected_answer(workspace, evalset: str, confidence: float | None = 0.9):
    """A FakeModel ``answer``: the case's expected output (plus a confidence for triage)."""
    expected = {c.id: c.expected for c in workspace.evalset(evalset).cases}

    def answer(request):
        out = dict(expected[request.case_id])
        if confidence is not None:
            out["confidence"] = confidence
        return out

    return answer


def cache_path(workspace) -> Path:
    return workspace.root / ".promptgov" / "cache.sqlite"


def cache_rows(workspace) -> list[tuple]:
    db = sqlite3.connect(cache_path(workspace))
    try:
        return db.execute("SELECT key, label, case_id FROM responses").fetchall()
    finally:
        db.close()


def new_version(workspace, name: str, version: int, **changes) -> None:
    """Write prompts/<name>/v<version>.yaml: v1 with ``changes`` applied (temp workspace only)."""
    import yaml

    data = yaml.safe_load((workspace.root / "prompts" / name / "v1.yaml").read_text())
    data["version"] = version
    for k, v in changes.items():
        if isinstance(v, dict):
            data[k] = {**data[k], **v}
        else:
            data[k] = v
    (workspace.root / "prompts" / name / f"v{version}.yaml").write_text(
        yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def assert_every_case_recorded(result, evalset) -> None:
    ids = [c.id for c in evalset.cases]
    df = result.cases
    assert len(result.records) == len(ids) == len(df)
    assert set(df.index) == set(ids)
    for r in result.records:
        assert (r["output"] is None) != (r["failure"] is None), r
        assert r["failure"] is None or r["failure"] in FAILURE_KINDS, r


# -- fault injection -------------------------------------------------------------------------

def test_fault_injection_loses_no_case_and_counts_every_attempt(workspace):
    es = workspace.evalset("ticket_triage")
    fake = FakeModel(answer=expected_answer(workspace, "ticket_triage"),
                     rate_limit_rate=0.10, timeout_rate=0.10, server_error_rate=0.10,
                     malformed_rate=0.10, seed=11)
    r = evaluate("ticket_triage@1", workspace=workspace, model=fake, concurrency=8,
                 track=False, retry=FAST)

    assert_every_case_recorded(r, es)
    outcomes = Counter(o.split(":")[0] for _, o in fake.calls)
    assert {"rate_limit", "timeout", "server_error", "malformed", "ok"} <= set(outcomes)

    retries = sum(rec["retries"] for rec in r.records)
    reasks = sum(rec["reasks"] for rec in r.records)
    assert retries > 0 and reasks > 0
    for rec in r.records:
        assert rec["attempts"] >= 1 + rec["retries"] + rec["reasks"], rec
    # every call the model saw is counted by the engine, and vice versa
    assert r.calls == fake.n_calls == sum(rec["attempts"] for rec in r.records)
    # repaired outputs are recorded as such, and valid
    assert any(rec["repairs"] for rec in r.records)

    failed = [rec for rec in r.records if rec["failure"] is not None]
    assert r.metrics["failure_rate"] == pytest.approx(len(failed) / len(es.cases))
    for kind, n in Counter(rec["failure"] for rec in failed).items():
        assert r.metrics[f"failure_rate.{kind}"] == pytest.approx(n / len(es.cases))
    # a failure is never counted as correct; every valid answer here is the expected label
    assert r.metrics["accuracy"] == pytest.approx(1 - len(failed) / len(es.cases))
    assert r.metrics["retry_rate"] == pytest.approx(
        sum(rec["retries"] > 0 for rec in r.records) / len(es.cases))


def test_faults_are_the_same_at_any_concurrency(workspace):
    es = workspace.evalset("ticket_extraction")

    def run(concurrency):
        fake = FakeModel(answer=expected_answer(workspace, "ticket_extraction", None),
                         rate_limit_rate=0.1, timeout_rate=0.1, server_error_rate=0.1,
                         malformed_rate=0.2, seed=3)
        r = evaluate("ticket_extraction@1", workspace=workspace, model=fake,
                     concurrency=concurrency, track=False, cache=False, retry=FAST)
        assert_every_case_recorded(r, es)
        return {rec["case_id"]: (rec["failure"], rec["attempts"], rec["retries"],
                                 rec["reasks"], rec["repairs"]) for rec in r.records}

    assert run(1) == run(16)


# -- the cache -------------------------------------------------------------------------------

def test_rerun_of_unchanged_eval_makes_no_model_call(workspace):
    first_fake = FakeModel(seed=5)
    first = evaluate("ticket_extraction@1", workspace=workspace, model=first_fake,
                     track=False, retry=FAST)
    assert first_fake.n_calls == first.calls == len(first.records) == 209

    again_fake = FakeModel(seed=5)
    again = evaluate("ticket_extraction@1", workspace=workspace, model=again_fake,
                     track=False, retry=FAST)
    assert again_fake.n_calls == 0
    assert again.calls == 0
    assert all(rec["cached"] for rec in again.records)
    assert [rec["output"] for rec in again.records] == [rec["output"] for rec in first.records]
    assert again.metrics["accuracy"] == first.metrics["accuracy"]


def test_cache_survives_faults_and_pays_only_for_what_was_not_answered(workspace):
    faulty = FakeModel(rate_limit_rate=0.3, server_error_rate=0.3, seed=2)
    r1 = evaluate("reply_draft@1", workspace=workspace, model=faulty, track=False,
                  retry=RetryPolicy(max_retries=1, backoff_base_s=0.001, backoff_max_s=0.01))
    unanswered = sum(rec["failure"] is not None for rec in r1.records)
    assert 0 < unanswered < len(r1.records)
    clean = FakeModel(seed=2)
    r2 = evaluate("reply_draft@1", workspace=workspace, model=clean, track=False, retry=FAST)
    assert clean.n_calls == r2.calls == unanswered
    assert all(rec["failure"] is None for rec in r2.records)


def test_changed_prompt_model_or_temperature_misses_and_explain_says_why(workspace):
    es = workspace.evalset("reply_draft")
    new_version(workspace, "reply_draft", 2, model={"temperature": 0.7})
    new_version(workspace, "reply_draft", 3, system="Write a reply. Be brief.")
    new_version(workspace, "reply_draft", 4, user="Order {{ facts.order_id }} is "
                "{{ facts.order_state }}.")
    fake_a = FakeModel(id="fake/a")
    evaluate("reply_draft@1", workspace=workspace, model=fake_a, track=False, retry=FAST)
    assert fake_a.n_calls == len(es.cases)

    def request(ref, model_id, case):
        pv = workspace.prompt(ref)
        runner = Runner(pv, es, FakeModel(id=model_id), cache=None,
                        policy=load_policy(workspace.root), concurrency=1, budget_usd=None,
                        schema_model=None)
        return runner._request(case, 0)

    case = es.cases[7]
    cache = ResponseCache(cache_path(workspace))
    try:
        def explain(ref, model_id):
            return cache.explain(request(ref, model_id, case), model_id, label="reply_draft@1",
                                 case_id=case.id)

        assert explain("reply_draft@1", "fake/a").startswith("hit: ")
        changed = "miss: changed since the cached answer: "
        assert explain("reply_draft@1", "fake/b") == changed + "model"
        assert explain("reply_draft@2", "fake/a") == changed + "params"
        assert explain("reply_draft@3", "fake/a") == changed + "prompt (system + demos)"
        assert explain("reply_draft@4", "fake/a") == changed + "case messages"
        other = cache.explain(request("reply_draft@1", "fake/a", case), "fake/a",
                              label="reply_draft@9", case_id=case.id)
        assert other.startswith("hit: ")  # the same request hits whatever the label
    finally:
        cache.close()

    # and every one of those changes is a real miss: the whole evalset is asked again
    for ref, model_id in (("reply_draft@1", "fake/b"), ("reply_draft@2", "fake/a"),
                          ("reply_draft@3", "fake/a"), ("reply_draft@4", "fake/a")):
        fake = FakeModel(id=model_id)
        r = evaluate(ref, workspace=workspace, model=fake, track=False, retry=FAST)
        assert fake.n_calls == r.calls == len(es.cases), (ref, model_id)
    # ... while the unchanged one still hits
    fake = FakeModel(id="fake/a")
    evaluate("reply_draft@1", workspace=workspace, model=fake, track=False, retry=FAST)
    assert fake.n_calls == 0


# -- resume after SIGKILL --------------------------------------------------------------------

RUNNER_SCRIPT = textwrap.dedent("""
    import sys
    from promptgov.eval import evaluate
    from promptgov.model._fake import FakeModel
    from promptgov.workspace import Workspace

    started = []

    def progress(p):
        if not started:
            started.append(1)
            print("started", flush=True)

    evaluate("ticket_triage@1", workspace=Workspace(sys.argv[1]),
             model=FakeModel(latency_s=0.02), concurrency=4, track=False, progress=progress)
    print("finished", flush=True)
""")


def test_run_killed_with_sigkill_resumes_where_it_stopped(workspace, tmp_path):
    total = len(workspace.evalset("ticket_triage").cases)
    script = tmp_path / "run_eval.py"
    script.write_text(RUNNER_SCRIPT)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.Popen([sys.executable, str(script), str(workspace.root)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "started", (line, proc.stderr.read() if proc.poll() else "")
        time.sleep(1.5)
        assert proc.poll() is None, "the eval finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    # Every answer received before the kill is in SQLite (batches) or in the journal (at once).
    journals = list((cache_path(workspace).parent / "journal").glob("*.jsonl"))
    assert len(journals) == 1
    journaled = {json.loads(line)[0] for line in journals[0].read_text().splitlines()
                 if line.endswith("]")}
    answered = {k for k, _, _ in cache_rows(workspace)} | journaled
    assert journaled - {k for k, _, _ in cache_rows(workspace)}, "no unflushed batch to recover"
    assert 0 < len(answered) < total

    fake = FakeModel(latency_s=0.0)
    r = evaluate("ticket_triage@1", workspace=workspace, model=fake, concurrency=8,
                 track=False, retry=FAST)
    assert fake.n_calls == r.calls == total - len(answered)  # nothing answered is paid again
    assert 0 < fake.n_calls < total
    assert_every_case_recorded(r, workspace.evalset("ticket_triage"))
    assert all(rec["failure"] is None for rec in r.records)
    assert sum(not rec["cached"] for rec in r.records) == total - len(answered)
    assert len(cache_rows(workspace)) == total
    assert not list(journals[0].parent.glob("*.jsonl"))  # folded in, and the run's own removed


# -- budget ----------------------------------------------------------------------------------

def test_budget_stops_cleanly_and_records_the_rest(workspace):
    es = workspace.evalset("ticket_extraction")
    concurrency = 4
    fake = FakeModel(cost_per_call_usd=0.01, latency_s=0.002)
    r = evaluate("ticket_extraction@1", workspace=workspace, model=fake, budget_usd=0.5,
                 concurrency=concurrency, track=False, retry=FAST)
    assert 50 <= fake.n_calls <= 50 + concurrency
    assert r.calls == fake.n_calls
    assert r.metrics["paid_usd"] == pytest.approx(0.01 * fake.n_calls)
    assert_every_case_recorded(r, es)
    answered = [rec for rec in r.records if rec["failure"] is None]
    stopped = [rec for rec in r.records if rec["failure"] is not None]
    assert len(answered) == fake.n_calls
    assert {rec["failure"] for rec in stopped} == {"budget_exhausted"}
    assert len(stopped) == len(es.cases) - fake.n_calls
    assert all(rec["cost_usd"] == 0 and rec["output"] is None for rec in stopped)
    assert r.metrics["failure_rate.budget_exhausted"] == pytest.approx(
        len(stopped) / len(es.cases))

    # what was paid for is cached: the next run pays only for the cases not reached
    fake2 = FakeModel(cost_per_call_usd=0.01)
    r2 = evaluate("ticket_extraction@1", workspace=workspace, model=fake2, track=False,
                  retry=FAST)
    assert fake2.n_calls == len(stopped)
    assert all(rec["failure"] is None for rec in r2.records)


# -- samples ---------------------------------------------------------------------------------

def test_samples_at_temperature_are_distinct_cache_entries(workspace):
    new_version(workspace, "reply_draft", 2, model={"temperature": 0.8})
    es = workspace.evalset("reply_draft")
    fake = FakeModel()
    r = evaluate("reply_draft@2", workspace=workspace, model=fake, samples=3, track=False,
                 retry=FAST)
    assert len(r.records) == 3 * len(es.cases)
    per_case = Counter(rec["case_id"] for rec in r.records)
    assert set(per_case) == {c.id for c in es.cases} and set(per_case.values()) == {3}
    assert {(rec["case_id"], rec["sample"]) for rec in r.records} == {
        (c.id, s) for c in es.cases for s in range(3)}

    keys_by_case: dict[str, set[str]] = {}
    for key, label, case_id in cache_rows(workspace):
        assert label == "reply_draft@2"
        keys_by_case.setdefault(case_id, set()).add(key)
    assert set(keys_by_case) == {c.id for c in es.cases}
    assert all(len(keys) == 3 for keys in keys_by_case.values())
    assert len({req.key(fake.id) for req, _ in fake.calls}) == 3 * len(es.cases)

    # all three samples of every case are answered from the cache next time
    again = FakeModel()
    evaluate("reply_draft@2", workspace=workspace, model=again, samples=3, track=False)
    assert again.n_calls == 0


# -- malformed output ------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["fenced", "single_quotes", "extra_keys", "wrong_enum_case"])
def test_repairable_malformations_yield_valid_outputs_with_repairs(workspace, kind):
    es = workspace.evalset("ticket_extraction")
    schema = workspace.schema("ticket_extraction@1").model
    fake = FakeModel(answer=expected_answer(workspace, "ticket_extraction", None),
                     malformed_rate=1.0, malformed_kinds=(kind,), seed=1)
    r = evaluate("ticket_extraction@1", workspace=workspace, model=fake, track=False,
                 cache=False, retry=FAST)
    assert_every_case_recorded(r, es)
    assert {o for _, o in fake.calls} == {f"malformed:{kind}"}
    expected = {c.id: schema.model_validate(c.expected).model_dump(mode="json")
                for c in es.cases}
    for rec in r.records:
        assert rec["failure"] is None and rec["reasks"] == 0, rec
        assert schema.model_validate(rec["output"]).model_dump(mode="json") == rec["output"]
        assert rec["output"] == expected[rec["case_id"]]
        if kind == "wrong_enum_case" and not rec["expected"]["intents"]:
            assert rec["repairs"] == []  # nothing to re-case
        else:
            assert rec["repairs"] == [REPAIR_NAME[kind]], rec
    assert r.metrics["accuracy"] == 1.0


def test_truncated_output_is_reasked_then_recovered_or_invalid_json(workspace):
    es = workspace.evalset("ticket_extraction")
    fake = FakeModel(answer=expected_answer(workspace, "ticket_extraction", None),
                     malformed_rate=0.5, malformed_kinds=("truncated",), seed=4)
    r = evaluate("ticket_extraction@1", workspace=workspace, model=fake, track=False,
                 cache=False, retry=FAST)
    assert_every_case_recorded(r, es)
    reasked = [rec for rec in r.records if rec["reasks"]]
    recovered = [rec for rec in reasked if rec["failure"] is None]
    lost = [rec for rec in reasked if rec["failure"] is not None]
    assert recovered and lost
    assert {rec["failure"] for rec in lost} == {"invalid_json"}
    assert all(rec["failure"] is None for rec in r.records if not rec["reasks"])
    for rec in recovered:
        assert rec["output"] == rec["expected"] and rec["attempts"] == 2
    # the re-ask shows the model its own answer and the error
    reasks = [req for req, _ in fake.calls if len(req.messages) > req.prefix_len + 1]
    assert len(reasks) == len(reasked)
    for req in reasks:
        assert req.messages[-2]["role"] == "assistant"
        prefix = REASK.split("{error}")[0]
        assert req.messages[-1]["content"].startswith(prefix)
        assert "not valid JSON" in req.messages[-1]["content"]


def test_always_truncated_output_fails_as_invalid_json_after_one_reask(workspace):
    fake = FakeModel(malformed_rate=1.0, malformed_kinds=("truncated",))
    r = evaluate("ticket_triage@1", workspace=workspace, model=fake, track=False, cache=False,
                 retry=FAST)
    assert_every_case_recorded(r, workspace.evalset("ticket_triage"))
    assert {rec["failure"] for rec in r.records} == {"invalid_json"}
    assert all(rec["reasks"] == 1 and rec["attempts"] == 2 for rec in r.records)
    assert r.metrics["failure_rate"] == 1.0 and r.metrics["accuracy"] == 0.0
    assert fake.n_calls == 2 * len(r.records)


def test_every_malformed_kind_is_covered():
    assert set(REPAIR_NAME) | {"truncated"} == set(MALFORMED_KINDS)


def test_cache_file_holds_json_key_parts(workspace):
    evaluate("reply_draft@1", workspace=workspace, model=FakeModel(), track=False)
    db = sqlite3.connect(cache_path(workspace))
    try:
        parts = [json.loads(p) for (p,) in db.execute("SELECT parts FROM responses")]
    finally:
        db.close()
    assert len(parts) == 30
    assert all(set(p) == {"model", "sample", "params", "prompt (system + demos)",
                          "case messages", "schema"} for p in parts)

"""The job contract, run unchanged against both backends: SQLite (embedded) and BullMQ on a
real Redis (``queue_url`` is parametrised). The exported support_bot package is imported in
this process; the model is a scripted callable counting its calls (the runtime's model seam),
or LiteLLM against the loopback OpenAI server where tokens, cost and secrets matter."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from support.jobs_fixtures import cli_queue, open_queue, work_until_idle
from support.jobs_package import run_module

pytestmark = pytest.mark.xdist_group("jobs")  # one package build per test process

TRIAGE = '{{"label": "card_arrival", "confidence": {c}}}'
AUTO = '{"label": "card_arrival", "confidence": 0.9}'


class Scripted:
    """A model answering from a script (then ``default``), counting calls per input text."""

    def __init__(self, *script, default=AUTO):
        self.script, self.default = list(script), default
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, messages, schema):
        with self.lock:
            self.calls[messages[-1]["content"]] += 1
            step = self.script.pop(0) if self.script else self.default
        if isinstance(step, Exception):
            raise step
        return step(messages) if callable(step) else step

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def test_duplicate_submissions_collapse_to_one_model_call(sb, queue_url):
    model = Scripted()
    sb.configure(model=model)
    with open_queue(sb, queue_url) as q:
        first = q.submit("triage", {"text": "Where is my card?"}, key="acme/1")
        again = q.submit("triage", {"text": "Where is my card?"}, key="acme/1")
        other = q.submit("triage", {"text": "Where is my card?"}, key="acme/2")
        assert first.created and not again.created and other.created
        assert again.id == first.id != other.id
        assert work_until_idle(q, concurrency=4) == 2
        late = q.submit("triage", {"text": "Where is my card?"}, key="acme/1")
        assert (late.id, late.state, late.created) == (first.id, "completed", False)
        assert work_until_idle(q, concurrency=4) == 0
        assert model.total == 2
        want = {"action": "auto_process", "label": "card_arrival", "confidence": 0.9,
                "error": None}
        assert q.result(first.id) == q.result(other.id) == want
        assert q.status()["jobs"]["completed"] == 2


def test_job_ids_are_deterministic(sb, queue_url):
    from support_bot import jobs

    h = sb.MANIFEST["prompts"]["ticket_triage@2"]["content_hash"]
    with open_queue(sb, queue_url) as q:
        s = q.submit("triage", {"text": "x"}, key="t/1")
        assert s.id == jobs.job_id("t/1", {"text": "x"}, h)
        assert len(s.id) == 64 and s.id != jobs.job_id("t/1", {"text": "y"}, h)
        assert q.trace(s.id)["prompt_hash"] == h


def test_transient_failures_retry_with_growing_delays(sb, queue_url):
    fail = [sb.ModelError("scripted 429", kind="rate_limit", transient=True)] * 3
    model = Scripted(*fail)
    sb.configure(model=model)
    with open_queue(sb, queue_url, backoff_s=0.05) as q:
        s = q.submit("triage", {"text": "Where is my card?"}, key="k")
        work_until_idle(q, concurrency=2)
        t = q.trace(s.id)
    assert t["state"] == "completed" and model.total == 4
    atts = t["attempts"]
    assert [a["outcome"] for a in atts] == ["retry", "retry", "retry", "ok"]
    assert t["attempts_made"] == 4 and [a["n"] for a in atts] == [1, 2, 3, 4]
    assert {a["error_kind"] for a in atts[:3]} == {"rate_limit"}
    delays = [a["delay_s"] for a in atts[:3]]
    assert delays == sorted(delays) and delays[0] < delays[2]
    for d, n in zip(delays, (1, 2, 3), strict=True):  # 0.05 * 2**(n-1), less up to half
        assert 0.05 * 2 ** (n - 1) * 0.5 - 0.002 <= d <= 0.05 * 2 ** (n - 1) + 0.002
    gaps = [b["started"] - a["ended"] for a, b in zip(atts, atts[1:], strict=False)]
    assert all(g >= d - 0.01 for g, d in zip(gaps, delays, strict=True)), (gaps, delays)


def test_a_permanently_invalid_answer_is_dead_lettered_with_its_error(sb, queue_url):
    model = Scripted(default="not json at all")
    sb.configure(model=model)
    with open_queue(sb, queue_url) as q:
        s = q.submit("triage", {"text": "Where is my card?"}, key="k")
        work_until_idle(q, concurrency=2)
        t = q.trace(s.id)
        assert t["state"] == "dead" and t["error_kind"] == "invalid_json"
        assert "not valid JSON" in t["error"]
        assert len(t["attempts"]) == 1  # re-asked within the attempt, never retried
        assert model.total == 1 + sb.RETRY.max_reasks
        with pytest.raises(sb.jobs.JobFailed, match="invalid_json"):
            q.result(s.id)
        assert [d["id"] for d in q.dead_letters()] == [s.id]

        model.default = TRIAGE.format(c=0.7)  # fixed: a person retries the dead letter
        q.retry(s.id)
        work_until_idle(q, concurrency=2)
        assert q.result(s.id)["action"] == "queue_for_human"
        assert q.dead_letters() == []
        with pytest.raises(sb.jobs.JobError, match="is completed, not in the dead letters"):
            q.retry(s.id)


@pytest.mark.parametrize("kind", ["auth", "not_found", "bad_request"])
def test_permanent_model_errors_are_dead_lettered_at_once(sb, queue_url, kind):
    model = Scripted(default=lambda m: (_ for _ in ()).throw(sb.ModelError("no", kind=kind)))
    sb.configure(model=model)
    with open_queue(sb, queue_url) as q:
        s = q.submit("extract", {"text": "card"}, key="k")
        work_until_idle(q, concurrency=2)
        t = q.trace(s.id)
    assert (t["state"], t["error_kind"], len(t["attempts"]), model.total) == ("dead", kind, 1, 1)


def test_transient_failures_past_the_attempts_are_dead_lettered(sb, queue_url):
    model = Scripted(default=lambda m: (_ for _ in ()).throw(TimeoutError("slow")))
    sb.configure(model=model)
    with open_queue(sb, queue_url, attempts=3, backoff_s=0.01) as q:
        s = q.submit("draft", {"facts": {"customer_name": "Ada", "order_id": "A-1",
                                         "order_state": "delivered", "refund_eligible": True,
                                         "refund_amount": 1.5, "policy_version": "1"}}, key="k")
        assert work_until_idle(q, concurrency=2) == 1  # one job finished (dead)
        t = q.trace(s.id)
    assert t["state"] == "dead" and t["error_kind"] == "timeout" and model.total == 3
    assert [a["outcome"] for a in t["attempts"]] == ["retry", "retry", "dead"]


def test_routes_are_counted_and_traces_are_a_dataframe(sb, queue_url):
    confidence = {"a": 0.95, "b": 0.7, "c": 0.2, "d": 0.9}
    extraction = ('{"intents": [], "amount": 10, "date": null, "time": null, "company": null, '
                  '"number": null, "person": null, "shopping_category": null}')
    sb.configure(model=Scripted(default=lambda m: TRIAGE.format(
        c=confidence[m[-1]["content"][-1]]) if "msg" in m[-1]["content"] else extraction))
    with open_queue(sb, queue_url) as q:
        q.submit_many("triage", [(f"t/{x}", {"text": f"msg {x}"}) for x in confidence])
        q.submit("extract", {"text": "10 pounds"}, key="t/e")
        work_until_idle(q, concurrency=4)
        st = q.status()
        df = q.traces_frame()
    assert st["jobs"]["completed"] == 5
    assert st["routes"] == {"auto_process": 2, "queue_for_human": 1, "legacy_fallback": 1}
    assert len(df) == 5 and set(df["state"]) == {"completed"}
    assert {"id", "prompt_hash", "model", "attempts", "prompt_tokens", "cost_usd",
            "latency_s", "route"} <= set(df.columns)
    assert sorted(df["route"].dropna()) == ["auto_process", "auto_process", "legacy_fallback",
                                             "queue_for_human"]


def test_tokens_cost_latency_traced_and_no_secret(sb, queue_url, openai_server, tmp_path):
    openai_server.reply('{"label": "card_arrival", "confidence": 0.9}', prompt_tokens=120,
                        completion_tokens=9)
    openai_server.fail(401, message="bad key sk-secret-1234")
    sb.configure(model="openai/gpt-4o-mini", api_base=openai_server.base_url,
                 api_key="sk-secret-1234")
    with open_queue(sb, queue_url) as q:
        ok = q.submit("triage", {"text": "Where is my card?"}, key="k/1")
        work_until_idle(q, concurrency=1)
        bad = q.submit("triage", {"text": "Where is my card now?"}, key="k/2")
        work_until_idle(q, concurrency=1)
        t, b = q.trace(ok.id), q.trace(bad.id)
        dump = json.dumps(q.traces())
    assert (t["model"], t["prompt_tokens"], t["completion_tokens"]) == \
        ("openai/gpt-4o-mini", 120, 9)
    assert t["cost_usd"] > 0 and t["latency_s"] > 0 and t["attempts"][0]["calls"] == 1
    assert b["state"] == "dead" and len(b["attempts"]) == 1 and "401" in b["error"]
    assert "sk-secret-1234" not in dump
    if queue_url.startswith("sqlite"):
        db = Path(queue_url.removeprefix("sqlite:///"))
        assert b"sk-secret-1234" not in db.read_bytes()


def test_an_idle_bullmq_worker_takes_a_job_whose_wake_up_was_lost(sb, redis_url):
    """BullMQ wakes a worker blocked on its queue's marker key when a job arrives. A marker can
    be lost (popped by a wait whose reply the client dropped); the worker's bounded wait must
    then find the job within its drain delay (5 s), never leave it waiting forever."""
    import uuid

    import redis

    name = f"lost-{uuid.uuid4().hex[:12]}"
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    sb.configure(model=Scripted())
    stop = threading.Event()
    with open_queue(sb, f"{redis_url}#{name}") as q:
        worker = threading.Thread(target=q.work, kwargs={"concurrency": 1, "stop": stop})
        worker.start()
        try:
            deadline = time.monotonic() + 30
            while not any(c.get("cmd") == "bzpopmin" and c.get("name", "").startswith(
                    f"bull:{name}:w:") for c in r.client_list()):  # idle: blocked on the marker
                assert time.monotonic() < deadline, "the worker never went idle"
                time.sleep(0.05)
            r.hset(f"bull:{name}:meta", "paused", 1)  # the job is queued without a marker ...
            s = q.submit("triage", {"text": "Where is my card?"}, key="k")
            r.hdel(f"bull:{name}:meta", "paused")  # ... as if the worker had lost it
            assert (r.llen(f"bull:{name}:wait"), r.zcard(f"bull:{name}:marker")) == (1, 0)
            t0 = time.monotonic()
            assert q.result(s.id, timeout=20)["action"] == "auto_process"
            assert time.monotonic() - t0 < 12
        finally:
            stop.set()
            worker.join(30)
        assert not worker.is_alive()
    r.close()


def test_bad_submissions_get_one_clear_error_and_queue_nothing(sb, queue_url):
    from support_bot.jobs import JobError

    with open_queue(sb, queue_url) as q:
        for args, kw, msg in [
            (("classify", {"text": "x"}), {"key": "k"}, r"no function 'classify' in "
             r"support_bot \(fix: submit one of draft, extract, triage\)"),
            (("triage", {"txt": "x"}), {"key": "k"}, r"bad input for triage: .*'text'.*\(fix"),
            (("triage", "x"), {"key": "k"}, r"JSON object .* not str \(fix"),
            (("triage", {"text": "x"}), {"key": ""}, r"non-empty key"),
            (("triage", {"text": {1, 2}}), {"key": "k"}, r"fix: pass JSON values only"),
        ]:
            with pytest.raises(JobError, match=msg):
                q.submit(*args, **kw)
        assert sum(q.status()["jobs"].values()) == 0
    with pytest.raises(JobError, match=r"unknown job option\(s\) retries \(fix"):
        open_queue(sb, queue_url, retries=3)
    with pytest.raises(JobError, match=r"unknown job queue URL 'amqp://x' \(fix"):
        open_queue(sb, "amqp://x")


def test_unreachable_redis_is_one_clear_error(sb):
    from support_bot.jobs import JobError

    with pytest.raises(JobError, match=r"cannot reach Redis at redis://127.0.0.1:1/0: .*\(fix: "
                       "start redis-server"):
        open_queue(sb, "redis://127.0.0.1:1/0")


@pytest.mark.slow  # ~20 s: a dozen processes, each importing the package (and LiteLLM)
def test_commands_worker_submit_status_dlq_retry_trace(jobs_site, queue_url, openai_server):
    q = cli_queue(queue_url)
    env = {"OPENAI_API_KEY": "sk-cli-secret"}
    r = run_module(jobs_site, "submit", "triage", '{"text": "Where is my card?"}', "--key",
                   "a/1", *q)
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)
    assert (job["state"], job["duplicate"]) == ("waiting", False)
    r = run_module(jobs_site, "submit", "triage", '{"text": "Where is my card?"}', "--key",
                   "a/1", *q)
    assert json.loads(r.stdout)["duplicate"] is True and json.loads(r.stdout)["id"] == job["id"]

    openai_server.fail(403, times=1)
    r = run_module(jobs_site, "worker", "--until-idle", "-c", "2", "--model",
                   "openai/gpt-4o-mini", "--api-base", openai_server.base_url, *q, env_extra=env)
    assert r.returncode == 0 and "1 job(s) finished" in r.stderr, r.stderr
    r = run_module(jobs_site, "dlq", *q)
    assert r.stdout.startswith(f"{job['id']}  triage  a/1  ") and "403" in r.stdout
    r = run_module(jobs_site, "retry", job["id"], *q)
    assert r.returncode == 0 and r.stdout.strip() == f"queued {job['id']} again"
    openai_server.reply('{"label": "card_arrival", "confidence": 0.7}')
    r = run_module(jobs_site, "worker", "--until-idle", "--model", "openai/gpt-4o-mini",
                   "--api-base", openai_server.base_url, *q, env_extra=env)
    assert r.returncode == 0, r.stderr
    r = run_module(jobs_site, "status", "--json", *q)
    st = json.loads(r.stdout)
    assert st["jobs"]["completed"] == 1 and st["routes"] == {"queue_for_human": 1}
    r = run_module(jobs_site, "trace", job["id"], *q)
    t = json.loads(r.stdout)
    assert [a["outcome"] for a in t["attempts"]] == ["dead", "ok"]
    assert t["result"]["action"] == "queue_for_human" and "sk-cli-secret" not in r.stdout
    assert all(ln.authorization == "Bearer sk-cli-secret" for ln in openai_server.requests)

    for args, msg in [(("submit", "triage", "{not json", "--key", "k"), "the input is not JSON"),
                      (("trace", "nope"), "no job nope in this queue (fix:"),
                      (("retry", job["id"]), "is completed, not in the dead letters (fix:")]:
        r = run_module(jobs_site, *args, *q)
        assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith("error: ")
        assert msg in r.stderr and "Traceback" not in r.stderr


def test_evalset_from_jobs_turns_failures_into_cases_to_label(sb, queue_url, workspace_dir):
    from typer.testing import CliRunner

    import promptgov.cli  # noqa: F401  (registers the commands)
    from promptgov.cli._app import app
    from promptgov.workspace import Workspace

    answers = {"a": "not json", "b": AUTO.replace("0.9", "0.7"), "c": AUTO, "d": "nope"}
    sb.configure(model=Scripted(default=lambda m: "still not json" if m[-1]["content"]
                                .startswith("Your previous answer") else
                                answers[m[-1]["content"][-1]]))
    base, _, name = queue_url.partition("#")
    store = [base, "--queue", name] if name else [base]
    cmd = ["evalset", "from-jobs", *store, "--workspace", str(workspace_dir)]
    with open_queue(sb, queue_url) as q:
        q.submit_many("triage", [("t/1", {"text": "msg a"}), ("t/2", {"text": "msg b"}),
                                 ("t/3", {"text": "msg b"}), ("t/4", {"text": "msg c"})])
        work_until_idle(q, concurrency=4)
        dead = q.dead_letters()[0]["id"]

        r = CliRunner().invoke(app, cmd)
        assert r.exit_code == 0, r.output
        assert r.stdout.startswith("wrote evalsets/ticket_triage-prod (ticket_triage-prod@1: 2 "
                                   "cases; new: 1 dead letter(s), 1 review)")
        es = Workspace(workspace_dir).evalset("ticket_triage-prod@1")
        by_text = {c.input["text"]: c for c in es.cases}
        assert set(by_text) == {"msg a", "msg b"} and all(c.expected is None for c in es.cases)
        a, b = by_text["msg a"], by_text["msg b"]
        assert a.meta["reason"] == "dead_letter" and a.meta["job_id"] == dead
        assert a.meta["error_kind"] == "invalid_json" and a.meta["prompt"] == "ticket_triage@2"
        assert b.meta["reason"] == "review" and b.meta["model_answer"]["confidence"] == 0.7
        assert "expected" not in (es.dir / "cases.jsonl").read_text(encoding="utf-8")

        r = CliRunner().invoke(app, cmd)
        assert r.exit_code == 0 and r.stdout.startswith("unchanged: evalsets/ticket_triage-prod")

        # a person labels a case; a new failure arrives; the next version keeps the label
        cases = es.dir / "cases.jsonl"
        lines = [json.loads(ln) for ln in cases.read_text(encoding="utf-8").splitlines()]
        lines[0]["expected"] = {"label": "card_arrival"}
        cases.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
        q.submit("triage", {"text": "msg d"}, key="t/5")
        work_until_idle(q, concurrency=2)
    r = CliRunner().invoke(app, [*cmd, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"evalset": "ticket_triage-prod@2",
                                    "dir": "evalsets/ticket_triage-prod", "dead_letter": 1,
                                    "review": 0, "kept": 2, "cases": 3}
    es = Workspace(workspace_dir).evalset("ticket_triage-prod@2")
    assert es.cases[0].expected == {"label": "card_arrival"} and len(es) == 3


def test_evalset_from_jobs_bad_store_is_one_line(workspace_dir, tmp_path):
    from typer.testing import CliRunner

    import promptgov.cli  # noqa: F401
    from promptgov.cli._app import app

    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    for store, msg in [(str(tmp_path / "missing.db"), "no such job store (fix: pass the job "),
                       (str(tmp_path / "notes.txt"), "not a SQLite job store (fix:"),
                       ("redis://127.0.0.1:1/0", "a Redis store holds many queues (fix: name")]:
        r = CliRunner().invoke(app, ["evalset", "from-jobs", store, "-w", str(workspace_dir)])
        assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1, r.output
        assert r.stderr.startswith("error: ") and msg in r.stderr
    assert not (workspace_dir / "evalsets" / "ticket_triage-prod").exists()


def test_a_worker_missing_its_models_extra_stops_at_once_with_one_line(jobs_site, tmp_path):
    import subprocess
    import sys

    from support.jobs_package import env

    code = ("import runpy, sys; sys.modules['litellm'] = None; "  # as if not installed
            "runpy.run_module('support_bot', run_name='__main__', alter_sys=True)")
    q = f"sqlite:///{tmp_path / 'jobs.db'}"
    r = subprocess.run([sys.executable, "-c", code, "submit", "triage", '{"text": "x"}', "-k",
                        "a", "-q", q], capture_output=True, text=True, env=env(jobs_site))
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-c", code, "worker", "--model", "openai/gpt-4o-mini",
                        "-q", q], capture_output=True, text=True, env=env(jobs_site), timeout=60)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        "error: model 'openai/gpt-4o-mini' needs LiteLLM, which is not installed (fix: install "
        "support_bot with its [providers] extra)"]


def test_the_wheel_ships_the_job_runtime_and_its_bullmq_extra(jobs_site):
    import zipfile

    wheel = next((jobs_site.parent / "dist").glob("support_bot-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        meta = z.read("support_bot-1.dist-info/METADATA").decode()
        manifest = json.loads(z.read("support_bot/manifest.json"))
        names = set(z.namelist())
    assert "Provides-Extra: bullmq" in meta
    assert 'Requires-Dist: bullmq<4,>=3.4; extra == "bullmq"' in meta or \
        'Requires-Dist: bullmq>=3.4,<4; extra == "bullmq"' in meta
    for f in ("jobs.py", "_jobs.py", "_jobs_sqlite.py", "_jobs_bullmq.py", "_jobs_cli.py",
              "_usage.py"):
        assert f"support_bot/{f}" in names and f in manifest["files"]

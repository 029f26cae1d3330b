"""A worker SIGKILLed mid-run loses nothing and completes nothing twice, on both backends.

200 triage jobs, two ``python -m support_bot worker`` processes calling LiteLLM against the
loopback OpenAI server (which counts the calls per input and answers after 30 ms); one worker
is SIGKILLed once a quarter of the jobs are done. Its jobs in hand are taken again by the other
after the visibility timeout: every job completes exactly once (one ``ok`` attempt, one result),
and the only repeated model calls are those of the jobs the killed worker held.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from support.jobs_fixtures import cli_queue, open_queue
from support.jobs_package import env
from support.openai_server import Reply

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("jobs-processes")]
N, CONCURRENCY = 200, 8


def test_a_killed_worker_loses_no_job_and_completes_none_twice(sb, queue_url, openai_server,
                                                               jobs_site):
    openai_server.responder = lambda body: Reply(
        '{"label": "card_arrival", "confidence": 0.9}', stall_s=0.03)
    with open_queue(sb, queue_url) as q:
        q.submit_many("triage", [(f"kill/{i}", {"text": f"ticket {i}"}) for i in range(N)])
    cmd = [sys.executable, "-m", "support_bot", "worker", "--until-idle", "-c",
           str(CONCURRENCY), "--visibility", "2", "--model", "openai/gpt-4o-mini",
           "--api-base", openai_server.base_url, *cli_queue(queue_url)]
    e = env(jobs_site, OPENAI_API_KEY="sk-test")
    victim = subprocess.Popen(cmd, env=e, stderr=subprocess.PIPE, text=True)
    survivor = subprocess.Popen(cmd, env=e, stderr=subprocess.PIPE, text=True)
    try:
        with open_queue(sb, queue_url) as q:
            deadline = time.monotonic() + 240  # a loaded CI machine imports LiteLLM slowly
            while not (q.status()["jobs"]["completed"] >= N // 4 and _working(q, victim.pid)):
                assert time.monotonic() < deadline, "the workers made no progress"
                assert victim.poll() is None, victim.stderr.read()
                time.sleep(0.05)
            victim.send_signal(signal.SIGKILL)
            assert survivor.wait(300) == 0, survivor.stderr.read()
            st = q.status()["jobs"]
            traces = q.traces()
    finally:
        for p in (victim, survivor):
            if p.poll() is None:
                p.kill()
            p.wait()
    assert victim.returncode == -signal.SIGKILL

    assert st["completed"] == N and st["dead"] == st["waiting"] == st["active"] == 0
    assert len(traces) == N
    for t in traces:
        outcomes = [a["outcome"] for a in t["attempts"]]
        assert outcomes.count("ok") == 1 and outcomes[-1] == "ok", t
        assert t["result"]["label"] == "card_arrival"
    lost = {t["input"]["text"] for t in traces
            if any(a["outcome"] == "lost" for a in t["attempts"])}
    assert 1 <= len(lost) <= CONCURRENCY  # the kill hit jobs in hand, and only those

    calls = Counter(r.body["messages"][-1]["content"].removeprefix("Customer message:\n")
                    for r in openai_server.requests
                    if "messages" in r.body)  # not a request cut short by the SIGKILL
    assert set(calls) == {f"ticket {i}" for i in range(N)}
    repeated = {text for text, n in calls.items() if n > 1}
    assert repeated <= lost and sum(calls.values()) - N <= len(lost)
    print(f"\n{queue_url.split(':')[0]}: killed worker held {len(lost)} job(s); "
          f"{sum(calls.values())} model calls for {N} jobs")


def _working(q, pid: int) -> bool:
    """Whether the worker process ``pid`` has finished a job (and so holds others now)."""
    return any((a.get("worker") or "").endswith(f":{pid}")
               for t in q.traces(["completed"]) for a in t["attempts"])

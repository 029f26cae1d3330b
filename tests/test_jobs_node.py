"""Interop: a Node.js BullMQ producer (tests/jobs_node/producer.mjs, the options a TypeScript
service sets: jobId, attempts, exponential backoff with jitter, failed jobs kept) enqueues 20
triage jobs and a duplicate; our worker completes them; the producer reads the results."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from support.jobs_fixtures import open_queue

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("jobs-processes")]
NODE_DIR = Path(__file__).parent / "jobs_node"


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "bullmq").is_dir():
        msg = "node or tests/jobs_node/node_modules missing (fix: npm ci --prefix tests/jobs_node)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return node


def test_a_node_bullmq_producer_and_our_worker(sb, redis_url):
    from support_bot import jobs

    node = _node()
    name = f"interop-{os.getpid()}"
    calls, lock = [], threading.Lock()

    def model(messages, schema):
        text = messages[-1]["content"]
        with lock:
            calls.append(text)
            first = calls.count(text) == 1
        if "ticket 3:" in text and first:
            raise sb.ModelError("scripted 503", kind="server_error", transient=True)
        n = int(text.split("ticket ")[1].split(":")[0])
        return json.dumps({"label": "card_arrival", "confidence": 0.9 if n % 2 else 0.7})

    sb.configure(model=model)
    h = sb.MANIFEST["prompts"]["ticket_triage@2"]["content_hash"]
    stop = threading.Event()
    with open_queue(sb, f"{redis_url}#{name}") as q:
        worker = threading.Thread(target=q.work, kwargs={"concurrency": 8, "stop": stop})
        worker.start()
        try:
            r = subprocess.run([node, "producer.mjs", redis_url, name, h, "20"], cwd=NODE_DIR,
                               capture_output=True, text=True, timeout=120)
        finally:
            stop.set()
            worker.join(30)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout.strip().splitlines()[-1])
        traces = {t["id"]: t for t in q.traces()}

    assert out["counts"] == {"completed": 20, "failed": 0, "waiting": 0, "active": 0,
                             "delayed": 0}
    results = out["results"]
    assert len(results) == 20 and {x["state"] for x in results} == {"completed"}
    for i, x in enumerate(results):
        key, text = f"node/{i}", f"node ticket {i}: where is my card?"
        assert x["id"] == jobs.job_id(key, {"text": text}, h)  # the same id in both languages
        assert x["returnvalue"] == {"action": "auto_process" if i % 2 else "queue_for_human",
                                    "label": "card_arrival",
                                    "confidence": 0.9 if i % 2 else 0.7, "error": None}
        assert x["attemptsMade"] == (2 if i == 3 else 1)
        t = traces[x["id"]]
        assert (t["key"], t["function"], t["prompt"], t["prompt_hash"]) == \
            (key, "triage", "ticket_triage@2", h)
    assert len(calls) == 21  # the duplicate ran nothing; job 3 ran twice
    retry = traces[results[3]["id"]]["attempts"][0]
    assert retry["outcome"] == "retry" and 0.05 <= retry["delay_s"] <= 0.1  # Node's jitter

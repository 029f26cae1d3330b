"""Production jobs: throughput of each backend against the physical limit.

The exported support_bot package (built through the real flow, as the job tests build it)
runs triage jobs with a model that sleeps for the latency and answers at once after it. For
each backend (SQLite, embedded; BullMQ on a private redis-server) and each latency (0 ms: pure
queue overhead; 50 ms: a fast provider), N jobs are submitted, then one worker in this process
runs them 16 at a time until none is left. The limit is ``N × latency / 16``: what a queue with
zero overhead would take. Figures: jobs/s, time per job, and time against the limit.

Run:  ``.venv/bin/python -m benchmarks.bench_jobs`` (``--n0``/``--n50`` jobs per run).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the package builder and redis launcher of the tests

CONCURRENCY = 16
ANSWER = '{"label": "card_arrival", "confidence": 0.9}'


def run(sb, url: str, n: int, latency: float, name: str | None) -> dict:
    from support_bot import jobs

    def model(messages, schema):
        if latency:
            time.sleep(latency)
        return ANSWER

    sb.configure(model=model)
    with jobs.open(url, name=name) as q:
        t0 = time.perf_counter()
        q.submit_many("triage", [(f"bench/{i}", {"text": f"ticket {i}"}) for i in range(n)])
        submit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        done = q.work(concurrency=CONCURRENCY, until_idle=True)
        work_s = time.perf_counter() - t0
        assert done == n and q.status()["jobs"]["completed"] == n, q.status()
    limit = n * latency / CONCURRENCY
    return {"jobs": n, "latency_ms": latency * 1000, "submit_per_s": n / submit_s,
            "work_s": work_s, "jobs_per_s": n / work_s, "ms_per_job": 1000 * work_s / n,
            "limit_s": limit, "vs_limit": work_s / limit if limit else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n0", type=int, default=2000, help="jobs of the 0 ms runs")
    ap.add_argument("--n50", type=int, default=1000, help="jobs of the 50 ms runs")
    args = ap.parse_args()
    from support.jobs_fixtures import start_redis
    from support.jobs_package import build

    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as d:
        tmp = Path(d)
        print("building the support_bot package (evaluate, approve, export)...", flush=True)
        site = build(tmp / "pkg")
        sys.path.insert(0, str(site))
        import support_bot as sb

        backends = [("sqlite", lambda: (f"sqlite:///{tmp / uuid.uuid4().hex}.db", None))]
        redis = None
        try:
            redis, rurl = start_redis(tmp)
            backends.append(("bullmq", lambda: (rurl, f"bench-{uuid.uuid4().hex[:8]}")))
        except FileNotFoundError:
            print("redis-server not installed: BullMQ skipped (apt-get install redis-server)")
        print(f"load before: {os.getloadavg()[0]:.2f} (1-min), {os.cpu_count()} cores")
        print(f"{'backend':8} {'latency':>8} {'jobs':>6} {'submit/s':>9} {'time s':>8} "
              f"{'jobs/s':>8} {'ms/job':>7} {'limit s':>8} {'vs limit':>9}")
        try:
            for backend, where in backends:
                for latency, n in ((0.0, args.n0), (0.05, args.n50)):
                    url, name = where()
                    r = run(sb, url, n, latency, name)
                    vs = f"{r['vs_limit']:.2f}x" if r["vs_limit"] else "-"
                    print(f"{backend:8} {r['latency_ms']:>6.0f}ms {n:>6} "
                          f"{r['submit_per_s']:>9.0f} {r['work_s']:>8.2f} "
                          f"{r['jobs_per_s']:>8.0f} {r['ms_per_job']:>7.2f} "
                          f"{r['limit_s']:>8.3f} {vs:>9}", flush=True)
        finally:
            if redis is not None:
                redis.terminate()
                redis.wait(10)
        print(f"load after: {os.getloadavg()[0]:.2f} (1-min)")


if __name__ == "__main__":
    main()

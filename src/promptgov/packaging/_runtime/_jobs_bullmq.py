"""The job backend at scale: BullMQ on Redis, through the ``bullmq`` package (``[bullmq]`` extra).

A job is a BullMQ job as a TypeScript service would add it: name = the function (``triage``),
data = ``{"key": ..., "input": {...}}``, ``jobId`` = the deterministic id (a second add of the
same id is a no-op), ``attempts``, ``backoff: {type: "exponential", delay, jitter}``, and the
completed and failed jobs kept (``removeOnComplete``/``removeOnFail`` false): the failed set
is the dead letters, the returnvalue the result. A worker renews its job locks; a job whose
lock expired is moved back to wait by the stalled-job check and taken again, and a worker that
lost its lock cannot complete the job (BullMQ checks the lock token).

Each attempt appends one JSON record to the job's log when it ends (outcome, error, model,
tokens, cost, latency): with the job's fields, that is the trace; an attempt BullMQ started
(``attemptsStarted``) that left no record was lost with its worker. Transient failures are
thrown as errors (BullMQ retries them after the backoff), permanent ones as
``UnrecoverableError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from ._errors import ConfigurationError
from ._jobs import JobError, attempt_record, execute, functions, prepare, summarise, worker_name

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from ._bundle import Bundle
    from ._jobs import JobOptions

T = TypeVar("T")

_STATES = {"waiting": "waiting", "prioritized": "waiting", "paused": "waiting",
           "delayed": "delayed", "active": "active", "completed": "completed", "failed": "dead",
           "waiting-children": "waiting"}


class BullMQBackend:
    """Jobs on the BullMQ queue ``name`` at Redis ``url``."""

    def __init__(self, bundle: Bundle, url: str, name: str, options: JobOptions):
        try:
            import bullmq  # noqa: F401
        except ImportError:
            raise ConfigurationError(f"queue {url} needs BullMQ for Python, which is not "
                                     "installed (fix: install the exported package with "
                                     "its [bullmq] extra, or pip install 'bullmq>=3.4,<4')"
                                     ) from None
        _exponential_with_jitter()
        self.bundle, self.url, self.name, self.options = bundle, url, name, options
        self.where = f"{_safe(url)} (BullMQ queue {name})"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="jobs-bullmq")
        self._thread.start()
        try:
            self._queue = self._run(self._open())
        except JobError:
            self._loop.call_soon_threadsafe(self._loop.stop)
            raise

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _open(self) -> Any:
        from bullmq import Queue

        q = Queue(self.name, {"connection": self.url})
        try:
            await asyncio.wait_for(q.client.ping(), 3)
        except Exception as e:  # noqa: BLE001 — redis' connection errors have many classes
            with contextlib.suppress(Exception):  # closing a connection that never opened
                await asyncio.wait_for(q.close(), 1)
            e = e if str(e) else TimeoutError("no answer in 3 s")
            raise JobError(f"cannot reach Redis at {_safe(self.url)}: {e} (fix: start "
                           "redis-server, or pass the URL of a running one)") from None
        return q

    # -- producing and reading ------------------------------------------------------------------

    def job_options(self, job_id: str) -> dict[str, Any]:
        o = self.options
        return {"jobId": job_id, "attempts": o.attempts, "removeOnComplete": False,
                "removeOnFail": False, "backoff": {"type": "exponential",
                                                   "delay": round(o.backoff_s * 1000),
                                                   "jitter": o.jitter}}

    def add(self, jobs: list[dict[str, Any]]) -> list[tuple[str, bool]]:
        async def add() -> list[tuple[str, bool]]:
            q, out = self._queue, []
            for j in jobs:
                was = await q.client.exists(q.toKey(j["id"]))
                data = {"key": j["key"], "input": j["input"], "prompt": j["prompt"],
                        "prompt_hash": j["prompt_hash"]}
                if not was:
                    await q.add(j["function"], data, self.job_options(j["id"]))
                out.append((_STATES.get(await q.getJobState(j["id"]), "waiting"), not was))
            return out

        return self._run(add())

    def trace(self, job_id: str) -> dict[str, Any] | None:
        return self._run(self._trace(job_id))

    async def _trace(self, job_id: str) -> dict[str, Any] | None:
        from bullmq import Job

        job = await Job.fromId(self._queue, job_id)
        if job is None:
            return None
        state = _STATES.get(await self._queue.getJobState(job_id), "waiting")
        return await self._job_trace(job_id, job, state)

    async def _job_trace(self, job_id: str, job: Any, state: str) -> dict[str, Any]:
        """The trace of ``job``, which is in ``state``."""
        logs = (await self._queue.getJobLogs(job_id)).get("logs", [])
        atts = _attempts(logs, int(getattr(job, "attemptsStarted", 0) or 0), state)
        data = job.data if isinstance(job.data, dict) else {}
        result = job.returnvalue if state == "completed" else None
        error_kind, error = _failure(job.failedReason)
        ref, h = self._prompt_of(job.name, data)
        return summarise({
            "id": job.id, "function": job.name, "prompt": ref, "prompt_hash": h,
            "key": data.get("key"),
            "input": data.get("input"), "state": state, "result": result,
            "route": result.get("action") if isinstance(result, dict) else None,
            "error_kind": error_kind, "error": error, "created": job.timestamp / 1000,
            "finished": job.finishedOn / 1000 if getattr(job, "finishedOn", None) else None,
            "attempts": atts})

    def _prompt_of(self, function: str, data: dict[str, Any]) -> tuple[Any, Any]:
        """The prompt version a job calls and its hash: from the job's data, or, for a job a
        Node producer added (it names the function only), from the package's manifest."""
        fns = functions(self.bundle) if self.bundle is not None else {}
        ref = data.get("prompt") or fns.get(function)
        h = data.get("prompt_hash") or (self.bundle.manifest["prompts"][ref]["content_hash"]
                                        if ref in fns.values() else None)
        return ref, h

    def traces(self, states: list[str] | None = None, ids: list[str] | None = None
               ) -> list[dict[str, Any]]:
        async def traces() -> list[dict[str, Any]]:
            want = states or ["waiting", "delayed", "active", "completed", "dead"]
            types = [t for t, s in _STATES.items() if s in want]
            out = []
            for t in types:
                for job in await self._queue.getJobs([t], 0, -1, True):
                    out.append(await self._job_trace(job.id, job, _STATES[t]))
            return sorted(out, key=lambda j: (j["created"], j["id"]))

        return self._run(traces())

    def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        async def counts() -> tuple[dict[str, int], dict[str, int]]:
            raw = await self._queue.getJobCounts(*_STATES)
            out = dict.fromkeys(("waiting", "delayed", "active", "completed", "dead"), 0)
            for t, n in raw.items():
                out[_STATES[t]] += int(n)
            routes: dict[str, int] = {}
            for job in await self._queue.getJobs(["completed"]):
                r = job.returnvalue
                if isinstance(r, dict) and isinstance(r.get("action"), str):
                    routes[r["action"]] = routes.get(r["action"], 0) + 1
            return out, routes

        return self._run(counts())

    def retry(self, job_id: str) -> bool:
        async def retry() -> bool:
            from bullmq import Job

            job = await Job.fromId(self._queue, job_id)
            if job is None or await self._queue.getJobState(job_id) != "failed":
                return False
            await job.retry("failed", {"resetAttemptsMade": True})  # attempt numbers go on
            return True

        return self._run(retry())

    def close(self) -> None:
        if self._loop.is_running():
            self._run(self._queue.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    # -- working ----------------------------------------------------------------------------------

    def work(self, concurrency: int, stop: threading.Event, until_idle: bool) -> int:
        """Consume the queue with a BullMQ worker, ``concurrency`` jobs at a time."""
        return asyncio.run(self._work(concurrency, stop, until_idle))

    async def _work(self, concurrency: int, stop: threading.Event, until_idle: bool) -> int:
        from bullmq import Queue, UnrecoverableError, Worker

        loop, me, done = asyncio.get_running_loop(), worker_name(), [0]
        pool = ThreadPoolExecutor(concurrency, thread_name_prefix="jobs")
        fns, o = functions(self.bundle), self.options

        async def process(job: Any, token: str) -> Any:
            n, started = int(job.attemptsStarted or job.attemptsMade + 1), time.time()
            data = job.data if isinstance(job.data, dict) else {}
            try:
                spec = prepare(self.bundle, job.name, data.get("input"), str(data.get("key")))
            except JobError as e:
                done[0] += 1
                raise UnrecoverableError(f"bad_input: {e}") from None
            out = await loop.run_in_executor(pool, execute, self.bundle, fns[spec["function"]],
                                             spec["input"])
            delay = None
            if out.status == "retry":
                if job.attemptsMade + 1 < int(job.opts.get("attempts") or 1):
                    delay = planned_delay_ms(job.opts.get("backoff"), job.attemptsMade + 1)
                else:  # the last attempt: BullMQ moves it to failed
                    out = out._replace(status="dead")
            await job.log(json.dumps(attempt_record(n, me, started, out, None if delay is None
                                                    else delay / 1000)))
            if out.status == "completed":
                done[0] += 1
                return out.result
            if out.status == "dead":
                done[0] += 1
                raise UnrecoverableError(f"{out.error_kind}: {out.error}")
            raise _Retry(f"{out.error_kind}: {out.error}", delay)

        vis = round(o.visibility_s * 1000)
        worker = Worker(self.name, process, {
            "connection": _worker_url(self.url), "concurrency": concurrency, "autorun": False,
            "drainDelay": _DRAIN_S, "lockDuration": vis, "stalledInterval": vis,
            "maxStalledCount": o.max_stalls, "name": me})
        if worker.blockingRedisConnection is not None:
            # BullMQ for Python never asks the blocking connection for Redis' version, and so
            # rounds its waits up to whole seconds: a 50 ms backoff would take a second.
            await worker.blockingRedisConnection.getRedisVersion()
        run = asyncio.ensure_future(worker.run())
        counter = Queue(self.name, {"connection": self.url})
        try:
            while not stop.is_set():
                await asyncio.sleep(0.05)
                if run.done():  # BullMQ's loop ended by itself: say so, never wait for it
                    raise JobError(f"the BullMQ worker on {self.where} stopped: "
                                   f"{None if run.cancelled() else run.exception()!r}")
                if until_idle and await _open_jobs(counter) == 0:
                    break
        finally:
            await _close(worker)
            await asyncio.wait({run}, timeout=5)
            await counter.close()
            pool.shutdown(wait=True)
        return done[0]


def _attempts(logs: list[Any], started: int, state: str) -> list[dict[str, Any]]:
    """The attempts of a job's trace, in order: the records its log holds, and a ``lost`` one
    for each attempt BullMQ started (``started`` of them) that left none."""
    attempts = _logged_attempts(logs)
    for n in range(1, started + 1):  # started, never ended, yet not running now: lost
        if n not in attempts and not (state == "active" and n == started):
            attempts[n] = {"n": n, "worker": None, "started": None, "ended": None,
                           "outcome": "lost", "error_kind": "stalled",
                           "error": "the worker stopped renewing its lock (killed?)"}
    atts = [attempts[n] for n in sorted(attempts)]
    for a in atts[:-1]:  # answered, yet taken again: the worker died before completing it
        if a["outcome"] == "ok":
            a.update(outcome="lost", error_kind="stalled",
                     error="the worker died after the answer, before recording it")
    return atts


def _logged_attempts(logs: list[Any]) -> dict[int, dict[str, Any]]:
    """Attempt number → the record a worker logged when that attempt ended."""
    attempts: dict[int, dict[str, Any]] = {}
    for line in logs:
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a log line of someone else's
        if isinstance(rec, dict) and isinstance(rec.get("n"), int):
            attempts[rec["n"]] = rec
    return attempts


def _failure(reason: str | None) -> tuple[str | None, str | None]:
    """``(error_kind, error)`` of a job's ``failedReason``: our workers write ``kind: message``;
    a reason without that shape (a Node worker's) is an ``error`` with that message."""
    kind, _, err = (reason or "").partition(": ")
    if err:
        return kind or None, err
    return ("error" if kind else None), (kind or None)


# An idle BullMQ worker blocks on its queue's marker key (BZPOPMIN) for the drain delay, at
# most 10 s when the next job is delayed; a job added meanwhile wakes it by adding a marker.
# The wait must end with Redis' own empty reply, after which the worker looks for jobs itself:
# redis-py (8.x) gives every read a 5 s timeout by default, which ended each 5 s wait with a
# client-side TimeoutError instead. The worker then retried the wait without ever looking for
# jobs, and one lost marker (a wake-up that arrived as a wait timed out and reconnected) left
# its job waiting for good. The worker's connections read for longer than any wait.
_DRAIN_S = 5
_READ_TIMEOUT_S = 30


def _worker_url(url: str) -> str:
    """``url`` whose connections' reads outlast every BullMQ wait (``socket_timeout``)."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    try:
        given = float(query.get("socket_timeout", 0))
    except ValueError:
        given = 0
    query["socket_timeout"] = str(max(given, _READ_TIMEOUT_S))
    return urlunsplit(parts._replace(query=urlencode(query)))


async def _close(worker: Any) -> None:
    """``worker.close()``, making sure its wait for a job ends: close() cancels that wait once,
    and on Python 3.11 a cancel can be swallowed (``asyncio.wait_for``, which redis-py sends
    commands through, drops one arriving as the send completes); the wait then ran on and
    close() waited for it. Cancel the wait again until close() is done."""
    closing = asyncio.ensure_future(worker.close())
    while not closing.done():
        await asyncio.wait({closing}, timeout=0.25)
        waiting = worker.waiting
        if not closing.done() and waiting is not None and not waiting.done():
            waiting.cancel()
    await closing


async def _open_jobs(q: Any) -> int:
    c = await q.getJobCounts("waiting", "active", "delayed", "prioritized", "paused")
    return sum(int(v) for v in c.values())


def _safe(url: str) -> str:
    """The URL without its password."""
    head, at, tail = url.rpartition("@")
    return f"{head.split('://')[0]}://***@{tail}" if at else url


class _Retry(RuntimeError):
    """A transient failure: BullMQ retries it after ``delay_ms`` (already in the trace)."""

    def __init__(self, message: str, delay_ms: int | None):
        super().__init__(message)
        self.delay_ms = delay_ms


def planned_delay_ms(backoff: Any, attempts_made: int) -> int | None:
    """The delay before the next attempt, as Node's BullMQ computes it (``fixed`` and
    ``exponential``, with ``jitter``); None for a custom strategy or no backoff."""
    if isinstance(backoff, int | float):
        backoff = {"type": "fixed", "delay": backoff}
    if not isinstance(backoff, dict) or backoff.get("type") not in ("fixed", "exponential"):
        return None
    delay = float(backoff.get("delay") or 0)
    raw = round(2 ** (attempts_made - 1) * delay) if backoff["type"] == "exponential" else delay
    jitter = float(backoff.get("jitter") or 0)
    return int(random.random() * raw * jitter + raw * (1 - jitter)) if jitter else int(raw)


_patched = False


def _exponential_with_jitter() -> None:
    """BullMQ for Python computes ``fixed`` and ``exponential`` backoff without the ``jitter``
    that Node's BullMQ applies: make its workers use the delay our processor planned (and
    recorded in the trace), computed as Node's workers do, so that a TypeScript producer's
    ``backoff: {type: "exponential", delay, jitter}`` means the same on either."""
    global _patched
    if _patched:
        return
    from bullmq.backoffs import Backoffs

    def planned(kind: str) -> Any:
        def outer(delay: int) -> Any:
            def strategy(attempts_made: int, _type: Any, err: Any, job: Any) -> int:
                ms = getattr(err, "delay_ms", None)
                if ms is None:
                    ms = planned_delay_ms(dict((job.opts or {}).get("backoff") or {},
                                               type=kind, delay=delay), attempts_made)
                return int(ms or 0)
            return strategy
        return outer

    Backoffs.builtin_strategies["exponential"] = planned("exponential")
    Backoffs.builtin_strategies["fixed"] = planned("fixed")
    _patched = True

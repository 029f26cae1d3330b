"""Production jobs: the package's calls queued, idempotent, retried and traced.

Example:
    >>> from support_bot import jobs                                    # doctest: +SKIP
    >>> q = jobs.open("sqlite:///var/lib/app/jobs.db")  # or "redis://127.0.0.1:6379/0"
    >>> j = q.submit("triage", {"text": "Where is my card?"}, key="acme/ticket-123")
    >>> q.work(concurrency=16, until_idle=True)          # or: python -m support_bot worker
    >>> q.result(j.id)
    {'action': 'auto_process', 'label': 'card_arrival', 'confidence': 0.93, 'error': None}
    >>> q.trace(j.id)["attempts"]                        # errors, tokens, cost, latency
    >>> q.traces_frame()                                 # every trace, as a pandas DataFrame

Submitting the same (key, input) again returns the same job and runs nothing. Semantics, ids
and retries: see :mod:`._jobs`. SQLite is the embedded default (several worker processes on one
machine); ``redis://`` and ``rediss://`` URLs queue on BullMQ (install the ``[bullmq]`` extra),
where TypeScript services may produce to the same queue (job name = function, data =
``{"key": ..., "input": {...}}``, ``jobId`` = :func:`job_id`).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from ._jobs import JobError, JobFailed, JobOptions, Submitted, job_id, preflight, prepare
from ._usage import note as note_usage

if TYPE_CHECKING:
    import pandas as pd

    from ._bundle import Bundle
    from ._jobs_bullmq import BullMQBackend
    from ._jobs_sqlite import SQLiteBackend

__all__ = ["JobError", "JobFailed", "JobOptions", "Queue", "Submitted", "job_id",
           "note_usage", "open"]


def open(url: str = "sqlite:///jobs.db", *, name: str | None = None,  # noqa: A001
         bundle: Bundle | None = None, **options: Any) -> Queue:
    """The job queue at ``url``: ``sqlite:///jobs.db`` (relative; ``sqlite:////abs/jobs.db``,
    or a bare path) or ``redis://HOST:PORT/DB``.

    Args:
        url: where the jobs live.
        name: the BullMQ queue name (default: the package name).
        bundle: the package whose prompts the jobs call (default: this package).
        options: :class:`JobOptions` fields (``attempts``, ``backoff_s``, ``jitter``,
            ``visibility_s``, ``max_stalls``); defaults from the approved retry policy.
    """
    if bundle is None:
        import importlib

        bundle = importlib.import_module(__name__.rpartition(".")[0])._BUNDLE
    unknown = set(options) - set(JobOptions._fields)
    if unknown:
        raise JobError(f"unknown job option(s) {', '.join(sorted(unknown))} (fix: use "
                       f"{', '.join(JobOptions._fields)})")
    opts = JobOptions.from_bundle(bundle, **options)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from ._jobs_bullmq import BullMQBackend

        backend: SQLiteBackend | BullMQBackend = BullMQBackend(bundle, url,
                                                               name or bundle.package, opts)
    elif url.startswith("sqlite:///") or "://" not in url:
        from ._jobs_sqlite import SQLiteBackend

        # as SQLAlchemy and MLflow read it: sqlite:///rel/jobs.db, sqlite:////abs/jobs.db
        backend = SQLiteBackend(bundle, url.removeprefix("sqlite:///"), opts)
    else:
        raise JobError(f"unknown job queue URL {url!r} (fix: sqlite:///PATH or "
                       "redis://HOST:6379/0)")
    return Queue(bundle, backend, opts)


class Queue:
    """A job queue of one package; from :func:`open`. Thread-safe."""

    def __init__(self, bundle: Bundle, backend: SQLiteBackend | BullMQBackend,
                 options: JobOptions):
        self.bundle, self.backend, self.options = bundle, backend, options

    def submit(self, function: str, inputs: dict[str, Any], *, key: str) -> Submitted:
        """Queue ``function(**inputs)`` under idempotency key ``key`` (e.g. ``tenant/id``);
        a duplicate of a known job returns it (``created=False``) and queues nothing."""
        return self.submit_many(function, [(key, inputs)])[0]

    def submit_many(self, function: str, items: list[tuple[str, dict[str, Any]]]
                    ) -> list[Submitted]:
        """:meth:`submit` for many ``(key, inputs)`` at once (one transaction or pipeline)."""
        jobs = [prepare(self.bundle, function, inputs, key) for key, inputs in items]
        return [Submitted(j["id"], state, created)
                for j, (state, created) in zip(jobs, self.backend.add(jobs), strict=True)]

    def result(self, job_id: str, timeout: float | None = None) -> Any:
        """The job's result, waiting for it; :class:`JobFailed` for a dead letter,
        ``TimeoutError`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.01
        while True:
            t = self.trace(job_id)
            if t["state"] == "completed":
                return t["result"]
            if t["state"] == "dead":
                raise JobFailed(job_id, t["error_kind"] or "error", t["error"] or "")
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {t['state']} after {timeout} s")
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def trace(self, job_id: str) -> dict[str, Any]:
        """The job's trace: id, function, prompt and its hash, key, input, state, result or
        last error, route, and every attempt (worker, outcome, error, delay, model, tokens,
        cost, latency) with their totals."""
        t = self.backend.trace(job_id)
        if t is None:
            raise JobError(f"no job {job_id} in this queue (fix: `status` lists the queue; "
                           "ids are the 64-hex ids `submit` prints)")
        return t

    def traces(self, states: list[str] | None = None) -> list[dict[str, Any]]:
        """Every job's trace (or those in ``states``: waiting, delayed, active, completed,
        dead), oldest first."""
        return self.backend.traces(states)

    def traces_frame(self, states: list[str] | None = None) -> pd.DataFrame:
        """:meth:`traces` as a pandas DataFrame, one row a job (``attempts`` a list column)."""
        import pandas as pd

        return pd.DataFrame(self.traces(states))

    def dead_letters(self) -> list[dict[str, Any]]:
        """The traces of the jobs that failed for good."""
        return self.traces(["dead"])

    def status(self) -> dict[str, Any]:
        """Jobs per state, and completed triage jobs per route (auto_process,
        queue_for_human, legacy_fallback)."""
        counts, routes = self.backend.counts()
        return {"queue": self.backend.where, "jobs": counts, "routes": routes}

    def retry(self, job_id: str) -> None:
        """Queue a dead letter again, with a fresh attempt budget."""
        if not self.backend.retry(job_id):
            state = self.trace(job_id)["state"]
            raise JobError(f"job {job_id} is {state}, not in the dead letters (fix: `dlq` "
                           "lists the jobs that can be retried)")

    def work(self, *, concurrency: int = 16, until_idle: bool = False,
             stop: threading.Event | None = None) -> int:
        """Run jobs here, ``concurrency`` at a time, until ``stop`` is set (or, with
        ``until_idle``, no job is left to run); the number of jobs finished."""
        if concurrency < 1:
            raise JobError(f"concurrency {concurrency}: run at least 1 job at a time")
        preflight(self.bundle)
        return self.backend.work(concurrency, stop or threading.Event(), until_idle)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


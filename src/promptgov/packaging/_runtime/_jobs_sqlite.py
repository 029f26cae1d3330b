"""The embedded job backend: jobs, attempts, dead letters and traces in one SQLite file.

Safe for several worker processes on one machine: WAL mode, and every state change is one
``BEGIN IMMEDIATE`` transaction. A worker claims a job by setting a fresh lease token and a
lease deadline (``run_at``) it renews while it works; a job whose deadline passed is claimed
again by any worker, and its old attempt is recorded as ``lost``. A result, a retry or a dead
letter is written only where the lease token is still the worker's own (a fencing token), so
a job is completed once however often it was delivered.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ._jobs import JobError, attempt_record, backoff_delay, execute, summarise, worker_name

if TYPE_CHECKING:
    from ._bundle import Bundle
    from ._jobs import JobOptions

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY, function TEXT NOT NULL, prompt TEXT NOT NULL, prompt_hash TEXT NOT NULL,
  key TEXT NOT NULL, input TEXT NOT NULL, state TEXT NOT NULL,
  run_at REAL NOT NULL,          -- waiting/delayed: when it may run; active: lease deadline
  tries INTEGER NOT NULL DEFAULT 0, stalls INTEGER NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL, backoff_s REAL NOT NULL, jitter REAL NOT NULL,
  lease TEXT, worker TEXT, result TEXT, route TEXT, error_kind TEXT, error TEXT,
  created REAL NOT NULL, finished REAL);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, run_at);
CREATE TABLE IF NOT EXISTS attempts (
  job_id TEXT NOT NULL, n INTEGER NOT NULL, worker TEXT, started REAL, ended REAL,
  outcome TEXT NOT NULL, error_kind TEXT, error TEXT, delay_s REAL, model TEXT, calls INTEGER,
  prompt_tokens INTEGER, completion_tokens INTEGER, cost_usd REAL, latency_s REAL,
  PRIMARY KEY (job_id, n));
CREATE VIEW IF NOT EXISTS dead_letters AS
  SELECT id, function, prompt, key, input, error_kind, error, tries, finished FROM jobs
  WHERE state = 'dead';
"""
_ATT = ("n", "worker", "started", "ended", "outcome", "error_kind", "error", "delay_s", "model",
        "calls", "prompt_tokens", "completion_tokens", "cost_usd", "latency_s")
_JOB = ("id", "function", "prompt", "prompt_hash", "key", "input", "state", "run_at", "tries",
        "result", "route", "error_kind", "error", "created", "finished")


class SQLiteBackend:
    """Jobs in the SQLite file ``path`` (created on first use)."""

    def __init__(self, bundle: Bundle, path: str, options: JobOptions):
        self.bundle, self.path, self.options = bundle, path, options
        self.where = path
        """Where the jobs are, as ``status`` shows it."""
        self._local = threading.local()
        # One writer at a time in this process: threads queue here, not in SQLite's busy
        # handler, which sleeps for milliseconds at a time (other processes still meet it).
        self._write = threading.Lock()
        try:
            self._db().executescript(SCHEMA)
        except sqlite3.Error as e:
            raise JobError(f"cannot use {path} as a job store: {e} (fix: pass a writable "
                           "file path, e.g. sqlite:///var/lib/app/jobs.db)") from None

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def _tx(self) -> _Tx:
        return _Tx(self._db(), self._write)

    # -- producing and reading ------------------------------------------------------------------

    def add(self, jobs: list[dict[str, Any]]) -> list[tuple[str, bool]]:
        o, now = self.options, time.time()
        out = []
        with self._tx() as db:
            for j in jobs:
                cur = db.execute(
                    "INSERT OR IGNORE INTO jobs (id, function, prompt, prompt_hash, key, input, "
                    "state, run_at, attempts, backoff_s, jitter, created) VALUES "
                    "(?,?,?,?,?,?,'waiting',?,?,?,?,?)",
                    (j["id"], j["function"], j["prompt"], j["prompt_hash"], j["key"],
                     json.dumps(j["input"], ensure_ascii=False), now, o.attempts, o.backoff_s,
                     o.jitter, now))
                state = db.execute("SELECT state FROM jobs WHERE id=?", (j["id"],)).fetchone()
                out.append((state[0], cur.rowcount == 1))
        return out

    def trace(self, job_id: str) -> dict[str, Any] | None:
        got = self.traces(ids=[job_id])
        return got[0] if got else None

    def traces(self, states: list[str] | None = None, ids: list[str] | None = None
               ) -> list[dict[str, Any]]:
        db = self._db()
        where, args = _where(states, ids)
        sql = f"SELECT {','.join(_JOB)} FROM jobs{where} ORDER BY created, id"
        jobs = [_decoded(dict(zip(_JOB, r, strict=True))) for r in db.execute(sql, args)]
        if jobs:
            _add_attempts(db, {j["id"]: j for j in jobs})
        return [summarise(j) for j in jobs]

    def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        db, now = self._db(), time.time()
        counts = dict.fromkeys(("waiting", "delayed", "active", "completed", "dead"), 0)
        for state, due, n in db.execute("SELECT state, run_at <= ?, count(*) FROM jobs "
                                        "GROUP BY 1, 2", (now,)):
            counts["delayed" if state == "waiting" and not due else state] += n
        routes = dict(db.execute("SELECT route, count(*) FROM jobs WHERE route IS NOT NULL "
                                 "GROUP BY route"))
        return counts, routes

    def retry(self, job_id: str) -> bool:
        with self._tx() as db:
            cur = db.execute("UPDATE jobs SET state='waiting', run_at=?, stalls=0, "
                             "error=NULL, error_kind=NULL, finished=NULL, attempts=attempts+? "
                             "WHERE id=? AND state='dead'",
                             (time.time(), self.options.attempts, job_id))
            return cur.rowcount == 1

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- working ----------------------------------------------------------------------------------

    def work(self, concurrency: int, stop: threading.Event, until_idle: bool,
             poll_s: float = 0.05) -> int:
        """Take and run jobs on ``concurrency`` threads until ``stop`` is set (or, with
        ``until_idle``, until none is waiting or active); the number of jobs finished."""
        me, lock = worker_name(), threading.Lock()
        held: dict[str, str] = {}  # job id -> the lease this worker holds it under
        free = threading.Semaphore(concurrency)
        wake = threading.Event()  # a slot came free: claim at once rather than at the next poll
        done = [0]
        beating = threading.Event()  # set when every job in hand is finished
        beat = threading.Thread(target=self._heartbeat, args=(held, lock, beating), daemon=True,
                                name="jobs-lease")
        beat.start()

        def run(job: dict[str, Any]) -> None:
            try:
                o = execute(self.bundle, job["prompt"], json.loads(job["input"]))
                if self._finish(job, o, me) in ("completed", "dead"):
                    done[0] += 1
            finally:
                with lock:
                    held.pop(job["id"], None)
                free.release()
                wake.set()

        with ThreadPoolExecutor(concurrency, thread_name_prefix="jobs") as pool:
            while not stop.is_set():
                n = 0
                while free.acquire(blocking=False):
                    n += 1
                if n:
                    jobs = self._claim(n, me)
                    for _ in range(n - len(jobs)):
                        free.release()
                    with lock:
                        held.update({j["id"]: j["lease"] for j in jobs})
                    for j in jobs:
                        pool.submit(run, j)
                    if jobs:
                        continue
                if until_idle and not held and self._idle():
                    break
                wake.wait(poll_s)
                wake.clear()
        beating.set()
        beat.join()
        return done[0]

    def _idle(self) -> bool:
        return self._db().execute("SELECT 1 FROM jobs WHERE state IN ('waiting','active') "
                                  "LIMIT 1").fetchone() is None

    def _claim(self, n: int, me: str) -> list[dict[str, Any]]:
        now, o = time.time(), self.options
        with self._tx() as db:
            rows = db.execute("SELECT id, state, prompt, input, tries, stalls FROM jobs "
                              "WHERE state IN ('waiting','active') AND run_at <= ? "
                              "ORDER BY run_at LIMIT ?", (now, n)).fetchall()
            jobs = []
            for job_id, state, prompt, inputs, tries, stalls in rows:
                if state == "active":  # its worker died, or stopped renewing: take it again
                    db.execute("UPDATE attempts SET outcome='lost', ended=?, error_kind='stalled',"
                               " error='the worker stopped renewing its lease (killed?)' "
                               "WHERE job_id=? AND n=?", (now, job_id, tries))
                    stalls += 1
                    if stalls > o.max_stalls:
                        db.execute("UPDATE jobs SET state='dead', stalls=?, lease=NULL, "
                                   "error_kind='stalled', error=?, finished=? WHERE id=?",
                                   (stalls, f"its worker died holding it {stalls} times", now,
                                    job_id))
                        continue
                lease = uuid.uuid4().hex
                db.execute("UPDATE jobs SET state='active', run_at=?, lease=?, worker=?, "
                           "tries=?, stalls=? WHERE id=?",
                           (now + o.visibility_s, lease, me, tries + 1, stalls, job_id))
                db.execute("INSERT INTO attempts (job_id, n, worker, started, outcome) "
                           "VALUES (?,?,?,?,'running')", (job_id, tries + 1, me, now))
                jobs.append({"id": job_id, "prompt": prompt, "input": inputs, "lease": lease,
                             "n": tries + 1, "started": now})
            return jobs

    def _finish(self, job: dict[str, Any], o: Any, me: str) -> str | None:
        """Record the attempt's outcome if the lease is still ours: the job's new state, or
        None if the lease was lost."""
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT attempts, backoff_s, jitter, (SELECT count(*) FROM attempts"
                             " WHERE job_id=jobs.id AND outcome NOT IN ('lost','running')) "
                             "FROM jobs WHERE id=? AND lease=? AND state='active'",
                             (job["id"], job["lease"])).fetchone()
            if row is None:
                return None  # taken again after our lease expired: that worker records it
            attempts, backoff_s, jitter, made = row
            status, delay = o.status, None
            if status == "retry" and made + 1 >= attempts:
                status = "dead"
            if status == "retry":
                opts = self.options._replace(backoff_s=backoff_s, jitter=jitter)
                delay = backoff_delay(made + 1, opts)
                db.execute("UPDATE jobs SET state='waiting', run_at=?, lease=NULL, "
                           "error_kind=?, error=? WHERE id=?",
                           (now + delay, o.error_kind, o.error, job["id"]))
            else:
                db.execute("UPDATE jobs SET state=?, lease=NULL, result=?, route=?, "
                           "error_kind=?, error=?, finished=? WHERE id=?",
                           (status, None if o.result is None else json.dumps(o.result),
                            o.route, o.error_kind, o.error, now, job["id"]))
            a = attempt_record(job["n"], me, job["started"], o._replace(status=status), delay)
            db.execute(f"UPDATE attempts SET {','.join(f'{k}=?' for k in _ATT[3:])} "
                       "WHERE job_id=? AND n=?",
                       [a[k] for k in _ATT[3:]] + [job["id"], job["n"]])
        return "waiting" if status == "retry" else status

    def _heartbeat(self, held: dict[str, str], lock: threading.Lock,
                   stop: threading.Event) -> None:
        every = self.options.visibility_s / 3
        while not stop.wait(every):
            with lock:
                leases = list(held.items())
            if leases:
                deadline = time.time() + self.options.visibility_s
                with self._tx() as db:
                    db.executemany("UPDATE jobs SET run_at=? WHERE id=? AND lease=?",
                                   [(deadline, i, t) for i, t in leases])


def _where(states: list[str] | None, ids: list[str] | None) -> tuple[str, list[str]]:
    """The ``WHERE`` clause (or nothing) selecting jobs in ``states`` with ``ids``, and its
    arguments."""
    where: list[str] = []
    args: list[str] = []
    if states:
        where.append(f"state IN ({','.join('?' * len(states))})")
        args += states
    if ids:
        where.append(f"id IN ({','.join('?' * len(ids))})")
        args += ids
    return (" WHERE " + " AND ".join(where) if where else ""), args


def _decoded(j: dict[str, Any]) -> dict[str, Any]:
    """A job row as its trace shows it: JSON decoded, a waiting job not yet due ``delayed``,
    the columns only the backend needs dropped, no attempts yet."""
    j["input"] = json.loads(j["input"])
    j["result"] = None if j["result"] is None else json.loads(j["result"])
    if j["state"] == "waiting" and j["run_at"] > time.time():
        j["state"] = "delayed"
    del j["run_at"], j["tries"]
    j["attempts"] = []
    return j


def _add_attempts(db: sqlite3.Connection, by_id: dict[str, dict[str, Any]]) -> None:
    """Append each job's attempts, in order, to ``by_id[job id]["attempts"]``."""
    few = len(by_id) < 500  # more ids than that: read every attempt rather than bind them all
    sql = (f"SELECT job_id,{','.join(_ATT)} FROM attempts"
           + (f" WHERE job_id IN ({','.join('?' * len(by_id))})" if few else "")
           + " ORDER BY job_id, n")
    for r in db.execute(sql, list(by_id) if few else []):
        if r[0] in by_id:
            by_id[r[0]]["attempts"].append(dict(zip(_ATT, r[1:], strict=True)))


class _Tx:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on an exception)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock):
        self.db, self.lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.db

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        try:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.lock.release()

"""The response cache: every model answer, keyed by what determines it (principle 5).

SQLite in ``.promptgov/cache.sqlite``. The key is the hash of (model, params, rendered messages,
schema, sample index); each row also keeps the hash of each part and a label (prompt version and
case id), so :func:`ResponseCache.explain` can say which part changed when a case misses.

A run first loads every answer cached for its prompt version (:meth:`preload`), so look-ups
during the run are in memory. Writes are batched by one writer thread (a commit every
``batch`` rows or ``flush_s`` seconds), never a transaction per case. The cache is also the
resume journal: a run killed with SIGKILL loses at most the last unflushed batch.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from promptgov.hashing import content_hash
from promptgov.model._base import Completion, Request, Usage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
  key TEXT PRIMARY KEY, model TEXT NOT NULL, text TEXT NOT NULL,
  prompt_tokens INTEGER, completion_tokens INTEGER, cost_usd REAL, latency_s REAL,
  parts TEXT NOT NULL, label TEXT, case_id TEXT, created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_label ON responses(label, case_id);
"""


def key_part_hashes(request: Request, model_id: str) -> dict[str, Any]:
    p = request.key_parts(model_id)
    return {"model": model_id, "sample": request.sample,
            "params": content_hash({"temperature": p["temperature"],
                                    "max_tokens": p["max_tokens"]}),
            "prompt (system + demos)": p["prefix"],
            "case messages": content_hash(p["messages"]),
            "schema": content_hash(p["response_schema"])}


class ResponseCache:
    """Thread-safe response cache. ``get`` is served from memory after :meth:`preload`."""

    def __init__(self, path: Path, *, batch: int = 256, flush_s: float = 0.2):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;" + _SCHEMA)
        self._lock = threading.Lock()
        self._mem: dict[str, Completion] = {}
        self._preloaded: set[str] = set()
        self._q: queue.Queue = queue.Queue()
        self._batch, self._flush_s = batch, flush_s
        self._writer = threading.Thread(target=self._write_loop, daemon=True,
                                        name="promptgov-cache-writer")
        self._writer.start()

    # -- reads ------------------------------------------------------------------------------

    def preload(self, label: str) -> int:
        """Load every cached answer of one prompt version (``label``) in one query. After it,
        a key of that label that is not in memory is a miss without asking SQLite, so the hot
        path never waits for the writer's commits."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, model, text, prompt_tokens, completion_tokens, cost_usd, latency_s "
                "FROM responses WHERE label = ?", (label,)).fetchall()
        for r in rows:
            self._mem[r[0]] = _completion(r)
        self._preloaded.add(label)
        return len(rows)

    def get(self, key: str, label: str | None = None) -> Completion | None:
        hit = self._mem.get(key)
        if hit is not None or label in self._preloaded:
            return hit
        with self._lock:
            r = self._db.execute(
                "SELECT key, model, text, prompt_tokens, completion_tokens, cost_usd, latency_s "
                "FROM responses WHERE key = ?", (key,)).fetchone()
        return _completion(r) if r else None

    # -- writes -----------------------------------------------------------------------------

    def put(self, key: str, request: Request, model_id: str, c: Completion, *,
            label: str | None = None, case_id: str | None = None) -> None:
        self._mem[key] = c
        # The key parts are hashed by the writer thread, off the caller's path.
        self._q.put((key, c.model, c.text, c.usage.prompt_tokens, c.usage.completion_tokens,
                     c.cost_usd, c.latency_s, (request, model_id), label, case_id, time.time()))

    def _write_loop(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            rows, deadline = [item], time.monotonic() + self._flush_s
            stop = False
            while len(rows) < self._batch:
                try:
                    nxt = self._q.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                rows.append(nxt)
            rows = [(*r[:7], json.dumps(key_part_hashes(*r[7])), *r[8:]) for r in rows]
            with self._lock:
                self._db.executemany(
                    "INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
                self._db.commit()
            for _ in rows:
                self._q.task_done()
            if stop:
                self._q.task_done()
                return

    def flush(self) -> None:
        """Block until every queued answer is committed."""
        self._q.join()

    def close(self) -> None:
        self._q.put(None)
        self._writer.join()
        self._db.close()

    # -- inspection -------------------------------------------------------------------------

    def explain(self, request: Request, model_id: str, *, label: str,
                case_id: str) -> str:
        """Why this request hits or misses: the parts of its key that differ from the last
        cached answer for the same prompt version and case."""
        key = request.key(model_id)
        if self.get(key) is not None:
            return f"hit: {key}"
        with self._lock:
            row = self._db.execute(
                "SELECT parts FROM responses WHERE label = ? AND case_id = ? ORDER BY created "
                "DESC LIMIT 1", (label, case_id)).fetchone()
        if row is None:
            return f"miss: no answer was ever cached for {label} case {case_id}"
        old, new = json.loads(row[0]), key_part_hashes(request, model_id)
        diff = [k for k in new if old.get(k) != new[k]]
        return f"miss: changed since the cached answer: {', '.join(diff) or 'nothing?'}"

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]


def _completion(r) -> Completion:
    return Completion(text=r[2], model=r[1], usage=Usage(r[3] or 0, r[4] or 0),
                      latency_s=r[6] or 0.0, cost_usd=r[5] or 0.0, cached=True)

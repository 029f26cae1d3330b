"""The response cache: every model answer, keyed by what determines it (principle 5).

SQLite in ``.promptgov/cache.sqlite``. The key is the hash of (model, params, rendered messages,
schema, sample index); each row also keeps the hash of each part and a label (prompt version and
case id), so :func:`ResponseCache.explain` can say which part changed when a case misses.

A run first loads every answer cached for its prompt version (:meth:`preload`), so look-ups
during the run are in memory.

Nothing paid twice, without a transaction per case: each answer is appended at once to this
process's journal (``.promptgov/journal/*.jsonl``, one ``write`` of one ASCII line, which the OS
keeps when the process is killed), and folded into SQLite in batches (every ``batch`` answers or
``flush_s`` seconds) by whichever caller crosses the mark; a clean close deletes the journal.
Opening the cache folds the journals of dead processes (a killed run) first, so a re-run resends
nothing that was answered. A live process holds an ``flock`` on its journal; it is never folded
under it. There is no writer thread: nothing can die in the background while the caller waits,
and a failed fold is raised to the caller at :meth:`flush` / :meth:`close` (the journal is kept).

Any text is stored exactly: a lone surrogate (``"\\ud800"``), which UTF-8 cannot encode, goes to
SQLite as a BLOB of ``surrogatepass`` bytes and to the journal as a JSON ``\\ud800`` escape.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from promptgov.hashing import content_hash
from promptgov.model._base import Completion, Request, Usage

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: journals are folded without a liveness lock
    fcntl = None  # type: ignore[assignment]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
  key TEXT PRIMARY KEY, model TEXT NOT NULL, text TEXT NOT NULL,
  prompt_tokens INTEGER, completion_tokens INTEGER, cost_usd REAL, latency_s REAL,
  parts TEXT NOT NULL, label TEXT, case_id TEXT, created REAL NOT NULL, finish_reason TEXT
);
CREATE INDEX IF NOT EXISTS responses_label ON responses(label, case_id);
"""
_COLUMNS = ("key, model, text, prompt_tokens, completion_tokens, cost_usd, latency_s, parts, "
            "label, case_id, created, finish_reason")
_INSERT = f"INSERT OR REPLACE INTO responses ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
_SELECT = ("SELECT key, model, text, prompt_tokens, completion_tokens, cost_usd, latency_s, "
           "finish_reason FROM responses")


def key_part_hashes(request: Request, model_id: str) -> dict[str, Any]:
    p = request.key_parts(model_id)
    return {"model": model_id, "sample": request.sample,
            "params": content_hash({"temperature": p["temperature"],
                                    "max_tokens": p["max_tokens"]}),
            "prompt (system + demos)": p["prefix"],
            "case messages": content_hash(p["messages"]),
            "schema": content_hash(p["response_schema"])}


def _sql_text(value: Any) -> Any:
    """A str SQLite can store: as it is, or (lone surrogates) as surrogatepass bytes."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogatepass")
    return value


def _py_text(value: Any) -> Any:
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else value


class ResponseCache:
    """Thread-safe response cache. ``get`` is served from memory after :meth:`preload`."""

    def __init__(self, path: Path, *, batch: int = 256, flush_s: float = 0.2):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        try:
            self._db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                                   + _SCHEMA)
            if "finish_reason" not in {r[1] for r in
                                       self._db.execute("PRAGMA table_info(responses)")}:
                self._db.execute("ALTER TABLE responses ADD COLUMN finish_reason TEXT")  # older
        except sqlite3.DatabaseError as e:  # a damaged or foreign file: say so, touch nothing
            self._db.close()
            from promptgov.errors import WorkspaceError

            raise WorkspaceError(self.path, f"the response cache is not a usable SQLite database "
                                 f"({e})", f"it only saves repeat calls and is rebuilt: delete it "
                                 f"(`rm {self.path}`) and run again, or pass --no-cache") from None
        self._db_lock = threading.Lock()  # the connection: folds and reads
        self._jlock = threading.Lock()  # the journal and the pending rows
        self._mem: dict[str, Completion] = {}
        self._preloaded: set[str] = set()
        self._pending: list[tuple[Any, ...]] = []
        self._batch, self._flush_s = batch, flush_s
        self._last_fold = time.monotonic()
        self._error: BaseException | None = None
        self._failed = self._closed = False
        self.journal_dir = self.path.parent / "journal"
        self.journal_dir.mkdir(exist_ok=True)
        self.recovered = self._fold_dead_journals()
        """Answers recovered from the journals of killed runs when the cache was opened."""
        self.journal = self.journal_dir / f"{self.path.stem}-{os.getpid()}-{uuid.uuid4().hex}.jsonl"
        self._fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    # -- reads ------------------------------------------------------------------------------

    def preload(self, label: str) -> int:
        """Load every cached answer of one prompt version (``label``) in one query. After it,
        a key of that label that is not in memory is a miss without asking SQLite."""
        with self._db_lock:
            rows = self._db.execute(f"{_SELECT} WHERE label = ?", (label,)).fetchall()
        for r in rows:
            self._mem[r[0]] = _completion(r)
        self._preloaded.add(label)
        return len(rows)

    def get(self, key: str, label: str | None = None) -> Completion | None:
        hit = self._mem.get(key)
        if hit is not None or label in self._preloaded:
            return hit
        with self._db_lock:
            r = self._db.execute(f"{_SELECT} WHERE key = ?", (key,)).fetchone()
        return _completion(r) if r else None

    # -- writes -----------------------------------------------------------------------------

    def put(self, key: str, request: Request, model_id: str, c: Completion, *,
            label: str | None = None, case_id: str | None = None) -> None:
        """Keep an answer: in memory, in the journal now, in SQLite with the next batch."""
        self._mem[key] = c
        row = (key, c.model, c.text, c.usage.prompt_tokens, c.usage.completion_tokens,
               c.cost_usd, c.latency_s, json.dumps(key_part_hashes(request, model_id)),
               label, case_id, time.time(), c.finish_reason)
        line = (json.dumps(row) + "\n").encode("ascii")  # ensure_ascii: any text, one line
        with self._jlock:
            if self._closed:
                return  # an answer landing after close (an abandoned call): memory only
            os.write(self._fd, line)
            self._pending.append(row)
            due = (len(self._pending) >= self._batch
                   or time.monotonic() - self._last_fold >= self._flush_s)
        if due:
            self._fold(wait=False)

    def _fold(self, *, wait: bool) -> None:
        """Commit the pending rows in one transaction. ``wait=False``: skip if another thread
        is folding (it will take these rows too, or the next caller will)."""
        if not self._db_lock.acquire(blocking=wait):
            return
        try:
            with self._jlock:
                rows, self._pending = self._pending, []
                self._last_fold = time.monotonic()
            if rows:
                self._insert(rows)
        except BaseException as e:  # noqa: BLE001 - kept for the caller: flush() raises it
            self._error = self._error or e
            self._failed = True  # the journal is then kept at close, for the next run
        finally:
            self._db_lock.release()

    def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        self._db.executemany(_INSERT, [tuple(_sql_text(v) for v in r) for r in rows])
        self._db.commit()

    def flush(self) -> None:
        """Commit every answer kept so far; raise what a fold failed with (in any thread)."""
        self._fold(wait=True)
        if self._error is not None:
            err, self._error = self._error, None
            raise RuntimeError(f"{self.path}: could not write the response cache ({err}); "
                               f"the answers are kept in {self.journal} and are folded in by "
                               "the next run") from err

    def close(self) -> None:
        """Flush, then delete the journal (every answer in it is in SQLite)."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            with self._jlock:
                self._closed = True
                ok = not self._failed and not self._pending
                os.close(self._fd)  # releases the flock
            if ok:
                with contextlib.suppress(OSError):
                    self.journal.unlink()
            with self._db_lock:
                self._db.close()

    # -- journals of killed runs --------------------------------------------------------------

    def _fold_dead_journals(self) -> int:
        n = 0
        for j in sorted(self.journal_dir.glob(f"{self.path.stem}-*.jsonl")):
            try:
                fd = os.open(j, os.O_RDONLY)
            except OSError:
                continue  # folded and removed by another process meanwhile
            try:
                if fcntl is not None:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError:
                        continue  # its process is alive
                rows = []
                with open(fd, "rb", closefd=False) as f:
                    for line in f:
                        # a ValueError: the last line of a process killed mid-write
                        with contextlib.suppress(ValueError):
                            rows.append(tuple(json.loads(line)))
                with self._db_lock:
                    self._insert(rows)
                j.unlink()
                n += len(rows)
            finally:
                os.close(fd)
        return n

    # -- inspection -------------------------------------------------------------------------

    def explain(self, request: Request, model_id: str, *, label: str,
                case_id: str) -> str:
        """Why this request hits or misses: the parts of its key that differ from the last
        cached answer for the same prompt version and case."""
        key = request.key(model_id)
        if self.get(key) is not None:
            return f"hit: {key}"
        with self._db_lock:
            row = self._db.execute(
                "SELECT parts FROM responses WHERE label = ? AND case_id = ? ORDER BY created "
                "DESC LIMIT 1", (label, case_id)).fetchone()
        if row is None:
            return f"miss: no answer was ever cached for {label} case {case_id}"
        old, new = json.loads(row[0]), key_part_hashes(request, model_id)
        diff = [k for k in new if old.get(k) != new[k]]
        return f"miss: changed since the cached answer: {', '.join(diff) or 'nothing?'}"

    def __len__(self) -> int:
        with self._db_lock:
            return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])


def _completion(r: tuple[Any, ...]) -> Completion:
    return Completion(text=_py_text(r[2]), model=r[1], usage=Usage(r[3] or 0, r[4] or 0),
                      latency_s=r[6] or 0.0, cost_usd=r[5] or 0.0, cached=True,
                      finish_reason=r[7])

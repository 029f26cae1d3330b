"""A small index of the runs in the workspace's own SQLite store, so ``status`` and ``compare``
answer without importing MLflow (seconds on a loaded machine).

``.promptgov/runs/<run_id>.json`` holds each promptgov run's status, tags, params, metrics and
artifact location, written right after the run is logged; ``.promptgov/runs/STORE`` holds the
store file's size and modification time as of promptgov's last write. A reader trusts the index
only while the store file still has exactly that size and time: anything else that wrote to it
(the UI, another tool, an older promptgov) makes the reader fall back to MLflow once and rebuild
the index from what MLflow holds. The index is a view for reading; approvals read the runs
themselves (the evidence lives in the store, principle 10).

Writers to a server also find here how to tell a write that lost a race to another writer
(:func:`lost_race`) and to repeat it (:func:`retrying`, :func:`pause`).
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

from promptgov.eval._store import RUN_TAG, is_local, store_lock, tracking_uri

__all__ = ["all_runs", "as_run", "is_local", "lost_race", "rebuild", "resolve_run_id",
           "retrying", "runs", "writing"]

INDEX_DIR = ".promptgov/runs"
T = TypeVar("T")


def _db(root: Path) -> Path | None:
    uri = tracking_uri(root)
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def _stamp(db: Path) -> str | None:
    try:
        st = db.stat()
    except OSError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def entry(run: Any) -> dict[str, Any]:
    """The index entry of an MLflow ``Run``."""
    i = run.info
    return {"run_id": i.run_id, "experiment_id": i.experiment_id, "status": i.status,
            "start_time": i.start_time, "artifact_uri": i.artifact_uri,
            "tags": dict(run.data.tags), "params": dict(run.data.params),
            "metrics": dict(run.data.metrics)}


@contextmanager
def writing(root: Path, c: Any) -> Iterator[list[str]]:
    """Hold the store lock around a write to the store; yields a list the writer appends its
    new run ids to. If the index was current before the write, it is after (the new runs are
    indexed and the stamp moves on); if the write fails half-way, the index is left untrusted
    and the next reader rebuilds it."""
    with store_lock(root):
        db = _db(root)
        d = root / INDEX_DIR
        try:
            fresh = db is not None and (d / "STORE").read_text() == _stamp(db)
        except OSError:
            fresh = False
        ids: list[str] = []
        yield ids
        if db is not None:
            for rid in ids:
                _write(d / f"{rid}.json", json.dumps(entry(c.get_run(rid))))
            if fresh:
                _write(d / "STORE", _stamp(db) or "")


def lost_race(e: BaseException) -> bool:
    """Whether a write to a server failed because another writer got there first: a row it
    inserted at the same moment (the database's unique-key error, which MLflow answers as
    ``BAD_REQUEST`` with the database's text: PostgreSQL's UniqueViolation, MySQL's duplicate
    entry, SQLite's UNIQUE constraint) or a name it created first (RESOURCE_ALREADY_EXISTS).
    Several evals on one server write shared rows (the evalset's dataset, the prompt, its
    tags) for the first time at once: the loser's write is refused whole and may be repeated."""
    if getattr(e, "error_code", None) == "RESOURCE_ALREADY_EXISTS":
        return True
    text = str(e).lower()
    return any(s in text for s in ("uniqueviolation", "unique constraint", "duplicate key",
                                   "duplicate entry"))


def pause(attempt: int) -> None:
    """A writer that lost a race waits a random while (growing with ``attempt``), so that the
    writers that collided do not collide again."""
    time.sleep(random.uniform(0.05, 0.3) * (attempt + 1))


def retrying(write: Callable[..., T], attempts: int = 6) -> Callable[..., T]:
    """``write`` repeated (after :func:`pause`) while it loses a race (:func:`lost_race`), at
    most ``attempts`` times in all; for a write the server makes idempotent, which reads what
    is there before it inserts (e.g. ``log_inputs``: an existing dataset is reused)."""
    from functools import wraps

    @wraps(write)
    def again(*args: Any, **kwargs: Any) -> T:
        for attempt in range(attempts):
            try:
                return write(*args, **kwargs)
            except Exception as e:
                if attempt == attempts - 1 or not lost_race(e):
                    raise
            pause(attempt)
        raise AssertionError("unreachable")

    return again


def runs(root: Path) -> list[dict[str, Any]] | None:
    """Every indexed run, or None when the index cannot be trusted (no local store, or the
    store changed behind promptgov's back)."""
    db = _db(root)
    if db is None:
        return None
    if not db.exists():
        return []
    d = root / INDEX_DIR
    try:
        if (d / "STORE").read_text() != _stamp(db):
            return None
        out = []
        for f in d.glob("*.json"):
            out.append(json.loads(f.read_text(encoding="utf-8")))
        return out
    except (OSError, ValueError):
        return None


def rebuild(root: Path, c: Any, *, locked: bool = False) -> list[dict[str, Any]]:
    """Re-index every promptgov run of the local store from MLflow (the slow path, once).
    ``locked``: the caller already holds the store lock."""
    from contextlib import nullcontext

    db = _db(root)
    found: list[dict[str, Any]] = []
    with nullcontext() if locked else store_lock(root):
        exps = [e.experiment_id for e in c.search_experiments()]
        stamp = _stamp(db) if db else None
        token = None
        while exps:
            page = c.search_runs(exps, f"tags.`{RUN_TAG}` LIKE '%@%'", max_results=1000,
                                 page_token=token)
            found += [entry(r) for r in page]
            token = page.token
            if not token:
                break
        if db is not None:
            d = root / INDEX_DIR
            if d.is_dir():
                for f in d.glob("*.json"):
                    f.unlink(missing_ok=True)
            for e in found:
                _write(d / f"{e['run_id']}.json", json.dumps(e))
            _write(d / "STORE", stamp or "")
    return found


def as_run(e: dict[str, Any]) -> SimpleNamespace:
    """An index entry shaped like an MLflow ``Run`` (``.info``, ``.data``) for readers."""
    return SimpleNamespace(
        info=SimpleNamespace(run_id=e["run_id"], experiment_id=e["experiment_id"],
                             status=e["status"], start_time=e["start_time"],
                             artifact_uri=e["artifact_uri"]),
        data=SimpleNamespace(tags=e["tags"], params=e["params"], metrics=e["metrics"]))


def all_runs(root: Path, c: Any) -> list[SimpleNamespace]:
    """Every promptgov run as Run-shaped objects: from the index when it is trusted, else from
    MLflow through client ``c`` (rebuilding the index for a local store)."""
    got = runs(root)
    if got is None:
        got = rebuild(root, c)
    return [as_run(e) for e in got]


def resolve_run_id(root: Path, c: Any, run_id: str) -> str:
    """The full id of run ``run_id`` given any unique prefix of it (as ``compare`` and
    ``status`` print 8 characters); unchanged when nothing or more than one run matches (the
    caller's lookup then says so), except that an ambiguous prefix raises."""
    import re

    from promptgov.errors import PromptgovError

    p = run_id.strip().lower()
    if len(p) >= 32 or not re.fullmatch(r"[0-9a-f]{4,31}", p):
        return run_id
    got = runs(root)
    hits = sorted({e["run_id"] for e in got or () if e["run_id"].startswith(p)})
    if not hits:
        exps = [e.experiment_id for e in c.search_experiments()]
        hits = sorted({r.info.run_id for r in c.search_runs(
            exps, f"attributes.run_id LIKE '{p}%'", max_results=10)}) if exps else []
    if len(hits) > 1:
        raise PromptgovError(f"run id prefix {run_id!r} matches {len(hits)} runs "
                             f"({', '.join(h[:12] for h in hits[:4])}...) (fix: give more "
                             "characters of the run id)")
    return hits[0] if hits else run_id

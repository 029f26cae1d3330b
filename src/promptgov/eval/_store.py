"""Where the workspace's MLflow store is and how writers take turns on it: stdlib only, shared
by the tracking code and the local run index (so neither imports the other back)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RUN_TAG = "promptgov.prompt"


def tracking_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / '.promptgov' / 'mlflow.db'}"


def is_local(uri: str) -> bool:
    """A store in a file on this machine (SQLite or a folder), not a server."""
    return not uri.startswith(("http://", "https://", "databricks", "postgresql", "mysql",
                               "mssql"))


@contextmanager
def store_lock(root: Path) -> Iterator[None]:
    """Serialise creation, migration of and writes to the workspace's SQLite store across
    processes (``.promptgov/mlflow.lock``); a no-op for a server, which serialises itself."""
    if not tracking_uri(root).startswith("sqlite:"):
        yield
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Windows
        yield
        return
    d = root / ".promptgov"
    d.mkdir(exist_ok=True)
    fd = os.open(d / "mlflow.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock

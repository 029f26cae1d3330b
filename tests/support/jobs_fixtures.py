"""Fixtures of the job tests: a real Redis, the exported package, a queue per backend.

Import them into a test module::

    from support.jobs_fixtures import jobs_site, queue_url, redis_url, sb  # noqa: F401

``redis_url`` is ``$PROMPTGOV_TEST_REDIS_URL`` when set (``.ci/run`` starts redis-server on
127.0.0.1 and sets it), else a private ``redis-server`` on a free port; without either the
Redis tests skip locally and fail in CI (``CI`` set), so CI can never pass them by skipping.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.jobs_package import build

__all__ = ["cli_queue", "jobs_site", "open_queue", "queue_url", "redis_url", "sb",
           "start_redis", "support_bot_module", "work_until_idle"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ping(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(tmp: Path) -> tuple[subprocess.Popen, str]:
    """A private redis-server (no persistence) on a free loopback port, and its URL."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise FileNotFoundError("redis-server")
    port = _free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not _ping(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"redis-server did not start on port {port}")
        time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    url = os.environ.get("PROMPTGOV_TEST_REDIS_URL")
    if url:
        yield url
        return
    try:
        proc, url = start_redis(tmp_path_factory.mktemp("redis"))
    except FileNotFoundError:
        msg = "redis-server is not installed (fix: apt-get install redis-server; .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def jobs_site(tmp_path_factory) -> Path:
    """The exported support_bot package, unpacked: the folder to put on the path."""
    return build(tmp_path_factory.mktemp("jobs-pkg"))


@pytest.fixture(scope="module")
def support_bot_module(jobs_site):
    sys.path.insert(0, str(jobs_site))
    try:
        import support_bot

        yield support_bot
    finally:
        sys.path.remove(str(jobs_site))
        for m in [m for m in sys.modules if m.split(".")[0] == "support_bot"]:
            del sys.modules[m]


@pytest.fixture
def sb(support_bot_module):
    """The package imported in this process; its model is reset after each test."""
    yield support_bot_module
    support_bot_module.configure(None)


@pytest.fixture(params=["sqlite", "bullmq"])
def queue_url(request, tmp_path) -> str:
    """A fresh, empty queue on each backend (a new SQLite file; a new BullMQ queue name)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    url = request.getfixturevalue("redis_url")
    return f"{url}#q-{uuid.uuid4().hex[:12]}"


def open_queue(sb, url: str, **options):
    """``support_bot.jobs.open`` for a :func:`queue_url` (``URL#NAME`` names a BullMQ queue)."""
    import importlib

    base, _, name = url.partition("#")
    return importlib.import_module(f"{sb.__name__}.jobs").open(base, name=name or None,
                                                               **options)


def work_until_idle(q, *, concurrency: int, timeout: float = 60.0) -> int:
    """``q.work(concurrency=..., until_idle=True)``, failing the test instead of hanging it when
    the worker has not returned after ``timeout`` seconds (the test jobs take well under one):
    the failure says where the jobs were, and whether the worker stopped when asked."""
    stop, out = threading.Event(), {}

    def work() -> None:
        try:
            out["done"] = q.work(concurrency=concurrency, until_idle=True, stop=stop)
        except BaseException as e:  # noqa: BLE001 — re-raised in the test's thread
            out["error"] = e

    worker = threading.Thread(target=work, name="work_until_idle", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        jobs = q.status()["jobs"]
        stop.set()
        worker.join(15)
        how = ("it stopped when asked" if not worker.is_alive() else
               "it did not stop when asked either (its shutdown hangs)")
        pytest.fail(f"q.work(until_idle=True) still running after {timeout:.0f} s on "
                    f"{q.status()['queue']}: jobs {jobs}; {how}", pytrace=False)
    if "error" in out:
        raise out["error"]
    return out["done"]


def cli_queue(url: str) -> list[str]:
    """The ``--queue``/``--name`` arguments of ``python -m support_bot`` for a queue URL."""
    base, _, name = url.partition("#")
    return ["--queue", base, *(["--name", name] if name else [])]

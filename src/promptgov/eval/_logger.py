"""Logging on the other core, by a logger service that outlives the command.

Importing MLflow and opening its SQLAlchemy store costs seconds of CPU (2.8 s on a quiet
machine: longer than a whole cached eval of 3,080 cases). So the first tracked eval of a
workspace starts a *logger service*, a process that imports MLflow and opens the store once,
then serves every tracked ``evaluate()`` of that workspace and store (each ``promptgov eval``
command, a notebook's cells) over a unix socket until it has been idle for
``PROMPTGOV_LOGGER_IDLE_S`` seconds (default 600; 0: exit as soon as no eval is connected). An
eval then pays only for its own writes. (``loop``, ``compare``, ``adversarial`` and ``log
--pending`` still open MLflow in their own process.)

One service per *key*: the workspace, the tracking URI, the Python and the promptgov code it runs
(the files' sizes and times: an edited or upgraded promptgov starts a new one), and the
environment MLflow reads credentials and proxies from (hashed: a changed token is a new
service, and no secret reaches a file name). Model-provider keys (``*_API_KEY``) are not passed
to it. Sockets live in a private directory (``$XDG_RUNTIME_DIR/promptgov`` or
``/tmp/promptgov-<uid>``, mode 0700); a service holds ``<key>.lock`` while it owns
``<key>.sock``, so two commands that start one at once end with one, and a socket left by a
killed service is replaced. A service also exits when its workspace's ``.promptgov`` is gone.

The result travels as a file in ``.promptgov/pending/`` (written atomically before the service
is told about it), so if the service fails the result is already kept for ``promptgov log
--pending``.

The run is written in two parts (:func:`promptgov.eval._runlog.start_run`, ``finish_run``): what
is known before the cases run (the run, params, dataset, prompt file, registry link) while they
run, and the results after; a run whose eval stops is deleted (``abandon``), as is one left
started when its process dies (its connection closes).

Protocol, one JSON line each way on a process's connection, served in order:
``{"start": token, "experiment": name, "snapshot": ..., "params": ..., "model": id, "rows":
n}`` (start the run; no answer), ``{"abandon": token}`` (delete it; no answer) or ``{"log":
path, "experiment": name, "token": token}``: the service finishes the started run (or logs a
whole one), deletes the pending file and answers ``{"run_id": ...}`` or ``{"error": ...}``.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

IDLE_ENV = "PROMPTGOV_LOGGER_IDLE_S"
_ENV_PREFIXES = ("MLFLOW_", "AWS_", "AZURE_", "GOOGLE_", "DATABRICKS_", "PROMPTGOV_LOGGER")
_ENV_NAMES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE",
              "CURL_CA_BUNDLE", "PYTHONPATH")
# Output settings that do not change what is written where; promptgov's own commands set some
# of them (and a notebook does not), and a command and a notebook must share one service.
_ENV_IGNORED = ("MLFLOW_LOGGING_LEVEL", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR",
                "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "MLFLOW_DISABLE_TELEMETRY")


class Logger:
    """This process's connection to the workspace's logger service (started if none runs)."""

    def __init__(self, root: Path):
        self.key = _key(root)
        self.sock = _connect(root, self.key)
        self._r = self.sock.makefile("r", encoding="utf-8")
        self._w = self.sock.makefile("w", encoding="utf-8")
        self._lock = threading.Lock()
        self._sending: threading.Thread | None = None

    def alive(self) -> bool:
        """Connected to a live service (a dead one's socket reads as closed)."""
        try:
            ready, _, _ = select.select([self.sock], [], [], 0)
            return not ready or self.sock.recv(1, socket.MSG_PEEK) != b""
        except (OSError, ValueError):
            return False

    def start(self, experiment: str, snapshot: dict[str, Any], params: dict[str, Any],
              model: str, rows: int) -> str:
        """Ask the service to start the run now, while the cases run; a token for :meth:`log`
        or :meth:`abandon`. Sent from a thread: the message holds the prompt file (hundreds of
        KB with 770 demos)."""
        token = uuid.uuid4().hex
        msg = {"start": token, "experiment": experiment, "snapshot": snapshot,
               "params": params, "model": model, "rows": rows}
        self._sending = threading.Thread(target=self._send_quietly, args=(msg,), daemon=True)
        self._sending.start()
        return token

    def abandon(self, token: str) -> None:
        """The eval stopped: the service deletes the run it started (no answer: this process's
        next request on the connection is served after it, and Ctrl-C does not wait)."""
        self._send_quietly({"abandon": token})

    def log(self, pending: Path, experiment: str, token: str | None = None,
            timeout: float = 600) -> str:
        """Hand ``pending`` to the service; its run id, or ``RuntimeError`` with one line."""
        with self._lock:
            try:
                self._send({"log": str(pending), "experiment": experiment,
                            **({"token": token} if token else {})})
                answer = self._answer(timeout)
            except (OSError, ValueError):
                answer = None
        if answer is None:
            raise RuntimeError(_death(self.key))
        if answer.get("run_id"):
            return str(answer["run_id"])
        raise RuntimeError(answer.get("error") or "the MLflow logger failed")

    def _send_quietly(self, msg: dict[str, Any]) -> None:
        with contextlib.suppress(OSError, ValueError):  # a dead service: log() says so
            self._send(msg)

    def _send(self, msg: dict[str, Any]) -> None:
        """One line to the service, after the start message still being written (if any)."""
        sending = self._sending
        if sending is not None and sending is not threading.current_thread():
            sending.join()
        self._w.write(json.dumps(msg) + "\n")
        self._w.flush()

    def _answer(self, timeout: float) -> dict[str, Any] | None:
        """The service's next protocol line; None if it died first."""
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            self.close()
            raise RuntimeError(f"the MLflow logger did not answer within {timeout:.0f} s")
        line = self._r.readline()
        return json.loads(line) if line.strip() else None

    def close(self) -> None:
        """Hang up: the service deletes a run this process started and never logged."""
        for f in (self._r, self._w, self.sock):
            with contextlib.suppress(OSError, ValueError):
                f.close()


_current: Logger | None = None
_guard = threading.Lock()


def logger_for(root: Path) -> Logger:
    """This process's connection for ``root``'s store: the open one when it serves the same
    key and its service is alive, else a new one."""
    global _current
    with _guard:
        if _current is not None and _current.alive() and _current.key == _key(root):
            return _current
        if _current is not None:
            _current.close()
            _current = None
        try:
            _current = Logger(root)
        except RuntimeError as e:
            from promptgov.errors import TrackingError

            raise TrackingError(f"the MLflow logger service did not start ({e}); nothing was "
                                "evaluated (fix: what the parentheses name, or pass "
                                "--no-track)") from None
        return _current


@atexit.register
def _stop() -> None:
    if _current is not None:
        _current.close()


# --- where a service lives ------------------------------------------------------------------

def idle_seconds() -> float:
    """``PROMPTGOV_LOGGER_IDLE_S``: how long a service waits for the next eval (default 600)."""
    from promptgov.errors import TrackingError

    raw = os.environ.get(IDLE_ENV, "600")
    try:
        idle = float(raw)
    except ValueError:
        idle = -1.0
    if not idle >= 0:  # also NaN
        raise TrackingError(f"{IDLE_ENV}={raw!r} is not a number of seconds (fix: e.g. "
                            f"{IDLE_ENV}=600, or 0 for a service that exits after each eval)")
    return idle


def runtime_dir() -> Path:
    """The private directory of this user's logger sockets (created 0700; refused if another
    user owns it or others may write to it: a socket there must be this user's own)."""
    from promptgov.errors import TrackingError

    base = os.environ.get("XDG_RUNTIME_DIR")
    d = Path(base) / "promptgov" if base and Path(base).is_dir() else \
        Path("/tmp") / f"promptgov-{os.getuid()}"
    d.mkdir(mode=0o700, exist_ok=True)
    st = d.lstat()
    if not d.is_dir() or d.is_symlink() or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise TrackingError(f"{d}: not a private directory of this user (owner {st.st_uid}, "
                            f"mode {oct(st.st_mode & 0o777)}) (fix: remove it; promptgov "
                            "creates it again)")
    return d


@functools.cache
def _code() -> list[Any]:
    """The promptgov code a service runs: each module's size and modification time (once per
    process: ~130 files, a few ms)."""
    base = Path(__file__).resolve().parent.parent  # the promptgov package
    out: list[Any] = []
    for dirpath, _, files in os.walk(base):
        for f in files:
            if f.endswith(".py"):
                st = os.stat(os.path.join(dirpath, f))
                out.append((os.path.join(dirpath, f)[len(str(base)):], st.st_size,
                            st.st_mtime_ns))
    return sorted(out)


def _key(root: Path) -> str:
    from promptgov.eval._store import is_local, tracking_uri

    uri = tracking_uri(root)
    env = sorted((k, v) for k, v in os.environ.items()
                 if (k.startswith(_ENV_PREFIXES) or k.upper() in _ENV_NAMES)
                 and k not in _ENV_IGNORED)
    relative = is_local(uri) and not uri.startswith(("sqlite:////", "file:///", "/"))
    parts = [str(root.resolve()), uri, os.getcwd() if relative else "", sys.executable,
             _code(), env]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


def _connect(root: Path, key: str, wait: float = 15.0) -> socket.socket:
    """A connection to the service of ``key``, starting it if none answers."""
    path = runtime_dir() / f"{key}.sock"
    idle_seconds()  # a bad setting is one line here, not a service that dies after starting
    s = _try_connect(path)
    if s is not None:
        return s
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_API_KEY")}
    env.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    with (path.with_suffix(".err")).open("a", encoding="utf-8") as err:
        proc = subprocess.Popen([sys.executable, "-m", "promptgov.eval._logger", str(root),
                                 key], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err, env=env, start_new_session=True)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        s = _try_connect(path)
        if s is not None:
            return s
        if proc.poll() not in (None, 0):  # 0: another service took the socket; keep trying
            break
        time.sleep(0.02)
    raise RuntimeError(_death(key))


def _try_connect(path: Path) -> socket.socket | None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
    except OSError:  # none there, or a killed service's socket file
        s.close()
        return None
    return s


def _death(key: str) -> str:
    """One line on why the service is gone: the last line it wrote to its stderr."""
    try:
        text = (runtime_dir() / f"{key}.err").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    tail = [x for x in text.splitlines() if x.strip()]
    return tail[-1][:300] if tail else "the MLflow logger service exited"


# --- the service ----------------------------------------------------------------------------

class _Store:
    """The service's one MLflow client, opened in the background while it accepts, and used by
    one session at a time."""

    def __init__(self, root: Path):
        self.root = root
        self.c: Any = None
        self.failure: str | None = None
        self.exps: dict[str, str] = {}
        self.ready = threading.Event()
        self.lock = threading.Lock()
        self.sessions = 0
        self.last = time.monotonic()
        self._count = threading.Lock()

    def open(self) -> None:
        from promptgov.eval._pending import _one_line

        try:
            from promptgov.eval._tracking import client

            self.c = client(self.root)
        except Exception as e:  # noqa: BLE001 - reported when a result arrives
            self.failure = _one_line(e)
        finally:
            self.ready.set()

    def serve(self, msg: dict[str, Any], started: dict[str, str | None]
              ) -> tuple[dict[str, Any] | None, Callable[[], None] | None]:
        """The answer to ``msg`` (if it has one), and what to do once it is sent."""
        from promptgov.eval._pending import _one_line

        self.ready.wait()
        with self.lock:
            try:
                if self.failure is not None:
                    raise RuntimeError(self.failure)
                return _serve(self.root, self.c, self.exps, started, msg)
            except Exception as e:  # noqa: BLE001 - one line to the eval; the file is kept
                return ({"error": _one_line(e)} if "log" in msg else None), None

    def after(self, then: Callable[[], None]) -> None:
        with self.lock, contextlib.suppress(Exception):  # a diagram never fails a run
            if (self.root / ".promptgov").is_dir():  # not into a workspace deleted meanwhile
                then()

    def session(self, conn: socket.socket) -> None:
        """One eval process's connection; a run it started and never logged is deleted."""
        from promptgov.eval._runlog import abandon_run

        started: dict[str, str | None] = {}
        try:
            with conn.makefile("r", encoding="utf-8") as rf, \
                    conn.makefile("w", encoding="utf-8") as wf:
                for line in rf:
                    reply, then = self.serve(json.loads(line), started)
                    if reply is not None:
                        wf.write(json.dumps(reply) + "\n")
                        wf.flush()
                    if then is not None:
                        self.after(then)
        except (OSError, ValueError):
            pass
        finally:
            conn.close()
            if self.c is not None:
                with self.lock:
                    for rid in started.values():  # its eval died: not evidence
                        if rid is not None:
                            with contextlib.suppress(Exception):
                                abandon_run(self.root, self.c, rid)
            with self._count:
                self.sessions -= 1
                self.last = time.monotonic()

    def idle_for(self) -> float:
        with self._count:
            return -1.0 if self.sessions else time.monotonic() - self.last


def _own(d: Path, key: str, wait: float = 5.0) -> int | None:
    """``<key>.lock`` opened and locked: this process owns ``<key>.sock``. None when another
    service owns it and answers there. A lock held by a service that is exiting (it has stopped
    answering) is waited for; a lock file it removed meanwhile is opened again."""
    import fcntl

    lockpath, deadline = d / f"{key}.lock", time.monotonic() + wait
    while True:
        fd = os.open(lockpath, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            live = _try_connect(d / f"{key}.sock")
            if live is not None:
                live.close()
                return None
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)
            continue
        try:
            if os.fstat(fd).st_ino == os.stat(lockpath).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # locked a file its owner removed on exit: open the path again


def _service(root: Path, key: str) -> int:
    """Own ``<key>.sock`` (under ``<key>.lock``), open the store, serve until idle; on a clean
    exit, leave no file behind (a killed service leaves its ``.err`` for the next command)."""
    d = runtime_dir()
    lock = _own(d, key)
    if lock is None:
        return 0  # another service owns the socket
    os.ftruncate(lock, 0)
    os.write(lock, str(os.getpid()).encode())  # who serves (for tests and the curious)
    os.ftruncate(2, 0)  # this service's stderr starts empty (the file is shared by spawners)
    path = d / f"{key}.sock"
    path.unlink(missing_ok=True)  # a killed service's
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(64)
    srv.settimeout(1.0)
    store = _Store(root)
    threading.Thread(target=store.open, daemon=True).start()
    idle = idle_seconds()
    threads: list[threading.Thread] = []

    def accept(conn: socket.socket) -> None:
        with store._count:
            store.sessions += 1
        t = threading.Thread(target=store.session, args=(conn,), daemon=True)
        t.start()
        threads[:] = [x for x in threads if x.is_alive()] + [t]

    while True:
        try:
            accept(srv.accept()[0])
            continue
        except TimeoutError:
            pass
        quiet = store.idle_for()
        if (quiet >= idle or (store.failure is not None and quiet >= 0)
                or not (root / ".promptgov").is_dir()):
            break
    # Remove the files while still owning them (a command starts a new service only once the
    # socket is gone, and that one creates new files); then give up the ownership; then serve
    # whoever connected in between.
    (d / f"{key}.err").unlink(missing_ok=True)
    (d / f"{key}.lock").unlink(missing_ok=True)
    path.unlink(missing_ok=True)
    os.close(lock)
    srv.setblocking(False)
    with contextlib.suppress(OSError):
        while True:
            accept(srv.accept()[0])
    srv.close()
    for t in threads:
        t.join()
    return 0


def _serve(root: Path, c: Any, exps: dict[str, str], started: dict[str, str | None],
           msg: dict[str, Any]) -> tuple[dict[str, Any] | None, Callable[[], None] | None]:
    """One request of the protocol (see the module's docstring): the answer, if it has one,
    and what to do after it is sent (draw the reliability diagram of a logged run)."""
    from promptgov.eval._runlog import abandon_run, start_run
    from promptgov.eval._tracking import experiment_id

    if "abandon" in msg:
        rid = started.pop(msg["abandon"], None)
        if rid is not None:
            abandon_run(root, c, rid)
        return None, None
    name = msg["experiment"]
    if name not in exps:
        exps[name] = experiment_id(c, root, name)
    if "start" in msg:
        started[msg["start"]] = None  # if it fails, the log request logs a whole run
        started[msg["start"]] = start_run(root, c, exps[name], msg["snapshot"], msg["params"],
                                          msg["model"], msg["rows"])
        return None, None
    rid = started.pop(msg.get("token") or "", None)
    return _log(root, Path(msg["log"]), (c, exps[name]), rid)


def _log(root: Path, path: Path, opened: tuple[Any, str], rid: str | None
         ) -> tuple[dict[str, Any], Callable[[], None] | None]:
    """Finish started run ``rid`` with the pending result at ``path`` (or log a whole run).
    The reliability diagram of a started run is drawn after the eval has its answer: the
    metrics and the cases table (what ``compare`` and approvals read) are in the run when
    the eval returns, the diagram (nothing reads it but a person) ~0.3 s later."""
    from promptgov.eval._result import EvalResult
    from promptgov.eval._runlog import finish_run, log_eval, log_reliability

    data = json.loads(path.read_text(encoding="utf-8"))
    result = EvalResult(**data["result"])
    then = None
    if rid is None:
        rid = log_eval(root, result, data["snapshot"], opened=opened)
    else:
        finish_run(root, opened[0], rid, result, data["snapshot"], figure=False)
        then = functools.partial(log_reliability, opened[0], rid, result)
    path.unlink()
    return {"run_id": rid}, then


if __name__ == "__main__":
    sys.exit(_service(Path(sys.argv[1]), sys.argv[2]))

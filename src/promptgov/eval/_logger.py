"""Logging on the other core: a child process imports MLflow and opens the store (and the
prompt's experiment) while the cases run in this one, then logs each result it is handed.

Importing MLflow and opening its SQLAlchemy store costs seconds of CPU; in a thread of the eval's
own process that CPU competes with the eval for the GIL, in a child it runs on the second core.
The result travels as a file in ``.promptgov/pending/`` (written atomically before the child is
told about it), so if the child fails the result is already kept for ``promptgov log --pending``.

The child outlives one evaluation: the next ``evaluate()`` of the same process and store (a
notebook's next cell, each eval of ``loop``) hands its result to the child already open, and pays
only for the writes. One child is kept per process (a different workspace or tracking URI
replaces it), and it exits when this process does (its stdin closes).

Protocol, one JSON line each way: the parent sends ``{"open": experiment}`` (open it now, no
answer) or ``{"log": path, "experiment": name}``; the child logs the pending file, deletes it and
answers ``{"run_id": ...}`` or ``{"error": ...}``. Only protocol lines go to the child's stdout
(anything else it prints is sent to its stderr, a temporary file read back if it dies).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any


class Logger:
    """The child process and the request/answer exchange with it."""

    def __init__(self, root: Path, experiment: str):
        env = {**os.environ, "MLFLOW_LOGGING_LEVEL": os.environ.get("MLFLOW_LOGGING_LEVEL",
                                                                    "WARNING")}
        self.key = _key(root)
        # the child's stderr, read back only if it dies (a pipe nobody reads could fill up)
        self._err = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "promptgov.eval._logger", str(root), experiment],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, text=True,
            env=env)
        self._lock = threading.Lock()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def open(self, experiment: str) -> None:
        """Ask the child to open ``experiment`` now (while the cases run); no answer."""
        with contextlib.suppress(OSError):  # a dead child: log() says so
            self._send({"open": experiment})

    def log(self, pending: Path, experiment: str, timeout: float = 600) -> str:
        """Hand ``pending`` to the child; its run id, or ``RuntimeError`` with one line."""
        with self._lock:
            try:
                self._send({"log": str(pending), "experiment": experiment})
                answer = self._answer(timeout)
            except OSError:
                answer = None
        if answer is None:
            raise RuntimeError(self._death())
        if answer.get("run_id"):
            return str(answer["run_id"])
        raise RuntimeError(answer.get("error") or "the MLflow logger failed")

    def _send(self, msg: dict[str, str]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()

    def _answer(self, timeout: float) -> dict[str, Any] | None:
        """The child's next protocol line; None if it died first."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.close()
            raise RuntimeError("the MLflow logger did not answer within 10 minutes")
        line = self.proc.stdout.readline()
        return json.loads(line) if line.strip() else None

    def _death(self) -> str:
        """One line on why the child is gone: the last line it wrote to stderr."""
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.close()
        self._err.seek(0)
        tail = [x for x in self._err.read().splitlines() if x.strip()]
        return tail[-1][:300] if tail else f"the MLflow logger exited with {self.proc.returncode}"

    def close(self) -> None:
        """Stop the child (at exit, or when another store needs one)."""
        if self.proc.poll() is None:
            try:
                if self.proc.stdin is not None:
                    self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdout, self.proc.stdin, self._err):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()


_current: Logger | None = None
_guard = threading.Lock()


def _key(root: Path) -> tuple[str, str]:
    from promptgov.eval._store import tracking_uri

    return str(root.resolve()), tracking_uri(root)


def logger_for(root: Path, experiment: str) -> Logger:
    """This process's logger for ``root``'s store, opening ``experiment``: the running one when
    it serves the same store and is alive, else a new one (the old one is stopped)."""
    global _current
    with _guard:
        if _current is not None and _current.alive() and _current.key == _key(root):
            _current.open(experiment)
            return _current
        if _current is not None:
            _current.close()
        _current = Logger(root, experiment)
        return _current


@atexit.register
def _stop() -> None:
    if _current is not None:
        _current.close()


def _child(root: Path, experiment: str) -> int:
    """Open the store, then serve requests until stdin closes."""
    from promptgov.eval._pending import _one_line

    proto = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # whatever else prints goes to stderr, never into the protocol
    try:
        from promptgov.eval._tracking import client, experiment_id

        c = client(root)
        exps = {experiment: experiment_id(c, root, experiment)}
    except Exception as e:  # noqa: BLE001 - reported when a result arrives
        return _refuse(proto, _one_line(e))
    _warm_up()
    for line in sys.stdin:
        msg = json.loads(line)
        try:
            name = msg.get("open") or msg["experiment"]
            if name not in exps:
                exps[name] = experiment_id(c, root, name)
            if "log" in msg:
                rid = _log(root, Path(msg["log"]), (c, exps[name]))
                proto.write(json.dumps({"run_id": rid}) + "\n")
        except Exception as e:  # noqa: BLE001 - one line to the parent; the file is kept
            if "log" in msg:
                proto.write(json.dumps({"error": _one_line(e)}) + "\n")
        proto.flush()
    return 0


def _warm_up() -> None:
    """Draw and save a tiny figure while the cases run: the first figure of a process pays
    ~0.35 s of imports and font set-up that the eval's reliability diagram would otherwise wait
    for (it then takes ~0.23 s for 3,080 cases)."""
    import io

    try:
        from matplotlib.figure import Figure
    except ImportError:
        return
    fig = Figure(figsize=(1, 1))
    fig.add_subplot().bar([0], [1])
    fig.savefig(io.BytesIO(), format="png")


def _refuse(proto: Any, failure: str) -> int:
    """The store could not be opened: every log request gets the reason; then exit."""
    for line in sys.stdin:
        if "log" in json.loads(line):
            proto.write(json.dumps({"error": failure}) + "\n")
            proto.flush()
            return 1
    return 0


def _log(root: Path, path: Path, opened: tuple[Any, str]) -> str:
    from promptgov.eval._result import EvalResult
    from promptgov.eval._runlog import log_eval

    data = json.loads(path.read_text(encoding="utf-8"))
    rid = log_eval(root, EvalResult(**data["result"]), data["snapshot"], opened=opened)
    path.unlink()
    return rid


if __name__ == "__main__":
    sys.exit(_child(Path(sys.argv[1]), sys.argv[2]))

"""Logging on the other core: a child process imports MLflow and opens the store while the
eval loads its model and runs its cases in this one, then logs each result it is handed.

Importing MLflow and opening its SQLAlchemy store costs seconds of CPU; in a thread of the eval's
own process that CPU competes with the eval for the GIL, in a child it runs on the second core.
The result travels as a file in ``.promptgov/pending/`` (written atomically before the child is
told about it), so if the child fails the result is already kept for ``promptgov log --pending``.

The child outlives one evaluation: the next ``evaluate()`` of the same process and store (a
notebook's next cell, each eval of ``loop``) hands its result to the child already open, and pays
only for the writes. One child is kept per process (a different workspace or tracking URI
replaces it), and it exits when this process does (its stdin closes).

The run is written in two parts (:func:`promptgov.eval._runlog.start_run`, ``finish_run``): what
is known before the cases run (the run, params, dataset, prompt file, registry link) while they
run, and the results after; a run whose eval stops is deleted (``abandon``), as is one left
started when this process dies.

Protocol, one JSON line each way: the parent sends ``{"start": token, "experiment": name,
"snapshot": ..., "params": ..., "model": id, "rows": n}`` (start the run; no answer),
``{"abandon": token}`` (delete it; no answer) or ``{"log": path, "experiment": name, "token":
token}``: the child finishes the started run (or logs a whole one), deletes the pending file
and answers ``{"run_id": ...}`` or ``{"error": ...}``. Only protocol lines go to the child's
stdout (anything else it prints goes to its stderr, a temporary file read back if it dies).
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
import uuid
from pathlib import Path
from typing import Any


class Logger:
    """The child process and the request/answer exchange with it."""

    def __init__(self, root: Path):
        env = {**os.environ, "MLFLOW_LOGGING_LEVEL": os.environ.get("MLFLOW_LOGGING_LEVEL",
                                                                    "WARNING")}
        self.key = _key(root)
        # the child's stderr, read back only if it dies (a pipe nobody reads could fill up)
        self._err = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "promptgov.eval._logger", str(root)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, text=True,
            env=env)
        self._lock = threading.Lock()
        self._sending: threading.Thread | None = None
        self._busy = False  # a run was started: at exit the child must finish or delete it

    def alive(self) -> bool:
        return self.proc.poll() is None

    def start(self, experiment: str, snapshot: dict[str, Any], params: dict[str, Any],
              model: str, rows: int) -> str:
        """Ask the child to start the run now, while the cases run; a token for :meth:`log`
        or :meth:`abandon`. Sent from a thread: the message holds the prompt file (hundreds of
        KB with 770 demos) and the child reads it only once MLflow is imported."""
        token = uuid.uuid4().hex
        self._busy = True
        msg = {"start": token, "experiment": experiment, "snapshot": snapshot,
               "params": params, "model": model, "rows": rows}
        self._sending = threading.Thread(target=self._send_quietly, args=(msg,), daemon=True)
        self._sending.start()
        return token

    def abandon(self, token: str) -> None:
        """The eval stopped: the child deletes the run it started (no answer)."""
        self._send_quietly({"abandon": token})

    def log(self, pending: Path, experiment: str, token: str | None = None,
            timeout: float = 600) -> str:
        """Hand ``pending`` to the child; its run id, or ``RuntimeError`` with one line."""
        with self._lock:
            try:
                self._send({"log": str(pending), "experiment": experiment,
                            **({"token": token} if token else {})})
                answer = self._answer(timeout)
            except OSError:
                answer = None
        if answer is None:
            raise RuntimeError(self._death())
        if answer.get("run_id"):
            return str(answer["run_id"])
        raise RuntimeError(answer.get("error") or "the MLflow logger failed")

    def _send_quietly(self, msg: dict[str, Any]) -> None:
        with contextlib.suppress(OSError, ValueError):  # a dead child: log() says so
            self._send(msg)

    def _send(self, msg: dict[str, Any]) -> None:
        """One line to the child, after the start message still being written (if any)."""
        sending = self._sending
        if sending is not None and sending is not threading.current_thread():
            sending.join()
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
        """Stop the child (at exit, or when another store needs one). A child that never
        started a run is killed at once: it may still be importing MLflow (seconds), e.g.
        after a typo in the prompt's name stopped the eval before it began."""
        if self.proc.poll() is None and not self._busy:
            self.proc.kill()
            self.proc.wait()
        if self.proc.poll() is None:
            try:
                if self.proc.stdin is not None:
                    self.proc.stdin.close()
                self.proc.wait(timeout=30)  # it deletes a run left started (see _child)
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


def logger_for(root: Path) -> Logger:
    """This process's logger for ``root``'s store: the running one when it serves the same
    store and is alive, else a new one (the old one is stopped)."""
    global _current
    with _guard:
        if _current is not None and _current.alive() and _current.key == _key(root):
            return _current
        if _current is not None:
            _current.close()
        _current = Logger(root)
        return _current


@atexit.register
def _stop() -> None:
    if _current is not None:
        _current.close()


def _child(root: Path) -> int:
    """Open the store, then serve requests until stdin closes."""
    from promptgov.eval._pending import _one_line

    proto = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # whatever else prints goes to stderr, never into the protocol
    try:
        from promptgov.eval._runlog import abandon_run
        from promptgov.eval._tracking import client

        c = client(root)
    except Exception as e:  # noqa: BLE001 - reported when a result arrives
        return _refuse(proto, _one_line(e))
    exps: dict[str, str] = {}
    started: dict[str, str | None] = {}  # token -> run id (None: the start failed)
    warm = False
    for line in sys.stdin:
        msg = json.loads(line)
        try:
            _serve(root, c, exps, started, msg, proto)
        except Exception as e:  # noqa: BLE001 - one line to the parent; the file is kept
            if "log" in msg:
                proto.write(json.dumps({"error": _one_line(e)}) + "\n")
        proto.flush()
        if not warm and "start" in msg:  # after the run started, before its results come
            warm = _warm_up()
    for rid in started.values():  # the parent died mid-eval: its runs are not evidence
        if rid is not None:
            with contextlib.suppress(Exception):
                abandon_run(root, c, rid)
    return 0


def _serve(root: Path, c: Any, exps: dict[str, str], started: dict[str, str | None],
           msg: dict[str, Any], proto: Any) -> None:
    """One request of the protocol (see the module's docstring)."""
    from promptgov.eval._runlog import abandon_run, start_run
    from promptgov.eval._tracking import experiment_id

    if "abandon" in msg:
        rid = started.pop(msg["abandon"], None)
        if rid is not None:
            abandon_run(root, c, rid)
        return
    name = msg["experiment"]
    if name not in exps:
        exps[name] = experiment_id(c, root, name)
    if "start" in msg:
        started[msg["start"]] = None  # if it fails, the log request logs a whole run
        started[msg["start"]] = start_run(root, c, exps[name], msg["snapshot"], msg["params"],
                                          msg["model"], msg["rows"])
    elif "log" in msg:
        rid = started.pop(msg.get("token") or "", None)
        rid = _log(root, Path(msg["log"]), (c, exps[name]), rid)
        proto.write(json.dumps({"run_id": rid}) + "\n")


def _warm_up() -> bool:
    """Draw and save a tiny figure while the cases run: the first figure of a process pays
    ~0.35 s of imports and font set-up that the eval's reliability diagram would otherwise wait
    for (it then takes ~0.23 s for 3,080 cases)."""
    import io

    try:
        from matplotlib.figure import Figure
    except ImportError:
        return True
    fig = Figure(figsize=(1, 1))
    fig.add_subplot().bar([0], [1])
    fig.savefig(io.BytesIO(), format="png")
    return True


def _refuse(proto: Any, failure: str) -> int:
    """The store could not be opened: every log request gets the reason; then exit."""
    for line in sys.stdin:
        if "log" in json.loads(line):
            proto.write(json.dumps({"error": failure}) + "\n")
            proto.flush()
            return 1
    return 0


def _log(root: Path, path: Path, opened: tuple[Any, str], rid: str | None) -> str:
    """Finish started run ``rid`` with the pending result at ``path`` (or log a whole run)."""
    from promptgov.eval._result import EvalResult
    from promptgov.eval._runlog import finish_run, log_eval

    data = json.loads(path.read_text(encoding="utf-8"))
    result = EvalResult(**data["result"])
    if rid is None:
        rid = log_eval(root, result, data["snapshot"], opened=opened)
    else:
        finish_run(root, opened[0], rid, result, data["snapshot"])
    path.unlink()
    return rid


if __name__ == "__main__":
    sys.exit(_child(Path(sys.argv[1])))

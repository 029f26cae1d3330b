"""Logging on the other core: a child process imports MLflow and opens the store (and the
prompt's experiment) while the cases run in this one, then logs the result it is handed.

Importing MLflow and opening its SQLAlchemy store costs seconds of CPU; in a thread of the eval's
own process that CPU competes with the eval for the GIL, in a child it runs on the second core.
The result travels as a file in ``.promptgov/pending/`` (written atomically before the child is
told about it), so if the child fails the result is already kept for ``promptgov log --pending``.

Protocol: the parent writes one line (the pending file's path) to the child's stdin; the child
logs it, deletes the file and prints ``{"run_id": ...}`` (or ``{"error": ...}``). End of input
before a line (the eval stopped or was interrupted) makes the child exit without logging.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


class Logger:
    """The child, started before the cases run."""

    def __init__(self, root: Path, experiment: str):
        env = {**os.environ, "MLFLOW_LOGGING_LEVEL": os.environ.get("MLFLOW_LOGGING_LEVEL",
                                                                    "WARNING")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "promptgov.eval._logger", str(root), experiment],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env)

    def log(self, pending: Path) -> str:
        """Hand ``pending`` to the child; its run id, or ``RuntimeError`` with one line."""
        try:
            out, err = self.proc.communicate(f"{pending}\n", timeout=600)
        except subprocess.TimeoutExpired:
            self.close()
            raise RuntimeError("the MLflow logger did not answer within 10 minutes") from None
        for line in reversed(out.strip().splitlines()):
            try:
                answer = json.loads(line)
            except ValueError:
                continue
            if answer.get("run_id"):
                return str(answer["run_id"])
            raise RuntimeError(answer.get("error") or "the MLflow logger failed")
        tail = [x for x in err.strip().splitlines() if x.strip()]
        raise RuntimeError(tail[-1][:300] if tail else
                           f"the MLflow logger exited with {self.proc.returncode}")

    def close(self) -> None:
        """Stop the child without logging (the eval stopped)."""
        if self.proc.poll() is None:
            try:
                if self.proc.stdin is not None:
                    self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


def _child(root: Path, experiment: str) -> int:
    from promptgov.eval._pending import _one_line

    opened: tuple[Any, str] | None = None
    failure: str | None = None
    try:
        from promptgov.eval._tracking import client, experiment_id

        c = client(root)
        exp = experiment_id(c, root, experiment)
    except Exception as e:  # noqa: BLE001 - reported when the result arrives
        opened, failure = None, _one_line(e)
    else:
        opened, failure = (c, exp), None
    line = sys.stdin.readline().strip()
    if not line:
        return 0  # the eval stopped: nothing to log
    if failure:
        print(json.dumps({"error": failure}), flush=True)
        return 1
    try:
        from promptgov.eval._result import EvalResult
        from promptgov.eval._runlog import log_eval

        path = Path(line)
        data = json.loads(path.read_text(encoding="utf-8"))
        rid = log_eval(root, EvalResult(**data["result"]), data["snapshot"],
                       opened=opened)
        path.unlink()
    except Exception as e:  # noqa: BLE001 - one line to the parent; the file is kept
        print(json.dumps({"error": _one_line(e)}), flush=True)
        return 1
    print(json.dumps({"run_id": rid}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child(Path(sys.argv[1]), sys.argv[2]))

"""Results whose MLflow logging failed after the cases ran: kept, never lost.

``.promptgov/pending/<time>-<prompt>@<v>.json`` holds the whole result (records, metrics,
params) and the prompt snapshot the run needs; ``promptgov log --pending`` (or
:func:`log_pending`) logs each one and deletes its file once its run exists.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from promptgov.eval._result import EvalResult

PENDING_DIR = ".promptgov/pending"


def save(root: Path, result: EvalResult, snap: dict[str, Any], *, in_flight: bool = False
         ) -> Path:
    """Keep ``result`` for a later upload; atomic (a reader never sees half a file).
    ``in_flight``: a hidden name that ``log --pending`` skips, for a result being logged now
    (:func:`publish` makes it pending if that fails)."""
    from dataclasses import fields

    d = root / PENDING_DIR
    d.mkdir(parents=True, exist_ok=True)
    # shallow: dataclasses.asdict deep-copies every record (0.5 s of a 3,080-case result)
    data = {"kind": "eval", "result": {f.name: getattr(result, f.name) for f in fields(result)},
            "snapshot": snap}
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".json", dir=d)
    try:
        # ASCII escapes: an answer's lone surrogate (no UTF-8 for it) survives the round trip.
        # dumps, not dump: json.dump encodes in pure Python, dumps in C (10x here)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(data, default=str))
    except BaseException:
        os.unlink(tmp)
        raise
    path = d / f"{'.in-flight-' if in_flight else ''}{stamp}-{result.prompt}-{os.getpid()}.json"
    os.replace(tmp, path)
    return path


def publish(path: Path) -> Path:
    """An in-flight result whose logging failed becomes pending."""
    if not path.exists():
        return path
    dst = path.with_name(path.name.removeprefix(".in-flight-"))
    os.replace(path, dst)
    return dst


def pending(root: Path) -> list[Path]:
    d = root / PENDING_DIR
    return sorted(d.glob("[!.]*.json")) if d.is_dir() else []


def log_pending(root: Path) -> list[tuple[Path, str]]:
    """Log every pending result: ``(file, run id)`` per result logged. The first failure
    raises (one line) and leaves that file and the rest in place."""
    from promptgov.errors import TrackingError
    from promptgov.eval._result import EvalResult
    from promptgov.eval._runlog import log_eval
    from promptgov.eval._tracking import check_reachable

    files = pending(root)
    if not files:
        return []
    check_reachable(root)
    done = []
    for f in files:
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
            result = EvalResult(**data["result"])
            snap = data["snapshot"]
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise TrackingError(f"{f.relative_to(root)}: not a pending result ({e}) (fix: move "
                                "it aside and run `promptgov log --pending` again)") from None
        try:
            rid = log_eval(root, result, snap)
        except Exception as e:  # noqa: BLE001 - any MLflow failure is one line here
            raise TrackingError(f"logging {f.relative_to(root)} failed: {_one_line(e)} "
                                "(fix: check MLFLOW_TRACKING_URI and run `promptgov log "
                                "--pending` again; the file is kept)") from None
        f.unlink()
        done.append((f, rid))
    return done


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300]}" if text else type(e).__name__

"""Cassettes: record a model's answers once, replay them offline forever.

A cassette is a JSONL file, one line per recorded answer::

    {"key": "sha256:…", "model": "openai/gpt-4o-mini", "prompt": "ticket_triage@2",
     "case": "t-017", "text": "{…}", "usage": {"prompt_tokens": 812, "completion_tokens": 41},
     "latency_s": 0.84}

``key`` is ``Request.key(model)``, computed with the id of the model that answered, so a
:class:`ReplayModel` (whose own id is ``replay:<path>``) looks answers up with the *recorded*
model id. A cassette stores only keys, answer texts, usage and labels: never the messages, the
provider configuration or any credential.

``prompt`` and ``case`` are the request's ``label`` and ``case_id`` (the engine sets them); the
recorder writes them and a replay miss names them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from promptgov.errors import ReplayMiss, WorkspaceError
from promptgov.model._base import Completion, Model, Request, Usage

REPLAY_PREFIX = "replay:"

@dataclass(frozen=True)
class CassetteEntry:
    """One recorded answer."""

    key: str
    model: str
    text: str
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    prompt: str | None = None
    case: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "model": self.model}
        if self.prompt is not None:
            out["prompt"] = self.prompt
        if self.case is not None:
            out["case"] = self.case
        out["text"] = self.text
        out["usage"] = {"prompt_tokens": self.usage.prompt_tokens,
                        "completion_tokens": self.usage.completion_tokens}
        out["latency_s"] = self.latency_s
        return out

    def to_line(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n"


class _BadLine(ValueError):
    """What is wrong with a cassette line; :func:`_parse_line` adds the file, line and fix."""


def _parse_line(path: Path, n: int, line: str) -> CassetteEntry:
    try:
        return _entry(line)
    except _BadLine as e:
        raise WorkspaceError(path, str(e), "delete the line or record the cassette again",
                             line=n) from None


def _entry(line: str) -> CassetteEntry:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise _BadLine(f"cassette line is not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise _BadLine(f"cassette line is a JSON {type(obj).__name__}, not an object")
    for name in ("key", "model", "text"):
        if not isinstance(obj.get(name), str):
            raise _BadLine(f"cassette line has no string {name!r}")
    for name in ("prompt", "case"):
        if obj.get(name) is not None and not isinstance(obj[name], str):
            raise _BadLine(f"cassette line: {name!r} is not a string")
    return CassetteEntry(key=obj["key"], model=obj["model"], text=obj["text"],
                         usage=_usage(obj.get("usage") or {}), latency_s=_latency(obj),
                         prompt=obj.get("prompt"), case=obj.get("case"))


def _usage(usage: Any) -> Usage:
    if not isinstance(usage, dict):
        raise _BadLine("cassette line: 'usage' is not an object")
    tokens: dict[str, int] = {}
    for name in ("prompt_tokens", "completion_tokens"):
        v = usage.get(name, 0)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise _BadLine(f"cassette line: usage.{name}={v!r} is not a non-negative integer")
        tokens[name] = v
    return Usage(**tokens)


def _latency(obj: dict[str, Any]) -> float:
    latency = obj.get("latency_s", 0.0)
    if not isinstance(latency, int | float) or isinstance(latency, bool):
        raise _BadLine(f"cassette line: latency_s={latency!r} is not a number")
    return float(latency)


class Cassette:
    """A JSONL cassette file. Reading parses every line (a bad line is a
    :class:`~promptgov.errors.WorkspaceError` naming file and line); writing appends."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fh: IO[str] | None = None

    def exists(self) -> bool:
        return self.path.is_file()

    def entries(self) -> list[CassetteEntry]:
        """Every recorded answer, in file order (blank lines are skipped)."""
        if not self.path.is_file():
            raise WorkspaceError(self.path, "cassette does not exist",
                                 "record it first by running with a RecordingModel")
        out = []
        with self.path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if line.strip():
                    out.append(_parse_line(self.path, n, line))
        return out

    def __iter__(self) -> Iterator[CassetteEntry]:
        return iter(self.entries())

    def models(self) -> list[str]:
        """The model ids the cassette holds answers from, in order of first appearance."""
        return list(dict.fromkeys(e.model for e in self.entries()))

    def append(self, entries: CassetteEntry | Iterable[CassetteEntry]) -> None:
        """Append entries (one write and one flush for the batch); thread-safe. The file is
        kept open until :meth:`close`."""
        if isinstance(entries, CassetteEntry):
            entries = [entries]
        data = "".join(e.to_line() for e in entries)
        if not data:
            return
        with self._lock:
            if self._fh is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = self.path.open("a", encoding="utf-8")
            self._fh.write(data)
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    def __enter__(self) -> Cassette:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Cassette({str(self.path)!r})"


class RecordingModel:
    """Wraps any model and appends each successful completion to a cassette.

    Transparent: its ``id`` is the inner model's id, so cache keys and MLflow records are
    unchanged. Failed calls are not recorded. Only the request key, the answer text, usage,
    latency and the request's prompt/case labels are written.
    """

    def __init__(self, inner: Model, cassette_path: Path | str):
        self.inner = inner
        self.id = inner.id
        self.cassette = Cassette(cassette_path)
        self._lock = threading.Lock()
        self.n_recorded = 0

    def complete(self, request: Request) -> Completion:
        completion = self.inner.complete(request)
        prompt, case = request.label, request.case_id
        self.cassette.append(CassetteEntry(
            key=request.key(self.inner.id), model=self.inner.id, text=completion.text,
            usage=completion.usage, latency_s=completion.latency_s, prompt=prompt, case=case))
        with self._lock:
            self.n_recorded += 1
        return completion

    def close(self) -> None:
        self.cassette.close()

    def __enter__(self) -> RecordingModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RecordingModel({self.inner!r}, {str(self.cassette.path)!r})"


class ReplayModel:
    """Answers from a cassette, offline. Its ``id`` is ``replay:<path>``; answers are looked up
    by ``request.key(<recorded model id>)``. A cassette holding several model ids needs
    ``model=`` to choose one. A miss raises :class:`~promptgov.errors.ReplayMiss`.

    A replayed completion costs nothing (``cost_usd=0``) but keeps the recorded usage and
    latency. When a key was recorded more than once, the last recording wins.
    """

    def __init__(self, cassette_path: Path | str, id: str | None = None, *,
                 model: str | None = None):
        self.cassette = Cassette(cassette_path)
        self.id = id or f"{REPLAY_PREFIX}{cassette_path}"
        entries = self.cassette.entries()
        models = list(dict.fromkeys(e.model for e in entries))
        if model is None:
            if len(models) > 1:
                raise WorkspaceError(self.cassette.path,
                                     f"cassette holds answers from several models: "
                                     f"{', '.join(models)}",
                                     "choose one with ReplayModel(..., model=<model id>)")
            model = models[0] if models else None
        elif entries and model not in models:
            raise WorkspaceError(self.cassette.path,
                                 f"cassette holds no answers from model {model!r} (it has: "
                                 f"{', '.join(models)})", "choose one of the recorded models")
        self.model: str | None = model
        """The recorded model id that lookups use (None for an empty cassette)."""
        self._index: dict[str, CassetteEntry] = {e.key: e for e in entries if e.model == model}

    def __len__(self) -> int:
        return len(self._index)

    def key_for(self, request: Request) -> str:
        """The cassette key of ``request``: its key under the recorded model id."""
        return request.key(self.model or self.id)

    def lookup(self, key: str) -> CassetteEntry | None:
        """The recorded answer for ``key``, or None."""
        return self._index.get(key)

    def complete(self, request: Request) -> Completion:
        key = self.key_for(request)
        entry = self._index.get(key)
        if entry is None:
            raise ReplayMiss(self._miss_message(request, key), model=self.id)
        return Completion(text=entry.text, model=self.id, usage=entry.usage,
                          latency_s=entry.latency_s, cost_usd=0.0)

    def _miss_message(self, request: Request, key: str) -> str:
        last_user = next((str(m.get("content", "")) for m in reversed(request.messages)
                          if m.get("role") == "user"), "")
        snippet = " ".join(last_user.split())[:80]
        prompt, case = request.label, request.case_id
        labels = "".join(f" {name} {value}" for name, value in (("prompt", prompt),
                                                                 ("case", case)) if value)
        return (f"{self.cassette.path}: no recorded answer{labels} for key {key} "
                f"(model {self.model}, last user message {snippet!r}) "
                f"(fix: record the cassette again with the current prompt and evalset)")

    def __repr__(self) -> str:
        return f"ReplayModel({str(self.cassette.path)!r}, model={self.model!r})"

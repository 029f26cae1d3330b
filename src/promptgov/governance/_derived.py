"""What this machine has already derived from a file's bytes, so that ``check`` need not parse it
again: ``.promptgov/derived.json``, untracked local state.

The key is the sha256 of the file's own bytes (computed by ``check`` on every run) and the value
is what parsing those bytes gave (content hash, render fingerprint, references...). A commit
cannot forge it: it is not in the repository, and a fresh clone (CI) starts without it and
derives everything. The lock holds only the verdict's reference values (content hashes), never
this shortcut: a lock entry's value is what the workspace is compared *with*, not evidence that
a file is unchanged. The whole store is dropped when the tool versions that turn files into
hashes change.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from promptgov.workspace._lock import tooling, write_text_atomic

DERIVED_FILE = ".promptgov/derived.json"
_KINDS = ("schemas", "evalsets", "prompts", "pairs", "expected")
"""prompts: per prompt file; pairs: per (prompt file, evalset files) contamination verdict;
expected: per (evalset files, schema hash, kind) verdict on the expected values."""


class Derived:
    """A map per kind from file sha to derived entry; :meth:`save` writes it if it grew."""

    def __init__(self, root: Path, *, enabled: bool = True):
        self.path = root / DERIVED_FILE
        self.enabled = enabled
        self.dirty = False
        self.data: dict[str, dict[str, Any]] = {k: {} for k in _KINDS}
        if enabled:
            self._load()

    def _load(self) -> None:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # absent or damaged: it is only a shortcut, rebuilt from the files
        if not isinstance(raw, dict) or raw.get("tooling") != tooling():
            return
        for k in _KINDS:
            if isinstance(raw.get(k), dict):
                self.data[k] = raw[k]

    def get(self, kind: str, sha: str) -> Any:
        return self.data[kind].get(sha) if self.enabled else None

    def put(self, kind: str, sha: str, value: Any) -> None:
        if self.data[kind].get(sha) != value:
            self.data[kind][sha] = value
            self.dirty = True

    def save(self, keep: dict[str, set[str]]) -> None:
        """Write the entries of the files seen in this scan (``keep``: kind → shas), dropping
        those of files that changed since; never fails the caller (read-only checkout)."""
        pruned = {k: {s: v for s, v in self.data[k].items() if s in keep.get(k, ())}
                  for k in _KINDS}
        if not self.dirty and pruned == self.data:
            return
        with contextlib.suppress(OSError):  # machine state: compact, not for reading
            write_text_atomic(self.path, json.dumps({"tooling": tooling(), **pruned},
                                                    separators=(",", ":")))

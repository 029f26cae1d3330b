"""``name@version`` references, as written in prompt files, on the CLI and in the lock."""

from __future__ import annotations

import re

_REF = re.compile(r"^(?P<name>[a-z][a-z0-9_\-]*)(?:@v?(?P<version>\d+))?$")


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``"ticket_triage@2"`` → ``("ticket_triage", 2)``; ``"ticket_triage"`` → ``(…, None)``."""
    m = _REF.match(ref.strip())
    if not m:
        raise ValueError(
            f"{ref!r} is not a reference; write NAME or NAME@VERSION, e.g. ticket_triage@2")
    v = m.group("version")
    return m.group("name"), int(v) if v is not None else None


def fmt_ref(name: str, version: int) -> str:
    return f"{name}@{version}"

"""Approval records as workspace content: ``governance/approvals/<name>@<version>.toml``, read as
plain TOML (no pydantic: ``check`` and ``compare`` read them on every run). Writing them, and
their typed model, belong to :mod:`promptgov.governance._approvals`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from promptgov.errors import WorkspaceError

APPROVALS_DIR = "governance/approvals"
_FIX = "restore it from git: records are written by `promptgov approve`"


def approval_facts(root: Path, ref: str) -> dict[str, Any] | None:
    """The approval record of ``ref`` as plain TOML; None when there is none. A file that is
    not a record (no status or content hash, a hash that is not text) is a ``WorkspaceError``
    naming it."""
    from promptgov.workspace._yamlio import read_toml

    path = root / APPROVALS_DIR / f"{ref}.toml"
    if not path.is_file():
        return None
    raw = read_toml(path, _FIX)
    if raw.get("status") not in ("approved", "revoked") or not isinstance(
            raw.get("content_hash"), str):
        raise WorkspaceError(path, "not an approval record (no status / content_hash)", _FIX)
    for k in ("render_fingerprint", "schema_hash", "evalset", "evalset_hash", "cassette",
              "cassette_sha", "run_id", "policy_hash"):
        if k in raw and not isinstance(raw[k], str):
            raise WorkspaceError(path, f"{k} = {raw[k]!r} is not a string", _FIX)
    return raw


def approved_versions(root: Path, prompt_name: str) -> list[int]:
    """Versions of ``prompt_name`` with an approval record that is not revoked. A malformed
    record still counts here (``promptgov check`` reports it)."""
    d = root / APPROVALS_DIR
    pat = re.compile(rf"{re.escape(prompt_name)}@v?(\d+)\.(toml|json)")
    found = set()
    for f in d.iterdir() if d.is_dir() else ():
        m = pat.fullmatch(f.name)
        if not m:
            continue
        try:
            facts = approval_facts(root, f.stem) if f.suffix == ".toml" else None
        except WorkspaceError:
            facts = None
        if facts is None or facts.get("status") != "revoked":
            found.add(int(m.group(1)))
    return sorted(found)

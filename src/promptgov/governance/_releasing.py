"""``promptgov release NAME PROMPT@V...``: write a release manifest, refusing what ``check``
would refuse (it scans the workspace, so it lives apart from the manifest reader ``check``
imports)."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING

from promptgov.errors import GovernanceError
from promptgov.governance._releases import (
    _NAME,
    Release,
    _parse,
    _refs,
    release_path,
    release_problems,
)

if TYPE_CHECKING:
    from promptgov.workspace import Workspace


def release(name: str, prompts: list[str], *, description: str | None = None,
            workspace: Workspace | str | os.PathLike[str] | None = None) -> Release:
    """Create or update release ``name`` to ship ``prompts`` (``PROMPT@VERSION`` each).

    Refuses (raises, writes nothing) unless every version is approved and matches its approval,
    and no schema breaks against the previous release. ``version`` is bumped when the set of
    versions changes; the previous set is kept under ``[previous]``.

    Example:
        >>> pg.release("support", ["ticket_triage@2"], workspace=ws)    # doctest: +SKIP
    """
    from promptgov.governance._check import scan
    from promptgov.workspace import Workspace
    from promptgov.workspace._lock import write_text_atomic

    ws = Workspace.of(workspace)
    if not _NAME.fullmatch(name):
        raise ValueError(f"release name {name!r}: use lower-case letters, digits, - and _")
    refs = tuple(sorted(prompts))
    path = release_path(ws.root, name)
    candidate = Release(name, 1, refs, description or "")
    _refs(path, list(refs), "prompts", empty=False)
    if path.exists():
        old = _parse(path)
        if sorted(old.prompts) == list(refs):
            candidate = replace(old, description=old.description if description is None
                                else description)
        else:
            candidate = Release(name, old.version + 1, refs,
                                old.description if description is None else description,
                                old.version, old.prompts)
    problems = release_problems(scan(ws.root), [candidate])
    if problems:
        raise GovernanceError(f"refused: release {name} v{candidate.version} would not pass "
                              "`promptgov check`; nothing was written:\n  "
                              + "\n  ".join(map(str, problems)))
    write_text_atomic(path, candidate.to_toml())
    return candidate

"""``promptgov export RELEASE``: the release's approved prompt versions as a frozen wheel.

The export refuses, writing nothing, unless the release passes exactly the checks
``promptgov check`` runs on it (every version approved, not revoked, still matching its
approval; no breaking schema change), and unless the package it would write passes its own
import-time integrity check.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, cast

from promptgov.errors import GovernanceError
from promptgov.hashing import short
from promptgov.packaging import _wheel
from promptgov.packaging._package import EXTRAS, REQUIRES, Contents, contents

if TYPE_CHECKING:
    from promptgov.governance._approvals import Approval
    from promptgov.workspace import Workspace


def export_release(release: str, *, out: Path | str = "dist",
                   workspace: Workspace | str | os.PathLike[str] | None = None) -> Path:
    """Build the wheel of release ``release`` into folder ``out``; return its path.

    The wheel (distribution ``support-bot`` and version ``3`` for release ``support_bot`` v3,
    import package ``support_bot``) holds the approved prompt versions, their schemas, the
    routing bands and retry policy, a small runtime (``extract``, ``triage``, ``draft``,
    ``configure``, ``verify``) and ``manifest.json`` with every hash and approval. The same
    release gives a byte-identical wheel.

    Raises:
        GovernanceError: a version the release names is unapproved, revoked or drifted (the
            problems ``promptgov check`` reports); nothing is written.
        WorkspaceError: the content cannot be exported (a template construct the runtime does
            not render, a schema importing more than pydantic); nothing is written.

    Example:
        >>> pg.export("support_bot", out="dist", workspace=ws)  # doctest: +SKIP
        PosixPath('dist/support_bot-3-py3-none-any.whl')
    """
    from promptgov.workspace import Workspace

    ws = Workspace.of(workspace)
    c = build_contents(release, ws)
    _self_check(c)
    data = _wheel.build(c.distribution, c.version, c.files, summary=c.summary,
                        requires=REQUIRES, extras=EXTRAS, description=c.readme)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / _wheel.wheel_filename(c.distribution, c.version)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=out)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a wheel is for others to install
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def build_contents(release: str, ws: Workspace) -> Contents:
    """The files of release ``release``'s package, exactly as :func:`export_release` writes
    them; refused (:class:`GovernanceError`) as the export is."""
    from promptgov.governance import load_approval, load_policy, load_release
    from promptgov.governance._check import scan
    from promptgov.governance._releases import release_problems

    rel = load_release(ws.root, release)
    problems = release_problems(scan(ws.root), [rel])
    if problems:
        raise GovernanceError(f"refused to export release {rel.name} v{rel.version}, nothing "
                              "was written: " + "\n".join(map(str, problems)))
    # release_problems refused any version without an approval record: none is None here
    approvals = cast(dict[str, "Approval"],
                     {ref: load_approval(ws.root, ref) for ref in rel.prompts})
    _same_as_approved(ws, approvals)
    policy = load_policy(ws.root)
    return contents(ws, rel, approvals, policy.routing, policy.retry)


def _same_as_approved(ws: Workspace, approvals: Mapping[str, Approval]) -> None:
    """What is about to be embedded hashes as approved (``check`` may have used the lock's
    cached hashes; this re-derives them from the files that are read)."""
    for ref, a in approvals.items():
        pv = ws.prompt(ref)
        now = {"content_hash": pv.content_hash, "render_fingerprint": pv.render_fingerprint,
               "schema_hash": ws.schema(pv.response_schema).hash if pv.response_schema
               else None}
        for key, value in now.items():
            if value != getattr(a, key):
                raise GovernanceError(
                    f"refused to export {ref}, nothing was written: its {key.replace('_', ' ')} "
                    f"is {short(value or 'none')}, approved {short(getattr(a, key) or 'none')} "
                    f"(fix: `promptgov check` names the drift)")


def _self_check(c: Contents) -> None:
    """Load the package as it would be installed, with its own integrity check."""
    from promptgov.packaging._runtime._bundle import load
    from promptgov.packaging._runtime._errors import IntegrityError

    with tempfile.TemporaryDirectory(prefix="promptgov-export-") as d:
        for path, data in c.files.items():
            p = Path(d) / path
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        try:
            load(str(Path(d) / c.package), c.package)
        except IntegrityError as e:  # a bug in the exporter, never the user's content
            raise AssertionError(f"the exported package fails its own check: {e}") from None

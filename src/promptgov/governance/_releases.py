"""Release manifests, ``governance/releases/<name>.toml``: the prompt versions that ship
together, and what ``promptgov check`` verifies about them.

A manifest is written by ``promptgov release NAME PROMPT@V...``, which bumps its ``version``
when the set of prompt versions changes and keeps the previous set under ``[previous]``::

    name = "support"
    version = 2
    description = "Triage and drafts for the support inbox"
    prompts = ["reply_draft@1", "ticket_triage@3"]

    [previous]
    version = 1
    prompts = ["reply_draft@1", "ticket_triage@2"]

``[previous]`` is all the breaking-schema check needs: the lock keeps the JSON Schema of every
schema version ever locked, so the previous release's contracts are found by the ids its prompt
versions reference. This module is stdlib only (``tomllib``): ``check`` runs it on every commit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptgov.errors import WorkspaceError
from promptgov.hashing import short
from promptgov.workspace._approvals import approval_facts

if TYPE_CHECKING:
    from promptgov.governance._check import Scan
    from promptgov.governance._problem import Problem

RELEASES_DIR = "governance/releases"
_NAME = re.compile(r"[a-z][a-z0-9_\-]*")
_REF = re.compile(r"([a-z][a-z0-9_\-]*)@(\d+)")
HEADER = ("# promptgov release manifest: the prompt versions that ship together.\n"
          "# Change it with `promptgov release NAME PROMPT@V...` (checks approvals, bumps "
          "`version`);\n# `promptgov check` verifies it on every commit.\n")


@dataclass(frozen=True)
class Release:
    name: str
    version: int
    prompts: tuple[str, ...]
    description: str = ""
    previous_version: int | None = None
    previous: tuple[str, ...] = ()
    """The prompt versions of release ``previous_version``."""

    @property
    def file(self) -> str:
        return f"{RELEASES_DIR}/{self.name}.toml"

    def to_toml(self) -> str:
        import tomli_w

        doc: dict[str, Any] = {"name": self.name, "version": self.version,
                               "description": self.description, "prompts": list(self.prompts)}
        if self.previous_version is not None:
            doc["previous"] = {"version": self.previous_version, "prompts": list(self.previous)}
        return HEADER + tomli_w.dumps(doc, multiline_strings=True)


def release_path(root: Path, name: str) -> Path:
    return root / RELEASES_DIR / f"{name}.toml"


def load_release(root: Path, name: str) -> Release:
    path = release_path(root, name)
    if not path.exists():
        known = ", ".join(p.stem for p in _files(root)) or "none"
        raise WorkspaceError(path, f"no release named {name!r}",
                             f"known releases: {known}; create one with `promptgov release`")
    return _parse(path)


def load_releases(root: Path) -> list[Release]:
    return [_parse(p) for p in _files(root)]


def _files(root: Path) -> list[Path]:
    d = root / RELEASES_DIR
    return sorted(d.glob("*.toml")) if d.is_dir() else []


def _parse(path: Path) -> Release:
    from promptgov.workspace._yamlio import read_toml

    fix = "write it with `promptgov release NAME PROMPT@V...`"
    raw = read_toml(path, fix)
    for k in raw:
        if k not in ("name", "version", "description", "prompts", "previous"):
            raise WorkspaceError(path, f"unknown key {k!r}",
                                 "keys are name, version, description, prompts, [previous]")
    if raw.get("name") != path.stem:
        raise WorkspaceError(path, f"name = {raw.get('name')!r} differs from the file name",
                             f'write name = "{path.stem}"')
    prev = raw.get("previous", {})
    if not isinstance(prev, dict) or set(prev) - {"version", "prompts"}:
        raise WorkspaceError(path, "[previous] holds only version and prompts", fix)
    desc = raw.get("description", "")
    if not isinstance(desc, str):
        raise WorkspaceError(path, "description must be a string", fix)
    return Release(path.stem, _version(path, raw.get("version"), "version"),
                   _refs(path, raw.get("prompts"), "prompts", empty=False), desc,
                   _version(path, prev["version"], "previous.version") if prev else None,
                   _refs(path, prev.get("prompts", []), "previous.prompts", empty=True))


def _version(path: Path, v: object, key: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise WorkspaceError(path, f"{key} = {v!r} is not a positive whole number",
                             f"write {key} = 1")
    return v


def _refs(path: Path, refs: object, key: str, *, empty: bool) -> tuple[str, ...]:
    if not isinstance(refs, list) or (not refs and not empty):
        raise WorkspaceError(path, f"{key} must be a list of PROMPT@VERSION",
                             f'write {key} = ["ticket_triage@2"]')
    names: set[str] = set()
    for r in refs:
        m = _REF.fullmatch(r) if isinstance(r, str) else None
        if not m:
            raise WorkspaceError(path, f"{key}: {r!r} is not PROMPT@VERSION",
                                 "write e.g. ticket_triage@2")
        if m.group(1) in names:
            raise WorkspaceError(path, f"{key}: two versions of {m.group(1)}",
                                 "a release ships one version of each prompt")
        names.add(m.group(1))
    return tuple(refs)


# -- what check verifies -----------------------------------------------------------------------

def mismatches(s: Scan, ref: str, a: dict[str, Any]) -> list[str]:
    """How the workspace now differs from what approval ``a`` of ``ref`` was bound to."""
    cur = s.prompts.get(ref, {})
    out = []
    for key, label in (("content_hash", "content hash"), ("render_fingerprint",
                       "render fingerprint"), ("schema_hash", "schema hash")):
        now, then = cur.get(key), a.get(key)
        if now != then:
            out.append(f"{label} is now {short(now or 'none')}, approved {short(then or 'none')}")
    es = a.get("evalset", "")
    now_es = (s.evalsets.get(es) or s.lock["evalsets"].get(es) or {}).get("hash")
    if now_es != a.get("evalset_hash"):
        out.append(f"evalset {es} hash is now {short(now_es or 'none')}, approved "
                   f"{short(a.get('evalset_hash') or 'none')}")
    if a.get("cassette"):
        from promptgov.workspace._lock import file_sha

        p = s.root / a["cassette"]
        if not p.is_file():
            out.append(f"its replay cassette {a['cassette']} is missing")
        elif file_sha(p) != a.get("cassette_sha"):
            out.append(f"its replay cassette {a['cassette']} changed")
    return out


def release_problems(s: Scan, releases: list[Release]) -> list[Problem]:
    """``check``'s verdict on ``releases`` against scan ``s``: every named version approved,
    not revoked, still matching its approval, and no breaking schema change against the
    previous release."""
    from promptgov.governance._problem import Problem

    out: list[Problem] = []
    for rel in releases:
        tag = f"release {rel.name} v{rel.version}"
        for ref in rel.prompts:
            name, v = ref.split("@")
            nxt = 1 + max(int(r.split("@")[1]) for r in (*s.prompts, *s.lock["prompts"])
                          if r.split("@")[0] == name) if ref in s.prompts else int(v) + 1
            again = (f"release another version: save the prompt as prompts/{name}/v{nxt}.yaml, "
                     f"evaluate and approve it, then `promptgov release {rel.name} ...`")
            if ref not in s.prompts:
                gone = ref in s.lock["prompts"]
                out.append(Problem(rel.file, f"{tag} names {ref}, which is "
                                   + ("deleted from prompts/" if gone else "not a prompt version"),
                                   "restore it from git" if gone else "correct the release"))
                continue
            try:
                a = approval_facts(s.root, ref)
            except WorkspaceError as e:
                out.append(Problem(s.where(e), e.problem, e.fix))
                continue
            if a is None:
                out.append(Problem(rel.file, f"{tag} names {ref}, which is not approved",
                                   f"promptgov eval {ref}, then promptgov approve {ref} "
                                   "--run RUN_ID --by NAME"))
            elif a["status"] == "revoked":
                rv = a.get("revocation", {})
                out.append(Problem(rel.file, f"{tag} names {ref}, which was revoked by "
                                   f"{rv.get('by')} on {str(rv.get('at'))[:10]}: "
                                   f"{rv.get('reason')}", again))
            else:
                out += [Problem(rel.file, f"{tag} names {ref}, which no longer matches its "
                                f"approval: {m}", f"revert prompts/{name}/v{v}.yaml, or {again}")
                        for m in mismatches(s, ref, a)]
        out += _breaking(s, rel, tag)
    return out


def _breaking(s: Scan, rel: Release, tag: str) -> list[Problem]:
    """Schemas of this release that break the schema the previous release answered with."""
    before = {name: v for name, v in (r.split("@") for r in rel.previous)}
    out = []
    for ref in rel.prompts:
        name = ref.split("@")[0]
        if name not in before or f"{name}@{before[name]}" == ref:
            continue
        problem = _schema_break(s, rel, tag, ref, f"{name}@{before[name]}")
        if problem is not None:
            out.append(problem)
    return out


def _schema_break(s: Scan, rel: Release, tag: str, ref: str, old_ref: str) -> Problem | None:
    """How ``ref`` of this release breaks the schema ``old_ref`` answered with in the previous
    one (None: it does not)."""
    from promptgov.governance._problem import Problem

    old_sid = s.lock["prompts"].get(old_ref, {}).get("schema")
    new_sid = (s.prompts.get(ref) or s.lock["prompts"].get(ref) or {}).get("schema")
    if old_sid is None:
        return None
    changes = _breaking_changes(s, old_sid, new_sid)
    if not changes:
        return None
    return Problem(
        rel.file, f"{tag}: {ref} answers with schema {new_sid or 'none'}, which breaks "
        f"{old_sid} of {old_ref} in release v{rel.previous_version}: " + "; ".join(changes),
        "change the schema additively only (new optional fields, new enum values), or "
        "ship it as a new release name")


def _breaking_changes(s: Scan, old_sid: str, new_sid: str | None) -> list[str]:
    """What breaks a consumer of ``old_sid`` when answers come as ``new_sid`` (None: free
    text); nothing when the old schema is not in the lock or the two are the same."""
    old = s.lock["schemas"].get(old_sid)
    new = (s.schemas.get(new_sid) or s.lock["schemas"].get(new_sid)) if new_sid else None
    if old is None or (new is not None and new["hash"] == old["hash"]):
        return []
    if new is None:
        return [f"answers with free text instead of {old_sid}"]
    from promptgov.workspace._schema import diff_schemas

    return [str(c) for c in diff_schemas(old["json_schema"], new["json_schema"]) if c.breaking]


# -- promptgov release -------------------------------------------------------------------------

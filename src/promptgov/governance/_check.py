"""Verify the workspace against its lock (``promptgov check``) and write the lock
(``promptgov lock``). ``check`` also verifies every release manifest against the approval
records of the versions it names (``_releases.py``).

Both walk the same :class:`Scan`: every schema, evalset and prompt version on disk with its
hashes, derived from the lock when a file's bytes are unchanged (fast path) and recomputed
otherwise. ``check`` imports no MLflow, DSPy, LiteLLM or pandas: it is a pre-commit hook.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptgov.errors import GovernanceError, WorkspaceError
from promptgov.governance._lock import file_sha, read_lock, tooling, write_lock
from promptgov.hashing import short

_VFILE = re.compile(r"^v(\d+)\.ya?ml$")


@dataclass(frozen=True)
class Problem:
    file: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message} (fix: {self.fix})"


@dataclass
class Scan:
    """What is on disk, with hashes; ``problems`` found while scanning."""

    root: Path
    lock: dict[str, Any]
    full: bool = False
    schemas: dict[str, dict] = field(default_factory=dict)
    evalsets: dict[str, dict] = field(default_factory=dict)
    prompts: dict[str, dict] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    unreadable: set[str] = field(default_factory=set)
    """Schema refs / evalset names whose files failed to load (already reported as problems),
    so that prompts referencing them do not add an "unknown" problem each."""

    def rel(self, p: Path) -> str:
        return str(p.relative_to(self.root))

    def where(self, e: WorkspaceError) -> str:
        """``file[:line]`` of an error, relative to the workspace like every other problem."""
        p = Path(e.path)
        f = self.rel(p) if p.is_absolute() and p.is_relative_to(self.root) else e.path
        return f if e.line is None else f"{f}:{e.line}"

    @property
    def fresh_tooling(self) -> bool:
        """True when hashes derived by the locked tool versions still apply."""
        return not self.full and self.lock.get("tooling") == tooling()


def scan(root: Path, *, full: bool = False) -> Scan:
    s = Scan(root, read_lock(root), full)
    _scan_schemas(s)
    _scan_evalsets(s)
    _scan_prompts(s)
    return s


# -- schemas --------------------------------------------------------------------------------

def _scan_schemas(s: Scan) -> None:
    d = s.root / "schemas"
    files = sorted(p for p in d.glob("*.py") if not p.name.startswith("_")) if d.is_dir() else []
    by_file: dict[str, list[str]] = {}
    for ref, e in s.lock["schemas"].items():
        by_file.setdefault(e["file"], []).append(ref)
    for f in files:
        rel, sha = s.rel(f), file_sha(f)
        locked = by_file.get(rel, [])
        if s.fresh_tooling and locked and all(s.lock["schemas"][r]["file_sha"] == sha
                                              for r in locked):
            for r in locked:
                s.schemas[r] = dict(s.lock["schemas"][r])
            continue
        from promptgov.workspace._schema import load_schema_file

        try:
            found = load_schema_file(f)
        except WorkspaceError as e:
            s.problems.append(Problem(rel, e.problem, e.fix))
            s.unreadable.update(locked)
            continue
        for sch in found:
            s.schemas[sch.id] = {"file": rel, "file_sha": sha, "hash": sch.hash,
                                 "json_schema": sch.json_schema}
    for ref, e in sorted(s.schemas.items()):
        old = s.lock["schemas"].get(ref)
        if old is None:
            s.problems.append(Problem(e["file"], f"schema {ref} is not locked",
                                      "run `promptgov lock`"))
        elif old["hash"] != e["hash"]:
            from promptgov.workspace._schema import diff_schemas

            changes = diff_schemas(old["json_schema"], e["json_schema"])
            breaking = [c for c in changes if c.breaking]
            if breaking:
                s.problems.append(Problem(
                    e["file"], f"schema {ref} changed in a breaking way under the same version "
                    f"(locked {short(old['hash'])}, now {short(e['hash'])}): "
                    + "; ".join(map(str, breaking)),
                    f"revert it and declare the change as {ref.split('@')[0]}@"
                    f"{int(ref.split('@')[1]) + 1}"))
            else:
                s.warnings.append(Problem(
                    e["file"], f"schema {ref} changed additively ("
                    + ("; ".join(map(str, changes)) or "descriptions only") + ")",
                    "run `promptgov lock` to record it"))


# -- evalsets -------------------------------------------------------------------------------

def _scan_evalsets(s: Scan) -> None:
    d = s.root / "evalsets"
    if not d.is_dir():
        return
    by_dir: dict[str, tuple[str, dict]] = {}
    for ref, e in sorted(s.lock["evalsets"].items(), key=lambda kv: int(kv[0].split("@")[1])):
        by_dir[e["dir"]] = (ref, e)  # the newest locked version of each folder
    for sub in sorted(p for p in d.iterdir() if (p / "manifest.yaml").exists()):
        rel = s.rel(sub)
        try:
            sha = file_sha(sub / "manifest.yaml", sub / "cases.jsonl")
        except FileNotFoundError:
            s.problems.append(Problem(rel, "cases.jsonl is missing", "add the cases file"))
            continue
        hit = by_dir.get(rel)
        if hit and hit[1]["file_sha"] == sha and not s.full:
            s.evalsets[hit[0]] = dict(hit[1])
            continue
        from promptgov.workspace._evalset import Evalset

        try:
            es = Evalset.from_dir(sub)
        except WorkspaceError as e:
            s.problems.append(Problem(s.where(e), e.problem, e.fix))
            s.unreadable.add(sub.name)
            continue
        s.evalsets[es.ref] = {"dir": rel, "file_sha": sha, "hash": es.hash,
                              "count": len(es.cases)}
        old = s.lock["evalsets"].get(es.ref)
        if old is None:
            s.problems.append(Problem(rel, f"evalset {es.ref} is not locked",
                                      "run `promptgov lock`"))
        elif old["hash"] != es.hash:
            s.problems.append(Problem(
                rel, f"evalset {es.ref} changed since it was locked (locked {short(old['hash'])}, "
                f"now {short(es.hash)})", f"revert it, or bump `version:` in {rel}/manifest.yaml"
                " and run `promptgov lock`"))


# -- prompts --------------------------------------------------------------------------------

def _scan_prompts(s: Scan) -> None:
    d = s.root / "prompts"
    files = sorted((sub.name, int(m.group(1)), f) for sub in d.iterdir() if sub.is_dir()
                   for f in sub.iterdir() if (m := _VFILE.match(f.name)))
    latest_evalset = {ref.split("@")[0]: ref for ref in s.evalsets}
    for name, version, f in files:
        ref, rel, sha = f"{name}@{version}", s.rel(f), file_sha(f)
        old = s.lock["prompts"].get(ref)
        if old and old["file_sha"] == sha and s.fresh_tooling:
            entry = dict(old)
        else:
            entry = _hash_prompt(s, f, rel, sha, old)
            if entry is None:
                continue
        _check_refs(s, rel, ref, entry, latest_evalset)
        s.prompts[ref] = entry
    for ref, e in sorted(s.lock["prompts"].items()):
        if ref not in s.prompts and not (s.root / e["file"]).exists():
            s.problems.append(Problem(e["file"], f"locked version {ref} was deleted",
                                      "restore it from git: locked versions are immutable"))


def _hash_prompt(s: Scan, f: Path, rel: str, sha: str, old: dict | None) -> dict | None:
    from promptgov.workspace._prompt import PromptVersion

    try:
        pv = PromptVersion.from_file(f)
    except WorkspaceError as e:
        s.problems.append(Problem(s.where(e), e.problem, e.fix))
        return None
    entry = {"file": rel, "file_sha": sha, "kind": pv.kind, "content_hash": pv.content_hash,
             "schema": pv.response_schema, "evalset": pv.evalset}
    nxt = max(int(m.group(1)) for g in f.parent.iterdir() if (m := _VFILE.match(g.name))) + 1
    bump = (f"revert the edit, or bump the version: save it as prompts/{pv.name}/v{nxt}.yaml "
            f"with `version: {nxt}` and run `promptgov lock`")
    if old is None:
        entry["render_fingerprint"] = _fingerprint(s, pv, rel)
        s.problems.append(Problem(rel, f"prompt version {pv.ref} is not locked",
                                  "run `promptgov lock`"))
    elif old["content_hash"] != pv.content_hash:
        entry["render_fingerprint"] = old["render_fingerprint"]
        s.problems.append(Problem(
            rel, f"{pv.ref} changed since it was locked (locked {short(old['content_hash'])}, "
            f"now {short(pv.content_hash)})", bump))
    else:
        # Same content hash, but the file's bytes changed (or --full / new tooling): re-render.
        # Same content does not imply same messages: the key order of a demo's output is not
        # part of the content hash but is part of the JSON answer sent to the model.
        entry["render_fingerprint"] = _fingerprint(s, pv, rel)
        if entry["render_fingerprint"] != old["render_fingerprint"]:
            upgraded = s.lock.get("tooling") != tooling()
            s.problems.append(Problem(
                rel, f"{pv.ref} renders different messages than when it was locked (locked "
                f"{short(old['render_fingerprint'])}, now {short(entry['render_fingerprint'])}); "
                + ("a dependency upgrade changed what is sent to the model" if upgraded else
                   "the edit keeps the content hash but changes what is sent to the model "
                   "(e.g. the key order of a demo output)"),
                "pin the previous jinja2/promptgov, or re-evaluate and save it as a new version"
                if upgraded else bump))
    return entry


def _fingerprint(s: Scan, pv, rel: str) -> str | None:
    try:
        return pv.render_fingerprint
    except WorkspaceError as e:
        s.problems.append(Problem(rel, f"cannot render the probe input: {e.problem}",
                                  "add a `probe:` input that the templates can render"))
        return None


def _check_refs(s: Scan, rel: str, ref: str, entry: dict, latest_evalset: dict) -> None:
    sch = entry.get("schema")
    if sch and sch not in s.schemas:
        if sch not in s.unreadable:
            s.problems.append(Problem(rel, f"{ref} references unknown schema {sch!r}",
                                      f"known schemas: {', '.join(sorted(s.schemas)) or 'none'}"))
    else:
        entry["schema_hash"] = s.schemas[sch]["hash"] if sch else None
    es = entry.get("evalset")
    if es:
        es_ref = es if "@" in es else latest_evalset.get(es)
        if es_ref not in s.evalsets:
            if es.split("@")[0] not in s.unreadable:
                s.problems.append(Problem(
                    rel, f"{ref} references unknown evalset {es!r}",
                    f"known evalsets: {', '.join(sorted(s.evalsets)) or 'none'}"))
        else:
            entry["evalset_hash"] = s.evalsets[es_ref]["hash"]


# -- the two commands -----------------------------------------------------------------------

@dataclass(frozen=True)
class CheckResult:
    problems: list[Problem]
    warnings: list[Problem]
    n_prompts: int
    n_schemas: int
    n_evalsets: int
    n_releases: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        n = len(self.problems)
        state = "ok" if self.ok else f"FAILED ({n} problem{'s' if n != 1 else ''})"
        rel = (f", {self.n_releases} release{'s' if self.n_releases != 1 else ''}"
               if self.n_releases else "")
        return (f"promptgov check: {state}: {self.n_prompts} prompt versions, {self.n_schemas} "
                f"schemas, {self.n_evalsets} evalsets{rel} checked against governance/lock.json"
                + (" and the approvals" if self.n_releases else ""))


def check(root: Any = None, *, full: bool = False) -> CheckResult:
    """Compare the workspace (a :class:`Workspace`, its root folder, or the one found from the
    current directory) with its lock, and each release manifest with the approvals of the
    versions it names; never writes anything."""
    root = _root(root)
    from promptgov.governance._releases import load_releases, release_problems

    s = scan(root, full=full)
    problems = list(s.problems)
    try:
        releases = load_releases(root)
    except WorkspaceError as e:
        problems.append(Problem(s.where(e), e.problem, e.fix))
        releases = []
    problems += release_problems(s, releases)
    return CheckResult(problems, s.warnings, len(s.prompts), len(s.schemas), len(s.evalsets),
                       len(releases))


def lock(root: Any = None) -> tuple[list[str], list[Problem]]:
    """Add every new version to the lock. Refuses (raises, writes nothing) when a locked version
    drifted or a schema broke: those need a new version, not a new hash."""
    root = _root(root)
    s = scan(root, full=True)
    fatal = [p for p in s.problems if "not locked" not in p.message]
    if fatal:
        raise GovernanceError("\n".join(map(str, fatal)))
    old = s.lock
    added = [f"{kind[:-1]} {r}" for kind in ("schemas", "evalsets", "prompts")
             for r in sorted(getattr(s, kind)) if r not in old[kind]]
    # Entries whose files are gone stay: the lock is the history of what was released.
    new = {"tooling": tooling(),
           "schemas": {**old["schemas"], **s.schemas},
           "evalsets": {**old["evalsets"], **s.evalsets},
           "prompts": {**old["prompts"], **s.prompts}}
    write_lock(root, new)
    return added, s.warnings


def _root(ws: Any) -> Path:
    if ws is None:
        from promptgov.workspace import Workspace

        return Workspace.find().root
    if isinstance(ws, str | Path):  # (a Path has a `.root` too: "/")
        return Path(ws)
    return Path(ws.root)

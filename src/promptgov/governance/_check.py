"""Verify the workspace against its lock (``promptgov check``) and write the lock
(``promptgov lock``). ``check`` also verifies every release manifest against the approval
records of the versions it names (``_releases.py``).

Both walk the same :class:`Scan`: every schema, evalset and prompt version on disk with its
hashes, derived from the lock when a file's bytes are unchanged (fast path) and recomputed
otherwise. ``check`` imports no MLflow, DSPy, LiteLLM or pandas: it is a pre-commit hook.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptgov.errors import GovernanceError, WorkspaceError
from promptgov.governance._derived import Derived
from promptgov.governance._problem import Problem
from promptgov.hashing import short
from promptgov.workspace._lock import file_sha, read_lock, tooling, write_lock

if TYPE_CHECKING:
    from promptgov.workspace import Workspace
    from promptgov.workspace._prompt import PromptVersion

_VFILE = re.compile(r"^v(\d+)\.ya?ml$")

Entry = dict[str, Any]
"""A schema, evalset or prompt version as the lock records it (parsed JSON: ``file``,
``hash``...); also what a scan derives from the file, in the same shape."""


@dataclass
class Scan:
    """What is on disk, with hashes; ``problems`` found while scanning."""

    root: Path
    lock: dict[str, Any]
    full: bool = False
    schemas: dict[str, Entry] = field(default_factory=dict)
    evalsets: dict[str, Entry] = field(default_factory=dict)
    prompts: dict[str, Entry] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    unreadable: set[str] = field(default_factory=set)
    """Schema refs / evalset names whose files failed to load (already reported as problems),
    so that prompts referencing them do not add an "unknown" problem each."""
    policy: dict[str, Any] | None = None
    """``{"hash", "content"}`` of governance/policy.toml (None: it does not load)."""
    derived: Derived | None = None
    seen: dict[str, set[str]] = field(default_factory=lambda: {
        k: set() for k in ("schemas", "evalsets", "prompts", "pairs", "expected")})
    content: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per prompt ref: its file sha, demo keys and demo problems (not lock content)."""
    evalset_sha: dict[str, str] = field(default_factory=dict)

    def rel(self, p: Path) -> str:
        return str(p.relative_to(self.root))

    def where(self, e: WorkspaceError) -> str:
        """``file[:line]`` of an error, relative to the workspace like every other problem."""
        p = Path(e.path)
        f = self.rel(p) if p.is_absolute() and p.is_relative_to(self.root) else e.path
        return f if e.line is None else f"{f}:{e.line}"

    def known(self, kind: str, sha: str) -> Any:
        """What an earlier scan on this machine derived from these exact bytes (or None)."""
        self.seen[kind].add(sha)
        return self.derived.get(kind, sha) if self.derived else None

    def remember(self, kind: str, sha: str, value: Any) -> None:
        """Keep what was derived from these bytes for the next scan on this machine."""
        if self.derived is not None:
            self.derived.put(kind, sha, value)


def scan(root: Path, *, full: bool = False) -> Scan:
    """Every schema, evalset and prompt version on disk, hashed from the files themselves and
    compared with the lock. Hashes derived on this machine from the same bytes are reused from
    ``.promptgov/derived.json`` (``full=True`` derives everything again)."""
    derived = Derived(root, enabled=not full)
    s = Scan(root, read_lock(root), full, derived=derived)
    _scan_schemas(s)
    _scan_evalsets(s)
    _scan_prompts(s)
    _scan_content(s)
    _scan_policy(s)
    derived.save(s.seen)
    return s


# -- inside the content: demos and expected values fit the schema; no contamination ---------

def _scan_content(s: Scan) -> None:
    indexes: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    judged: set[tuple[str, str, str]] = set()
    for ref, entry in sorted(s.prompts.items()):
        rel, sch = entry["file"], entry.get("schema")
        _report_demos(s, ref, rel, sch)
        es = entry.get("evalset")
        es_ref = es if es and "@" in es else _latest(s, es)
        if es_ref is None or es_ref not in s.evalsets:
            continue
        es_dir = s.root / s.evalsets[es_ref]["dir"]
        _contamination(s, ref, rel, es_ref, es_dir, indexes)
        if sch in s.schemas and sch not in s.unreadable and \
                (es_ref, sch, entry["kind"]) not in judged:
            judged.add((es_ref, sch, entry["kind"]))
            _expected(s, es_ref, es_dir, sch, entry["kind"])


def _report_demos(s: Scan, ref: str, rel: str, sch: str | None) -> None:
    """The first three demos of ``ref`` its schema refuses, then how many more (none while the
    schema itself is unreadable: that is its own problem)."""
    shown = [] if sch in s.unreadable else s.content[ref]["demo_problems"]
    for p in shown[:3]:
        s.problems.append(Problem(rel, f"{ref} {p}", "correct the demo: a demo teaches the "
                                  "model the answer's shape", "invalid_content"))
    if len(shown) > 3:
        s.problems.append(Problem(rel, f"{ref}: {len(shown) - 3} more demos do not fit "
                                  f"schema {sch}", "correct them", "invalid_content"))


def _contamination(s: Scan, ref: str, rel: str, es_ref: str, es_dir: Path,
                   indexes: dict[str, tuple[dict[str, str], dict[str, str]]]) -> None:
    """Demos of ``ref`` whose input is (nearly) a case of the evalset that scores it; each
    evalset is indexed at most once a scan (``indexes``)."""
    from promptgov.governance import _content

    c = s.content[ref]
    key = f"{c['sha']}|{s.evalset_sha[es_ref]}"
    hits = s.known("pairs", key)
    if hits is None:
        if es_ref not in indexes:
            indexes[es_ref] = _content.evalset_index(es_dir / "cases.jsonl")
        hits = _content.overlaps(c["demo_keys"], *indexes[es_ref])
        s.remember("pairs", key, hits)
    for i, cid, how in hits:
        s.problems.append(Problem(
            rel, f"{ref} demos[{i}] input {how} case {cid} of evalset {es_ref}, which "
            "scores it (contamination)", "remove the demo (or the case, as a new evalset "
            "version): a demo the model is scored on inflates every metric",
            "contamination"))


def _expected(s: Scan, es_ref: str, es_dir: Path, sch: str, kind: str) -> None:
    from promptgov.governance import _content

    if kind == "draft":
        return
    key = f"{s.evalset_sha[es_ref]}|{s.schemas[sch]['hash']}|{kind}"
    found = s.known("expected", key)
    if found is None:
        model = _content.schema_model(s.root / s.schemas[sch]["file"], sch)
        found = _content.expected_problems(es_dir / "cases.jsonl", kind, model, sch) \
            if model is not None else []
        s.remember("expected", key, found)
    rel = s.rel(es_dir / "cases.jsonl")
    for line, p in found:
        s.problems.append(Problem(f"{rel}:{line}" if line else rel, p,
                                  "correct the expected value, or the schema",
                                  "invalid_content"))


def _latest(s: Scan, name: str | None) -> str | None:
    refs = [r for r in s.evalsets if r.split("@")[0] == name]
    return max(refs, key=lambda r: int(r.split("@")[1])) if refs else None


# -- policy ---------------------------------------------------------------------------------

def _scan_policy(s: Scan) -> None:
    """The policy is governed content: it must equal the one recorded by ``promptgov lock``;
    a change is listed gate by gate where it weakens one, so a reviewer sees it."""
    from promptgov.workspace._policy import POLICY_FILE, load_policy, policy_from_raw, weakened

    try:
        policy = load_policy(s.root)
    except WorkspaceError as e:
        s.problems.append(Problem(s.where(e), e.problem, e.fix))
        return
    s.policy = {"hash": policy.hash, "content": policy.raw}
    locked = s.lock.get("policy")
    if locked is None:
        if (s.root / POLICY_FILE).exists():
            s.problems.append(Problem(POLICY_FILE, "the policy is not locked",
                                      "run `promptgov lock`", "unlocked"))
        return
    if locked["hash"] == policy.hash:
        return
    names = {e["file"].split("/")[1]: e["kind"] for e in s.prompts.values()}
    try:
        weaker = weakened(policy_from_raw(s.root, locked["content"]), policy.gates, names)
    except WorkspaceError:
        weaker = []
    what = (f"weakens {len(weaker)} gate{'s' if len(weaker) != 1 else ''}: " + "; ".join(weaker)
            if weaker else "no gate is weaker")
    s.problems.append(Problem(
        POLICY_FILE, f"the policy changed since it was locked (locked {short(locked['hash'])}, "
        f"now {short(policy.hash)}); {what}",
        "revert it, or run `promptgov lock` so the change shows in the lock's diff for review",
        "policy_changed"))


# -- schemas --------------------------------------------------------------------------------

def _scan_schemas(s: Scan) -> None:
    d = s.root / "schemas"
    files = sorted(p for p in d.glob("*.py") if not p.name.startswith("_")) if d.is_dir() else []
    for f in files:
        _scan_schema_file(s, f)
    for ref, e in sorted(s.schemas.items()):
        _compare_schema(s, ref, e)


def _scan_schema_file(s: Scan, f: Path) -> None:
    """The contracts declared in schema file ``f``, from this machine's earlier scans or by
    importing it; a file that does not import is a problem, and so are the refs locked in it."""
    rel, sha = s.rel(f), file_sha(f)
    found = s.known("schemas", sha)
    if found is None:
        from promptgov.workspace._schema import load_schema_file

        try:
            found = [{"id": sch.id, "hash": sch.hash, "json_schema": sch.json_schema}
                     for sch in load_schema_file(f)]
        except WorkspaceError as e:
            s.problems.append(Problem(s.where(e), e.problem, e.fix))
            s.unreadable.update(r for r, locked in s.lock["schemas"].items()
                                if locked["file"] == rel)
            return
        s.remember("schemas", sha, found)
    if not found:
        s.warnings.append(Problem(rel, "declares no contract: no pydantic model in it has "
                                  "`schema_id`", 'add `schema_id: ClassVar[str] = "name@1"` '
                                  "to the model, or name a helper module _" + f.name))
    for sch in found:
        s.schemas[sch["id"]] = {"file": rel, "hash": sch["hash"],
                                "json_schema": sch["json_schema"]}


def _compare_schema(s: Scan, ref: str, e: Entry) -> None:
    """Schema ``ref`` against the lock: unlocked, changed additively (a warning) or changed in
    a breaking way under the same version (drift)."""
    old = s.lock["schemas"].get(ref)
    if old is None:
        s.problems.append(Problem(e["file"], f"schema {ref} is not locked",
                                  "run `promptgov lock`", "unlocked"))
        return
    if old["hash"] == e["hash"]:
        return
    from promptgov.workspace._schema import diff_schemas

    changes = diff_schemas(old["json_schema"], e["json_schema"])
    breaking = [c for c in changes if c.breaking]
    if breaking:
        s.unreadable.add(ref)  # its own problem; content is not judged against it
        s.problems.append(Problem(
            e["file"], f"schema {ref} changed in a breaking way under the same version "
            f"(locked {short(old['hash'])}, now {short(e['hash'])}): "
            + "; ".join(map(str, breaking)),
            f"revert it and declare the change as {ref.split('@')[0]}@"
            f"{int(ref.split('@')[1]) + 1}", "drift"))
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
    for sub in sorted(p for p in d.iterdir() if (p / "manifest.yaml").exists()):
        rel = s.rel(sub)
        try:
            sha = file_sha(sub / "manifest.yaml", sub / "cases.jsonl")
        except FileNotFoundError:
            s.problems.append(Problem(rel, "cases.jsonl is missing", "add the cases file"))
            continue
        got = s.known("evalsets", sha)
        if got is None:
            from promptgov.workspace._evalset import Evalset

            try:
                es = Evalset.from_dir(sub)
            except WorkspaceError as e:
                s.problems.append(Problem(s.where(e), e.problem, e.fix))
                s.unreadable.add(sub.name)
                continue
            got = {"ref": es.ref, "hash": es.hash, "count": len(es.cases)}
            s.remember("evalsets", sha, got)
        ref = got["ref"]
        s.evalsets[ref] = {"dir": rel, "hash": got["hash"], "count": got["count"]}
        s.evalset_sha[ref] = sha
        old = s.lock["evalsets"].get(ref)
        if old is None:
            s.problems.append(Problem(rel, f"evalset {ref} is not locked",
                                      "run `promptgov lock`", "unlocked"))
        elif old["hash"] != got["hash"]:
            s.problems.append(Problem(
                rel, f"evalset {ref} changed since it was locked (locked {short(old['hash'])}, "
                f"now {short(got['hash'])})", f"revert it, or bump `version:` in {rel}/"
                "manifest.yaml and run `promptgov lock`", "drift"))


# -- prompts --------------------------------------------------------------------------------

def _scan_prompts(s: Scan) -> None:
    files = _prompt_files(s.root)
    shas = {f: file_sha(f) for _, _, f in files}
    schemas = {ref: (str(s.root / e["file"]), e["hash"]) for ref, e in s.schemas.items()}
    # Rendering is a pure function of the ordered content and the tool versions: with the tools
    # the lock was made with, a file whose ordered content hashes as locked renders as locked.
    same_tools = not s.full and s.lock.get("tooling") == tooling()
    locked = s.lock["prompts"]
    todo = [(f, s.rel(f), _hint(locked.get(f"{name}@{version}")) if same_tools else None,
             schemas) for name, version, f in files if _cached(s, shas[f], schemas) is None]
    derived = dict(zip([t[0] for t in todo], _derive_all(todo), strict=True))
    latest_evalset = {ref.split("@")[0]: ref for ref in s.evalsets}
    for name, version, f in files:
        got = _prompt_facts(s, f, shas[f], schemas, derived)
        if got is not None:
            _add_prompt(s, f"{name}@{version}", f, shas[f], got, latest_evalset)
    _report_deleted(s)


def _report_deleted(s: Scan) -> None:
    for ref, e in sorted(s.lock["prompts"].items()):
        if ref not in s.prompts and not (s.root / e["file"]).exists():
            s.problems.append(Problem(e["file"], f"locked version {ref} was deleted",
                                      "restore it from git: locked versions are immutable",
                                      "deleted"))


def _prompt_files(root: Path) -> list[tuple[str, int, Path]]:
    """Every ``prompts/<name>/v<N>.yaml`` as (name, version, path), sorted."""
    d = root / "prompts"
    if not d.is_dir():
        return []
    return sorted((sub.name, int(m.group(1)), f) for sub in d.iterdir() if sub.is_dir()
                  for f in sub.iterdir() if (m := _VFILE.match(f.name)))


def _cached(s: Scan, sha: str, schemas: dict[str, tuple[str, str]]) -> Entry | None:
    """What an earlier scan derived from a prompt file with these bytes, unless the schema its
    demos were validated with has changed since."""
    got: Entry | None = s.known("prompts", sha)
    if got is not None and got.get("validated_with") != _schema_hash(schemas, got.get("schema")):
        return None
    return got


def _schema_hash(schemas: dict[str, tuple[str, str]], sid: object) -> str | None:
    """The current hash of schema ``sid`` (None: no such schema, or a prompt without one)."""
    found = schemas.get(sid) if isinstance(sid, str) else None
    return found[1] if found is not None else None


def _prompt_facts(s: Scan, f: Path, sha: str, schemas: dict[str, tuple[str, str]],
                  derived: dict[Path, Derivation]) -> Entry | None:
    """What prompt file ``f`` derives to: derived in this scan (and kept for the next one) or
    cached from an earlier one. None when it does not load; its problem is recorded."""
    if f not in derived:
        return _cached(s, sha, schemas)
    got, problem = derived[f]
    if problem is not None:
        s.problems.append(problem)
        return None
    s.remember("prompts", sha, got)
    return got


def _add_prompt(s: Scan, ref: str, f: Path, sha: str, got: Entry,
                latest_evalset: dict[str, str]) -> None:
    """Record prompt version ``ref`` in the scan, compared with the lock and its references."""
    rel = s.rel(f)
    entry = {"file": rel, **{k: v for k, v in got.items() if k in _LOCKED}}
    s.content[ref] = {"sha": sha, "demo_keys": got.get("demo_keys", []),
                      "demo_problems": got.get("demo_problems", [])}
    _compare_prompt(s, f, rel, ref, entry)
    _check_refs(s, rel, ref, entry, latest_evalset)
    s.prompts[ref] = entry


_PARALLEL_FROM = 64
"""Prompt files to derive before it pays to fork workers (a fork costs ~10 ms)."""


Todo = tuple[Path, str, tuple[str, str] | None, dict[str, tuple[str, str]]]
"""A prompt file to derive: path, workspace-relative path, the locked (ordered hash, render
fingerprint) when the tools are the lock's, and the schemas (ref → (file, hash))."""
_LOCKED = ("kind", "content_hash", "ordered_hash", "render_fingerprint", "schema", "evalset")
"""What a prompt's lock entry holds of what is derived from its file."""
Derivation = tuple[Entry | None, Problem | None]
"""What :func:`_derive` gives for a prompt file: its facts, or the problem that stops it."""


def _hint(entry: Entry | None) -> tuple[str, str] | None:
    if entry and entry.get("ordered_hash") and entry.get("render_fingerprint"):
        return entry["ordered_hash"], entry["render_fingerprint"]
    return None


def _derive_all(todo: list[Todo]) -> list[Derivation]:
    """:func:`_derive` of every file. A fresh clone (CI) derives every file: YAML, validation
    and template compilation cost ~3-5 ms a file, so with many files they are split over forked
    workers, one per CPU (fork: the loaded modules are shared, no re-import)."""
    import os
    import sys

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if len(todo) < _PARALLEL_FROM or cpus < 2 or sys.platform != "linux":
        return [_derive(*t) for t in todo]
    import multiprocessing

    from promptgov.workspace._prompt import PromptVersion  # noqa: F401  (load before the fork)

    chunks = [todo[i::cpus] for i in range(cpus)]
    with multiprocessing.get_context("fork").Pool(cpus) as pool:
        parts = pool.map(_derive_chunk, chunks)
    out: list[Derivation] = [(None, None)] * len(todo)  # every slot is filled below
    for i, part in enumerate(parts):
        out[i::cpus] = part
    return out


def _derive_chunk(chunk: list[Todo]) -> list[Derivation]:
    return [_derive(*t) for t in chunk]


def _derive(f: Path, rel: str, hint: tuple[str, str] | None = None,
            schemas: dict[str, tuple[str, str]] | None = None) -> Derivation:
    """Kind, content hash, render fingerprint and references of prompt file ``f``, or the
    problem that stops it loading. ``hint``: the locked (ordered hash, fingerprint); when the
    file's ordered hash is that one, the fingerprint is known without compiling a template."""
    from promptgov.workspace._prompt import PromptVersion

    try:
        pv = PromptVersion.from_file(f, render=False)
        if hint is not None and pv.ordered_hash == hint[0]:
            return _derived(pv, hint[1], schemas), None
        pv.check_templates(f)
    except WorkspaceError as e:
        p = Path(e.path)
        where = rel if p == f else e.path
        return None, Problem(where if e.line is None else f"{where}:{e.line}", e.problem, e.fix)
    try:
        fingerprint = pv.render_fingerprint
    except WorkspaceError as e:
        fix = ("add a `probe:` input that supplies every variable the templates use"
               if "undefined variable" in e.problem and pv.probe is None else e.fix)
        return None, Problem(rel, f"cannot render the probe input: {e.problem}", fix)
    return _derived(pv, fingerprint, schemas), None


def _derived(pv: PromptVersion, fingerprint: str,
             schemas: dict[str, tuple[str, str]] | None) -> Entry:
    from promptgov.governance._content import input_keys

    problems, schema_hash = _demo_verdict(pv, schemas or {})
    return {"kind": pv.kind, "content_hash": pv.content_hash, "ordered_hash": pv.ordered_hash,
            "render_fingerprint": fingerprint, "schema": pv.response_schema,
            "evalset": pv.evalset, "validated_with": schema_hash, "demo_problems": problems,
            "demo_keys": [list(input_keys(d.input)) for d in pv.demos]}


def _demo_verdict(pv: PromptVersion, schemas: dict[str, tuple[str, str]]
                  ) -> tuple[list[str], str | None]:
    """The demos of ``pv`` that its response schema refuses, and the hash of the schema they
    were judged with (None: no schema in the workspace to judge them with)."""
    from promptgov.governance._content import demo_problems, schema_model

    sid = pv.response_schema
    if sid is None or sid not in schemas:
        return [], None
    file, schema_hash = schemas[sid]
    try:
        return demo_problems(pv, schema_model(file, sid)), schema_hash
    except WorkspaceError:
        return [], schema_hash  # the schema file itself is broken: reported with the schema


def _compare_prompt(s: Scan, f: Path, rel: str, ref: str, entry: Entry) -> None:
    old = s.lock["prompts"].get(ref)
    name = ref.split("@")[0]
    nxt = max(int(m.group(1)) for g in f.parent.iterdir() if (m := _VFILE.match(g.name))) + 1
    bump = (f"revert the edit, or bump the version: save it as prompts/{name}/v{nxt}.yaml "
            f"with `version: {nxt}` and run `promptgov lock`")
    if old is None:
        s.problems.append(Problem(rel, f"prompt version {ref} is not locked",
                                  "run `promptgov lock`", "unlocked"))
    elif old["content_hash"] != entry["content_hash"]:
        s.problems.append(Problem(
            rel, f"{ref} changed since it was locked (locked {short(old['content_hash'])}, "
            f"now {short(entry['content_hash'])})", bump, "drift"))
    elif old["render_fingerprint"] != entry["render_fingerprint"]:
        # Same content does not imply same messages: the key order of a demo's output is not
        # part of the content hash but is part of the JSON answer sent to the model.
        upgraded = s.lock.get("tooling") != tooling()
        s.problems.append(Problem(
            rel, f"{ref} renders different messages than when it was locked (locked "
            f"{short(old['render_fingerprint'])}, now {short(entry['render_fingerprint'])}); "
            + ("a dependency upgrade changed what is sent to the model" if upgraded else
               "the edit keeps the content hash but changes what is sent to the model "
               "(e.g. the key order of a demo output)"),
            "pin the previous jinja2/promptgov, or re-evaluate and save it as a new version"
            if upgraded else bump, "drift"))


def _check_refs(s: Scan, rel: str, ref: str, entry: Entry,
                latest_evalset: dict[str, str]) -> None:
    sch = entry.get("schema")
    if sch and sch not in s.schemas:
        if sch not in s.unreadable:
            s.problems.append(Problem(rel, f"{ref} references unknown schema {sch!r}",
                                      f"known schemas: {', '.join(sorted(s.schemas)) or 'none'};"
                                      " a schema is a pydantic model in schemas/*.py declaring "
                                      f'schema_id: ClassVar[str] = "{sch}"', "reference"))
    else:
        entry["schema_hash"] = s.schemas[sch]["hash"] if sch else None
    es = entry.get("evalset")
    if es:
        es_ref = es if "@" in es else latest_evalset.get(es)
        if es_ref not in s.evalsets:
            if es.split("@")[0] not in s.unreadable:
                s.problems.append(Problem(
                    rel, f"{ref} references unknown evalset {es!r}",
                    f"known evalsets: {', '.join(sorted(s.evalsets)) or 'none'}", "reference"))
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


def check(root: Workspace | str | os.PathLike[str] | None = None, *, full: bool = False,
          runs: bool = False) -> CheckResult:
    """Compare the workspace (a :class:`Workspace`, its root folder, or the one found from the
    current directory) with its lock, and each release manifest with the approvals of the
    versions it names; writes nothing but untracked local state (``.promptgov/derived.json``).

    ``runs``: also check every approval record against the MLflow run it cites (hashes, model,
    metrics and gates): a record edited by hand cannot forge the run. Imports MLflow."""
    path = _root(root)
    from promptgov.governance._releases import load_releases, release_problems

    s = scan(path, full=full)
    problems = list(s.problems)
    try:
        releases = load_releases(path)
    except WorkspaceError as e:
        problems.append(Problem(s.where(e), e.problem, e.fix))
        releases = []
    problems += release_problems(s, releases)
    if runs:
        from promptgov.governance._audit import verify_approvals

        problems += [Problem(f, p, "approve again from a real evaluation run, or restore the "
                             "record from git", "evidence") for f, p in verify_approvals(path)]
    return CheckResult(problems, s.warnings, len(s.prompts), len(s.schemas), len(s.evalsets),
                       len(releases))


def lock(root: Workspace | str | os.PathLike[str] | None = None
         ) -> tuple[list[str], list[Problem]]:
    """Add every new version to the lock. Refuses (raises, writes nothing) when a locked version
    drifted or a schema broke: those need a new version, not a new hash."""
    path = _root(root)
    s = scan(path, full=True)
    fatal = [p for p in s.problems if p.code not in ("unlocked", "policy_changed")]
    if fatal:
        raise GovernanceError("\n".join(map(str, fatal)))
    old = s.lock
    added = [f"{kind[:-1]} {r}" for kind in ("schemas", "evalsets", "prompts")
             for r in sorted(getattr(s, kind)) if r not in old[kind]]
    # Entries whose files are gone stay: the lock is the history of what was released.
    new: dict[str, Any] = {"tooling": tooling(),
                           "schemas": {**old["schemas"], **s.schemas},
                           "evalsets": {**old["evalsets"], **s.evalsets},
                           "prompts": {**old["prompts"], **s.prompts}}
    if s.policy is not None:
        if old.get("policy", {}).get("hash") != s.policy["hash"]:
            added.append("policy " + short(s.policy["hash"]))
        new["policy"] = s.policy
    write_lock(path, new)
    return added, s.warnings


def _root(ws: Workspace | str | os.PathLike[str] | None) -> Path:
    from promptgov.workspace import Workspace

    return Workspace.of(ws).root

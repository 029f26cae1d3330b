"""``verify``: does this installed package still ship what the workspace has approved?

For CI on the deploying side, with a checkout of the workspace (``python -m <package> verify
--workspace PATH``). Stdlib only: no promptgov needed. It checks that

* every embedded file still matches ``manifest.json`` (as on import);
* each prompt version's content hash, render fingerprint and schema hash equal the workspace's
  ``governance/lock.json`` entry;
* each version's approval record exists, is not revoked, and is bound to those hashes and the
  same MLflow run as at export;
* each schema's hash equals the lock's, and the installed pydantic still generates that JSON
  Schema for the embedded model (a pydantic upgrade changes what is sent to the model);
* the release manifest still names exactly these versions at this version, and the routing
  bands and retry limits of ``governance/policy.toml`` are those embedded;
* every file of the package, runtime code and ``manifest.json`` included, is byte for byte what
  exporting the release from the workspace gives now. Whoever can edit a file here can also
  rewrite the manifest, so only this step catches a deliberate edit; it needs promptgov (the
  workbench) importable, and says so when it is not.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._bundle import Bundle, load
from ._errors import IntegrityError
from ._hashing import content_hash

_REEXPORT = "export the release again from the workspace and deploy that package"


@dataclass(frozen=True)
class VerifyResult:
    """``problems`` found (each one line: what differs, where, the fix); ``ok`` when none."""

    package: str
    workspace: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        if self.ok:
            return f"ok: {self.package} matches the lock and approvals of {self.workspace}"
        return "\n".join(self.problems)


def verify(bundle: Bundle, workspace: str | os.PathLike[str]) -> VerifyResult:
    ws = Path(workspace)
    out: list[str] = []
    result = VerifyResult(bundle.where, str(ws), out)
    intact = True
    try:
        load(bundle.root, bundle.package)  # the files as they are now, not as on import
    except IntegrityError as e:
        out.append(str(e))
        intact = False
    m = bundle.manifest
    lock = _json(ws / "governance/lock.json", out)
    if lock is None:
        return result
    for ref, p in m["prompts"].items():
        entry = lock.get("prompts", {}).get(ref)
        if entry is None:
            out.append(f"governance/lock.json: {ref} is not locked in {ws}, but {bundle.where} "
                       f"ships it (fix: verify against the workspace it was exported from)")
            continue
        for key in ("content_hash", "render_fingerprint", "schema_hash"):
            if entry.get(key) != p.get(key):
                out.append(f"governance/lock.json: {ref} {key} is {entry.get(key)}, the package "
                           f"ships {p.get(key)} (fix: {_REEXPORT})")
        out += _approval(ws, ref, p)
    for sid, s in m["schemas"].items():
        locked = lock.get("schemas", {}).get(sid, {}).get("hash")
        if locked != s["hash"]:
            out.append(f"governance/lock.json: schema {sid} hash is {locked}, the package ships "
                       f"{s['hash']} (fix: {_REEXPORT})")
        if intact:  # never run schema code the integrity check refused
            import pydantic

            now = content_hash(bundle.schema_class(sid).model_json_schema())
            if now != s["hash"]:
                out.append(f"{bundle.package}/{s['module']}: pydantic {pydantic.VERSION} generates "
                           f"a JSON Schema for {sid} hashed {now}, not the approved {s['hash']} "
                           f"(exported with pydantic {m['exported_with'].get('pydantic')}; fix: "
                           "install that pydantic, or re-lock, re-approve and export)")
    out += _release(ws, m)
    out += _policy(ws, bundle)
    out += _rebuilt(bundle, ws)
    return result


def _rebuilt(bundle: Bundle, ws: Path) -> list[str]:
    try:
        from promptgov.packaging._compare import compare_package
    except ImportError as e:
        return [f"{bundle.package}: cannot compare its files byte for byte with an export from "
                f"{ws}: promptgov is not importable here ({e}) (fix: run `promptgov "
                f"verify-package {bundle.root} --workspace {ws}` where the workbench is "
                "installed; the manifest check alone does not catch an edit that also rewrites "
                "manifest.json)"]
    try:
        return compare_package(bundle.root, ws)
    except Exception as e:  # a verdict, never a traceback: the workbench may be incomplete here
        return [f"{bundle.package}: cannot export the release from {ws} to compare with: "
                f"{type(e).__name__}: {e} (fix: run `promptgov verify-package {bundle.root} "
                f"--workspace {ws}` where the workbench is installed)"]


def _json(path: Path, out: list[str]) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        out.append(f"{path}: cannot read it ({type(e).__name__}) (fix: pass --workspace, the "
                   "checkout of the promptgov workspace the package was exported from)")
        return None


def _toml(path: Path, out: list[str], missing: str) -> dict[str, Any] | None:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if missing:
            out.append(missing)
    except (OSError, tomllib.TOMLDecodeError) as e:
        out.append(f"{path}: unreadable: {e} (fix: restore it from git)")
    return None


def _approval(ws: Path, ref: str, p: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    rel = f"governance/approvals/{ref}.toml"
    a = _toml(ws / rel, out, f"{rel}: {ref} is not approved in {ws}, but the package ships "
              "it (fix: verify against the workspace the package was exported from)")
    if a is None:
        return out
    if a.get("status") != "approved":
        rv = a.get("revocation", {})
        return [f"{rel}: {ref} was revoked by {rv.get('by')} on {str(rv.get('at'))[:10]}: "
                f"{rv.get('reason')} (fix: stop deploying this package; release and export "
                "an approved version)"]
    want = p["approval"]
    for key in ("content_hash", "render_fingerprint", "schema_hash", "run_id"):
        shipped = p.get(key) if key != "run_id" else want.get("run_id")
        if a.get(key) != shipped:
            out.append(f"{rel}: {ref} approval {key} is {a.get(key)}, the package was exported "
                       f"with {shipped} (fix: {_REEXPORT})")
    return out


def _release(ws: Path, m: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    name, version = m["release"]["name"], m["release"]["version"]
    rel = f"governance/releases/{name}.toml"
    r = _toml(ws / rel, out, f"{rel}: {ws} has no release {name} (fix: verify against the "
              "workspace the package was exported from)")
    if r is None:
        return out
    if r.get("version") != version or sorted(r.get("prompts", [])) != sorted(m["prompts"]):
        out.append(f"{rel}: release {name} is version {r.get('version')} "
                   f"({', '.join(sorted(r.get('prompts', [])))}), the package is version "
                   f"{version} ({', '.join(sorted(m['prompts']))}) (fix: {_REEXPORT})")
    return out


def _policy(ws: Path, bundle: Bundle) -> list[str]:
    out: list[str] = []
    raw = _toml(ws / "governance/policy.toml", out, "")
    if raw is None:
        return out
    for table, embedded in (("routing", bundle.routing), ("retry", bundle.retry)):
        for key, value in raw.get(table, {}).items():
            if getattr(embedded, key, value) != value:
                out.append(f"governance/policy.toml: [{table}] {key} = {value}, the package "
                           f"applies {getattr(embedded, key)} (fix: {_REEXPORT})")
    return out

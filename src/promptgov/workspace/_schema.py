"""Output contracts: pydantic models in ``schemas/*.py``, each named ``name@version``.

A schema file is plain pydantic (it must not import promptgov: exported packages embed it as
it is). A model becomes a contract by declaring ``schema_id: ClassVar[str] = "name@1"``. Its
identity is the hash of its canonical JSON Schema; :func:`diff_schemas` says whether a change
between two JSON Schemas is breaking for consumers of the output.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptgov._portable._jsonschema import resolve
from promptgov.errors import WorkspaceError
from promptgov.hashing import content_hash
from promptgov.workspace._refs import parse_ref

if TYPE_CHECKING:
    from pydantic import BaseModel

JSONSchema = dict[str, Any]
"""A JSON Schema document or sub-schema, as parsed JSON."""


@dataclass(frozen=True)
class Schema:
    id: str
    model: type[BaseModel]
    file: Path

    @property
    def json_schema(self) -> JSONSchema:
        return self.model.model_json_schema()

    @property
    def hash(self) -> str:
        return content_hash(self.json_schema)


def load_schema_file(path: Path) -> list[Schema]:
    """Import one schema file and return the contracts it declares."""
    from pydantic import BaseModel

    mod_name = f"promptgov_schemas.{path.stem}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[mod_name] = module  # pydantic resolves forward references through sys.modules
    # `check` writes nothing into the workspace: no schemas/__pycache__/*.pyc either.
    dont_write, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except Exception as e:  # a schema file is user code: any error is the file's fault
        sys.modules.pop(mod_name, None)
        raise WorkspaceError(path, f"cannot import: {type(e).__name__}: {e}",
                             "fix the Python error in the schema file") from None
    finally:
        sys.dont_write_bytecode = dont_write
    found = []
    for obj in vars(module).values():
        if not (isinstance(obj, type) and issubclass(obj, BaseModel)
                and obj.__module__ == mod_name):
            continue
        sid = getattr(obj, "schema_id", None)  # user code: the ClassVar may be absent
        if not isinstance(sid, str):
            continue
        try:
            parse_ref(sid)
        except ValueError as e:
            raise WorkspaceError(path, f"{obj.__name__}.schema_id: {e}",
                                 'write schema_id: ClassVar[str] = "name@1"') from None
        if parse_ref(sid)[1] is None:
            raise WorkspaceError(path, f"{obj.__name__}.schema_id has no version",
                                 f'write "{sid}@1"')
        found.append(Schema(sid, obj, path))
    return found


# -- compatibility --------------------------------------------------------------------------

@dataclass(frozen=True)
class SchemaChange:
    path: str
    what: str
    breaking: bool

    def __str__(self) -> str:
        return f"{'BREAKING' if self.breaking else 'additive'}: {self.path}: {self.what}"


def diff_schemas(old: JSONSchema, new: JSONSchema) -> list[SchemaChange]:
    """Changes from ``old`` to ``new`` JSON Schema, each marked breaking or additive.

    Breaking for a consumer of the output: a field removed, a field newly required, a type
    narrowed, an enum value removed. Additive: a new optional field, a type widened, an enum
    value added.
    """
    return _diff_object(old, new, old, new, "")


def _diff_object(old: JSONSchema, new: JSONSchema, oroot: JSONSchema, nroot: JSONSchema,
                 at: str) -> list[SchemaChange]:
    out: list[SchemaChange] = []
    op, np_ = old.get("properties", {}), new.get("properties", {})
    oreq, nreq = set(old.get("required", [])), set(new.get("required", []))
    for f in sorted(op.keys() - np_.keys()):
        out.append(SchemaChange(at + f, "field removed", True))
    for f in sorted(np_.keys() - op.keys()):
        req = f in nreq
        out.append(SchemaChange(at + f, "field added" + (" (required)" if req else ""), req))
    for f in sorted(op.keys() & np_.keys()):
        if f in nreq and f not in oreq:
            out.append(SchemaChange(at + f, "now required", True))
        out += _diff_field(resolve(op[f], oroot), resolve(np_[f], nroot), oroot, nroot, at + f)
    return out


def _diff_field(o: JSONSchema, n: JSONSchema, oroot: JSONSchema, nroot: JSONSchema,
                at: str) -> list[SchemaChange]:
    out: list[SchemaChange] = []
    ot, nt = _types(o, oroot), _types(n, nroot)
    if ot - nt:
        out.append(SchemaChange(at, f"type narrowed: {sorted(ot - nt)} no longer allowed", True))
    if nt - ot:
        out.append(SchemaChange(at, f"type widened: {sorted(nt - ot)} now allowed", False))
    oe, ne = _enum(o, oroot), _enum(n, nroot)
    if oe is not None and ne is not None:
        if oe - ne:
            out.append(SchemaChange(at, f"enum values removed: {sorted(oe - ne)}", True))
        if ne - oe:
            out.append(SchemaChange(at, f"enum values added: {sorted(ne - oe)}", False))
    elif oe is None and ne is not None:
        out.append(SchemaChange(at, "now restricted to an enum", True))
    oo, no = _object(o, oroot), _object(n, nroot)
    if oo and no:
        out += _diff_object(oo, no, oroot, nroot, at + ".")
    # list items and map values (``list[Intent]``: an enum value removed there is breaking too)
    for key, suffix in (("items", "[]"), ("additionalProperties", "{}")):
        oi, ni = _sub(o, oroot, key), _sub(n, nroot, key)
        if oi is not None and ni is not None:
            out += _diff_field(resolve(oi, oroot), resolve(ni, nroot), oroot, nroot, at + suffix)
    return out


def _sub(s: JSONSchema, root: JSONSchema, key: str) -> JSONSchema | None:
    subs = [v[key] for v in _variants(s, root) if isinstance(v.get(key), dict)]
    return subs[0] if len(subs) == 1 else None


def _variants(s: JSONSchema, root: JSONSchema) -> list[JSONSchema]:
    s = resolve(s, root)
    alts = s.get("anyOf") or s.get("oneOf")
    return [v for a in alts for v in _variants(a, root)] if alts else [s]


def _types(s: JSONSchema, root: JSONSchema) -> set[str]:
    out: set[str] = set()
    for v in _variants(s, root):
        t = v.get("type", "enum" if "enum" in v or "const" in v else "any")
        out.update(t if isinstance(t, list) else [t])
    return out


def _enum(s: JSONSchema, root: JSONSchema) -> set[str] | None:
    vals: set[str] = set()
    for v in _variants(s, root):
        if "enum" in v:
            vals.update(map(str, v["enum"]))
        elif "const" in v:
            vals.add(str(v["const"]))
        elif v.get("type") not in ("null",):
            return None
    return vals or None


def _object(s: JSONSchema, root: JSONSchema) -> JSONSchema | None:
    objs = [v for v in _variants(s, root) if v.get("type") == "object" and "properties" in v]
    return objs[0] if len(objs) == 1 else None

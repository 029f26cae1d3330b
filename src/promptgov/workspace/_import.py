"""Evalsets from tables: ``promptgov evalset import FILE`` and ``pg.evalset_from_frame(df, ...)``.

A row becomes a case: the ``input`` columns are the template variables, the ``expected``
columns the answer's fields, typed by the response schema when there is one (``"2"`` → ``2``
for an int field, ``"a|b"`` or ``'["a", "b"]'`` → a list, an empty cell → null; a time stays the
text ``"13:30"``, never YAML's 810). Ids come from a column or are generated. The evalset is
written as a new version, atomically, never over an existing version's content.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from promptgov.errors import WorkspaceError

if TYPE_CHECKING:  # pandas and pydantic load when a table is read, not with the module
    import pandas as pd
    from pydantic import BaseModel, TypeAdapter

    from promptgov.workspace._evalset import Case, Evalset
    from promptgov.workspace._workspace import Workspace

FORMATS = (".jsonl", ".csv", ".parquet")


def read_table(path: Path | str) -> pd.DataFrame:
    """A DataFrame of ``path`` (.jsonl, .csv or .parquet); text cells stay text."""
    import pandas as pd

    path = Path(path)
    if path.suffix not in FORMATS:
        raise WorkspaceError(path, f"unknown table format {path.suffix!r}",
                             f"give a {', '.join(FORMATS)} file")
    if not path.is_file():
        raise WorkspaceError(path, "no such file", "check the path")
    try:
        if path.suffix == ".csv":
            # dtype=str: "007" stays "007" and "13:30" stays "13:30"; the schema types the rest
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        if path.suffix == ".jsonl":
            return pd.read_json(path, lines=True, dtype=False)
        return pd.read_parquet(path)
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise WorkspaceError(path, f"cannot read it: {type(e).__name__}: {str(e)[:200]}",
                             f"give a well-formed {path.suffix} file") from None


def evalset_from_frame(df: pd.DataFrame, name: str, *, input: list[str], expected: list[str],
                       source: str, license: str, id: str | None = None,
                       schema: str | None = None, split: str = "test", description: str = "",
                       workspace: Workspace | str | os.PathLike[str] | None = None,
                       origin: str = "the DataFrame") -> Evalset:
    """Write the rows of ``df`` as the next version of evalset ``name``; return it.

    Args:
        input: columns that become ``case.input`` (the template variables).
        expected: columns that become ``case.expected`` (the answer's fields).
        source, license: where the cases come from, recorded in the manifest.
        id: column holding case ids (default: ``<name>-0001`` ...).
        schema: ``name@version`` of the response schema that types the expected values
            (default: the schema of the prompt whose ``evalset`` is ``name``, if one).
    """
    from promptgov.workspace import Workspace
    from promptgov.workspace._evalset import Case, Manifest, write_evalset
    from promptgov.workspace._scaffold import _check_name

    ws = Workspace.of(workspace)
    _check_name(name, "evalsets")
    cols = [*input, *expected, *([id] if id else [])]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise WorkspaceError(origin, f"no column {', '.join(map(repr, missing))}",
                             f"columns are: {', '.join(map(str, df.columns))}")
    if not input or not expected:
        raise WorkspaceError(origin, "name at least one --input and one --expected column",
                             "e.g. --input text --expected intents --expected date")
    typer = _FieldTyper(ws, name, schema)
    cases: list[Case] = []
    seen: dict[str, int] = {}
    for i, row in enumerate(df.to_dict(orient="records")):
        where = f"{origin} row {i + 1}"
        cid = _plain(row[id]) if id else f"{name}-{i + 1:04d}"
        if cid is None or str(cid).strip() == "":
            raise WorkspaceError(where, f"empty id in column {id!r}", "give every row an id")
        cid = str(cid)
        if cid in seen:
            raise WorkspaceError(where, f"duplicate id {cid!r} (also row {seen[cid]})",
                                 "give every row a unique id")
        seen[cid] = i + 1
        cases.append(Case(id=cid, input={c: _plain(row[c]) for c in input},
                          expected={c: typer(c, row[c], where) for c in expected}))
    d = ws.root / "evalsets" / name
    old = _old_version(d)
    manifest = Manifest(name=name, version=old + 1, description=description, source=source,
                        license=license, split=split, count=len(cases))
    return write_evalset(d, manifest, cases)


def _old_version(d: Path) -> int:
    if not (d / "manifest.yaml").is_file():
        return 0
    from promptgov.workspace._yamlio import read_yaml

    v = read_yaml(d / "manifest.yaml").get("version")
    if not isinstance(v, int) or isinstance(v, bool):
        raise WorkspaceError(d / "manifest.yaml", f"version {v!r} is not a whole number",
                             "fix it, then import again")
    return v


def _plain(v: Any) -> Any:
    """A JSON value of a DataFrame cell (numpy scalars unwrapped, NaN → null)."""
    if hasattr(v, "item") and not isinstance(v, list | dict | str):
        try:
            v = v.item()
        except (ValueError, AttributeError):
            v = v.tolist() if hasattr(v, "tolist") else v
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


class _FieldTyper:
    """Types an expected cell by its field in the response schema (no schema: as given)."""

    def __init__(self, ws: Workspace, name: str, schema: str | None):
        self.model: type[BaseModel] | None = None
        if schema is None:  # the schema of the prompts scored on this evalset, if they agree
            refs: set[str] = set()
            for n in ws.prompt_names():
                try:
                    p = ws.prompt(n)  # the latest version
                except WorkspaceError:
                    continue
                if p.evalset and p.evalset.split("@")[0] == name and p.response_schema:
                    refs.add(p.response_schema)
            schema = refs.pop() if len(refs) == 1 else None
        if schema is not None:
            self.model = ws.schema(schema).model
            self.schema = schema
        self._adapters: dict[str, TypeAdapter[Any]] = {}

    def __call__(self, field: str, cell: Any, where: str) -> Any:
        v = _plain(cell)
        if isinstance(v, str) and v.strip() == "":
            v = None
        if self.model is None:
            return v
        info = self.model.model_fields.get(field)
        if info is None:
            raise WorkspaceError(where, f"--expected {field}: schema {self.schema} has no field "
                                 f"{field!r}", f"fields are: {', '.join(self.model.model_fields)}")
        from pydantic import TypeAdapter, ValidationError

        # a field of a class-defined model always has its annotation (None is for FieldInfo
        # built by hand)
        annotation = cast("type[Any]", info.annotation)
        ta = self._adapters.get(field) or self._adapters.setdefault(field, TypeAdapter(annotation))
        if isinstance(v, str) and _is_list(ta):
            v = _split(v)
        try:
            return ta.dump_python(ta.validate_python(v), mode="json")
        except ValidationError as e:
            err = e.errors()[0]
            raise WorkspaceError(where, f"expected {field} = {v!r}: {err['msg']} (schema "
                                 f"{self.schema})", "correct the cell, or the column you "
                                 "mapped to this field") from None


def _is_list(ta: TypeAdapter[Any]) -> bool:
    js = ta.json_schema()
    return js.get("type") == "array" or any(o.get("type") == "array"
                                            for o in js.get("anyOf", []))


def _split(text: str) -> Any:
    t = text.strip()
    if t.startswith("["):
        try:
            return json.loads(t)
        except ValueError:
            pass
    return [p.strip() for p in t.split("|") if p.strip()]

"""Evalsets: ``evalsets/<name>/manifest.yaml`` plus ``cases.jsonl`` (one case a line)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from promptgov.errors import WorkspaceError
from promptgov.hashing import content_hash
from promptgov.workspace._yamlio import iter_jsonl, pydantic_error, read_yaml


class Manifest(BaseModel):
    """What an evalset is and where its cases came from."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9_\-]*$")
    version: int = Field(ge=1)
    description: str = ""
    source: str
    """Where the cases come from (dataset, citation, or the script that generated them)."""
    license: str
    split: str = "test"
    count: int = Field(ge=0)
    derived_from: str | None = None
    """``name@version`` of the evalset this one was generated from (adversarial variants)."""


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    input: dict[str, Any]
    expected: Any = None
    meta: dict[str, Any] = {}
    """Free-form provenance (e.g. the transformations that made an adversarial variant)."""


@dataclass(frozen=True)
class Evalset:
    manifest: Manifest
    cases: tuple[Case, ...]
    dir: Path

    @property
    def ref(self) -> str:
        return f"{self.manifest.name}@{self.manifest.version}"

    @cached_property
    def hash(self) -> str:
        """sha256 of the canonical cases (ids, inputs, expected outputs, meta)."""
        return content_hash([c.model_dump(mode="json") for c in self.cases])

    def __len__(self) -> int:
        return len(self.cases)

    @classmethod
    def from_dir(cls, d: Path) -> Evalset:
        mpath, cpath = d / "manifest.yaml", d / "cases.jsonl"
        for p in (mpath, cpath):
            if not p.is_file():
                raise WorkspaceError(p, "missing", "an evalset folder holds manifest.yaml and "
                                     "cases.jsonl")
        try:
            manifest = Manifest.model_validate(read_yaml(mpath))
        except ValidationError as e:
            raise pydantic_error(mpath, e) from None
        if manifest.name != d.name:
            raise WorkspaceError(mpath, f"name {manifest.name!r} differs from folder {d.name!r}",
                                 f"set `name: {d.name}`")
        cases: list[Case] = []
        seen: dict[str, int] = {}
        for line, obj in iter_jsonl(cpath):
            try:
                case = Case.model_validate(obj)
            except ValidationError as e:
                err = pydantic_error(cpath, e)
                raise WorkspaceError(cpath, err.problem, err.fix, line=line) from None
            if case.id in seen:
                raise WorkspaceError(cpath, f"duplicate case id {case.id!r} (first on line "
                                     f"{seen[case.id]})", "give every case a unique id", line=line)
            seen[case.id] = line
            cases.append(case)
        if manifest.count != len(cases):
            raise WorkspaceError(mpath, f"count is {manifest.count} but cases.jsonl holds "
                                 f"{len(cases)} cases", f"set `count: {len(cases)}`")
        return cls(manifest, tuple(cases), d)


def write_evalset(d: Path, manifest: Manifest, cases: list[Case]) -> Evalset:
    """Write an evalset atomically: into a temporary folder, then renamed into place."""
    import shutil
    import tempfile

    from promptgov.workspace._yamlwrite import dump_yaml

    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{d.name}.", dir=d.parent))
    try:
        (tmp / "manifest.yaml").write_text(
            dump_yaml(manifest.model_dump(mode="json", exclude_none=True)), encoding="utf-8")
        with (tmp / "cases.jsonl").open("w", encoding="utf-8") as f:
            for c in cases:
                f.write(json.dumps(c.model_dump(mode="json", exclude_defaults=True),
                                   ensure_ascii=False) + "\n")
        if d.exists():
            shutil.rmtree(d)
        tmp.rename(d)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Evalset.from_dir(d)

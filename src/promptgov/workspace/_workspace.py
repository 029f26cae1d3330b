"""The workspace: a folder holding ``prompts/``, ``schemas/``, ``evalsets/`` and ``governance/``.

Library functions take a :class:`Workspace` explicitly; nothing reads global state. Files are
read lazily and once.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from promptgov.errors import WorkspaceError
from promptgov.workspace._refs import parse_ref

if TYPE_CHECKING:  # loaded lazily at run time: `check` must not pay for pydantic up front
    from promptgov.workspace._evalset import Evalset
    from promptgov.workspace._policy import Policy
    from promptgov.workspace._prompt import PromptVersion
    from promptgov.workspace._schema import Schema

_VFILE = re.compile(r"^v(\d+)\.ya?ml$")


class Workspace:
    """A promptgov workspace rooted at ``root``.

    Example:
        >>> ws = Workspace.find()                      # doctest: +SKIP
        >>> ws.prompt("ticket_triage@2").render({"text": "Where is my card?"})  # doctest: +SKIP
    """

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).resolve()
        if not (self.root / "prompts").is_dir():
            raise WorkspaceError(self.root, "not a promptgov workspace (no prompts/ folder)",
                                 "run from the workspace root or pass --workspace")
        self._prompts: dict[tuple[str, int], PromptVersion] = {}
        self._evalsets: dict[str, Evalset] = {}

    @classmethod
    def find(cls, start: Path | str | None = None) -> Workspace:
        """The workspace at ``$PROMPTGOV_WORKSPACE``, or the nearest folder upwards from
        ``start`` (default: the current directory) that holds ``prompts/``."""
        if start is None and os.environ.get("PROMPTGOV_WORKSPACE"):
            return cls(os.environ["PROMPTGOV_WORKSPACE"])
        here = Path(start or Path.cwd()).resolve()
        for d in (here, *here.parents):
            if (d / "prompts").is_dir():
                return cls(d)
        raise WorkspaceError(here, "no promptgov workspace here or above (no prompts/ folder)",
                             "cd into a workspace or set PROMPTGOV_WORKSPACE")

    @classmethod
    def of(cls, workspace: Workspace | str | os.PathLike[str] | None) -> Workspace:
        """The one conversion every ``workspace=`` argument goes through: a Workspace as it
        is, a path as the workspace rooted there, None as :meth:`find` finds it."""
        if isinstance(workspace, Workspace):
            return workspace
        return cls(workspace) if workspace is not None else cls.find()

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    @property
    def policy(self) -> Policy:
        """``governance/policy.toml`` as typed objects (read on every access: a notebook that
        edits the file sees the edit)."""
        from promptgov.workspace._policy import load_policy

        return load_policy(self.root)

    # -- paths ------------------------------------------------------------------------------

    @property
    def governance(self) -> Path:
        return self.root / "governance"

    def relpath(self, p: Path) -> str:
        try:
            return str(Path(p).resolve().relative_to(self.root))
        except ValueError:
            return str(p)

    # -- prompts ----------------------------------------------------------------------------

    def prompt_files(self) -> dict[tuple[str, int], Path]:
        """Every ``prompts/<name>/v<N>.yaml``, keyed by (name, version), sorted."""
        out: dict[tuple[str, int], Path] = {}
        for d in sorted((self.root / "prompts").iterdir()):
            if not d.is_dir():
                continue
            for f in d.iterdir():
                m = _VFILE.match(f.name)
                if m:
                    out[(d.name, int(m.group(1)))] = f
        return dict(sorted(out.items()))

    def versions(self, name: str) -> list[int]:
        return [v for (n, v) in self.prompt_files() if n == name]

    def prompt(self, ref: str, version: int | None = None) -> PromptVersion:
        """Load ``name@version`` (or the latest version of ``name``)."""
        from promptgov.workspace._prompt import PromptVersion

        name, v = parse_ref(ref)
        v = version or v
        vs = self.versions(name)
        if not vs:  # a typo in the name, with or without a version
            from difflib import get_close_matches

            close = get_close_matches(name, self.prompt_names(), n=1)
            raise WorkspaceError(self.root / "prompts" / name, f"no prompt named {name!r}",
                                 f"did you mean {close[0]}{'@' + str(v) if v else ''}?" if close
                                 else f"known prompts: {', '.join(self.prompt_names()) or 'none'}")
        v = v or max(vs)
        if (name, v) not in self._prompts:
            path = self.prompt_files().get((name, v))
            if path is None:
                raise WorkspaceError(self.root / "prompts" / name / f"v{v}.yaml",
                                     f"no prompt version {name}@{v}",
                                     f"known versions: {self.versions(name) or 'none'}")
            self._prompts[(name, v)] = PromptVersion.from_file(path)
        return self._prompts[(name, v)]

    def prompt_names(self) -> list[str]:
        return sorted({n for n, _ in self.prompt_files()})

    # -- schemas ----------------------------------------------------------------------------

    def schema_files(self) -> list[Path]:
        d = self.root / "schemas"
        return sorted(p for p in d.glob("*.py") if not p.name.startswith("_")) if d.is_dir() \
            else []

    @cached_property
    def schemas(self) -> dict[str, Schema]:
        """Every contract in ``schemas/``, keyed by ``name@version``."""
        from promptgov.workspace._schema import load_schema_file

        out: dict[str, Schema] = {}
        for f in self.schema_files():
            for s in load_schema_file(f):
                if s.id in out:
                    raise WorkspaceError(f, f"schema {s.id} is also declared in "
                                         f"{self.relpath(out[s.id].file)}",
                                         "give each schema version one definition")
                out[s.id] = s
        return out

    def schema(self, ref: str, *, by: Path | None = None) -> Schema:
        if ref not in self.schemas:
            raise WorkspaceError(by or self.root / "schemas", f"unknown schema {ref!r}",
                                 f"known schemas: {', '.join(sorted(self.schemas)) or 'none'}")
        return self.schemas[ref]

    # -- evalsets ---------------------------------------------------------------------------

    def evalset_dirs(self) -> dict[str, Path]:
        d = self.root / "evalsets"
        return {p.name: p for p in sorted(d.iterdir()) if (p / "manifest.yaml").exists()} \
            if d.is_dir() else {}

    def evalset(self, ref: str, *, by: Path | None = None) -> Evalset:
        """Load evalset ``name`` (``name@version`` checks the version)."""
        from promptgov.workspace._evalset import Evalset

        name, v = parse_ref(ref)
        d = self.evalset_dirs().get(name)
        if d is None:
            raise WorkspaceError(by or self.root / "evalsets" / name, f"unknown evalset {ref!r}",
                                 f"known evalsets: {', '.join(self.evalset_dirs()) or 'none'}")
        if name not in self._evalsets:
            self._evalsets[name] = Evalset.from_dir(d)
        es = self._evalsets[name]
        if v is not None and es.manifest.version != v:
            raise WorkspaceError(by or d / "manifest.yaml", f"{ref} requested but evalsets/{name} "
                                 f"is version {es.manifest.version}",
                                 f"reference {name}@{es.manifest.version}")
        return es

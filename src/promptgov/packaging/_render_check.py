"""The proof behind the exported runtime's renderer: for every input the workspace knows (the
probe, each demo and each evalset case), it must render a prompt's user template exactly as
jinja2 does, or the export is refused. The system message and demos need no proof: they are
rendered by jinja2 at export and shipped as messages."""

from __future__ import annotations

import keyword
import re
from typing import TYPE_CHECKING, Any

from promptgov._portable import _render as runtime  # the exported package's _render.py
from promptgov._portable._render import UndefinedVariable
from promptgov.errors import WorkspaceError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from promptgov.workspace import Workspace
    from promptgov.workspace._prompt import PromptVersion

FIX = ("keep the user template to {{ name }} and {{ name.attr }}: loops, conditions and "
       "filters belong in the system message, which is rendered at export")


def check_user_template(ws: Workspace, pv: PromptVersion) -> None:
    """Raise :class:`WorkspaceError` unless the runtime renders ``pv.user`` as jinja2 does."""
    file = f"prompts/{pv.name}/v{pv.version}.yaml"
    bad = runtime.unsupported(pv.user)
    if bad:
        raise WorkspaceError(file, f"{pv.ref}: the user template uses {bad!r}, which an exported "
                             "package does not render", FIX)
    for v in runtime.variables(pv.user):
        if keyword.iskeyword(v):
            raise WorkspaceError(file, f"{pv.ref}: template variable {v!r} is a Python keyword "
                                 "and cannot be an argument of the exported function",
                                 "rename the variable in a new prompt version")
    for where, inputs in _inputs(ws, pv):
        want, got = _jinja(pv, inputs), _runtime(pv.user, inputs)
        if want != got:
            raise WorkspaceError(file, f"{pv.ref}: the exported runtime renders the user template "
                                 f"differently from jinja2 for {where}: jinja2 {_clip(want)}, "
                                 f"runtime {_clip(got)}", FIX)


def template_attributes(template: str) -> dict[str, list[str]]:
    """Each top-level variable with the attributes the template reads from it, in order."""
    out: dict[str, list[str]] = {v: [] for v in runtime.variables(template)}
    for m in re.finditer(r"\{\{\s*([A-Za-z_]\w*)\.([A-Za-z_]\w*)", template):
        if m.group(2) not in out[m.group(1)]:
            out[m.group(1)].append(m.group(2))
    return out


def _inputs(ws: Workspace, pv: PromptVersion) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "the probe input", pv.probe_input
    for i, d in enumerate(pv.demos):
        yield f"demos[{i}]", d.input
    if pv.evalset:
        es = ws.evalset(pv.evalset)
        for c in es.cases:
            yield f"evalset {es.ref} case {c.id}", c.input


def _jinja(pv: PromptVersion, inputs: dict[str, Any]) -> str | None:
    try:
        return pv.messages(inputs)[-1]["content"]
    except WorkspaceError:  # RenderError: a variable the input does not supply
        return None


def _runtime(template: str, inputs: dict[str, Any]) -> str | None:
    try:
        return runtime.render(template, inputs)
    except UndefinedVariable:
        return None


def _clip(s: str | None, n: int = 60) -> str:
    if s is None:
        return "fails (undefined variable)"
    return repr(s if len(s) <= n else s[:n] + "…")

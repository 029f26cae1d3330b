"""Authoring: working, commented stubs for a new schema, prompt or evalset, and the next version
of a prompt (``promptgov new ...``, ``pg.new_schema`` ...).

Every stub loads, locks and evaluates as written (with the offline model), so a new use case
starts from something that runs; the comments say what to change. Nothing is ever written over
an existing file: a new version is a new file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from promptgov._portable._jsonschema import enum_values
from promptgov.errors import WorkspaceError

if TYPE_CHECKING:
    from promptgov.workspace._workspace import Workspace

Kind = Literal["extraction", "classification", "draft"]
KINDS = ("extraction", "classification", "draft")
_NAME = re.compile(r"[a-z][a-z0-9_]*")


def _check_name(name: str, what: str) -> None:
    if not _NAME.fullmatch(name):
        raise WorkspaceError(f"{what}/{name}", f"{name!r} is not a valid name",
                             "use lower-case letters, digits and _ (starting with a letter), "
                             "e.g. hotel_booking")
    if what == "schemas" and not name.isidentifier():
        raise WorkspaceError(f"schemas/{name}.py", f"{name!r} is not a Python module name",
                             "use letters, digits and _")


def _kind(kind: str) -> None:
    if kind not in KINDS:
        raise WorkspaceError("--kind", f"unknown kind {kind!r}", f"use one of {', '.join(KINDS)}")


def _write_new(path: Path, text: str, root: Path) -> Path:
    """Write ``text`` to a file that must not exist yet (exclusive create: no race either)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        raise WorkspaceError(path.relative_to(root), "already exists",
                             "pick another name, or `promptgov new version` for a prompt") from None
    return path


def _pascal(name: str) -> str:
    return "".join(p.capitalize() for p in name.split("_"))


# -- schema ---------------------------------------------------------------------------------

_SCHEMA = {
    "extraction": '''"""Output contract of {name}: the fields a model extracts from a message.

A contract is a pydantic model with ``schema_id = "name@version"``. Change a field in a way that
breaks consumers (remove it, narrow its type, add a required field) and `promptgov check` asks
for a new schema version: copy the class, bump schema_id to "{name}@2".
"""

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

# The intents a message may express: replace with your own.
Intent = Literal["book", "cancel", "change", "ask_price"]


class {cls}(BaseModel):
    """What one message asks for and the values it mentions."""

    schema_id: ClassVar[str] = "{name}@1"
    model_config = ConfigDict(extra="forbid")

    # A list of enum values is scored as a set (order does not matter).
    intents: list[Intent] = Field(description="Every intent the message expresses.")
    # Nullable fields: "not mentioned" is an explicit null. Descriptions guide the model (and
    # the offline baseline), so say what a value looks like.
    date: str | None = Field(description="Date mentioned, ISO YYYY-MM-DD.")
    people: int | None = Field(description="Number of people mentioned.")
''',
    "classification": '''"""Output contract of {name}: one label and how sure the model is.

A contract is a pydantic model with ``schema_id = "name@version"``; the routing bands of
governance/policy.toml act on ``confidence``.
"""

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

# The labels: keep them equal to the prompt's `labels:` keys.
Label = Literal["billing", "technical", "other"]


class {cls}(BaseModel):
    """The label of a message and the probability that it is right."""

    schema_id: ClassVar[str] = "{name}@1"
    model_config = ConfigDict(extra="forbid")

    label: Label = Field(description="The category the message belongs to.")
    confidence: float = Field(ge=0, le=1, description="Probability that `label` is right.")
''',
}


def new_schema(name: str, *, kind: Kind = "extraction",
               workspace: Workspace | str | os.PathLike[str] | None = None) -> Path:
    """Write ``schemas/<name>.py``: a working stub of contract ``<name>@1`` for ``kind``."""
    ws = _ws(workspace)
    _check_name(name, "schemas")
    _kind(kind)
    if kind == "draft":
        raise WorkspaceError(f"schemas/{name}.py", "a draft prompt answers plain text and has "
                             "no response schema", "create the prompt: promptgov new prompt "
                             f"{name} --kind draft")
    return _write_new(ws.root / "schemas" / f"{name}.py",
                      _SCHEMA[kind].format(name=name, cls=_pascal(name)), ws.root)


# -- prompt ---------------------------------------------------------------------------------

def _prompt_text(name: str, kind: str, schema: str | None, labels: list[str]) -> str:
    head = f"""# A prompt version: immutable once locked (`promptgov lock`); edit by `promptgov new
# version {name}`, which copies this file to the next number. Templates are jinja2 (sandboxed,
# strict: a variable the case input does not supply is an error).
name: {name}
version: 1
kind: {kind}
description: "{kind.capitalize()} prompt for {name}: say what it is for."
"""
    if schema:
        head += f"response_schema: {schema}   # schemas/*.py declaring schema_id = \"{schema}\"\n"
    head += f"""evalset: {name}                 # evalsets/{name}/ (scored on by default)
model: {{id: local/knn, temperature: 0.0, max_tokens: 256}}
"""
    if kind == "classification":
        head += "labels:                          # each label with a one-line description\n"
        head += "".join(f"  {lab}: Messages about {lab.replace('_', ' ')}.\n" for lab in labels)
        system = """system: |-
  You sort customer messages. Pick the ONE label below that fits best and answer with JSON
  only: {"label": <label>, "confidence": <0-1, the probability you are right>}.
  {% for name, description in labels.items() %}- {{ name }}: {{ description }}
  {% endfor %}"""
        demo = f"""demos:                           # few-shot examples: input, then the answer
  - input: {{text: "A message that belongs to {labels[0]}."}}
    output: {{label: {labels[0]}, confidence: 1.0}}
"""
    elif kind == "extraction":
        system = """system: |-
  Extract structured data from a customer's message. Answer with JSON only, every field
  present; use null for anything not mentioned."""
        demo = """demos:                           # few-shot examples: input, then the answer
  - input: {text: "I want to book for 2 people on 2025-06-01."}
    output: {intents: [book], date: "2025-06-01", people: 2}
"""
    else:
        system = """system: |-
  Write a short, friendly reply to the customer using ONLY the facts given. Never state a
  number, amount, date or status that is not in the facts."""
        demo = """demos:                           # few-shot examples: input, then the answer
  - input: {facts: {customer_name: Ada, order_id: A-1, order_state: shipped}}
    output: "Hello Ada, your order A-1 has shipped."
"""
    # The user template is filled per case; an exported package fills it with a renderer that
    # knows `{{ name }}` and `{{ name.attr }}` only, so keep loops in the system message.
    user = ('user: |-\n  Customer message:\n  {{ text }}' if kind != "draft" else
            'user: |-\n  Facts:\n  - customer name: {{ facts.customer_name }}\n'
            '  - order id: {{ facts.order_id }}\n  - order state: {{ facts.order_state }}\n'
            '# The input the render fingerprint is taken with (facts is an object here):\n'
            'probe: {facts: {customer_name: Probe, order_id: A-0, order_state: probe}}')
    return head + system + "\n" + demo + user + "\n"


def new_prompt(name: str, *, kind: Kind = "extraction", schema: str | None = None,
               workspace: Workspace | str | os.PathLike[str] | None = None) -> Path:
    """Write ``prompts/<name>/v1.yaml``: a working prompt of ``kind`` wired to ``schema``
    (default ``<name>@1``; none for a draft) and to evalset ``<name>``."""
    ws = _ws(workspace)
    _check_name(name, "prompts")
    _kind(kind)
    if (ws.root / "prompts" / name).is_dir():
        raise WorkspaceError(f"prompts/{name}", "already exists",
                             f"promptgov new version {name} (a prompt's next version)")
    schema = None if kind == "draft" else (schema or f"{name}@1")
    labels = ["billing", "technical", "other"]
    if kind == "classification" and schema in ws.schemas:
        js = ws.schemas[schema].json_schema
        labels = enum_values(js.get("properties", {}).get("label", {}), js) or labels
    return _write_new(ws.root / "prompts" / name / "v1.yaml",
                      _prompt_text(name, kind, schema, labels), ws.root)


def new_version(prompt: str, *,
                workspace: Workspace | str | os.PathLike[str] | None = None) -> Path:
    """Copy the latest version of ``prompt`` to the next number (``v3.yaml`` → ``v4.yaml``,
    ``version: 4``), comments and layout kept: edit the copy, lock it, evaluate it."""
    ws = _ws(workspace)
    versions = ws.versions(prompt)
    if not versions:
        from difflib import get_close_matches

        close = get_close_matches(prompt, ws.prompt_names(), n=1)
        raise WorkspaceError(f"prompts/{prompt}", f"no prompt named {prompt!r}",
                             f"did you mean {close[0]}?" if close else
                             f"create it: promptgov new prompt {prompt} --kind extraction")
    last = versions[-1]
    src = ws.prompt_files()[(prompt, last)]
    text = src.read_text(encoding="utf-8")
    new, n = re.subn(rf"(?m)^version:\s*{last}\s*(#.*)?$", f"version: {last + 1}", text, count=1)
    if n != 1:
        raise WorkspaceError(ws.relpath(src), f"no top-level `version: {last}` line to bump",
                             "write the version as `version: N` on its own line")
    return _write_new(src.with_name(f"v{last + 1}.yaml"), new, ws.root)


# -- evalset --------------------------------------------------------------------------------

def new_evalset(name: str, *, source: str = "TODO: where the cases come from",
                license: str = "TODO: the cases' license",
                workspace: Workspace | str | os.PathLike[str] | None = None) -> Path:
    """Write ``evalsets/<name>/manifest.yaml`` (every field, commented) and an empty
    ``cases.jsonl``; fill it with ``promptgov evalset import`` or by hand."""
    ws = _ws(workspace)
    _check_name(name, "evalsets")
    d = ws.root / "evalsets" / name
    manifest = f"""# An evalset: this manifest plus cases.jsonl, one JSON object a line:
#   {{"id": "unique id", "input": {{<template variables>}}, "expected": <answer>}}
# `expected` is validated against the response schema of the prompts scored on this evalset.
# Changing a locked evalset needs a new `version` (`promptgov evalset import` bumps it).
name: {name}              # must equal the folder name
version: 1
description: "What the cases are and how they were chosen."
source: "{source}"
license: "{license}"
split: test               # test | dev | train (train cases may be demos, test cases never)
count: 0                  # number of lines of cases.jsonl; `check` verifies it
"""
    if d.exists():
        raise WorkspaceError(f"evalsets/{name}", "already exists",
                             f"import a new version: promptgov evalset import FILE --name {name}")
    _write_new(d / "manifest.yaml", manifest, ws.root)
    _write_new(d / "cases.jsonl", "", ws.root)
    return d


def _ws(workspace: Workspace | str | os.PathLike[str] | None) -> Workspace:
    from promptgov.workspace import Workspace

    return Workspace.of(workspace)

"""What the package carries, loaded and verified on import.

``manifest.json`` records, at export, the sha256 of every file of the package and the content
hashes of what was approved: each prompt version's content hash and render fingerprint and each
schema's hash, the very values of the workspace's ``governance/lock.json``. :func:`load` checks
every file against the manifest first (a changed byte names its file), then re-derives those
content hashes from the embedded data, and raises :class:`IntegrityError` on any difference,
before a line of the embedded schema code runs.

Import time is a budget here (a service imports this on start-up): no dataclasses or pathlib
(``inspect`` and ``urllib`` come with them), only ``json``, ``hashlib``, ``os`` and ``typing``.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from typing import TYPE_CHECKING, Any, NamedTuple

from ._errors import IntegrityError, RenderError
from ._hashing import bytes_hash, content_hash
from ._render import UndefinedVariable, render

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Literal

    from pydantic import BaseModel

    Action = Literal["auto_process", "queue_for_human", "legacy_fallback"]

Message = dict[str, str]
MANIFEST = "manifest.json"


class Routing(NamedTuple):
    """The approved confidence bands of triage (``[routing]`` of governance/policy.toml)."""

    auto: float
    review: float

    def route(self, confidence: float | None) -> Action:
        """auto_process at ``confidence >= auto``, queue_for_human at ``>= review``, else (and
        without an answer) legacy_fallback: the same rule as promptgov's evaluations."""
        if confidence is not None and confidence >= self.auto:
            return "auto_process"
        if confidence is not None and confidence >= self.review:
            return "queue_for_human"
        return "legacy_fallback"


class Retry(NamedTuple):
    """Bounded retries (``[retry]`` of governance/policy.toml)."""

    max_retries: int
    max_reasks: int
    backoff_base_s: float
    backoff_max_s: float
    timeout_s: float


class Prompt(NamedTuple):
    """One approved prompt version: its fixed messages (system and few-shot demos, rendered at
    export) and the user template rendered per call."""

    ref: str
    kind: str
    schema: str | None
    model: dict[str, Any]
    """The model defaults it was written for: ``id``, ``temperature``, ``max_tokens``."""
    fixed: tuple[Message, ...]
    user: str

    def messages(self, inputs: Mapping[str, Any]) -> list[Message]:
        if "today" not in inputs and _TODAY.search(self.user):  # relative dates: the call's day
            inputs = {**inputs, "today": datetime.date.today().isoformat()}
        try:
            user = render(self.user, inputs)
        except UndefinedVariable as e:
            raise RenderError(str(e)) from None
        return [*self.fixed, {"role": "user", "content": user}]


_TODAY = re.compile(r"\{\{-?\s*today\b")
"""A user template that uses ``today``: the runtime fills it with the date of the call."""


class Bundle:
    """The verified content of an installed package."""

    def __init__(self, root: str, package: str, manifest: dict[str, Any],
                 prompts: dict[str, Prompt], json_schemas: dict[str, dict[str, Any]],
                 routing: Routing, retry: Retry):
        self.root, self.package, self.manifest = root, package, manifest
        self.prompts, self.routing, self.retry = prompts, routing, retry
        self.json_schemas = json_schemas
        """Each schema's JSON Schema as approved: the response format sent to the model."""
        self._classes: dict[str, type[BaseModel]] = {}

    @property
    def where(self) -> str:
        return f"{self.manifest['distribution']}=={self.manifest['version']}"

    def schema_class(self, sid: str) -> type[BaseModel]:
        """The pydantic model of schema ``sid``, imported on first use (importing the package
        imports no pydantic), after its file is checked once more."""
        cls = self._classes.get(sid)
        if cls is None:
            import importlib

            s = self.manifest["schemas"][sid]
            _checked(self.root, s["module"], self.manifest["files"][s["module"]], self.where)
            stem = s["module"].rsplit("/", 1)[-1].removesuffix(".py")
            module = importlib.import_module(f"{self.package}.schemas.{stem}")
            cls = self._classes[sid] = getattr(module, s["class"])
        return cls


def load(root: str, package: str) -> Bundle:
    """Read and verify the package in folder ``root``; :class:`IntegrityError` on a mismatch."""
    try:
        with open(os.path.join(root, MANIFEST), "rb") as f:
            manifest = json.loads(f.read())
    except (OSError, ValueError) as e:
        raise IntegrityError(f"{package}: cannot read {MANIFEST}: {e}") from None
    where = f"{manifest.get('distribution', package)}=={manifest.get('version', '?')}"
    data = {rel: _checked(root, rel, want, where) for rel, want in manifest["files"].items()}

    def expect(what: str, rel: str, want: str, actual: str) -> None:
        if actual != want:
            raise IntegrityError(f"{where}: {package}/{rel}: {what} is {actual}, manifest.json "
                                 f"expects {want} ({_FIX.format(where=where)})")

    prompts = {}
    for ref, p in manifest["prompts"].items():
        doc = json.loads(data[p["file"]])
        c = doc["content"]
        expect(f"the content hash of {ref}", p["file"], p["content_hash"], content_hash(c))
        pr = Prompt(ref, c["kind"], c.get("response_schema"), c["model"],
                    tuple(doc["fixed_messages"]), c["user"])
        expect(f"the render fingerprint of {ref}", p["file"], p["render_fingerprint"],
               content_hash(pr.messages(doc["probe_input"])))
        prompts[ref] = pr
    schemas = {}
    for sid, s in manifest["schemas"].items():
        schemas[sid] = json.loads(data[s["json_schema"]])
        expect(f"the hash of schema {sid}", s["json_schema"], s["hash"],
               content_hash(schemas[sid]))
    policy = json.loads(data[manifest["policy"]["file"]])
    expect("the policy hash", manifest["policy"]["file"], manifest["policy"]["hash"],
           content_hash(policy))
    return Bundle(root, package, manifest, prompts, schemas, Routing(**policy["routing"]),
                  Retry(**policy["retry"]))


_FIX = "fix: reinstall {where}; the installed package was modified, and a change to a prompt " \
       "is a new version in the workspace, approved and exported again"


def _checked(root: str, rel: str, want: str, where: str) -> bytes:
    name = f"{os.path.basename(root)}/{rel}"
    try:
        with open(os.path.join(root, rel), "rb") as f:
            data = f.read()
    except OSError:
        raise IntegrityError(f"{where}: {name} is missing ({_FIX.format(where=where)})"
                             ) from None
    actual = bytes_hash(data)
    if actual != want:
        raise IntegrityError(f"{where}: {name} was modified: sha256 is {actual}, manifest.json "
                             f"expects {want} ({_FIX.format(where=where)})")
    return data

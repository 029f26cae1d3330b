"""One immutable prompt version, read from ``prompts/<name>/v<N>.yaml``, and its rendering.

The file is validated by :class:`PromptVersion` (unknown keys are errors, so a typo fails
loudly). Templates are jinja2 in strict mode: a variable the input does not supply is an error,
never an empty string.

A prompt file is data, not code (principle 10): a reviewer reads it as text. Templates therefore
render in jinja2's immutable sandbox: no attribute starting with ``_``, no call that mutates, no
``**``, and no ``*`` that builds a string or list over a million items. Anything else is a
one-line :class:`RenderError` naming the file and the field, raised before anything runs.
"""

from __future__ import annotations

import json
import re
import threading
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from promptgov._version import RENDER_VERSION  # noqa: F401  (re-exported)
from promptgov.errors import WorkspaceError
from promptgov.hashing import bytes_hash, content_hash
from promptgov.workspace._provenance import Provenance
from promptgov.workspace._refs import parse_ref
from promptgov.workspace._yamlio import pydantic_error, read_yaml

if TYPE_CHECKING:  # jinja2 loads on first render, not with the module
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

Kind = Literal["extraction", "classification", "draft"]
Message = dict[str, str]


class ModelDefaults(BaseModel):
    """The model a prompt version is written for; `evaluate(model=...)` may override it."""

    model_config = ConfigDict(extra="forbid")
    id: str = "local/knn"
    """LiteLLM model id (``openai/gpt-4o-mini``), ``local/knn``, or ``replay:<cassette>``."""
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int = Field(default=512, ge=1)


class Demo(BaseModel):
    """A few-shot example: rendered as a user message (through the user template) followed by
    the assistant's answer (the output as JSON, or text for a draft)."""

    model_config = ConfigDict(extra="forbid")
    input: dict[str, Any]
    output: dict[str, Any] | str


class PromptVersion(BaseModel):
    """One prompt version as written in its YAML file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z][a-z0-9_\-]*$")
    version: int = Field(ge=1)
    kind: Kind
    """extraction (text → object), classification (text → label + confidence), draft (→ text)."""
    description: str = ""
    response_schema: str | None = None
    """``schema_name@version`` of the output contract; none for a plain-text draft."""
    evalset: str | None = None
    """The evalset this prompt is scored on by default (``name`` or ``name@version``)."""
    model: ModelDefaults = ModelDefaults()
    labels: dict[str, str] | None = None
    """classification only: each label with a one-line description."""
    system: str
    demos: list[Demo] = []
    user: str
    probe: dict[str, Any] | None = None
    """Input rendered for the render fingerprint; defaults to a string per template variable."""
    provenance: Provenance | None = None
    """Where a generated version came from (``promptgov optimize``): parent, optimizer, data."""

    @model_validator(mode="after")
    def _consistent(self) -> PromptVersion:
        if self.kind == "classification" and not self.labels:
            raise ValueError("a classification prompt needs `labels` (label: description)")
        if self.kind != "draft" and not self.response_schema:
            raise ValueError(f"a {self.kind} prompt needs `response_schema` (name@version)")
        for ref in filter(None, (self.response_schema, self.evalset)):
            parse_ref(ref)
        return self

    # -- identity ---------------------------------------------------------------------------

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # a version without provenance dumps (and so hashes, here and in an exported package)
        # as it did before the field existed
        d: dict[str, Any] = handler(self)
        if d.get("provenance") is None:
            d.pop("provenance", None)
        return d

    def _content(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @cached_property
    def content_hash(self) -> str:
        """sha256 of the canonical content: YAML layout and key order do not matter."""
        return content_hash(self._content())

    @cached_property
    def ordered_hash(self) -> str:
        """sha256 of the content *with* its key order, which (with the tool versions) is all
        rendering depends on: equal to the locked one, the locked render fingerprint holds
        without rendering (``check`` on a fresh clone skips compiling the templates)."""
        text = json.dumps(self._content(), separators=(",", ":"),
                          ensure_ascii=False, allow_nan=False)
        return bytes_hash(text.encode("utf-8"))

    @cached_property
    def render_fingerprint(self) -> str:
        """sha256 of the messages rendered for the probe input."""
        return content_hash(self.render(self.probe_input))

    @property
    def probe_input(self) -> dict[str, Any]:
        if self.probe is not None:
            return self.probe
        return {v: f"<probe {v}>" for v in self.input_variables}

    @property
    def input_variables(self) -> list[str]:
        from jinja2 import meta

        return sorted(meta.find_undeclared_variables(_env().parse(self.user)))

    # -- rendering --------------------------------------------------------------------------

    @cached_property
    def _fixed_messages(self) -> tuple[Message, ...]:
        """System message and demos: the same for every case, so rendered once."""
        ctx = {"labels": self.labels or {}, "name": self.name}
        out = [{"role": "system", "content": _render(self.system, ctx, self, "system")}]
        for i, d in enumerate(self.demos):
            out.append({"role": "user", "content": _render(self.user, d.input, self,
                                                           f"demos[{i}].input")})
            answer = d.output if isinstance(d.output, str) else json.dumps(
                d.output, ensure_ascii=False)
            out.append({"role": "assistant", "content": answer})
        return tuple(out)

    @cached_property
    def prefix_hash(self) -> str:
        """Hash of the fixed messages (system + demos): part of every case's cache key."""
        return content_hash(list(self._fixed_messages))

    @property
    def prefix_len(self) -> int:
        return len(self._fixed_messages)

    def render(self, inputs: dict[str, Any]) -> list[Message]:
        """The chat messages sent to the model for one case's ``inputs`` (fresh copies)."""
        return [*map(dict, self.messages(inputs))]

    def messages(self, inputs: dict[str, Any]) -> tuple[Message, ...]:
        """As :meth:`render`, but the system and demo messages are shared between calls, not
        copied (a prompt may hold hundreds of demos): the engine's read-only hot path."""
        return (*self._fixed_messages,
                {"role": "user", "content": _render(self.user, inputs, self, "user")})

    # -- loading ----------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: Path, *, render: bool = True) -> PromptVersion:
        """The version in ``path``, validated; with ``render`` (the default) its templates are
        compiled and the system and demo messages rendered, so a broken template fails here."""
        data = read_yaml(path)
        try:
            pv = cls.model_validate(data)
        except ValidationError as e:
            raise pydantic_error(path, e) from None
        m = re.fullmatch(r"v(\d+)\.ya?ml", path.name)
        if path.parent.name != pv.name or not m or int(m.group(1)) != pv.version:
            raise WorkspaceError(path, f"declares {pv.ref} but lives at {path.parent.name}/"
                                 f"{path.name}", f"name the file prompts/{pv.name}/v{pv.version}"
                                 ".yaml, or correct `name`/`version`")
        if render:
            pv.check_templates(path)
        return pv

    def check_templates(self, path: Path) -> None:
        """Compile the templates and render the fixed messages; a problem is a WorkspaceError
        naming ``path``."""
        import jinja2

        try:
            self._fixed_messages  # noqa: B018 — fail on a broken template at load, not mid-run
            _env().parse(self.user)
        except RenderError as e:
            raise WorkspaceError(path, e.problem, e.fix) from None
        except jinja2.TemplateSyntaxError as e:
            raise WorkspaceError(path, f"{self.ref} user: template syntax error line {e.lineno}: "
                                 f"{e.message}", "fix the template") from None


class RenderError(WorkspaceError):
    """A template failed to render: syntax error, a variable the input does not supply, or an
    expression the sandbox refuses."""

    def __init__(self, prompt: PromptVersion, where: str, problem: str,
                 fix: str = "supply the variable in the case input or correct the template"):
        super().__init__(f"prompts/{prompt.name}/v{prompt.version}.yaml",
                         f"{prompt.ref} {where}: {problem}", fix)


_ENV: ImmutableSandboxedEnvironment | None = None
_MAX_REPEAT = 1_000_000
"""Longest string or list a template may build with ``*`` (a memory bomb otherwise)."""


def _env() -> ImmutableSandboxedEnvironment:
    global _ENV
    if _ENV is None:
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        class Sandbox(ImmutableSandboxedEnvironment):
            # Intercepting the operators also stops jinja2 from folding `9**9**9` at compile time.
            intercepted_binops = frozenset({"*", "**"})

            def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any,
                           right: Any) -> Any:
                if operator == "**":
                    raise jinja2.exceptions.SecurityError("the ** operator is not allowed")
                seq, n = (left, right) if isinstance(right, int) else (right, left)
                if isinstance(seq, str | list | tuple) and isinstance(n, int) \
                        and len(seq) * n > _MAX_REPEAT:
                    raise jinja2.exceptions.SecurityError(
                        f"`*` would build {len(seq) * n:,} items (limit {_MAX_REPEAT:,})")
                return super().call_binop(context, operator, left, right)

        _ENV = Sandbox(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                       autoescape=False)
    return _ENV


_TEMPLATES: dict[str, jinja2.Template] = {}
_COMPILE_LOCK = threading.Lock()


def _render(source: str, ctx: dict[str, Any], prompt: PromptVersion, where: str) -> str:
    import jinja2

    try:
        tpl = _TEMPLATES.get(source)
        if tpl is None:
            with _COMPILE_LOCK:  # compiled once; CPython < 3.11.8 breaks parallel compile()
                tpl = _TEMPLATES.get(source) or _env().from_string(source)
                _TEMPLATES[source] = tpl
        return tpl.render(ctx)
    except jinja2.TemplateSyntaxError as e:
        raise RenderError(prompt, where,
                          f"template syntax error line {e.lineno}: {e.message}") from None
    except jinja2.UndefinedError as e:
        raise RenderError(prompt, where, f"undefined variable: {e.message}") from None
    except jinja2.exceptions.SecurityError as e:
        raise RenderError(prompt, where, f"refused by the template sandbox: {e}",
                          "templates hold text, variables, filters, loops and conditions: remove "
                          "the expression (prompt files are data and never run code)") from None
    except (jinja2.TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as e:
        raise RenderError(prompt, where, f"template error: {type(e).__name__}: {e}",
                          "correct the template") from None

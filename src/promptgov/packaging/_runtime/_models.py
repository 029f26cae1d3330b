"""The model the package calls, chosen by the caller with :func:`configure`.

* a LiteLLM model id (``openai/gpt-4o-mini``, ``ollama_chat/llama3.2`` with ``api_base``...):
  called with ``litellm.completion`` (the ``providers`` extra);
* ``local/knn``: promptgov's offline baseline, vendored into the package (the ``offline``
  extra installs wordllama and numpy; promptgov is not needed), the model the example prompts
  were approved with;
* any object with ``complete(messages, response_schema) -> str``, or such a function.

Nothing is imported before the first call: LiteLLM and promptgov load only when a model of theirs
is used. Failures become :class:`ModelError` with the ``kind`` promptgov records (rate_limit,
timeout, server_error, refused, bad_request), so the engine knows what to retry.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any, NamedTuple

from ._errors import ConfigurationError, ModelError
from ._usage import active, note

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Protocol

    Messages = Sequence[dict[str, str]]

    class ModelLike(Protocol):
        def complete(self, messages: Messages, response_schema: dict[str, Any] | None
                     ) -> str: ...

    ModelSpec = str | ModelLike | Callable[[Messages, dict[str, Any] | None], str]
    Adapter = Callable[[Messages, "CallOptions"], str]


class CallOptions(NamedTuple):
    """What a call needs besides the messages (from the prompt's model defaults and policy)."""

    response_schema: dict[str, Any] | None
    schema_name: str | None
    temperature: float
    max_tokens: int
    timeout_s: float
    prefix_len: int
    label: str

    def request(self, request_cls: Any, messages: Messages) -> Any:
        """A workbench model ``Request`` (``request_cls``) for ``messages`` with these options."""
        return request_cls(messages=tuple(messages), response_schema=self.response_schema,
                           schema_name=self.schema_name, temperature=self.temperature,
                           max_tokens=self.max_tokens, timeout_s=self.timeout_s,
                           prefix_len=self.prefix_len, label=self.label)


_configured: Adapter | None = None
_defaults: dict[str, Adapter] = {}


def configure(model: ModelSpec | None = None, *, api_base: str | None = None,
              api_key: str | None = None, **params: Any) -> None:
    """Use ``model`` for every call of this package (``None``: each prompt's approved default).

    Args:
        model: a LiteLLM model id, ``local/knn``, an object with
            ``complete(messages, response_schema) -> str``, or such a function.
        api_base: the provider's base URL (LiteLLM ids only), e.g. ``http://localhost:11434``.
        api_key: the provider's key (LiteLLM ids only; default: LiteLLM reads the environment).
        params: further ``litellm.completion`` arguments.

    Example:
        >>> configure(model="openai/gpt-4o-mini")                       # doctest: +SKIP
        >>> configure(model=lambda messages, schema: '{"label": ...}')  # doctest: +SKIP
    """
    global _configured
    _configured = None if model is None else _adapter(model, api_base, api_key, params)


def current(default: str) -> Adapter:
    """The configured model, else the prompt's default model ``default``."""
    if _configured is not None:
        return _configured
    if default not in _defaults:  # two threads may both build it: harmless, both are equal
        _defaults[default] = _adapter(default, None, None, {})
    return _defaults[default]


def _adapter(spec: Any, api_base: str | None, api_key: str | None,
             params: dict[str, Any]) -> Adapter:
    if isinstance(spec, str):
        if spec.startswith("local/"):
            from ._offline import Offline  # the vendored baseline: the [offline] extra

            return Offline(spec)
        if not re.fullmatch(r"[\w.\-]+/\S+", spec):
            raise ConfigurationError(f"model {spec!r}: write a LiteLLM id PROVIDER/MODEL "
                                     "(openai/gpt-4o-mini) or local/knn")
        return _LiteLLM(spec, api_base, api_key, params)
    if api_base or api_key or params:
        raise ConfigurationError("api_base, api_key and other options apply to LiteLLM ids only")
    if type(spec).__module__.startswith("promptgov.") and hasattr(spec, "id"):
        return _Promptgov(spec)
    # Your model gets copies: the fixed messages are shared by every call of the package.
    if callable(getattr(spec, "complete", None)):
        return lambda messages, o: spec.complete([dict(m) for m in messages], o.response_schema)
    if callable(spec):
        return lambda messages, o: spec([dict(m) for m in messages], o.response_schema)
    raise ConfigurationError(f"model {spec!r}: pass a model id, an object with "
                             "complete(messages, response_schema) -> str, or such a function")


class _Promptgov:
    """promptgov's own models (``local/knn``): the exact path of a workbench evaluation."""

    def __init__(self, spec: Any):
        try:
            from promptgov.errors import ModelError as PgModelError
            from promptgov.model._base import Request
            from promptgov.model._registry import get_model
        except ImportError:
            raise ConfigurationError(f"model {spec!r} is promptgov's offline baseline and "
                                     "promptgov is not installed (fix: install this package "
                                     "with its [offline] extra)") from None
        self._request, self._error = Request, PgModelError
        try:
            self.model = get_model(spec)
        except ValueError as e:
            raise ConfigurationError(str(e)) from None

    def __call__(self, messages: Messages, o: CallOptions) -> str:
        req = o.request(self._request, messages)
        try:
            c = self.model.complete(req)
        except self._error as e:
            raise ModelError(str(e), kind=e.kind, transient=e.transient,
                             retry_after=getattr(e, "retry_after", None)) from e
        note(c.model, c.usage.prompt_tokens, c.usage.completion_tokens, c.cost_usd)  # job traces
        return c.text


class _LiteLLM:
    """A provider through ``litellm.completion``; LiteLLM's own retries are off (the engine
    retries by the approved policy)."""

    def __init__(self, model: str, api_base: str | None, api_key: str | None,
                 params: dict[str, Any]):
        self.id, self.api_base, self.api_key, self.params = model, api_base, api_key, params

    def __call__(self, messages: Messages, o: CallOptions) -> str:
        # LiteLLM fetches its price map from the internet at import unless told otherwise: a
        # service should not wait on that (promptgov's own provider path does the same).
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        try:
            import litellm
        except ImportError:
            raise ConfigurationError(f"model {self.id!r} needs LiteLLM, which is not installed "
                                     "(fix: install this package with its [providers] extra)"
                                     ) from None
        kw: dict[str, Any] = {"temperature": o.temperature, "max_tokens": o.max_tokens,
                              "timeout": o.timeout_s, "num_retries": 0, "max_retries": 0,
                              **self.params}
        if self.api_base:
            kw["api_base"] = self.api_base
        if self.api_key:
            kw["api_key"] = self.api_key
        if o.response_schema is not None:
            name = re.sub(r"[^A-Za-z0-9_-]", "_", o.schema_name or "output")[:64]
            kw["response_format"] = {"type": "json_schema", "json_schema": {
                "name": name, "schema": o.response_schema, "strict": False}}
        try:
            r = litellm.completion(model=self.id, messages=[dict(m) for m in messages], **kw)
        except Exception as e:  # noqa: BLE001 — every provider failure becomes a typed ModelError
            raise _error(e, f"{self.id} ({o.label})", self.api_key) from e
        _note_usage(litellm, r, self.id)
        choice = r.choices[0] if r.choices else None
        if choice is None:
            raise ModelError(f"{self.id} ({o.label}): no answer", kind="server_error",
                             transient=True)
        refusal = getattr(choice.message, "refusal", None)
        if refusal or choice.finish_reason == "content_filter":
            raise ModelError(f"{self.id} ({o.label}): refused: {refusal or 'content_filter'}",
                             kind="refused")
        return choice.message.content or ""


def _note_usage(litellm: Any, r: Any, model: str) -> None:
    """Tokens and cost of an answered call, for the trace of the job making it (if any)."""
    if not active():
        return
    usage = getattr(r, "usage", None)
    try:
        cost = float(litellm.completion_cost(completion_response=r))
    except Exception:  # noqa: BLE001 — a model missing from LiteLLM's price map: cost unknown
        cost = None
    note(model, getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None),
         cost)


_KINDS = (("RateLimitError", "rate_limit", True), ("Timeout", "timeout", True),
          ("ContentPolicyViolationError", "refused", False),
          ("InternalServerError", "server_error", True),
          ("ServiceUnavailableError", "server_error", True),
          ("BadGatewayError", "server_error", True),
          ("APIConnectionError", "server_error", True))


def _error(e: Exception, where: str, secret: str | None) -> ModelError:
    names = {c.__name__ for c in type(e).__mro__}
    status = getattr(e, "status_code", None)
    detail = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
    if secret:
        detail = detail.replace(secret, "***")
    message = f"{where}: {type(e).__name__}" + (f" HTTP {status}" if status else "") \
        + f": {detail}"
    for name, kind, transient in _KINDS:
        if name in names:
            return ModelError(message, kind=kind, transient=transient,
                              retry_after=_retry_after(e))
    if isinstance(status, int) and status == 429:
        return ModelError(message, kind="rate_limit", transient=True, retry_after=_retry_after(e))
    if isinstance(status, int) and status >= 500:
        return ModelError(message, kind="server_error", transient=True)
    if isinstance(status, int) and 400 <= status < 500 or isinstance(e, ValueError | TypeError):
        return ModelError(message, kind="bad_request")
    return ModelError(message)


def _retry_after(e: Exception) -> float | None:
    headers = getattr(getattr(e, "response", None), "headers", None) or {}
    try:
        return float(headers.get("retry-after"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None

"""Real providers through ``dspy.LM`` (and, behind it, LiteLLM).

Version pin: promptgov requires ``dspy>=3.4,<3.5`` on purpose. This adapter calls the LM with
OpenAI-style ``messages=[...]`` dictionaries (``lm.forward(messages=...)``), which dspy 3.4
deprecates and dspy 3.5 removes in favour of ``dspy.lm15.Request`` objects. Moving to 3.5 means
rewriting :meth:`DSPyModel._call` against the lm15 request/response contract.

Engine: dspy 3.4's ``dspy.LM`` has two backends. ``engine="auto"`` (dspy's default) sends
OpenAI-compatible models through its own bundled HTTP client ("lm15") and never touches LiteLLM;
``engine="litellm"`` goes through ``litellm.completion``. promptgov uses ``"litellm"`` by
default: it keeps the provider's ``finish_reason``, reports LiteLLM's ``response_cost`` and raises
a real timeout error on a stalled call (lm15 reports a read timeout as a transport error). Pass
``engine="auto"`` in ``lm_kwargs`` to use lm15 instead; both are handled below.

Retries belong to dspy (LiteLLM is called with ``num_retries=0``): a rate limit, timeout, 5xx or
connection failure is tried again up to ``num_retries`` times, waiting the provider's
``Retry-After`` when it sends one, else 1 s, 2 s, 4 s, ... . Everything else fails at once.

Credentials come only from the environment: LiteLLM reads ``OPENAI_API_KEY`` and friends itself,
and with ``api_key_env`` the named variable is read on every call and handed to the call, never
stored on the object. Importing this module imports neither dspy nor LiteLLM (seconds each): the
``dspy.LM`` is built on the first call.
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import Any

from promptgov.errors import (
    BadRequest,
    ModelError,
    ModelTimeout,
    RateLimited,
    Refused,
    ServerError,
)
from promptgov.model._base import Completion, Request, Usage
from promptgov.model._cost import price_usd

__all__ = ["DSPyModel"]

# Finish reasons / provider codes that mean "the provider would not answer this".
_REFUSAL_CODES = frozenset({"content_filter", "content_policy_violation", "refusal",
                            "safety", "blocked", "prohibited_content"})


def _get(obj: Any, name: str, default: Any = None) -> Any:
    """Field of a LiteLLM object or a plain dict."""
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _redact(text: str, extra: tuple[str, ...] = ()) -> str:
    """Remove API keys present in the environment from an error message."""
    secrets = [v for k, v in os.environ.items()
               if (k.endswith("_API_KEY") or k.endswith("_TOKEN")) and len(v) >= 8]
    secrets.extend(s for s in extra if s and len(s) >= 8)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def _causes(exc: BaseException) -> list[BaseException]:
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        chain.append(exc)
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return chain


class DSPyModel:
    """A provider model (``openai/gpt-4o-mini``, ``anthropic/...``, any LiteLLM id) via dspy.

    ``api_base`` points at an OpenAI-compatible server; ``api_key_env`` names the environment
    variable holding the key when it is not the provider's usual one; ``timeout_s`` caps every
    call (a request's own ``timeout_s`` can only lower it); ``prices`` overrides the price map
    (see :func:`promptgov.model._cost.price_usd`); other ``lm_kwargs`` go to ``dspy.LM``.
    """

    def __init__(self, model_id: str, *, api_base: str | None = None,
                 api_key_env: str | None = None, num_retries: int = 3,
                 timeout_s: float = 60.0, prices: dict[str, dict] | None = None,
                 **lm_kwargs: Any):
        if not model_id:
            raise ValueError("model_id must be a non-empty string such as 'openai/gpt-4o-mini'")
        if isinstance(num_retries, bool) or not isinstance(num_retries, int) or num_retries < 0:
            raise ValueError(f"num_retries must be a non-negative integer, got {num_retries!r}")
        if "api_key" in lm_kwargs:
            raise ValueError("DSPyModel takes credentials only from the environment: pass "
                             "api_key_env='NAME_OF_VARIABLE' instead of api_key")
        self.id = model_id
        self.api_base = api_base
        self.api_key_env = api_key_env
        self.num_retries = num_retries
        self.timeout_s = float(timeout_s)
        self.prices = prices
        self.lm_kwargs = {"engine": "litellm", **lm_kwargs}
        self._lm: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        parts = [repr(self.id)]
        if self.api_base:
            parts.append(f"api_base={self.api_base!r}")
        if self.api_key_env:
            parts.append(f"api_key_env={self.api_key_env!r}")
        return f"DSPyModel({', '.join(parts)})"

    # --- the dspy.LM, built on first use ------------------------------------------------------

    def _get_lm(self) -> Any:
        if self._lm is None:
            with self._lock:
                if self._lm is None:
                    # Offline users must not wait on LiteLLM fetching its price map at import.
                    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
                    import dspy  # noqa: PLC0415 - lazy on purpose: importing dspy takes seconds

                    kwargs: dict[str, Any] = dict(self.lm_kwargs)
                    if self.api_base:
                        kwargs["api_base"] = self.api_base
                    # promptgov has its own response cache; dspy's would hide real calls.
                    self._lm = dspy.LM(self.id, cache=False, num_retries=self.num_retries,
                                       **kwargs)
        return self._lm

    def _api_key(self) -> str | None:
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise BadRequest(f"{self.id}: environment variable {self.api_key_env} is not set "
                             f"(fix: export {self.api_key_env}=...)", model=self.id)
        return key

    # --- Model protocol -------------------------------------------------------------------------

    def complete(self, request: Request) -> Completion:
        api_key = self._api_key()
        lm = self._get_lm()
        kwargs: dict[str, Any] = {
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "timeout": min(self.timeout_s, request.timeout_s),
        }
        if request.response_schema is not None:
            kwargs["response_format"] = {"type": "json_schema", "json_schema": {
                # OpenAI accepts only [A-Za-z0-9_-] here: ticket_triage@1 → ticket_triage_1
                "name": re.sub(r"[^A-Za-z0-9_-]", "_", request.schema_name or "output"),
                "schema": request.response_schema,
                "strict": False}}
        if api_key is not None:
            kwargs["api_key"] = api_key
        started = time.perf_counter()
        try:
            response = lm.forward(messages=[dict(m) for m in request.messages], **kwargs)
        except ImportError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a typed ModelError
            raise self._map_error(exc, api_key, self._where(request)) from exc
        latency = time.perf_counter() - started
        return self._completion(response, latency, self._where(request))

    def _where(self, request: Request) -> str:
        """The model, and what asked when the request says (``ticket_triage@2``, case id)."""
        label = getattr(request, "label", None)
        case_id = getattr(request, "case_id", None)
        asked = ", ".join(str(x) for x in (label, case_id and f"case {case_id}") if x)
        return f"{self.id} ({asked})" if asked else self.id

    # --- response ---------------------------------------------------------------------------------

    def _completion(self, response: Any, latency: float, where: str) -> Completion:
        choices = _get(response, "choices") or []
        if not choices:
            raise ServerError(f"{where}: the provider answered without any choice",
                              model=self.id)
        choice = choices[0]
        message = _get(choice, "message")
        finish = _get(choice, "finish_reason")
        refusal = _get(message, "refusal")
        if refusal:
            raise Refused(f"{where}: the model refused: {refusal}", model=self.id)
        if finish in _REFUSAL_CODES:
            raise Refused(f"{where}: the provider stopped the answer "
                          f"(finish_reason={finish})", model=self.id)
        text = _get(message, "content")
        if text is None:
            text = ""
        elif not isinstance(text, str):
            text = str(text)
        raw_usage = _get(response, "usage")
        usage = Usage(prompt_tokens=_int(_get(raw_usage, "prompt_tokens")),
                      completion_tokens=_int(_get(raw_usage, "completion_tokens")))
        return Completion(text=text, model=self.id, usage=usage, latency_s=latency,
                          cost_usd=self._cost(response, usage))

    def _cost(self, response: Any, usage: Usage) -> float:
        # The caller's own price table wins; then LiteLLM's figure for this call; then the map.
        if self.prices and any(name in self.prices
                               for name in (self.id, self.id.split("/", 1)[-1])):
            return price_usd(self.id, usage, self.prices)
        hidden = getattr(response, "_hidden_params", None) or {}
        reported = hidden.get("response_cost") if isinstance(hidden, dict) else None
        if isinstance(reported, (int, float)) and not isinstance(reported, bool) \
                and reported >= 0:
            return float(reported)
        return price_usd(self.id, usage, self.prices)

    # --- errors -----------------------------------------------------------------------------------

    def _map_error(self, exc: Exception, api_key: str | None, where: str) -> ModelError:
        """dspy's LM* errors (and anything else) as promptgov's typed errors."""
        model = self.id
        status = getattr(exc, "status", None)
        if isinstance(status, bool) or not isinstance(status, int):
            status = None
        # One line (the CLI prints it as is): dspy appends multi-line "To fix" advice.
        detail = str(getattr(exc, "message", None) or exc).strip()
        detail = next((line.strip() for line in detail.splitlines() if line.strip()), "")
        http = f" HTTP {status}" if status else ""
        message = _redact(f"{where}: {type(exc).__name__}{http}: {detail}", (api_key or "",))
        try:
            from dspy.utils import exceptions as dx  # noqa: PLC0415 - dspy is loaded by now
        except ImportError:  # pragma: no cover - dspy is a dependency
            return ModelError(message, model=model)

        code = str(getattr(exc, "provider_code", None) or "").lower()
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, bool) or not isinstance(retry_after, (int, float)):
            retry_after = None

        if isinstance(exc, dx.LMRateLimitError):
            return RateLimited(message, model=model, retry_after=retry_after)
        if isinstance(exc, dx.LMTimeoutError):
            return ModelTimeout(message, model=model)
        if isinstance(exc, dx.LMServerError):
            return ServerError(message, model=model)
        if isinstance(exc, dx.LMTransportError):
            text = str(exc).lower()
            if "timed out" in text or "timeout" in text:
                return ModelTimeout(message, model=model)
            return ServerError(message, model=model)
        if self._is_refusal(exc, code):
            return Refused(message, model=model)
        if isinstance(exc, (dx.LMAuthError, dx.LMBillingError, dx.LMInvalidRequestError,
                            dx.LMConfigurationError, dx.LMUnsupportedFeatureError)):
            return BadRequest(message, model=model)
        if status is not None:
            if status == 429:
                return RateLimited(message, model=model, retry_after=retry_after)
            if status == 408:
                return ModelTimeout(message, model=model)
            if status >= 500:
                return ServerError(message, model=model)
            if 400 <= status < 500:
                return BadRequest(message, model=model)
        if isinstance(exc, (ValueError, TypeError)):
            # dspy refuses some arguments locally (e.g. a reasoning model's temperature).
            return BadRequest(message, model=model)
        return ModelError(message, model=model)

    @staticmethod
    def _is_refusal(exc: Exception, code: str) -> bool:
        if code in _REFUSAL_CODES:
            return True
        return any(type(cause).__name__ == "ContentPolicyViolationError"
                   for cause in _causes(exc))

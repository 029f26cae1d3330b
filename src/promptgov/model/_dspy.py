"""Real providers through ``dspy.LM`` on dspy's default engine.

The call: every request becomes a ``dspy.lm15.Request`` (system text, user/assistant messages, a
``Config`` with temperature, max_tokens and the JSON Schema ``response_format``) and ``lm(request)``
answers a ``dspy.lm15.Response``. This is dspy's request/response contract; the OpenAI-style
``messages=[...]`` call is deprecated in dspy 3.4 and gone in 3.5.

Engine: ``engine="auto"`` (dspy's default) sends OpenAI-compatible models through dspy's bundled
HTTP client (lm15) and any request lm15 cannot carry through LiteLLM, chosen before any I/O.
600 calls at 16 in flight take 2.4 s this way and 8.5–17 s with ``engine="litellm"``. What the
LiteLLM engine gave is kept: the provider's ``finish_reason`` (on :class:`Completion`), a typed
timeout (lm15's "read timed out" transport error becomes :class:`ModelTimeout`), the provider's
own cost when it reports one (``usage.cost``, as OpenRouter does), the price map otherwise.
``engine="litellm"`` in ``lm_kwargs`` still selects LiteLLM.

Retries belong to the eval engine (``num_retries=0`` from the registry); a direct caller may ask
dspy for ``num_retries`` (429, timeouts, 5xx, connection failures; ``Retry-After`` honoured).

Credentials come only from the environment. :meth:`DSPyModel.preflight` checks, before dspy is
imported, that the provider's key variable is set, so a run without a key stops at once with
the fix. With ``api_key_env`` the named variable is read on every call; the key lives only inside
the ``dspy.LM`` built for it (looked up by the key's hash), never in an attribute, repr or message.
Importing this module imports neither dspy nor LiteLLM (seconds each).

Version pin: ``dspy>=3.4,<3.5``. The lm15 request/response contract used here is new in 3.4
(a vendored, pre-1.0 lm15); a minor dspy release may reshape it, so a new dspy is taken on
purpose, with ``tests/test_model_dspy.py`` and ``tests/test_real_providers.py`` run against it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from promptgov.errors import (
    AuthFailed,
    BadRequest,
    ModelError,
    ModelNotFound,
    ModelTimeout,
    RateLimited,
    Refused,
    ServerError,
)
from promptgov.model._base import Completion, Request, Usage
from promptgov.model._cost import PriceTable, price_usd

__all__ = ["DSPyModel"]

# Finish reasons / provider codes that mean "the provider would not answer this".
_REFUSAL_CODES = frozenset({"content_filter", "content_policy_violation", "refusal",
                            "safety", "blocked", "prohibited_content"})

# The key variable of providers that always need one (checked before dspy is imported).
# A provider not listed here (ollama_chat, a self-hosted gateway) is not pre-checked.
KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY",
           "gemini": "GEMINI_API_KEY", "mistral": "MISTRAL_API_KEY", "groq": "GROQ_API_KEY",
           "xai": "XAI_API_KEY", "deepseek": "DEEPSEEK_API_KEY",
           "openrouter": "OPENROUTER_API_KEY", "cohere": "COHERE_API_KEY",
           "fireworks_ai": "FIREWORKS_API_KEY", "together_ai": "TOGETHERAI_API_KEY"}
OFFLINE_FIX = "--model local/knn"


def _redact(text: str, extra: tuple[str, ...] = ()) -> str:
    """Remove API keys present in the environment from an error message."""
    secrets = [v for k, v in os.environ.items()
               if (k.endswith("_API_KEY") or k.endswith("_TOKEN")) and len(v) >= 8]
    secrets.extend(s for s in extra if s and len(s) >= 8)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def _causes(exc: BaseException | None) -> list[BaseException]:
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        chain.append(exc)
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return chain


def _raw_content(body: Any) -> str | None:
    """``choices[0].message.content`` of an OpenAI-shaped response body, when it is text."""
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) else None


def _lm15_messages(messages: Iterable[Mapping[str, str]], system: list[str],
                   out: list[Any]) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """``(system texts, lm15 messages)`` for OpenAI-style ``messages``, appended to the given
    ones: system messages before any other are system text, a later one a developer message."""
    from dspy.lm15 import Message

    for m in messages:
        role = m.get("role")
        # Passed on as the message holds it: a message without content (None) fails the call.
        content: Any = m.get("content")
        if role == "system" and not out:
            system.append(content)
        elif role == "assistant":
            out.append(Message.assistant(content))
        elif role == "system":
            out.append(Message.developer(content))
        else:
            out.append(Message.user(content))
    return tuple(system), tuple(out)


@dataclass(frozen=True)
class _Failure:
    """A failed call, as :meth:`DSPyModel._map_error`'s rules read it."""

    exc: Exception
    status: int | None
    message: str
    """The one-line, redacted message every mapped error carries."""
    dx: ModuleType
    """``dspy.utils.exceptions`` (imported only once dspy is)."""


def _http_status(exc: Exception) -> int | None:
    """The HTTP status dspy attached to ``exc``, when it is a real integer (not a bool)."""
    status = getattr(exc, "status", None)
    if isinstance(status, bool) or not isinstance(status, int):
        return None
    return status


def _one_line(exc: Exception) -> str:
    """The first line of the error's text: the CLI prints the message as it is, and dspy
    appends multi-line "To fix" advice."""
    detail = str(getattr(exc, "message", None) or exc).strip()
    detail = next((line.strip() for line in detail.splitlines() if line.strip()), "")
    return re.sub(r"^\[[^\]]*\]\s*", "", detail)  # dspy's "[openai/gpt-4o-mini] " prefix


def _retry_after(exc: Exception) -> float | None:
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, bool) or not isinstance(retry_after, (int, float)):
        return None
    return retry_after


class DSPyModel:
    """A provider model (``openai/gpt-4o-mini``, ``anthropic/...``, any LiteLLM id) via dspy.

    ``api_base`` points at an OpenAI-compatible server; ``api_key_env`` names the environment
    variable holding the key when it is not the provider's usual one; ``timeout_s`` caps every
    call (a request's own ``timeout_s`` can only lower it); ``prices`` overrides the price map
    (see :func:`promptgov.model._cost.price_usd`); other ``lm_kwargs`` go to ``dspy.LM``.
    """

    def __init__(self, model_id: str, *, api_base: str | None = None,
                 api_key_env: str | None = None, num_retries: int = 3,
                 timeout_s: float = 60.0, prices: PriceTable | None = None,
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
        self.lm_kwargs = dict(lm_kwargs)
        self._lms: dict[tuple[str | None, float], Any] = {}
        self._prefixes: dict[str, tuple[tuple[str, ...], tuple[Any, ...]]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        parts = [repr(self.id)]
        if self.api_base:
            parts.append(f"api_base={self.api_base!r}")
        if self.api_key_env:
            parts.append(f"api_key_env={self.api_key_env!r}")
        return f"DSPyModel({', '.join(parts)})"

    # --- credentials ---------------------------------------------------------------------------

    @property
    def key_env(self) -> str | None:
        """The variable the key is read from: ``api_key_env``, else the provider's usual one."""
        return self.api_key_env or KEY_ENV.get(self.id.split("/", 1)[0])

    def preflight(self) -> None:
        """Raise :class:`AuthFailed` (one line, with the fix) when the key is not set. Cheap:
        nothing is imported, nothing is sent. The eval engine calls it before the first case."""
        env = self.key_env
        if env and not os.environ.get(env):
            raise AuthFailed(f"{env} is not set (fix: export {env}=..., or {OFFLINE_FIX})",
                             model=self.id)

    def load(self) -> None:
        """Build the ``dspy.LM`` now (importing dspy takes seconds) rather than on the first
        call. ``evaluate()`` calls it after :meth:`preflight`, before the first case is sent."""
        self._get_lm(self._api_key(), self.timeout_s)

    def _api_key(self) -> str | None:
        if not self.api_key_env:
            return None
        self.preflight()
        return os.environ[self.api_key_env]

    # --- the dspy.LM, built on first use (one per key and timeout) -----------------------------

    def _get_lm(self, api_key: str | None, timeout: float) -> Any:
        slot = (hashlib.sha256(api_key.encode()).hexdigest() if api_key else None, timeout)
        lm = self._lms.get(slot)
        if lm is None:
            with self._lock:
                lm = self._lms.get(slot)
                if lm is None:
                    lm = self._lms[slot] = self._build_lm(api_key, timeout)
        return lm

    def _build_lm(self, api_key: str | None, timeout: float) -> Any:
        # Offline users must not wait on LiteLLM fetching its price map if it is ever loaded.
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import dspy  # noqa: PLC0415 - lazy on purpose: importing dspy takes seconds

        kwargs: dict[str, Any] = {"timeout": timeout, **self.lm_kwargs}
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if api_key is not None:
            kwargs["api_key"] = api_key
        # promptgov has its own response cache; dspy's would hide real calls.
        return dspy.LM(self.id, cache=False, num_retries=self.num_retries, **kwargs)

    # --- Model protocol -------------------------------------------------------------------------

    def complete(self, request: Request) -> Completion:
        api_key = self._api_key()
        where = self._where(request)
        timeout = min(self.timeout_s, request.timeout_s)
        try:
            lm = self._get_lm(api_key, timeout)
            import dspy  # noqa: PLC0415 - loaded by _get_lm

            call = self._lm15_request(lm.model, request)
            started = time.perf_counter()
            # History off: dspy keeps the last 10,000 calls (1 MB answers included) otherwise.
            with dspy.context(disable_history=True):
                response = lm(call)
            latency = time.perf_counter() - started
        except ImportError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a typed ModelError
            raise self._map_error(exc, api_key, where) from exc
        return self._completion(response, latency, where)

    def _lm15_request(self, model: str, request: Request) -> Any:
        """promptgov's request as a ``dspy.lm15.Request``: leading system messages become the
        system text, a later one a developer message. The prompt's fixed part (system + demos,
        ``prefix_hash``) is converted once: a prompt with 770 demos is 1,540 messages."""
        from dspy.lm15 import Config
        from dspy.lm15 import Request as LM15Request

        # Only a known, non-empty fixed part is worth caching.
        cache_key = request.prefix_hash if request.prefix_hash and request.prefix_len else None
        n = request.prefix_len if cache_key else 0
        prefix = self._prefixes.get(cache_key) if cache_key else None
        if prefix is None:
            prefix = _lm15_messages(request.messages[:n], [], [])
            if cache_key:
                if len(self._prefixes) >= 8:
                    self._prefixes.clear()
                self._prefixes[cache_key] = prefix
        system, messages = _lm15_messages(request.messages[n:], list(prefix[0]),
                                          list(prefix[1]))
        response_format = None
        if request.response_schema is not None:
            # OpenAI accepts only [A-Za-z0-9_-] here: ticket_triage@1 → ticket_triage_1
            response_format = {"type": "json_schema", "schema": request.response_schema,
                               "name": re.sub(r"[^A-Za-z0-9_-]", "_",
                                              request.schema_name or "output"),
                               "strict": False}
        config = Config(temperature=request.temperature, max_tokens=request.max_tokens,
                        response_format=response_format)
        return LM15Request(model=model, messages=messages,
                           system="\n\n".join(system) if system else None, config=config)

    def _where(self, request: Request) -> str:
        """The model, and what asked when the request says (``ticket_triage@2``, case id)."""
        label = getattr(request, "label", None)
        case_id = getattr(request, "case_id", None)
        asked = ", ".join(str(x) for x in (label, case_id and f"case {case_id}") if x)
        return f"{self.id} ({asked})" if asked else self.id

    # --- response ---------------------------------------------------------------------------------

    def _completion(self, response: Any, latency: float, where: str) -> Completion:
        parts = response.message.parts
        refusal = " ".join(p.text for p in parts if getattr(p, "type", None) == "refusal")
        if refusal:
            raise Refused(f"{where}: the model refused: {refusal}", model=self.id)
        finish = response.finish_reason
        if finish in _REFUSAL_CODES:
            raise Refused(f"{where}: the provider stopped the answer "
                          f"(finish_reason={finish})", model=self.id)
        text = "".join(p.text for p in parts if getattr(p, "type", None) == "text")
        data = [p for p in parts if getattr(p, "type", None) == "data"]
        if data and not text:
            # lm15 folds a JSON answer whose schema has enum fields ("judgments") into a parsed
            # DataPart; promptgov parses and validates the provider's own text itself.
            raw = _raw_content(response.provider_data)
            text = raw if raw is not None else json.dumps(data[0].value, ensure_ascii=False)
        u = response.usage
        usage = Usage(prompt_tokens=u.input_tokens or 0, completion_tokens=u.output_tokens or 0)
        return Completion(text=text, model=self.id, usage=usage, latency_s=latency,
                          cost_usd=self._cost(response, usage), finish_reason=finish)

    def _cost(self, response: Any, usage: Usage) -> float:
        # The caller's own price table wins; then the provider's figure for this call; then the map.
        if self.prices and any(name in self.prices
                               for name in (self.id, self.id.split("/", 1)[-1])):
            return price_usd(self.id, usage, self.prices)
        raw = response.provider_data if isinstance(response.provider_data, dict) else {}
        reported = (raw.get("usage") or {}).get("cost") if isinstance(raw.get("usage"),
                                                                       dict) else None
        if isinstance(reported, (int, float)) and not isinstance(reported, bool) \
                and reported >= 0:
            return float(reported)
        return price_usd(self.id, usage, self.prices)  # the map is parsed once (see _cost)

    # --- errors -----------------------------------------------------------------------------------

    def _map_error(self, exc: Exception, api_key: str | None, where: str) -> ModelError:
        """dspy's LM* errors (and anything else) as promptgov's typed errors."""
        status = _http_status(exc)
        http = f" HTTP {status}" if status else ""
        message = _redact(f"{where}: {type(exc).__name__}{http}: {_one_line(exc)}",
                          (api_key or "",))
        try:
            from dspy.utils import exceptions as dx  # noqa: PLC0415 - dspy is loaded by now
        except ImportError:  # pragma: no cover - dspy is a dependency
            return ModelError(message, model=self.id)
        failure = _Failure(exc, status, message, dx)
        # Order matters (an exception's class and its HTTP status can disagree): the first rule
        # that recognises the failure decides its type.
        for rule in (self._as_transient, self._as_setup_error, self._as_rejection):
            mapped = rule(failure)
            if mapped is not None:
                return mapped
        return ModelError(message, model=self.id)

    def _as_transient(self, f: _Failure) -> ModelError | None:
        """Rate limits, timeouts, server and transport errors: a retry may succeed."""
        exc, status, message, dx = f.exc, f.status, f.message, f.dx
        if isinstance(exc, dx.LMRateLimitError) or status == 429:
            return RateLimited(message, model=self.id, retry_after=_retry_after(exc))
        if isinstance(exc, dx.LMTimeoutError) or status == 408:
            return ModelTimeout(message, model=self.id)
        if isinstance(exc, dx.LMServerError) or (status is not None and status >= 500):
            return ServerError(message, model=self.id)
        if isinstance(exc, dx.LMTransportError):
            text = str(exc).lower()
            if "timed out" in text or "timeout" in text:
                return ModelTimeout(message, model=self.id)
            return ServerError(message, model=self.id)
        return None

    def _as_setup_error(self, f: _Failure) -> ModelError | None:
        """A missing or refused key, an unknown model: every call would fail the same way."""
        exc, status, message, dx = f.exc, f.status, f.message, f.dx
        model = self.id
        env = self.key_env or "the API key variable"
        if isinstance(exc, dx.LMNotConfiguredError):
            envs = [e for e in (getattr(exc, "env_keys", None) or ()) if isinstance(e, str)]
            env = self.api_key_env or (envs[0] if envs else env)
            return AuthFailed(f"{env} is not set (fix: export {env}=..., or {OFFLINE_FIX})",
                              model=model)
        if isinstance(exc, dx.LMAuthError) or status in (401, 403):
            return AuthFailed(f"{message} (fix: check the key in {env}, or {OFFLINE_FIX})",
                              model=model)
        if isinstance(exc, dx.LMUnsupportedModelError) or status == 404:
            return ModelNotFound(f"{message} (fix: check the model id {model!r}"
                                 + (f" and --api-base {self.api_base}" if self.api_base else "")
                                 + f", or {OFFLINE_FIX})", model=model)
        return None

    def _as_rejection(self, f: _Failure) -> ModelError | None:
        """A refusal, or a request the provider (or dspy, locally) will not take as it is."""
        exc, status, message, dx = f.exc, f.status, f.message, f.dx
        code = str(getattr(exc, "provider_code", None) or "").lower()
        if self._is_refusal(exc, code):
            return Refused(message, model=self.id)
        if isinstance(exc, (dx.LMBillingError, dx.LMInvalidRequestError,
                            dx.LMConfigurationError, dx.LMUnsupportedFeatureError)):
            return BadRequest(message, model=self.id)
        if status is not None and 400 <= status < 500:
            return BadRequest(message, model=self.id)
        if isinstance(exc, (ValueError, TypeError)):
            # dspy refuses some arguments locally (e.g. a reasoning model's temperature).
            return BadRequest(message, model=self.id)
        return None

    @staticmethod
    def _is_refusal(exc: Exception, code: str) -> bool:
        if code in _REFUSAL_CODES:
            return True
        return any(type(cause).__name__ == "ContentPolicyViolationError"
                   for cause in _causes(exc))

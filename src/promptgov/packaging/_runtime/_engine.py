"""One answer for one prompt and input: render, call, parse and validate, with the approved
retry policy, as promptgov's evaluations do.

Transient failures (rate limit, timeout, server error) are retried up to ``max_retries`` times
with exponential backoff and full jitter (a provider's Retry-After is a floor); an answer that
fails to parse or validate is re-asked up to ``max_reasks`` times with the error, in the same
words as the workbench. Anything else is raised at once.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, TypeVar

from ._errors import InvalidOutput, ModelError
from ._models import CallOptions, current

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ._bundle import Bundle, Retry
    from ._models import Adapter, Messages

T = TypeVar("T")
REASK = ("Your previous answer was rejected: {error}. Answer again with only a JSON object "
         "that matches the required schema.")
REASK_DRAFT = ("Your previous answer was rejected: {error}. Write the reply again, stating "
               "nothing that is not in the facts.")


def ask(bundle: Bundle, ref: str, inputs: Mapping[str, Any], accept: Callable[[str], T], *,
        reask: str = REASK) -> T:
    """``accept(text)`` of the model's answer to prompt ``ref`` for ``inputs``; ``accept``
    raises :class:`InvalidOutput` to have the answer re-asked."""
    p = bundle.prompts[ref]
    model = current(str(p.model.get("id", "local/knn")))
    opts = CallOptions(
        response_schema=bundle.json_schemas[p.schema] if p.schema else None,
        schema_name=p.schema, temperature=float(p.model.get("temperature", 0.0)),
        max_tokens=int(p.model.get("max_tokens", 512)), timeout_s=bundle.retry.timeout_s,
        prefix_len=len(p.fixed), label=ref)
    messages: Messages = p.messages(inputs)
    for n in range(bundle.retry.max_reasks + 1):
        text = _call(model, messages, opts, bundle.retry)
        try:
            return accept(text)
        except InvalidOutput as err:
            if n == bundle.retry.max_reasks:
                raise
            messages = [*messages, {"role": "assistant", "content": text},
                        {"role": "user", "content": reask.format(error=err)}]
    raise AssertionError("unreachable")


def _call(model: Adapter, messages: Messages, opts: CallOptions, retry: Retry) -> str:
    for attempt in range(retry.max_retries + 1):
        try:
            text = model(messages, opts)
        except (ModelError, TimeoutError, ConnectionError) as e:
            err = e if isinstance(e, ModelError) else ModelError(
                f"{type(e).__name__}: {e}", transient=True,
                kind="timeout" if isinstance(e, TimeoutError) else "server_error")
            if not err.transient or attempt == retry.max_retries:
                if err is e:
                    raise
                raise err from e
            time.sleep(backoff(retry, attempt, err.retry_after))
            continue
        if not isinstance(text, str):
            raise ModelError(f"the model returned {type(text).__name__}, not text",
                             kind="bad_request")
        return text
    raise AssertionError("unreachable")


def backoff(retry: Retry, attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter; a server's Retry-After is a floor."""
    import random

    cap = min(retry.backoff_max_s, retry.backoff_base_s * 2 ** attempt)
    return max(retry_after or 0.0, random.uniform(0, cap))

"""Queued, idempotent model calls: the contract both job backends keep.

A job is one call of the package's ``extract``, ``triage`` or ``draft`` on one input. Its id is
the sha256 of the caller's key (tenant/idempotency key), the canonical input and the prompt
version's content hash, so submitting it twice runs it once and returns the first result.

Delivery is at least once, the effect exactly once: a worker holds a job under a lease (SQLite)
or lock (BullMQ) it renews while it works; a worker that dies loses it after the visibility
timeout and another takes it again, and only the holder of the current lease can record a
result. Each attempt calls the model once (plus the approved re-asks of an invalid answer):

* a transient failure (rate limit, timeout, server error, or an unexpected exception) is retried
  as a new attempt after ``backoff_s * 2**(n-1)`` seconds less up to ``jitter`` of it, until
  ``attempts`` are spent, then dead-lettered;
* an answer still invalid after the re-asks, and every other model error (auth, not found, bad
  request, refused), is dead-lettered at once with its last error.

The embedded backend is SQLite (:mod:`._jobs_sqlite`); ``redis://`` URLs use BullMQ
(:mod:`._jobs_bullmq`, the package's ``[bullmq]`` extra).
"""

from __future__ import annotations

import hashlib
import os
import random
import socket
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from . import _models
from ._errors import ConfigurationError, Error, InvalidOutput, ModelError, RenderError
from ._hashing import canonical_json
from ._usage import collect

if TYPE_CHECKING:
    from ._bundle import Bundle

STATES = ("waiting", "delayed", "active", "completed", "dead")
"""Where a job is: queued, waiting out a backoff, held by a worker, done, dead-lettered."""


class JobError(Error, ValueError):
    """A submission or command the queue cannot take: unknown function or job id, an input that
    is not a JSON object or lacks a template variable, a queue URL it does not know."""


class JobFailed(Error):
    """The job is in the dead letters; ``kind`` and the message are its last error."""

    def __init__(self, job_id: str, kind: str, message: str):
        super().__init__(f"job {job_id} failed ({kind}): {message}")
        self.job_id, self.kind = job_id, kind


JobError.__module__ = JobFailed.__module__ = __name__.rpartition(".")[0]


class JobOptions(NamedTuple):
    """How jobs are retried and leased (defaults from the approved retry policy)."""

    attempts: int = 5
    """Attempts before a transiently failing job is dead-lettered (BullMQ ``attempts``)."""
    backoff_s: float = 0.5
    """Delay before the second attempt; doubles for each further one (``exponential``)."""
    jitter: float = 0.5
    """Up to this fraction of each delay is taken off at random (BullMQ's ``jitter``)."""
    visibility_s: float = 30.0
    """A job whose worker stopped renewing its lease this long ago is taken again."""
    max_stalls: int = 3
    """A job whose worker died holding it more often than this is dead-lettered (``stalled``)."""

    @classmethod
    def from_bundle(cls, bundle: Bundle, **overrides: Any) -> JobOptions:
        r = bundle.retry
        return cls(attempts=r.max_retries + 1, backoff_s=r.backoff_base_s)._replace(
            **{k: v for k, v in overrides.items() if v is not None})


class Submitted(NamedTuple):
    """What :meth:`Queue.submit` did: ``created`` is False for a duplicate of a known job."""

    id: str
    state: str
    created: bool


class Outcome(NamedTuple):
    """One attempt's end: ``status`` is ``completed``, ``retry`` or ``dead``."""

    status: str
    result: Any
    error_kind: str | None
    error: str | None
    route: str | None
    model: str
    calls: int
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None
    latency_s: float


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def job_id(key: str, inputs: Any, prompt_hash: str) -> str:
    """The job's id: sha256 (hex) of the canonical JSON of key, input and prompt hash."""
    doc = {"input": inputs, "key": key, "prompt": prompt_hash}
    return hashlib.sha256(canonical_json(doc).encode("utf-8")).hexdigest()


def backoff_delay(n: int, opts: JobOptions) -> float:
    """Seconds to wait after the ``n``-th failed attempt: BullMQ's exponential with jitter."""
    raw: float = opts.backoff_s * 2 ** (n - 1)
    return raw * (1 - opts.jitter) + random.random() * raw * opts.jitter


def functions(bundle: Bundle) -> dict[str, str]:
    """Function name (``triage``) → the prompt version it calls (``ticket_triage@2``)."""
    return {p["function"]: ref for ref, p in bundle.manifest["prompts"].items()}


def prepare(bundle: Bundle, function: str, inputs: Any, key: str) -> dict[str, Any]:
    """The job a submission describes (id, prompt, hash), or :class:`JobError` saying why not."""
    fns = functions(bundle)
    if function not in fns:
        raise JobError(f"no function {function!r} in {bundle.package} (fix: submit one of "
                       f"{', '.join(sorted(fns))})")
    if not isinstance(key, str) or not key:
        raise JobError("a job needs a non-empty key, e.g. tenant/ticket-123 (fix: pass key=...)")
    if not isinstance(inputs, dict):
        raise JobError(f"the input of a {function} job is a JSON object of the prompt's "
                       f"variables, not {type(inputs).__name__} (fix: pass e.g. "
                       f"{{'text': ...}})")
    ref = fns[function]
    try:
        canonical_json(inputs)
        bundle.prompts[ref].messages(inputs)
    except (TypeError, ValueError) as e:  # RenderError is a ValueError
        fix = (" (fix: give the input every variable of the prompt's template)"
               if isinstance(e, RenderError) else " (fix: pass JSON values only)")
        raise JobError(f"bad input for {function}: {e}{fix}") from None
    h = bundle.manifest["prompts"][ref]["content_hash"]
    return {"id": job_id(key, inputs, h), "function": function, "prompt": ref,
            "prompt_hash": h, "key": key, "input": inputs}


def preflight(bundle: Bundle) -> None:
    """Raise :class:`ConfigurationError` now, before a worker takes a job, if a prompt's model
    cannot be used (an extra missing): a misconfigured deploy stops with one line and its fix
    instead of failing every job."""
    for p in bundle.prompts.values():
        adapter = _models.current(str(p.model.get("id", "local/knn")))
        if isinstance(adapter, _models._LiteLLM):
            try:
                import litellm  # noqa: F401
            except ImportError:
                raise ConfigurationError(
                    f"model {adapter.id!r} needs LiteLLM, which is not installed (fix: install "
                    f"{bundle.package} with its [providers] extra)") from None


def model_name(bundle: Bundle, ref: str) -> str:
    m = _models._configured
    if m is None:
        return str(bundle.prompts[ref].model.get("id", "local/knn"))
    inner = getattr(m, "model", None)
    return str(getattr(m, "id", None) or getattr(inner, "id", None) or "custom")


def execute(bundle: Bundle, ref: str, inputs: dict[str, Any]) -> Outcome:
    """Run one attempt of a job on prompt ``ref``: one model call and the approved re-asks,
    never an in-process retry (retries are the queue's, visible as attempts)."""
    from . import _tasks

    once = _no_retries(bundle)
    kind = bundle.prompts[ref].kind
    model = model_name(bundle, ref)
    route: str | None = None
    result: Any = None
    kind_err: str | None = None
    err: str | None = None
    status = "completed"
    t0 = time.perf_counter()
    with collect() as calls:
        try:
            if kind == "draft":
                result = _tasks.draft(once, ref, inputs)
            else:
                out = _tasks.extract(once, ref, inputs)
                if kind == "classification":
                    c = None if out.confidence is None else float(out.confidence)
                    route = bundle.routing.route(c)
                    result = _tasks.Decision(route, out.label, c)._asdict()
                else:
                    result = out.model_dump(mode="json")
        except InvalidOutput as e:
            status, kind_err, err = "dead", e.kind, str(e)
        except ModelError as e:
            status, kind_err, err = ("retry" if e.transient else "dead"), e.kind, str(e)
        except RenderError as e:
            status, kind_err, err = "dead", "bad_input", str(e)
        except Exception as e:  # noqa: BLE001 — a bug in a model callable: retried, then dead
            status, kind_err, err = "retry", "exception", f"{type(e).__name__}: {e}"
    latency = time.perf_counter() - t0
    if calls:
        model = calls[-1].model
    return Outcome(status, result, kind_err, err, route, model, len(calls),
                   _sum(c.prompt_tokens for c in calls), _sum(c.completion_tokens for c in calls),
                   _sum(c.cost_usd for c in calls), latency)


def attempt_record(n: int, worker: str, started: float, o: Outcome, delay: float | None
                   ) -> dict[str, Any]:
    """What a trace keeps of one attempt."""
    return {"n": n, "worker": worker, "started": started, "ended": time.time(),
            "outcome": "ok" if o.status == "completed" else o.status,
            "error_kind": o.error_kind, "error": o.error, "delay_s": delay, "model": o.model,
            "calls": o.calls, "prompt_tokens": o.prompt_tokens,
            "completion_tokens": o.completion_tokens, "cost_usd": o.cost_usd,
            "latency_s": round(o.latency_s, 6)}


def summarise(job: dict[str, Any]) -> dict[str, Any]:
    """Add the trace's totals (tokens, cost, latency, model) from its attempts."""
    atts = job.get("attempts", [])
    job["attempts_made"] = sum(a["outcome"] != "lost" for a in atts)
    for k in ("prompt_tokens", "completion_tokens", "cost_usd"):
        job[k] = _sum(a.get(k) for a in atts)
    job["latency_s"] = _sum(a.get("latency_s") for a in atts)
    job["model"] = next((a["model"] for a in reversed(atts) if a.get("model")), None)
    return job


def _sum(values: Any) -> Any:
    got = [v for v in values if v is not None]
    return sum(got) if got else None


def _no_retries(bundle: Bundle) -> Bundle:
    import copy

    b = copy.copy(bundle)
    b.retry = bundle.retry._replace(max_retries=0)
    return b

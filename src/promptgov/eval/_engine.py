"""``evaluate()``: one prompt version × one evalset × one model → per-case records + metrics.

Principle 5 rules here: every case ends in a record (its output, or its failure kind); every
answer is cached, so a re-run of an unchanged eval makes no model call and a killed run resumes;
every attempt (retries and re-asks included) counts toward tokens and cost.

Calls run on ``concurrency`` daemon worker threads: model clients are synchronous, and threads
keep working unchanged inside a Jupyter kernel, whose event loop is already running. The caller's
thread only collects records, so principle 11 holds:

- a systematic failure (``AuthFailed``, ``ModelNotFound``, or the same ``bad_request`` on
  ``SYSTEMATIC_AFTER`` cases in a row) stops sending: every case not yet sent is recorded
  ``not_sent`` with the reason, and :attr:`Runner.stop_reason` says it in one line;
- Ctrl-C stops sending at once, waits at most ``INTERRUPT_GRACE_S`` for the calls in flight
  (what they answer is kept), records the rest ``not_sent`` and re-raises after clean-up;
- an unexpected exception in one case (a custom model's ``KeyError``) is that case's ``error``
  failure, and the run goes on; a worker cannot die without its case being recorded, and if
  every worker is gone with cases outstanding the caller gets an error, not a hang.
"""

from __future__ import annotations

import itertools
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from promptgov.errors import InvalidOutput, ModelError, WorkspaceError
from promptgov.eval._cache import ResponseCache
from promptgov.eval._parse import parse_output
from promptgov.eval._record import CaseRecord, new_record
from promptgov.model._base import Completion, Model, Request
from promptgov.model._registry import get_model
from promptgov.model._replay import Cassette, CassetteEntry
from promptgov.workspace._policy import Policy, RetryPolicy, load_policy

if TYPE_CHECKING:
    from pydantic import BaseModel

    from promptgov.workspace import Workspace
    from promptgov.workspace._evalset import Case, Evalset
    from promptgov.workspace._prompt import PromptVersion

    WorkspaceLike = Workspace | str | os.PathLike[str] | None
    """What a ``workspace=`` argument accepts (:meth:`Workspace.of` normalises it)."""

Progress = Callable[[dict[str, Any]], None]
_Job = tuple["Case", int]
"""One call to make: a case and its sample number."""
_Done = queue.SimpleQueue[tuple[int, CaseRecord]]

REASK = ("Your previous answer was rejected: {error}. Answer again with only a JSON object "
         "that matches the required schema.")
SYSTEMATIC_AFTER = 5
"""The same ``bad_request`` error on this many cases in a row stops the run."""
INTERRUPT_GRACE_S = 0.8
"""After Ctrl-C, how long the calls already in flight may take to land (and be kept)."""


class BudgetExhausted(ModelError):
    kind = "budget_exhausted"


class NotSent(ModelError):
    """The run stopped (systematic failure, Ctrl-C) before this case was sent."""

    kind = "not_sent"


@dataclass
class _Totals:
    """Run-wide counters shared by the worker threads."""

    paid_usd: float = 0.0
    calls: int = 0
    done: int = 0
    failed: int = 0
    stop_reason: str | None = None
    """Why the run stopped sending early (systematic failure or Ctrl-C), else None."""
    interrupted: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class Runner:
    """Runs the cases of one evaluation; :func:`promptgov.evaluate` is the public entry."""

    def __init__(self, prompt: PromptVersion, evalset: Evalset | None, model: Model, *,
                 cache: ResponseCache | None, policy: Policy, concurrency: int,
                 budget_usd: float | None, schema_model: type[BaseModel] | None,
                 samples: int = 1, progress: Progress | None = None,
                 recorder: Cassette | None = None):
        self.prompt, self.evalset, self.model = prompt, evalset, model
        self.recorder = recorder
        self.cache, self.retry, self.policy = cache, policy.retry, policy
        self.concurrency, self.budget_usd, self.samples = concurrency, budget_usd, samples
        self.schema_model = schema_model
        self.json_schema = schema_model.model_json_schema() if schema_model else None
        self.progress = progress
        self.totals = _Totals()
        self._calls = itertools.count()
        self.stop = threading.Event()
        self.stop_reason: str | None = None
        """Why the run stopped sending (one line, with the fix), or None."""
        self.interrupted = False
        self._streak: tuple[str | None, int] = (None, 0)

    # -- the run ----------------------------------------------------------------------------

    def halt(self, reason: str, *, interrupt: bool = False) -> None:
        """Stop sending: cases not yet sent are recorded ``not_sent`` with ``reason``."""
        with self.totals.lock:
            if self.stop_reason is None:
                self.stop_reason = reason
            self.interrupted = self.interrupted or interrupt
        self.stop.set()

    def run(self) -> list[CaseRecord]:
        cases = self.evalset.cases if self.evalset is not None else []
        jobs = [(case, s) for case in cases for s in range(self.samples)]
        if self.cache is not None:
            self.cache.preload(self.prompt.ref)
        records: list[CaseRecord | None] = [None] * len(jobs)
        self._prepare(jobs)
        todo: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(len(jobs)):
            todo.put(i)
        done: _Done = queue.SimpleQueue()
        workers = [threading.Thread(target=self._work, args=(jobs, todo, done), daemon=True,
                                    name=f"promptgov-eval-{k}")
                   for k in range(min(self.concurrency, len(jobs)))]
        for w in workers:
            w.start()
        try:
            self._gather(records, done, workers)
        except KeyboardInterrupt:
            self.halt("interrupted (Ctrl-C)", interrupt=True)
            self._gather_in_flight(records, done)
            self._record_unanswered(records, jobs, todo)
        if self.cache is not None:
            self.cache.flush()
        self.totals.calls = next(self._calls)
        self.totals.stop_reason, self.totals.interrupted = self.stop_reason, self.interrupted
        return records  # type: ignore[return-value]  # every slot is filled by now

    def _prepare(self, jobs: list[_Job]) -> None:
        """Preflight (a missing key stops the run before anything is sent), and the client's
        load in this thread (dspy: seconds of imports) unless the first answer is cached."""
        preflight = getattr(self.model, "preflight", None)
        load = getattr(self.model, "load", None)
        try:
            if callable(preflight):
                preflight()
            if callable(load) and any(self.cache is None or self.cache.get(
                    r.key(self.model.id), self.prompt.ref) is None for r in self._first(jobs)):
                load()
        except ModelError as e:
            if e.systematic:
                self.halt(str(e))

    def _gather(self, records: list[CaseRecord | None], done: _Done,
                workers: list[threading.Thread]) -> None:
        """Collect every record the workers finish; an error if they all died first."""
        outstanding = records.count(None)
        while outstanding:
            try:
                i, rec = done.get(timeout=0.25)
            except queue.Empty:
                if not any(w.is_alive() for w in workers):
                    raise RuntimeError(  # unreachable unless the interpreter is dying
                        f"every eval worker stopped with {outstanding} cases outstanding"
                    ) from None
                continue
            outstanding -= 1
            self._collect(records, i, rec)

    def _gather_in_flight(self, records: list[CaseRecord | None], done: _Done) -> None:
        """After Ctrl-C: keep what lands within the grace period (a second Ctrl-C: stop)."""
        deadline, outstanding = time.monotonic() + INTERRUPT_GRACE_S, records.count(None)
        try:
            while outstanding and (left := deadline - time.monotonic()) > 0:
                try:
                    i, rec = done.get(timeout=left)
                except queue.Empty:
                    return
                outstanding -= 1
                self._collect(records, i, rec)
        except KeyboardInterrupt:
            pass

    def _record_unanswered(self, records: list[CaseRecord | None], jobs: list[_Job],
                           todo: queue.SimpleQueue[int]) -> None:
        """After Ctrl-C, every case without a record: ``not_sent`` if no worker took it,
        ``interrupted`` if it was in flight."""
        unstarted = set()
        while True:
            try:
                unstarted.add(todo.get_nowait())
            except queue.Empty:
                break
        for i, rec in enumerate(records):
            if rec is None:
                case, s = jobs[i]
                records[i] = (new_record(case, s, failure="not_sent", cached=False,
                                         error=self.stop_reason) if i in unstarted else
                              new_record(case, s, failure="interrupted", cached=False,
                                         error="in flight at Ctrl-C; its answer was not "
                                               "waited for"))

    def _first(self, jobs: list[_Job]) -> list[Request]:
        """The first case's request (if it renders): a cached run need not load the model."""
        for case, s in jobs[:1]:
            req = self._request(case, s)
            if isinstance(req, Request):
                return [req]
        return []

    def _work(self, jobs: list[_Job], todo: queue.SimpleQueue[int], done: _Done) -> None:
        """A worker thread: one case at a time until the queue is empty. Never raises."""
        while True:
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            case, s = jobs[i]
            try:
                if self.interrupted:  # not even from the cache: the caller is leaving
                    rec = new_record(case, s, failure="not_sent", error=self.stop_reason,
                                       cached=False)
                else:  # after a systematic stop, cached answers are still used (free)
                    rec = self._case(case, s)
            except BaseException as e:  # noqa: BLE001 - a failing case is data, not a dead thread
                rec = new_record(case, s, failure="error", cached=False,
                                   error=f"{type(e).__name__}: {e}")
            self._watch(rec)
            done.put((i, rec))

    def _collect(self, records: list[CaseRecord | None], i: int, rec: CaseRecord) -> None:
        records[i] = rec
        with self.totals.lock:
            self.totals.done += 1
            self.totals.failed += rec["failure"] is not None
        if self.progress:
            self.progress({"done": self.totals.done, "total": len(records),
                           "failed": self.totals.failed, "paid_usd": self.totals.paid_usd})

    def _watch(self, rec: CaseRecord) -> None:
        """The same bad request on ``SYSTEMATIC_AFTER`` cases in a row stops the run. Called by
        the worker as its case ends, so no further case is sent after the N-th."""
        with self.totals.lock:
            if rec["failure"] == "bad_request":
                what = str(rec["error"]).replace(str(rec["case_id"]), "#")
                n = self._streak[1] + 1 if self._streak[0] == what else 1
                self._streak = (what, n)
            elif rec["failure"] not in ("not_sent", "interrupted"):
                self._streak, n = (None, 0), 0
            else:
                return
        if n >= SYSTEMATIC_AFTER:
            self.halt(f"the same bad request on {n} cases in a row, stopped sending: "
                      f"{rec['error']}")

    def _request(self, case: Case, sample: int) -> Request | WorkspaceError:
        pv = self.prompt
        try:
            messages = pv.messages(case.input)
        except WorkspaceError as e:
            return e
        return Request(messages=messages, response_schema=self.json_schema,
                       schema_name=pv.response_schema, temperature=pv.model.temperature,
                       max_tokens=pv.model.max_tokens, sample=sample,
                       timeout_s=self.retry.timeout_s, prefix_len=pv.prefix_len,
                       prefix_hash=pv.prefix_hash, label=pv.ref, case_id=case.id)

    # -- one case ---------------------------------------------------------------------------

    def _case(self, case: Case, sample: int) -> CaseRecord:
        req = self._request(case, sample)
        rec = new_record(case, sample)
        if isinstance(req, WorkspaceError):
            rec["cached"] = False
            return _failed(rec, "render_error", str(req))
        for reask in range(self.retry.max_reasks + 1):
            try:
                c = self._call(req, rec)
            except ModelError as e:
                if e.systematic:
                    self.halt(str(e))
                return _failed(rec, e.kind, str(e))
            rec["raw"], rec["finish_reason"] = c.text, c.finish_reason
            err = self._accept(c.text, rec)
            if err is None:
                return rec
            if reask == self.retry.max_reasks:
                return _failed(rec, err.kind, str(err))
            rec["reasks"] += 1
            req = replace(req, messages=req.messages + (
                {"role": "assistant", "content": _sendable(c.text)},
                {"role": "user", "content": _sendable(REASK.format(error=err))}))
        raise AssertionError("unreachable")

    def _accept(self, text: str, rec: CaseRecord) -> InvalidOutput | None:
        """Sets ``rec``'s output from ``text``, or says why the answer is not acceptable."""
        if self.schema_model is None:
            if not text.strip():
                return InvalidOutput("empty answer", kind="invalid_json")
            rec["output"] = text
            return None
        try:
            rec["output"], rec["repairs"] = parse_output(text, self.schema_model)
        except InvalidOutput as e:
            return e
        return None

    def _call(self, req: Request, rec: CaseRecord) -> Completion:
        """One answer for ``req``: from the cache, or from the model with retries."""
        key = req.key(self.model.id)
        for attempt in range(self.retry.max_retries + 1):
            rec["attempts"] += 1
            c = self.cache.get(key, req.label) if self.cache is not None else None
            if c is None:
                if self.stop.is_set():
                    rec["cached"] = False
                    raise NotSent(self.stop_reason or "the run stopped")
                if self.budget_usd is not None:
                    with self.totals.lock:
                        if self.totals.paid_usd >= self.budget_usd:
                            rec["cached"] = False
                            raise BudgetExhausted(f"cost budget of {self.budget_usd} USD reached "
                                                  "before this case; nothing was sent")
                next(self._calls)  # itertools.count: atomic, no lock on the hot path
                try:
                    c = self._complete(req)
                except ModelError as e:
                    rec["cached"] = False
                    if not e.transient or attempt == self.retry.max_retries:
                        raise
                    rec["retries"] += 1
                    if self.stop.wait(self._backoff(attempt, getattr(e, "retry_after", None))):
                        raise NotSent(f"{e}; not retried: {self.stop_reason}") from e
                    continue
                rec["cached"] = False
                if c.cost_usd:
                    with self.totals.lock:
                        self.totals.paid_usd += c.cost_usd
                if self.cache is not None:
                    self.cache.put(key, req, self.model.id, c, label=req.label,
                                   case_id=req.case_id)
            if self.recorder is not None:  # cached answers too: the cassette is the whole run
                self.recorder.append(CassetteEntry(
                    key=key, model=self.model.id, text=c.text, usage=c.usage,
                    latency_s=c.latency_s, prompt=req.label, case=req.case_id))
            rec["prompt_tokens"] += c.usage.prompt_tokens
            rec["completion_tokens"] += c.usage.completion_tokens
            rec["cost_usd"] += c.cost_usd
            rec["latency_s"] += c.latency_s
            return c
        raise AssertionError("unreachable")

    def _complete(self, req: Request) -> Completion:
        """The model's answer; anything but a ``ModelError`` it raises becomes one (kind
        ``error``): a bug in a custom model fails its case, not the run."""
        try:
            c = self.model.complete(req)
        except ModelError:
            raise
        except Exception as e:  # noqa: BLE001
            raise ModelError(f"{self.model.id} ({req.label}, case {req.case_id}): "
                             f"{type(e).__name__}: {e}", model=self.model.id) from e
        if not isinstance(c, Completion) or not isinstance(c.text, str):
            raise ModelError(f"{self.model.id}: complete() returned {type(c).__name__}, "
                             "not a Completion with text", model=self.model.id)
        return c

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter; a server's Retry-After is a floor."""
        cap = min(self.retry.backoff_max_s, self.retry.backoff_base_s * 2 ** attempt)
        return max(retry_after or 0.0, random.uniform(0, cap))


def _failed(rec: CaseRecord, kind: str, error: str) -> CaseRecord:
    rec["failure"], rec["error"] = kind, error
    return rec


def _sendable(text: str) -> str:
    """``text`` as a provider can receive it: a lone surrogate (not UTF-8) becomes ``?``."""
    return text.encode("utf-8", "replace").decode("utf-8")


class EvalTarget(NamedTuple):
    """What one evaluation runs: resolved from names (or taken as given) by :func:`resolve`."""

    workspace: Workspace
    prompt: PromptVersion
    evalset: Evalset
    schema: type[BaseModel] | None
    """The response schema's pydantic model; None for free text (drafts)."""
    policy: Policy
    model: Model


class CaseRun(NamedTuple):
    """:func:`run_cases`' outcome: a record per case and sample, the run's totals, its wall."""

    records: list[CaseRecord]
    totals: _Totals
    wall_s: float


def resolve(workspace: WorkspaceLike, prompt: str | PromptVersion,
            evalset: str | Evalset | None, model: str | Model | None, *,
            model_options: dict[str, Any] | None = None) -> EvalTarget:
    """The objects an evaluation needs, from names or objects. ``model_options`` (e.g.
    ``api_base``) go to :func:`~promptgov.model._registry.get_model` with a model id."""
    from promptgov.workspace import Workspace

    ws = Workspace.of(workspace)  # a Workspace, a path, or None (found)
    pv = ws.prompt(prompt) if isinstance(prompt, str) else prompt
    es = evalset_for(ws, pv, evalset)
    schema = ws.schema(pv.response_schema).model if pv.response_schema else None
    policy = load_policy(ws.root)
    m = get_model(model or pv.model.id, prices=policy.prices, **(model_options or {}))
    return EvalTarget(ws, pv, es, schema, policy, m)


def evalset_for(ws: Workspace, pv: PromptVersion, evalset: str | Evalset | None) -> Evalset:
    """``evalset`` (a name or the object), else the one the prompt names."""
    es_ref = evalset or pv.evalset
    if es_ref is None:
        raise WorkspaceError(f"prompts/{pv.name}/v{pv.version}.yaml", f"{pv.ref} names no "
                             "evalset", "pass evalset=... or add `evalset:` to the prompt file")
    return ws.evalset(es_ref) if isinstance(es_ref, str) else es_ref


def run_cases(ws: Workspace, pv: PromptVersion, es: Evalset, schema: type[BaseModel] | None,
              policy: Policy, m: Model, *, concurrency: int = 8,
              budget_usd: float | None = None, cache: bool = True, samples: int = 1,
              retry: RetryPolicy | None = None, progress: Progress | None = None,
              record: Path | str | None = None) -> CaseRun:
    if retry is not None:
        policy = replace(policy, retry=retry)
    rc = ResponseCache(ws.root / ".promptgov" / "cache.sqlite") if cache else None
    recorder = Cassette(record) if record is not None else None
    try:
        runner = Runner(pv, es, m, cache=rc, policy=policy, concurrency=concurrency,
                        budget_usd=budget_usd, schema_model=schema, samples=samples,
                        progress=progress, recorder=recorder)
        t0 = time.perf_counter()
        records = runner.run()
        wall = time.perf_counter() - t0
    finally:
        if rc is not None:
            rc.close()
        if recorder is not None:
            recorder.close()
    return CaseRun(records, runner.totals, wall)

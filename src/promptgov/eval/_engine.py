"""``evaluate()``: one prompt version × one evalset × one model → per-case records + metrics.

Principle 5 rules here: every case ends in a record (its output, or its failure kind); every
answer is cached, so a re-run of an unchanged eval makes no model call and a killed run resumes;
every attempt (retries and re-asks included) counts toward tokens and cost.

Calls run on a bounded thread pool: model clients are synchronous, and threads keep working
unchanged inside a Jupyter kernel, whose event loop is already running.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from promptgov.errors import InvalidOutput, ModelError, WorkspaceError
from promptgov.eval._cache import ResponseCache
from promptgov.eval._parse import parse_output
from promptgov.governance._policy import Policy, RetryPolicy, load_policy
from promptgov.model._base import Completion, Model, Request
from promptgov.model._registry import get_model
from promptgov.model._replay import Cassette, CassetteEntry

Progress = Callable[[dict[str, Any]], None]

REASK = ("Your previous answer was rejected: {error}. Answer again with only a JSON object "
         "that matches the required schema.")


class BudgetExhausted(ModelError):
    kind = "budget_exhausted"


@dataclass
class _Totals:
    """Run-wide counters shared by the worker threads."""

    paid_usd: float = 0.0
    calls: int = 0
    done: int = 0
    failed: int = 0
    lock: threading.Lock = None  # type: ignore[assignment]

    def __post_init__(self):
        self.lock = threading.Lock()


class Runner:
    """Runs the cases of one evaluation; :func:`promptgov.evaluate` is the public entry."""

    def __init__(self, prompt, evalset, model: Model, *, cache: ResponseCache | None,
                 policy: Policy, concurrency: int, budget_usd: float | None,
                 schema_model: type | None, samples: int = 1, progress: Progress | None = None,
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

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> list[dict[str, Any]]:
        jobs = [(case, s) for case in self.evalset.cases for s in range(self.samples)]
        if self.cache is not None:
            self.cache.preload(self.prompt.ref)
        records: list[dict[str, Any] | None] = [None] * len(jobs)
        with ThreadPoolExecutor(max_workers=self.concurrency,
                                thread_name_prefix="promptgov-eval") as pool:
            futures = {pool.submit(self._case, case, s): i for i, (case, s) in enumerate(jobs)}
            for fut in as_completed(futures):
                rec = records[futures[fut]] = fut.result()
                with self.totals.lock:
                    self.totals.done += 1
                    self.totals.failed += rec["failure"] is not None
                if self.progress:
                    self.progress({"done": self.totals.done, "total": len(jobs),
                                   "failed": self.totals.failed,
                                   "paid_usd": self.totals.paid_usd})
        if self.cache is not None:
            self.cache.flush()
        self.totals.calls = next(self._calls)
        return records  # type: ignore[return-value]

    def _request(self, case, sample: int) -> Request | WorkspaceError:
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

    def _case(self, case, sample: int) -> dict[str, Any]:
        req = self._request(case, sample)
        rec: dict[str, Any] = {
            "case_id": case.id, "sample": sample, "input": case.input,
            "expected": case.expected, "output": None, "raw": None, "failure": None,
            "error": None, "attempts": 0, "retries": 0, "reasks": 0, "repairs": [],
            "cached": True, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0,
            "latency_s": 0.0, "meta": case.meta}
        if isinstance(req, WorkspaceError):
            rec.update(failure="render_error", error=str(req), cached=False)
            return rec
        for reask in range(self.retry.max_reasks + 1):
            try:
                c = self._call(req, rec)
            except ModelError as e:
                rec.update(failure=e.kind, error=str(e))
                return rec
            rec["raw"] = c.text
            if self.schema_model is None:
                if c.text.strip():
                    rec["output"] = c.text
                    return rec
                err = InvalidOutput("empty answer", kind="invalid_json")
            else:
                try:
                    rec["output"], rec["repairs"] = parse_output(c.text, self.schema_model)
                    return rec
                except InvalidOutput as e:
                    err = e
            if reask == self.retry.max_reasks:
                rec.update(failure=err.kind, error=str(err))
                return rec
            rec["reasks"] += 1
            req = replace(req, messages=req.messages + (
                {"role": "assistant", "content": c.text},
                {"role": "user", "content": REASK.format(error=err)}))
        raise AssertionError("unreachable")

    def _call(self, req: Request, rec: dict[str, Any]) -> Completion:
        """One answer for ``req``: from the cache, or from the model with retries."""
        key = req.key(self.model.id)
        for attempt in range(self.retry.max_retries + 1):
            rec["attempts"] += 1
            c = self.cache.get(key, req.label) if self.cache is not None else None
            if c is None:
                if self.budget_usd is not None:
                    with self.totals.lock:
                        if self.totals.paid_usd >= self.budget_usd:
                            raise BudgetExhausted(f"cost budget of {self.budget_usd} USD reached "
                                                  "before this case; nothing was sent")
                next(self._calls)  # itertools.count: atomic, no lock on the hot path
                try:
                    c = self.model.complete(req)
                except ModelError as e:
                    if not e.transient or attempt == self.retry.max_retries:
                        rec["cached"] = False
                        raise
                    rec["retries"] += 1
                    time.sleep(self._backoff(attempt, getattr(e, "retry_after", None)))
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

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter; a server's Retry-After is a floor."""
        cap = min(self.retry.backoff_max_s, self.retry.backoff_base_s * 2 ** attempt)
        return max(retry_after or 0.0, random.uniform(0, cap))


def resolve(workspace, prompt, evalset, model):
    """The objects an evaluation needs, from names or objects."""
    from promptgov.workspace import Workspace

    ws = workspace if workspace is not None else Workspace.find()
    pv = ws.prompt(prompt) if isinstance(prompt, str) else prompt
    es_ref = evalset or pv.evalset
    if es_ref is None:
        raise WorkspaceError(f"prompts/{pv.name}/v{pv.version}.yaml", f"{pv.ref} names no "
                             "evalset", "pass evalset=... or add `evalset:` to the prompt file")
    es = ws.evalset(es_ref) if isinstance(es_ref, str) else es_ref
    schema = ws.schema(pv.response_schema).model if pv.response_schema else None
    policy = load_policy(ws.root)
    m = get_model(model or pv.model.id, prices=policy.prices)
    return ws, pv, es, schema, policy, m


def run_cases(ws, pv, es, schema, policy: Policy, m: Model, *, concurrency: int = 8,
              budget_usd: float | None = None, cache: bool = True, samples: int = 1,
              retry: RetryPolicy | None = None, progress: Progress | None = None,
              record: Path | str | None = None):
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
    return records, runner.totals, wall

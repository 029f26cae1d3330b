"""``optimize()``: a DSPy optimizer proposes a candidate version of a prompt, written as the next
version file with its provenance, never as an edit of the parent.

1. The trainset must be disjoint from the evalset the candidate is judged on (by case id and by
   input): an overlap is refused, naming the cases.
2. The prompt version becomes a DSPy program (:mod:`promptgov.optimizers._program`); the trainset
   is split (seeded) into the demo pool and a validation split the trials are scored on.
3. The optimizer runs; its demos are cut to the budget (demos per label, prompt tokens).
4. The candidate is written to ``prompts/<name>/v<N+1>.yaml`` with its ``provenance``; the
   optimization is one MLflow run (settings, trials and their scores, the candidate).
5. Parent and candidate are evaluated on the judging evalset (the candidate's first eval, linked
   to the optimization run both ways), so ``compare`` shows them with the paired test.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptgov.errors import PromptgovError
from promptgov.optimizers._trials import OptimizationRun

if TYPE_CHECKING:
    from promptgov.model._base import Model
    from promptgov.optimizers._program import Caller
    from promptgov.workspace import Workspace
    from promptgov.workspace._evalset import Evalset
    from promptgov.workspace._prompt import PromptVersion

OPTIMIZERS = ("herding", "labeled", "bootstrap", "random_search", "copro", "mipro")
"""``herding`` (promptgov's representative demos) and DSPy's ``LabeledFewShot``,
``BootstrapFewShot``, ``BootstrapFewShotWithRandomSearch``, ``COPRO`` and ``MIPROv2``; the last
two rewrite the instructions and need a real model to propose them (``prompt_model``)."""
INSTRUCTION_OPTIMIZERS = ("copro", "mipro")

MetricFn = Callable[..., float]
"""A trial metric, ``fn(example, prediction, trace=None)``: a score in [0, 1] (or a bool)."""


class TrainsetOverlap(PromptgovError):
    """The trainset shares cases (ids or inputs) with the evalset that judges the candidate."""


@dataclass
class OptimizeResult:
    """What :func:`optimize` returns.

    Attributes:
        candidate: ``name@version`` of the candidate written.
        path: its file.
        val_scores: the metric on the validation split, ``parent`` and ``candidate``.
        eval_metrics: ``parent`` and ``candidate`` run metrics on the judging evalset.
        trials: each trial of the optimizer and its validation score, when it reports them.
        run_id: the optimization's MLflow run; ``eval_run_ids`` the two eval runs.
    """

    parent: str
    candidate: str
    path: Path
    optimizer: str
    seed: int
    trainset: str
    evalset: str
    metric: str
    val_scores: dict[str, float]
    trials: list[dict[str, Any]]
    demos: dict[str, int]
    prompt_tokens: dict[str, int]
    eval_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    run_id: str | None = None
    eval_run_ids: dict[str, str | None] = field(default_factory=dict)

    def __repr__(self) -> str:
        acc = {k: v.get("accuracy") for k, v in self.eval_metrics.items()}
        return (f"OptimizeResult({self.parent} -> {self.candidate} by {self.optimizer} "
                f"(seed {self.seed}); val {self.val_scores}; {self.evalset} accuracy {acc}; "
                f"run {self.run_id})")


def check_disjoint(train: Evalset, evalset: Evalset) -> None:
    """Refuse a trainset that shares a case id, or an input equal or nearly equal (case,
    whitespace and punctuation aside, as ``promptgov lock`` judges demos) with ``evalset``."""
    from promptgov.governance._content import input_keys

    by_input: dict[str, str] = {}
    for c in evalset.cases:
        for k in input_keys(c.input):
            by_input.setdefault(k, c.id)
    ids = {c.id for c in evalset.cases}
    clash = []
    for c in train.cases:
        hit = c.id if c.id in ids else next(
            (by_input[k] for k in input_keys(c.input) if k in by_input), None)
        if hit is not None:
            clash.append((c.id, hit))
    if clash:
        shown = ", ".join(f"{a}" + (f" (= {b})" if a != b else "") for a, b in clash[:10])
        raise TrainsetOverlap(
            f"trainset {train.ref} overlaps evalset {evalset.ref} in {len(clash)} case(s): "
            f"{shown}{' ...' if len(clash) > 10 else ''} (fix: remove them from the trainset, "
            "or judge on another evalset: a candidate judged on its own training cases proves "
            "nothing)")


def optimize(prompt: str | PromptVersion, *, trainset: str, evalset: str | None = None,
             metric: str | MetricFn | None = None, optimizer: str = "herding",
             model: str | None = None, prompt_model: str | None = None,
             api_base: str | None = None,
             workspace: Workspace | str | os.PathLike[str] | None = None, seed: int = 0,
             demos_per_label: int | None = None, max_demos: int | None = None,
             max_prompt_tokens: int | None = None, candidates: int = 1, val_size: int = 770,
             settings: dict[str, Any] | None = None, track: bool = True,
             evaluate_candidate: bool = True, concurrency: int = 8,
             progress: Callable[[str], None] | None = None) -> OptimizeResult:
    """Run a DSPy optimizer on ``prompt`` and write the candidate as the next version.

    Args:
        prompt: ``"ticket_triage@2"`` (the parent).
        trainset: the evalset demos and trials are drawn from (``ticket_triage_train``).
        evalset: the evalset the candidate is judged on (default: the prompt's); must not
            overlap ``trainset``.
        metric: ``"accuracy"`` (every expected field right, lists as sets), ``"f1"`` (per-case
            F1 over mentioned values and labels), or ``fn(example, prediction, trace=None)``;
            default: accuracy for classification, f1 for extraction.
        optimizer: one of :data:`OPTIMIZERS`.
        model: the model the trials (and evals) run with; default: the prompt's.
        prompt_model: the LiteLLM model that proposes instructions (``copro``, ``mipro``).
        demos_per_label: the demo budget per label (classification; default: the parent's).
        max_demos: the demo budget in total (any kind; default: the parent's count).
        max_prompt_tokens: the budget of the fixed prompt part (system + demos), in tokens.
        candidates: candidate demo sets of ``herding`` / ``random_search`` (scored on the
            validation split).
        val_size: cases of the trainset kept out of the demo pool to score trials on.
        settings: further keyword arguments of the optimizer's constructor.
        track: log the optimization (and the evals) to MLflow.
        evaluate_candidate: evaluate parent and candidate on ``evalset`` afterwards.

    Raises:
        TrainsetOverlap: the trainset shares cases with ``evalset``.
        ValueError: an unknown optimizer or metric, or an instruction optimizer offline.

    Example:
        >>> import promptgov as pg                                            # doctest: +SKIP
        >>> r = pg.optimize("ticket_triage@2", trainset="ticket_triage_train", seed=0)
        >>> r.candidate, r.eval_metrics["candidate"]["accuracy"]             # doctest: +SKIP
    """
    say = progress or _silent
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    opts = {"api_base": api_base} if api_base else {}
    s = _setup(prompt, trainset, evalset, model, opts, workspace, optimizer=optimizer,
               prompt_model=prompt_model, metric=metric, seed=seed, val_size=val_size)
    budget = _budget(s.pv, s.label_field, demos_per_label, max_demos, max_prompt_tokens)
    opt_settings = {**_defaults(optimizer, budget, s.label_field, candidates,
                                len(s.pv.labels or {}), len(s.pv.demos)), **(settings or {})}
    run = OptimizationRun(s.ws.root, s.pv, track=track)
    try:
        say(f"optimizing {s.pv.ref} with {optimizer} on {s.ts.ref} ({len(s.train)} pool, "
            f"{len(s.valset)} validation cases), seed {seed}")
        lm_id = prompt_model or s.m.id
        best, trials = _compile(s, opt_settings, lm_id, opts)
        demos = _budgeted_demos(s, best, budget)
        cand = s.caller.candidate(demos, best.predict.signature.instructions)
        val = _validation_scores(s, best, demos)
        say(f"validation {s.metric_name}: parent {val['parent']:.4f}, candidate "
            f"{val['candidate']:.4f}")
        provenance = _provenance(s, {**opt_settings, **budget.settings(),
                                                "val_size": len(s.valset),
                                                "prompt_model": prompt_model}, run.run_id)
        new, path = _write_candidate(s, cand, demos, budget, provenance)
        say(f"wrote {s.ws.relpath(path)} ({new.ref}, {new.content_hash[:19]}...)")
        result = OptimizeResult(
            parent=s.pv.ref, candidate=new.ref, path=path, optimizer=optimizer, seed=seed,
            trainset=s.ts.ref, evalset=s.es.ref, metric=s.metric_name, val_scores=val,
            trials=trials, demos={"parent": len(s.pv.demos), "candidate": len(new.demos)},
            prompt_tokens={"parent": _fixed_tokens(s.pv), "candidate": _fixed_tokens(new)},
            run_id=run.run_id)
        if evaluate_candidate:
            _judge(result, s, new, track=track, concurrency=concurrency, say=say)
        from promptgov.eval._tracking import provenance as run_provenance

        run.finish(result, provenance, run_provenance(s.ws, s.pv, s.es, s.m.id))
    except BaseException:
        run.fail()
        raise
    return result


def _silent(msg: str) -> None:
    """The default ``progress``: say nothing."""


@dataclass(frozen=True)
class _Setup:
    """What every step of one optimization shares, resolved and validated before anything
    runs (or is logged)."""

    optimizer: str
    ws: Workspace
    pv: PromptVersion
    es: Evalset  # judges the candidate
    ts: Evalset  # the demos and trials come from it
    m: Model
    caller: Caller
    label_field: str | None
    metric_name: str
    metric_fn: MetricFn
    train: list[Any]  # dspy.Example: the demo pool
    valset: list[Any]  # dspy.Example: the trials are scored on it
    seed: int


def _setup(prompt: str | PromptVersion, trainset: str, evalset: str | None,
           model: str | None, opts: dict[str, str],
           workspace: Workspace | str | os.PathLike[str] | None, *, optimizer: str,
           prompt_model: str | None, metric: str | MetricFn | None, seed: int,
           val_size: int) -> _Setup:
    from promptgov.eval._engine import resolve
    from promptgov.optimizers._program import Caller, to_example

    ws, pv, es, schema_model, _, m = resolve(workspace, prompt, evalset, model,
                                             model_options=opts)
    ts = ws.evalset(trainset)
    check_disjoint(ts, es)
    _refuse_offline_instructions(optimizer, prompt_model or m.id, m.id)
    schema_json = schema_model.model_json_schema() if schema_model else None
    caller = Caller(pv, m, schema_model, schema_json)
    outs = caller.outs
    label_field = "label" if pv.kind == "classification" and "label" in outs else None
    metric_name, metric_fn = _metric(metric, pv.kind)
    examples = [to_example(c.input, c.expected, pv, outs) for c in ts.cases]
    train, valset = _split(examples, seed, val_size)
    if not train:
        raise ValueError(f"trainset {ts.ref} has {len(ts)} cases: too few to optimize on")
    return _Setup(optimizer, ws, pv, es, ts, m, caller, label_field, metric_name, metric_fn,
                  train, valset, seed)


def _refuse_offline_instructions(optimizer: str, proposer: str, model_id: str) -> None:
    """An instruction optimizer needs a language model to write instructions."""
    if optimizer in INSTRUCTION_OPTIMIZERS and proposer.startswith(
            ("local/", "replay:", "fake/")):
        raise ValueError(f"{optimizer} proposes instructions with a language model: pass "
                         "prompt_model (a LiteLLM id such as openai/gpt-4o-mini) or a real "
                         f"--model; {model_id} cannot write instructions")


def _split(examples: list[Any], seed: int, val_size: int) -> tuple[list[Any], list[Any]]:
    """(demo pool, validation split): a seeded shuffle, at most a fifth kept for validation."""
    rng = random.Random(seed)
    order = list(range(len(examples)))
    rng.shuffle(order)
    n_val = min(val_size, len(examples) // 5)
    return [examples[i] for i in order[n_val:]], [examples[i] for i in order[:n_val]]


@dataclass(frozen=True)
class _Budget:
    """The candidate's demo budget: per label, in total, and in fixed prompt tokens."""

    per_label: int | None
    total: int | None
    max_prompt_tokens: int | None

    def settings(self) -> dict[str, int | None]:
        return {"demos_per_label": self.per_label, "max_demos": self.total,
                "max_prompt_tokens": self.max_prompt_tokens}


def _budget(pv: PromptVersion, label_field: str | None, demos_per_label: int | None,
            max_demos: int | None, max_prompt_tokens: int | None) -> _Budget:
    """The budget asked for, else the parent's: its demos per label (classification) or its
    demo count (any other kind; 8 when it has none)."""
    per_label = demos_per_label if demos_per_label is not None else (
        _per_label(pv, label_field) if label_field else None)
    if max_demos is not None:
        total: int | None = max_demos
    elif label_field:
        total = None  # the per-label budget bounds a classifier's demos
    else:
        total = len(pv.demos) or 8
    return _Budget(per_label, total, max_prompt_tokens)


def _compile(s: _Setup, settings: dict[str, Any], lm_id: str,
             opts: dict[str, str]) -> tuple[Any, list[dict[str, Any]]]:
    """Run the optimizer on the parent's program: (best program, trials). An instruction
    optimizer that proposes no demos keeps the parent's."""
    import dspy

    from promptgov.optimizers._program import PromptProgram

    student = PromptProgram(s.caller)
    instructions = s.optimizer in INSTRUCTION_OPTIMIZERS
    lm = dspy.LM(lm_id, cache=False, **opts) if instructions else None
    with dspy.context(lm=lm) if lm is not None else contextlib.nullcontext():
        best, trials = _run(s, settings, student, lm)
    pred = best.predict
    if instructions and not pred.demos:
        pred.demos = list(student.predict.demos)  # instructions only: keep the parent's
    return best, trials


def _budgeted_demos(s: _Setup, best: Any, budget: _Budget) -> list[Any]:
    """The best program's demos cut to the budget: per label, in total, then in tokens."""
    from promptgov.optimizers._select import apply_budget

    pred = best.predict
    demos = apply_budget(list(pred.demos), label_field=s.label_field,
                         demos_per_label=budget.per_label, max_prompt_tokens=None,
                         fixed_tokens=None)
    if budget.total is not None:
        demos = demos[:budget.total]
    if budget.max_prompt_tokens is None:
        return demos

    def fixed_tokens(d: list[Any]) -> int:
        return _fixed_tokens(s.caller.candidate(d, pred.signature.instructions))

    return apply_budget(demos, label_field=None, demos_per_label=None,
                        max_prompt_tokens=budget.max_prompt_tokens, fixed_tokens=fixed_tokens)


def _validation_scores(s: _Setup, best: Any, demos: list[Any]) -> dict[str, float]:
    """The metric of parent and candidate on the validation split."""
    from promptgov.optimizers._program import PromptProgram

    val = {"parent": _score(PromptProgram(s.caller), s.valset, s.metric_fn)}
    chosen = PromptProgram(s.caller)
    chosen.predict.demos, chosen.predict.signature = demos, best.predict.signature
    pre = getattr(best, "herding_score", None)  # a refit candidate has seen the split
    val["candidate"] = pre if pre is not None else _score(chosen, s.valset, s.metric_fn)
    return val


def _provenance(s: _Setup, settings: dict[str, Any], run_id: str | None) -> dict[str, Any]:
    """Where the candidate comes from: written into its file and logged with the run."""
    import dspy

    from promptgov._version import __version__

    return {
        "parent": s.pv.ref, "parent_hash": s.pv.content_hash, "optimizer": s.optimizer,
        "settings": _plain(settings), "seed": s.seed, "trainset": s.ts.ref,
        "trainset_hash": s.ts.hash, "judged_on": s.es.ref, "judged_on_hash": s.es.hash,
        "metric": s.metric_name, "model": s.m.id, "mlflow_run": run_id,
        "packages": {"promptgov": __version__, "dspy": dspy.__version__}}


def _write_candidate(s: _Setup, cand: PromptVersion, demos: list[Any], budget: _Budget,
                     provenance: dict[str, Any]) -> tuple[PromptVersion, Path]:
    """Write the candidate as the parent's next version; returns it loaded, and its file."""
    from promptgov.optimizers._write import write_version

    version = max(s.ws.versions(s.pv.name)) + 1
    body = cand.model_dump(mode="json")
    body.update(version=version, provenance=provenance, description=(
        f"{s.optimizer} candidate from {s.pv.ref}: {len(demos)} demos"
        + (f", at most {budget.per_label} per label" if budget.per_label else "")
        + f", chosen on {s.ts.ref} (seed {s.seed})."))
    body = {k: v for k, v in body.items() if v is not None or k in ("response_schema",)}
    path = write_version(s.ws.root, body, (
        f"# Written by `promptgov optimize` from {s.pv.ref}; a new version is a new file, "
        "never an edit.\n# Lock it (`promptgov lock`) before approving it.\n"))
    return s.ws.prompt(f"{s.pv.name}@{version}"), path


def _judge(result: OptimizeResult, s: _Setup, new: PromptVersion, *, track: bool,
           concurrency: int, say: Callable[[str], None]) -> None:
    """Evaluate parent and candidate on the judging evalset, into ``result``."""
    from promptgov.eval import evaluate

    for who, ver in (("parent", s.pv), ("candidate", new)):
        r = evaluate(ver, s.es.manifest.name, model=s.m, workspace=s.ws, track=track,
                     concurrency=concurrency)
        result.eval_metrics[who] = r.metrics
        result.eval_run_ids[who] = r.run_id
        say(f"{ver.ref} on {s.es.ref}: accuracy {r.metrics['accuracy']:.4f}"
            + (f" (run {r.run_id})" if r.run_id else ""))


def _run(s: _Setup, settings: dict[str, Any], student: Any,
         lm: Any) -> tuple[Any, list[dict[str, Any]]]:
    """Compile ``student`` with the optimizer; returns (program, trials)."""
    import dspy
    from dspy import teleprompt as tp

    from promptgov.optimizers._select import HerdingFewShot

    metric_fn, train, valset = s.metric_fn, s.train, s.valset
    if s.optimizer == "herding":
        herding = HerdingFewShot(metric=metric_fn, label_field=s.label_field, seed=s.seed,
                                 **settings)
        best = herding.compile(student, trainset=train, valset=valset)
        best.herding_score = herding.best_score  # the validation score before the refit
        return best, herding.trials
    if s.optimizer == "labeled":
        return tp.LabeledFewShot(**settings).compile(student, trainset=train), []
    if s.optimizer == "bootstrap":
        return tp.BootstrapFewShot(metric=metric_fn, **settings).compile(
            student, trainset=train), []
    if s.optimizer == "random_search":
        opt = tp.BootstrapFewShotWithRandomSearch(metric=metric_fn, **settings)
        best = _quiet(lambda: opt.compile(student, trainset=train, valset=valset))
        trials = [{"trial": i, "seed": c["seed"], "score": float(c["score"]) / 100.0}
                  for i, c in enumerate(sorted(best.candidate_programs,
                                               key=lambda c: c["seed"]))]
        return best, trials
    if s.optimizer == "copro":
        opt = tp.COPRO(metric=metric_fn, prompt_model=lm, **settings)
        best = opt.compile(student, trainset=valset,
                           eval_kwargs={"display_progress": False, "num_threads": 1})
        trials = [{"trial": i, "instructions": c["instruction"][:500], "score": c["score"]}
                  for i, c in enumerate(getattr(best, "candidate_programs", []))]
        return best, trials
    opt = tp.MIPROv2(metric=metric_fn, prompt_model=lm, task_model=lm, seed=s.seed, **settings)
    with dspy.context(lm=lm):
        best = opt.compile(student, trainset=train, valset=valset, requires_permission_to_run=False)
    trials = [{"trial": i, "score": t.get("full_eval_score", t.get("mb_score"))}
              for i, t in sorted((getattr(best, "trial_logs", None) or {}).items())
              if isinstance(t, dict)]
    return best, trials


def _quiet(fn: Callable[[], Any]) -> Any:
    """DSPy's random search prints its progress: keep it off our stdout (``--json``)."""
    with contextlib.redirect_stdout(sys.stderr):
        return fn()


def _defaults(optimizer: str, budget: _Budget, label_field: str | None, candidates: int,
              n_labels: int, n_parent: int) -> dict[str, Any]:
    """The optimizer's constructor settings that give it the demo budget."""
    per_label, total = budget.per_label, budget.total
    if optimizer == "herding":
        return {"demos_per_label": per_label or 1, "max_demos": total,
                "candidates": candidates, "subsample": 0.7, "refit": True}
    k = total or ((per_label or 1) * n_labels if label_field else max(n_parent, 8))
    if optimizer == "labeled":
        return {"k": k}
    if optimizer == "bootstrap":
        return {"max_bootstrapped_demos": k, "max_labeled_demos": k}
    if optimizer == "random_search":
        return {"max_bootstrapped_demos": k, "max_labeled_demos": k,
                "num_candidate_programs": candidates, "num_threads": 1}
    if optimizer == "copro":
        return {"breadth": 3, "depth": 1}
    return {"auto": "light", "max_bootstrapped_demos": 0, "max_labeled_demos": 0}


def _per_label(pv: PromptVersion, label_field: str | None) -> int | None:
    if label_field is None or not pv.demos:
        return None
    from collections import Counter

    counts = Counter(d.output.get(label_field) for d in pv.demos if isinstance(d.output, dict))
    return max(counts.values()) if counts else None


def _fixed_tokens(pv: PromptVersion) -> int:
    from promptgov.model._embedding import token_count

    return sum(token_count(m["content"]) + 3 for m in pv.render(pv.probe_input)[:pv.prefix_len])


def _score(program: Any, valset: list[Any], metric_fn: MetricFn) -> float:
    if not valset:
        return float("nan")
    return sum(float(metric_fn(ex, program(**ex.inputs()))) for ex in valset) / len(valset)


def _metric(metric: str | MetricFn | None, kind: str) -> tuple[str, MetricFn]:
    from promptgov.eval._fieldscore import case_f1, same

    def accuracy(example: Any, pred: Any, trace: Any = None) -> bool:
        exp = example.labels().toDict()
        return all(same(pred.get(k), v) for k, v in exp.items() if k != "confidence")

    def f1(example: Any, pred: Any, trace: Any = None) -> float:
        exp = example.labels().toDict()
        return case_f1(exp, {k: pred.get(k) for k in exp})

    if callable(metric):
        return getattr(metric, "__name__", "custom"), metric
    name = metric or ("f1" if kind == "extraction" else "accuracy")
    fns: dict[str, MetricFn] = {"accuracy": accuracy, "f1": f1}
    if name not in fns:
        raise ValueError(f"unknown metric {name!r}; choose accuracy or f1, or pass a function "
                         "fn(example, prediction, trace=None)")
    return name, fns[name]


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    """Settings as YAML-safe data (a callable or an object becomes its name)."""
    out: dict[str, object] = {}
    for k, v in d.items():
        if v is None or isinstance(v, bool | int | float | str):
            out[k] = v
        elif isinstance(v, list | tuple):
            out[k] = [x if isinstance(x, bool | int | float | str) else repr(x) for x in v]
        else:
            out[k] = getattr(v, "__name__", repr(v))
    return {k: v for k, v in out.items() if v is not None}

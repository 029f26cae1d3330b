"""``optimize()``: a DSPy optimizer proposes a candidate version of a prompt, written as the next
version file with its provenance, never as an edit of the parent.

1. The trainset must be disjoint from the evalset the candidate is judged on (by case id and by
   input): an overlap is refused, naming the cases.
2. The prompt version becomes a DSPy program (:mod:`promptgov.optimize._program`); the trainset
   is split (seeded) into the demo pool and a validation split the trials are scored on.
3. The optimizer runs; its demos are cut to the budget (demos per label, prompt tokens).
4. The candidate is written to ``prompts/<name>/v<N+1>.yaml`` with its ``provenance``; the
   optimization is one MLflow run (settings, trials and their scores, the candidate).
5. Parent and candidate are evaluated on the judging evalset (the candidate's first eval, linked
   to the optimization run both ways), so ``compare`` shows them with the paired test.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptgov.errors import PromptgovError
from promptgov.optimize._trials import OptimizationRun

OPTIMIZERS = ("herding", "labeled", "bootstrap", "random_search", "copro", "mipro")
"""``herding`` (promptgov's representative demos) and DSPy's ``LabeledFewShot``,
``BootstrapFewShot``, ``BootstrapFewShotWithRandomSearch``, ``COPRO`` and ``MIPROv2``; the last
two rewrite the instructions and need a real model to propose them (``prompt_model``)."""
INSTRUCTION_OPTIMIZERS = ("copro", "mipro")


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


def check_disjoint(train, evalset) -> None:
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


def optimize(prompt: Any, *, trainset: str, evalset: str | None = None,
             metric: str | Callable | None = None, optimizer: str = "herding",
             model: str | None = None, prompt_model: str | None = None,
             api_base: str | None = None, workspace: Any = None, seed: int = 0,
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
    import dspy

    from promptgov._version import __version__
    from promptgov.eval._engine import resolve
    from promptgov.optimize._program import Caller, PromptProgram, to_example
    from promptgov.optimize._select import apply_budget

    say = progress or (lambda msg: None)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    opts = {"api_base": api_base} if api_base else {}
    ws, pv, es, schema_model, policy, m = resolve(workspace, prompt, evalset, model,
                                                  model_options=opts)
    ts = ws.evalset(trainset)
    check_disjoint(ts, es)
    if optimizer in INSTRUCTION_OPTIMIZERS and (prompt_model or m.id).startswith(
            ("local/", "replay:", "fake/")):
        raise ValueError(f"{optimizer} proposes instructions with a language model: pass "
                         "prompt_model (a LiteLLM id such as openai/gpt-4o-mini) or a real "
                         f"--model; {m.id} cannot write instructions")
    schema_json = schema_model.model_json_schema() if schema_model else None
    caller = Caller(pv, m, schema_model, schema_json)
    outs = caller.outs
    label_field = "label" if pv.kind == "classification" and "label" in outs else None
    metric_name, metric_fn = _metric(metric, pv.kind)

    examples = [to_example(c.input, c.expected, pv, outs) for c in ts.cases]
    rng = random.Random(seed)
    order = list(range(len(examples)))
    rng.shuffle(order)
    n_val = min(val_size, len(examples) // 5)
    valset = [examples[i] for i in order[:n_val]]
    train = [examples[i] for i in order[n_val:]]
    if not train:
        raise ValueError(f"trainset {ts.ref} has {len(ts)} cases: too few to optimize on")

    parent_per_label = _per_label(pv, label_field)
    per_label = demos_per_label if demos_per_label is not None else (
        parent_per_label if label_field else None)
    total = max_demos if max_demos is not None else (None if label_field else len(pv.demos)
                                                     or 8)
    budget = {"demos_per_label": per_label, "max_demos": total,
              "max_prompt_tokens": max_prompt_tokens}
    opt_settings = {**_defaults(optimizer, per_label, total, label_field, candidates,
                                len(pv.labels or {}), len(pv.demos)), **(settings or {})}
    run = OptimizationRun(ws.root, pv, track=track)
    try:
        say(f"optimizing {pv.ref} with {optimizer} on {ts.ref} ({len(train)} pool, "
            f"{len(valset)} validation cases), seed {seed}")
        student = PromptProgram(caller)
        lm = None
        if optimizer in INSTRUCTION_OPTIMIZERS:
            lm = dspy.LM(prompt_model or m.id, cache=False, **opts)
        with dspy.context(lm=lm) if lm is not None else _null():
            best, trials = _run(optimizer, opt_settings, student, train, valset, metric_fn,
                                label_field, seed, lm)
        pred = best.predict
        if optimizer in INSTRUCTION_OPTIMIZERS and not pred.demos:
            pred.demos = list(student.predict.demos)  # instructions only: keep the parent's
        demos = apply_budget(list(pred.demos), label_field=label_field,
                             demos_per_label=per_label, max_prompt_tokens=None,
                             fixed_tokens=None)
        if total is not None:
            demos = demos[:total]
        if max_prompt_tokens is not None:
            demos = apply_budget(demos, label_field=None, demos_per_label=None,
                                 max_prompt_tokens=max_prompt_tokens,
                                 fixed_tokens=lambda d: _fixed_tokens(
                                     caller.candidate(d, pred.signature.instructions)))
        cand = caller.candidate(demos, pred.signature.instructions)
        val = {"parent": _score(PromptProgram(caller), valset, metric_fn)}
        chosen = PromptProgram(caller)
        chosen.predict.demos, chosen.predict.signature = demos, pred.signature
        pre = getattr(best, "herding_score", None)  # a refit candidate has seen the split
        val["candidate"] = pre if pre is not None else _score(chosen, valset, metric_fn)
        say(f"validation {metric_name}: parent {val['parent']:.4f}, candidate "
            f"{val['candidate']:.4f}")

        version = max(ws.versions(pv.name)) + 1
        provenance = {
            "parent": pv.ref, "parent_hash": pv.content_hash, "optimizer": optimizer,
            "settings": _plain({**opt_settings, **budget, "val_size": len(valset),
                                "prompt_model": prompt_model}),
            "seed": seed, "trainset": ts.ref, "trainset_hash": ts.hash, "judged_on": es.ref,
            "judged_on_hash": es.hash, "metric": metric_name, "model": m.id,
            "mlflow_run": run.run_id,
            "packages": {"promptgov": __version__, "dspy": dspy.__version__}}
        body = cand.model_dump(mode="json")
        body.update(version=version, provenance=provenance, description=(
            f"{optimizer} candidate from {pv.ref}: {len(demos)} demos"
            + (f", at most {per_label} per label" if per_label else "")
            + f", chosen on {ts.ref} (seed {seed})."))
        body = {k: v for k, v in body.items() if v is not None or k in ("response_schema",)}
        from promptgov.optimize._write import write_version

        path = write_version(ws.root, body, (
            f"# Written by `promptgov optimize` from {pv.ref}; a new version is a new file, "
            "never an edit.\n# Lock it (`promptgov lock`) before approving it.\n"))
        new = ws.prompt(f"{pv.name}@{version}")
        say(f"wrote {ws.relpath(path)} ({new.ref}, {new.content_hash[:19]}...)")
        result = OptimizeResult(
            parent=pv.ref, candidate=new.ref, path=path, optimizer=optimizer, seed=seed,
            trainset=ts.ref, evalset=es.ref, metric=metric_name, val_scores=val,
            trials=trials, demos={"parent": len(pv.demos), "candidate": len(new.demos)},
            prompt_tokens={"parent": _fixed_tokens(pv), "candidate": _fixed_tokens(new)},
            run_id=run.run_id)
        if evaluate_candidate:
            from promptgov.eval import evaluate

            for who, ver in (("parent", pv), ("candidate", new)):
                r = evaluate(ver, es.manifest.name, model=m, workspace=ws, track=track,
                             concurrency=concurrency)
                result.eval_metrics[who] = r.metrics
                result.eval_run_ids[who] = r.run_id
                say(f"{ver.ref} on {es.ref}: accuracy {r.metrics['accuracy']:.4f}"
                    + (f" (run {r.run_id})" if r.run_id else ""))
        run.finish(result, provenance)
    except BaseException:
        run.fail()
        raise
    return result


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _run(optimizer, settings, student, train, valset, metric_fn, label_field, seed, lm):
    """Compile ``student`` with the optimizer; returns (program, trials)."""
    import dspy
    from dspy import teleprompt as tp

    from promptgov.optimize._select import HerdingFewShot

    if optimizer == "herding":
        opt = HerdingFewShot(metric=metric_fn, label_field=label_field, seed=seed, **settings)
        best = opt.compile(student, trainset=train, valset=valset)
        best.herding_score = opt.best_score  # the validation score before the refit
        return best, opt.trials
    if optimizer == "labeled":
        return tp.LabeledFewShot(**settings).compile(student, trainset=train), []
    if optimizer == "bootstrap":
        return tp.BootstrapFewShot(metric=metric_fn, **settings).compile(
            student, trainset=train), []
    if optimizer == "random_search":
        opt = tp.BootstrapFewShotWithRandomSearch(metric=metric_fn, **settings)
        best = _quiet(lambda: opt.compile(student, trainset=train, valset=valset))
        trials = [{"trial": i, "seed": c["seed"], "score": float(c["score"]) / 100.0}
                  for i, c in enumerate(sorted(best.candidate_programs,
                                               key=lambda c: c["seed"]))]
        return best, trials
    if optimizer == "copro":
        opt = tp.COPRO(metric=metric_fn, prompt_model=lm, **settings)
        best = opt.compile(student, trainset=valset,
                           eval_kwargs={"display_progress": False, "num_threads": 1})
        trials = [{"trial": i, "instructions": c["instruction"][:500], "score": c["score"]}
                  for i, c in enumerate(getattr(best, "candidate_programs", []))]
        return best, trials
    opt = tp.MIPROv2(metric=metric_fn, prompt_model=lm, task_model=lm, seed=seed, **settings)
    with dspy.context(lm=lm):
        best = opt.compile(student, trainset=train, valset=valset, requires_permission_to_run=False)
    trials = [{"trial": i, "score": t.get("full_eval_score", t.get("mb_score"))}
              for i, t in sorted((getattr(best, "trial_logs", None) or {}).items())
              if isinstance(t, dict)]
    return best, trials


def _quiet(fn):
    """DSPy's random search prints its progress: keep it off our stdout (``--json``)."""
    import contextlib

    with contextlib.redirect_stdout(sys.stderr):
        return fn()


def _defaults(optimizer, per_label, total, label_field, candidates, n_labels, n_parent):
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


def _per_label(pv, label_field) -> int | None:
    if label_field is None or not pv.demos:
        return None
    from collections import Counter

    counts = Counter(d.output.get(label_field) for d in pv.demos if isinstance(d.output, dict))
    return max(counts.values()) if counts else None


def _fixed_tokens(pv) -> int:
    from promptgov.model._embedding import token_count

    return sum(token_count(m["content"]) + 3 for m in pv.render(pv.probe_input)[:pv.prefix_len])


def _score(program, valset, metric_fn) -> float:
    if not valset:
        return float("nan")
    return sum(float(metric_fn(ex, program(**ex.inputs()))) for ex in valset) / len(valset)


def _metric(metric, kind: str) -> tuple[str, Callable]:
    from promptgov.eval._fieldscore import case_f1, same

    def accuracy(example, pred, trace=None) -> bool:
        exp = example.labels().toDict()
        return all(same(pred.get(k), v) for k, v in exp.items() if k != "confidence")

    def f1(example, pred, trace=None) -> float:
        exp = example.labels().toDict()
        return case_f1(exp, {k: pred.get(k) for k in exp})

    if callable(metric):
        return getattr(metric, "__name__", "custom"), metric
    name = metric or ("f1" if kind == "extraction" else "accuracy")
    fns = {"accuracy": accuracy, "f1": f1}
    if name not in fns:
        raise ValueError(f"unknown metric {name!r}; choose accuracy or f1, or pass a function "
                         "fn(example, prediction, trace=None)")
    return name, fns[name]


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    """Settings as YAML-safe data (a callable or an object becomes its name)."""
    out = {}
    for k, v in d.items():
        if v is None or isinstance(v, bool | int | float | str):
            out[k] = v
        elif isinstance(v, list | tuple):
            out[k] = [x if isinstance(x, bool | int | float | str) else repr(x) for x in v]
        else:
            out[k] = getattr(v, "__name__", repr(v))
    return {k: v for k, v in out.items() if v is not None}

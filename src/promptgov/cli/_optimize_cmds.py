"""``promptgov optimize``: a DSPy optimizer proposes the next version of a prompt. DSPy, MLflow
and the models load inside the command."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from promptgov.cli._app import WorkspaceOpt, app, workspace
from promptgov.cli._eval_cmds import (
    ApiBaseOpt,
    ConcurrencyOpt,
    JsonOpt,
    ModelOpt,
    _errors,
    _num,
    _quiet_mlflow,
)


@app.command("optimize")
def optimize_cmd(
    ref: Annotated[str, typer.Argument(metavar="PROMPT@VERSION",
                                       help="The parent, e.g. ticket_triage@2.")],
    trainset: Annotated[str, typer.Option(
        "--trainset", "-t", help="Evalset the demos and trials come from (disjoint from the "
        "judging evalset).")],
    evalset: Annotated[str | None, typer.Option(
        "--evalset", "-e", help="Evalset the candidate is judged on (default: the prompt's).")]
    = None,
    optimizer: Annotated[str, typer.Option(
        "--optimizer", "-o", help="herding, labeled, bootstrap, random_search (demo selectors); "
        "copro, mipro (instruction proposers: need a real model).")] = "herding",
    metric: Annotated[str | None, typer.Option(
        help="accuracy or f1 (default: accuracy for classification, f1 for extraction).")]
    = None,
    seed: Annotated[int, typer.Option(min=0, help="Same seed, same candidate.")] = 0,
    demos_per_label: Annotated[int | None, typer.Option(
        min=0, help="Demo budget per label (default: the parent's).")] = None,
    max_demos: Annotated[int | None, typer.Option(min=0, help="Demo budget in total.")] = None,
    max_prompt_tokens: Annotated[int | None, typer.Option(
        min=1, help="Token budget of the fixed prompt part (system + demos).")] = None,
    candidates: Annotated[int, typer.Option(
        min=1, help="Candidate demo sets scored on the validation split (herding: 1 is the "
        "whole pool; more adds seeded subsamples).")] = 1,
    val_size: Annotated[int, typer.Option(
        min=0, help="Trainset cases kept out of the demo pool to score trials on.")] = 770,
    model: ModelOpt = None,
    prompt_model: Annotated[str | None, typer.Option(
        help="LiteLLM model that proposes instructions (copro, mipro).")] = None,
    api_base: ApiBaseOpt = None,
    no_eval: Annotated[bool, typer.Option(
        "--no-eval", help="Do not evaluate parent and candidate afterwards.")] = False,
    no_track: Annotated[bool, typer.Option("--no-track", help="Do not log to MLflow.")] = False,
    concurrency: ConcurrencyOpt = 8, as_json: JsonOpt = False, ws: WorkspaceOpt = None,
) -> None:
    """Propose the next version of a prompt: run a DSPy optimizer on its demos (or
    instructions), write prompts/<name>/v<N+1>.yaml with its provenance, log the trials to
    MLflow, and evaluate parent and candidate on the judging evalset. The candidate is unlocked
    until `promptgov lock`; compare, approve and export treat it like any version.

    Example: promptgov optimize ticket_triage@2 --trainset ticket_triage_train --seed 0
    """
    _quiet_mlflow()
    from promptgov.optimizers import optimize

    w = workspace(ws)
    with _errors(ValueError):
        r = optimize(ref, trainset=trainset, evalset=evalset, metric=metric, optimizer=optimizer,
                     model=model, prompt_model=prompt_model, api_base=api_base, workspace=w,
                     seed=seed, demos_per_label=demos_per_label, max_demos=max_demos,
                     max_prompt_tokens=max_prompt_tokens, candidates=candidates,
                     val_size=val_size, track=not no_track, evaluate_candidate=not no_eval,
                     concurrency=concurrency,
                     progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    keys = ("accuracy", "macro_f1", "field_f1", "intent_micro_f1", "object_match",
            "prompt_tokens")
    evals = {who: {k: _num(m[k]) for k in keys if k in m} for who, m in r.eval_metrics.items()}
    if as_json:
        print(json.dumps({
            "parent": r.parent, "candidate": r.candidate, "path": w.relpath(r.path),
            "optimizer": r.optimizer, "seed": r.seed, "trainset": r.trainset,
            "evalset": r.evalset, "metric": r.metric, "val_scores": r.val_scores,
            "trials": r.trials, "demos": r.demos, "prompt_tokens": r.prompt_tokens,
            "eval": evals, "run_id": r.run_id, "eval_run_ids": r.eval_run_ids}, indent=1,
            default=str))
        return
    print(f"{r.parent} -> {r.candidate} ({w.relpath(r.path)}) by {r.optimizer}, seed {r.seed}")
    print(f"  demos {r.demos['parent']} -> {r.demos['candidate']}, fixed prompt tokens "
          f"{r.prompt_tokens['parent']} -> {r.prompt_tokens['candidate']}")
    print(f"  validation {r.metric} ({r.trainset}): parent {r.val_scores['parent']:.4f}, "
          f"candidate {r.val_scores['candidate']:.4f}")
    for k in keys:
        if k in evals.get("parent", {}) and k != "prompt_tokens":
            print(f"  {r.evalset} {k}: parent {evals['parent'][k]:.4f}, candidate "
                  f"{evals['candidate'][k]:.4f}")
    print(f"MLflow run: {r.run_id}" if r.run_id else "not logged to MLflow (--no-track)")
    print(f"next: promptgov lock; promptgov compare {r.parent.split('@')[0]}")

"""``promptgov adversarial``: what realistic input noise costs a prompt, and the smallest noise
that flips an answer. hypothesis, MLflow, pandas and the models load inside the command."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from promptgov.cli._app import WorkspaceOpt, app, workspace
from promptgov.cli._eval_cmds import (
    ConcurrencyOpt,
    EvalsetOpt,
    JsonOpt,
    ModelOpt,
    _errors,
    _fmt,
    _num,
    _quiet_mlflow,
)

if TYPE_CHECKING:
    from promptgov.robustness._result import AdversarialResult
    from promptgov.workspace import Workspace

_MAIN = ("accuracy", "macro_f1", "object_match", "failure_rate", "automation_rate",
         "auto_precision", "fallback_rate", "ece", "prompt_tokens")


@app.command("adversarial")
def adversarial_cmd(
    ref: Annotated[str, typer.Argument(metavar="PROMPT@VERSION",
                                       help="e.g. ticket_triage@2 (no version: the latest).")],
    evalset: EvalsetOpt = None, model: ModelOpt = None,
    n: Annotated[int, typer.Option("-n", "--n", min=1, help="Noisy variants to generate.")]
    = 300,
    seed: Annotated[int, typer.Option(min=0, help="Same seed, same noisy evalset.")] = 0,
    transforms: Annotated[str | None, typer.Option(
        help="Comma-separated transformations to draw from (default: all).")] = None,
    max_transforms: Annotated[int, typer.Option(min=1, help="At most this many per variant.")]
    = 2,
    minimal: Annotated[int, typer.Option(
        min=0, help="Clean-correct cases to search for a minimal failing input (0: none).")] = 5,
    lock: Annotated[bool, typer.Option("--lock", help="Run `promptgov lock` after writing the "
                                       "noisy evalset.")] = False,
    concurrency: ConcurrencyOpt = 8,
    no_track: Annotated[bool, typer.Option("--no-track", help="Do not log to MLflow.")] = False,
    as_json: JsonOpt = False, ws: WorkspaceOpt = None,
) -> None:
    """Measure robustness to noisy inputs: build a reproducible noisy evalset
    (evalsets/<evalset>-noisy-s<seed>/), evaluate clean and noisy, print the accuracy delta per
    transformation and the minimal failing inputs, and log one MLflow run.

    Example: promptgov adversarial ticket_triage@2 --model local/knn -n 500 --seed 1
    """
    _quiet_mlflow()
    from promptgov.robustness import adversarial

    w = workspace(ws)
    kinds = [t.strip() for t in transforms.split(",") if t.strip()] if transforms else None
    with _errors(ValueError):
        r = adversarial(ref, evalset, model=model, workspace=w, n=n, seed=seed, kinds=kinds,
                max_transforms=max_transforms, minimal=minimal, lock=lock,
                concurrency=concurrency, track=not no_track,
                progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    fails = r.minimal_failures
    if as_json:
        print(json.dumps({
            "prompt": r.prompt, "evalset": r.evalset, "model": r.model,
            "noisy_evalset": r.noisy_evalset.ref, "noisy_evalset_hash": r.noisy_evalset.hash,
            "run_id": r.run_id, "metrics": {k: _num(v) for k, v in r.metrics.items()},
            "deltas": json.loads(r.deltas.reset_index().to_json(orient="records")),
            "minimal_failures": [] if fails is None else
            json.loads(fails.to_json(orient="records", force_ascii=False))}, indent=1,
            ensure_ascii=False))
        return
    _print(r, w)


def _print(r: AdversarialResult, w: Workspace) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    con = Console(width=max(120, Console().width))
    es = r.noisy_evalset
    print(f"{r.prompt} with {r.model}: {r.evalset} vs {es.ref} ({len(es)} noisy variants, "
          f"{es.hash})")
    t = Table(box=box.SIMPLE, title="clean vs noisy")
    for c in ("metric", "clean", "noisy", "delta"):
        t.add_column(c, justify="left" if c == "metric" else "right")
    md = r.metric_deltas
    for k in (k for k in _MAIN if k in md.index):
        row = md.loc[k]
        t.add_row(k, _fmt(row["clean"]), _fmt(row["noisy"]), f"{_num(row['delta']):+.4g}")
    con.print(t)
    t = Table(box=box.SIMPLE, title="accuracy by transformation (worst first)",
              caption="delta: noisy accuracy of the variants it took part in minus the clean "
              "accuracy of their source cases; alone: variants made by it alone")
    for c in ("transformation", "variants", "clean", "noisy", "delta", "flipped", "alone",
              "Δ alone"):
        t.add_column(c, justify="left" if c == "transformation" else "right")
    rows = r.deltas.reset_index().to_dict("records")
    for row in rows[:1] + sorted(rows[1:], key=lambda x: (x["delta"], x["transform"])):
        t.add_row(row["transform"], str(row["variants"]), _fmt(row["clean_accuracy"], 3),
                  _fmt(row["noisy_accuracy"], 3), _signed(row["delta"]), str(row["flipped"]),
                  str(row["alone"]), _signed(row["delta_alone"]))
    con.print(t)
    if r.minimal_failures is not None:
        _print_minimal(r.minimal_failures)
    from promptgov.workspace._lock import read_lock

    if r.locked:
        print(f"locked: {', '.join(r.locked)}")
    if read_lock(w.root)["evalsets"].get(es.ref, {}).get("hash") != es.hash:
        print(f"note: {es.ref} ({w.relpath(es.dir)}) is not locked: run `promptgov lock` (or "
              "pass --lock) before `promptgov check`")
    print(f"MLflow run: {r.run_id}" if r.run_id else "not logged to MLflow (--no-track)")


def _print_minimal(fails: Any) -> None:
    """The shrunk answer-flipping inputs (a DataFrame), each with what it changed."""
    print(f"minimal failing inputs ({len(fails)}):")
    for f in fails.to_dict("records"):
        exp, clean, noisy = _changed(f["expected"], f["clean_answer"], f["noisy_answer"])
        print(f"- {f['case_id']} [{', '.join(f['transforms'])}] expected {_short(exp)}, "
              f"clean → {_short(clean)}, noisy → {_short(noisy)}"
              + (f" ({f['failure']})" if f["failure"] else ""))
        print(f"    clean: {f['clean_text']!r}\n    noisy: {f['noisy_text']!r}")


def _signed(v: Any) -> str:
    v = _num(v)
    return "—" if v is None else f"{v:+.3f}"


def _changed(expected: Any, clean: Any, noisy: Any) -> tuple[Any, ...]:
    """For object answers, only the fields the noise changed."""
    if not all(isinstance(x, dict) for x in (expected, clean, noisy)):
        return expected, clean, noisy
    keys = [k for k in expected if clean.get(k) != noisy.get(k)] or list(expected)
    return tuple({k: x.get(k) for k in keys} for x in (expected, clean, noisy))


def _short(v: Any) -> str:
    if isinstance(v, dict) and len(v) == 1:
        v = next(iter(v.values()))
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)

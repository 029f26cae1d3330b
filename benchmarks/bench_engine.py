"""Eval-engine overhead against the physical limit, side by side with DSPy and pydantic-evals.

The physical limit of an eval is ``cases × latency / concurrency``: what a harness with zero
overhead would take. Every harness here runs the same work, a model call that sleeps for the
latency, in the same process:

- promptgov: ``evaluate()`` with ``FakeModel(latency_s=...)`` on a generated evalset (the triage
  prompt v1 in a temporary workspace), ``track=False``; once with ``cache=False`` and once with
  ``cache=True`` (a fresh cache: every answer is a miss and a batched write, as in a first run);
- DSPy: ``dspy.Evaluate(devset=..., metric=..., num_threads=16)`` over a trivial ``dspy.Module``
  whose ``forward`` sleeps for the latency;
- pydantic-evals: ``Dataset(cases=...).evaluate_sync(task, max_concurrency=16)`` with a task that
  sleeps for the latency.

Two scenarios: 1,000 cases at 50 ms (limit 3.125 s at concurrency 16), and 5,000 cases at 0 ms
(pure per-case overhead). Targets (DESIGN.md, principle 7): promptgov within 1.10× of the limit
and no slower than either peer.

Run:  ``.venv/bin/python -m benchmarks.bench_engine`` (``--profile`` adds a per-thread cProfile of
the promptgov 0-ms run; ``--repeat N`` keeps the best of N runs of each row).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import pstats
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = 16
PROMPT = "ticket_triage@1"


# -- the generated workspace ---------------------------------------------------------------

def make_workspace(dst: Path, n: int) -> Path:
    """A workspace with the triage prompt v1, its schema and policy, and an evalset of ``n``
    cases cycled from the example triage evalset (ids and texts made unique)."""
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for d in ("schemas", "governance"):
        shutil.copytree(ROOT / d, dst / d)
    (dst / "prompts" / "ticket_triage").mkdir(parents=True)
    shutil.copy(ROOT / "prompts" / "ticket_triage" / "v1.yaml",
                dst / "prompts" / "ticket_triage" / "v1.yaml")
    base = [json.loads(line) for line in
            (ROOT / "evalsets" / "ticket_triage" / "cases.jsonl").read_text().splitlines()
            if line.strip()]
    es = dst / "evalsets" / "ticket_triage"
    es.mkdir(parents=True)
    with (es / "cases.jsonl").open("w", encoding="utf-8") as f:
        for i in range(n):
            b = base[i % len(base)]
            f.write(json.dumps({"id": f"bench-{i:05d}",
                                "input": {"text": f"{b['input']['text']} (#{i})"},
                                "expected": b["expected"]}) + "\n")
    (es / "manifest.yaml").write_text(
        "name: ticket_triage\nversion: 1\nsource: benchmarks/bench_engine.py (generated)\n"
        f"license: CC-BY-4.0\ncount: {n}\n", encoding="utf-8")
    return dst


def cases_of(n: int) -> list[tuple[str, str, str]]:
    """(id, text, label) for the peers: the same texts the promptgov evalset holds."""
    base = [json.loads(line) for line in
            (ROOT / "evalsets" / "ticket_triage" / "cases.jsonl").read_text().splitlines()
            if line.strip()]
    return [(f"bench-{i:05d}", f"{base[i % len(base)]['input']['text']} (#{i})",
             base[i % len(base)]["expected"]["label"]) for i in range(n)]


# -- the harnesses -------------------------------------------------------------------------

def run_promptgov(tmp: Path, n: int, latency: float, *, cache: bool,
                  profile: bool = False) -> float:
    from promptgov.eval import evaluate
    from promptgov.model._base import Usage
    from promptgov.model._fake import FakeModel
    from promptgov.workspace import Workspace

    root = make_workspace(tmp / f"ws-{n}-{latency}-{int(cache)}", n)
    ws = Workspace(root)
    ws.prompt(PROMPT), ws.evalset("ticket_triage"), ws.schemas  # load outside the timing
    # A fixed usage: the fake's default token estimate walks all 464 prompt messages per call,
    # which is the fake's cost, not the harness's.
    model = FakeModel(latency_s=latency, usage=Usage(400, 12))
    profs: list[cProfile.Profile] = []
    undo = _profile_threads(profs) if profile else None
    try:
        t0 = time.perf_counter()
        r = evaluate(PROMPT, workspace=ws, model=model, concurrency=CONCURRENCY, cache=cache,
                     track=False)
        wall = time.perf_counter() - t0
    finally:
        if undo:
            undo()
    assert len(r.records) == n and r.metrics["failure_rate"] == 0, r
    if profile:
        _print_profile(profs, f"promptgov n={n} latency={latency} cache={cache}")
    shutil.rmtree(root, ignore_errors=True)
    return wall


def run_dspy(n: int, latency: float) -> float:
    import dspy

    class Classify(dspy.Module):
        def forward(self, text: str):
            time.sleep(latency)
            return dspy.Prediction(label="card_arrival")

    devset = [dspy.Example(text=text, label=label).with_inputs("text")
              for _, text, label in cases_of(n)]

    def metric(example, pred, trace=None):
        return example.label == pred.label

    ev = dspy.Evaluate(devset=devset, metric=metric, num_threads=CONCURRENCY,
                       display_progress=False, display_table=False)
    t0 = time.perf_counter()
    res = ev(Classify())
    wall = time.perf_counter() - t0
    assert len(res.results) == n
    return wall


def run_pydantic_evals(n: int, latency: float) -> float:
    from pydantic_evals import Case, Dataset

    ds = Dataset(name="bench", cases=[Case(name=cid, inputs=text, expected_output=label)
                        for cid, text, label in cases_of(n)])

    def task(text: str) -> str:
        time.sleep(latency)
        return "card_arrival"

    t0 = time.perf_counter()
    report = ds.evaluate_sync(task, max_concurrency=CONCURRENCY, progress=False)
    wall = time.perf_counter() - t0
    assert len(report.cases) + len(report.failures) == n and not report.failures
    return wall


# -- profiling -----------------------------------------------------------------------------

def _profile_threads(profs: list[cProfile.Profile]):
    """cProfile every thread started from now on (the eval pool and the cache writer) and the
    main thread; returns the function that stops it."""
    main = cProfile.Profile()
    profs.append(main)
    lock = threading.Lock()
    orig_run = threading.Thread.run

    def run(self):
        p = cProfile.Profile()
        with lock:
            profs.append(p)
        p.enable()
        try:
            orig_run(self)
        finally:
            p.disable()

    threading.Thread.run = run  # type: ignore[method-assign]
    main.enable()

    def undo():
        main.disable()
        threading.Thread.run = orig_run  # type: ignore[method-assign]

    return undo


def _print_profile(profs: list[cProfile.Profile], title: str, top: int = 25) -> None:
    st = pstats.Stats(profs[0], stream=sys.stdout)
    for p in profs[1:]:
        with contextlib.suppress(TypeError):  # a profile that never ran
            st.add(p)
    print(f"\n== cProfile, all threads summed (lock waits included): {title}")
    st.strip_dirs().sort_stats("tottime").print_stats(top)


# -- main ----------------------------------------------------------------------------------

def best(f, repeat: int) -> float:
    return min(f() for _ in range(repeat))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--overhead-cases", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--profile", action="store_true",
                    help="print a per-thread cProfile of the promptgov runs")
    args = ap.parse_args(argv)

    import dspy  # noqa: F401  (imports outside the timings)
    import pydantic_evals  # noqa: F401

    import promptgov.eval  # noqa: F401

    tmp = Path(tempfile.mkdtemp(prefix="promptgov-bench-"))
    rows: list[dict] = []
    try:
        for n, lat in ((args.cases, args.latency), (args.overhead_cases, 0.0)):
            limit = n * lat / CONCURRENCY
            runs = {
                "promptgov (cache=False)": lambda n=n, lat=lat: run_promptgov(
                    tmp, n, lat, cache=False),
                "promptgov (cache=True)": lambda n=n, lat=lat: run_promptgov(
                    tmp, n, lat, cache=True),
                "dspy.Evaluate": lambda n=n, lat=lat: run_dspy(n, lat),
                "pydantic-evals": lambda n=n, lat=lat: run_pydantic_evals(n, lat),
            }
            for name, f in runs.items():
                wall = best(f, args.repeat)
                rows.append({"harness": name, "cases": n, "latency_s": lat,
                             "limit_s": round(limit, 4), "wall_s": round(wall, 4),
                             "x_limit": round(wall / limit, 4) if limit else None,
                             # excess wall time over the limit, per case
                             "us_per_case": round((wall - limit) / n * 1e6, 1)})
        if args.profile:
            run_promptgov(tmp, args.overhead_cases, 0.0, cache=True, profile=True)
            run_promptgov(tmp, args.cases, args.latency, cache=True, profile=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nconcurrency {CONCURRENCY}; limit = cases × latency / concurrency; "
          "µs/case = (wall − limit) / cases")
    print(f"{'harness':26s} {'cases':>6s} {'latency':>8s} {'limit s':>8s} {'wall s':>8s} "
          f"{'× limit':>8s} {'µs/case':>9s}")
    for r in rows:
        xl = f"{r['x_limit']:.3f}" if r["x_limit"] is not None else "-"
        print(f"{r['harness']:26s} {r['cases']:6d} {r['latency_s'] * 1000:6.0f}ms "
              f"{r['limit_s']:8.3f} {r['wall_s']:8.3f} {xl:>8s} {r['us_per_case']:9.1f}")

    def row(h, lat):
        return next(r for r in rows if r["harness"] == h and r["latency_s"] == lat)

    peers = [row(h, args.latency)["wall_s"] for h in ("dspy.Evaluate", "pydantic-evals")]
    targets = {}
    for variant in ("cache=False", "cache=True"):
        r = row(f"promptgov ({variant})", args.latency)
        targets[variant] = {"within_1.10x_limit": r["x_limit"] <= 1.10,
                            "no_slower_than_peers": r["wall_s"] <= min(peers)}
    summary = {"benchmark": "bench_engine", "concurrency": CONCURRENCY, "rows": rows,
               "targets": targets}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()

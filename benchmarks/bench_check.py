"""How fast is `promptgov check` on a large workspace?

Generates a workspace of 1,000 prompt versions (100 prompt names x 10 versions; each a ~2-5 KB
classification prompt with labels and few-shot demos, all answering with the example contract
``ticket_triage@1`` copied from ``schemas/``, scored on a small evalset), runs ``promptgov lock``
once, then times the real console script, wall clock, process start included:

- ``check`` on the unchanged workspace with warm local state (``.promptgov/derived.json``: what
  this machine already derived from the same bytes; target < 0.5 s),
- ``check`` on a fresh clone (no local state: every file parsed, hashed and rendered, as in CI;
  target <= 1.5 s),
- ``check --full`` (every prompt parsed, hashed and rendered again),
- ``check`` after one prompt version was edited (drift: one file re-derived, exit 1),
- ``check --help``: the interpreter + CLI start-up floor under all of the above.

Run:  .venv/bin/python -m benchmarks.bench_check [--names 100] [--versions 10] [--runs 5]

Prints a table and, last, one JSON line with the figures (seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PROMPTGOV = Path(sys.executable).with_name("promptgov")
TARGET_UNCHANGED_S = 0.5
TARGET_FRESH_S = 1.5
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

SYSTEM = """You triage customer messages for the {team} team of a digital bank.
Answer with JSON only: the intent `label` and your `confidence` (0 to 1) that it is right.
{rules}
Labels:
{{% for name, description in labels.items() %}}- {{{{ name }}}}: {{{{ description }}}}
{{% endfor %}}"""

RULES = [
    "If the message mentions more than one problem, pick the one the customer asks about first.",
    "Ignore greetings, signatures and quoted earlier messages.",
    "A message about a card that never arrived is not about a card that does not work.",
    "Prefer the most specific label; use a general one only when nothing specific fits.",
    "Never invent a label that is not in the list.",
    "Confidence below 0.5 means a person will review the message.",
]
TEAMS = ["cards", "payments", "transfers", "top-ups", "identity", "accounts", "cash", "fx"]


def _intents() -> list[str]:
    src = (ROOT / "schemas" / "ticket_triage.py").read_text(encoding="utf-8")
    return [ln.strip().strip('",') for ln in src.split("Intent = Literal[")[1].split("]")[0]
            .splitlines() if ln.strip().startswith('"')]


def _texts() -> dict[str, list[str]]:
    by_label: dict[str, list[str]] = {}
    with (ROOT / "evalsets" / "ticket_triage" / "cases.jsonl").open(encoding="utf-8") as f:
        for line in f:
            c = json.loads(line)
            by_label.setdefault(c["expected"]["label"], []).append(c["input"]["text"])
    return by_label


def generate(root: Path, names: int, versions: int, seed: int = 7) -> dict[str, float]:
    """Write the workspace; returns size statistics of the prompt files."""
    rng = random.Random(seed)
    intents, texts = _intents(), _texts()
    (root / "schemas").mkdir(parents=True)
    shutil.copy(ROOT / "schemas" / "ticket_triage.py", root / "schemas" / "ticket_triage.py")
    (root / "governance").mkdir()

    es = root / "evalsets" / "triage_small"
    es.mkdir(parents=True)
    cases = [{"id": f"s-{i:03d}", "input": {"text": texts[lab][i % len(texts[lab])]},
              "expected": {"label": lab}} for i, lab in enumerate(rng.sample(intents, 40))]
    (es / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases),
                                    encoding="utf-8")
    used = {c["input"]["text"] for c in cases}  # demos never repeat a scored case (check
    texts = {lab: [t for t in ts if t not in used] or ts for lab, ts in texts.items()}  # refuses)
    (es / "manifest.yaml").write_text(yaml.safe_dump({
        "name": "triage_small", "version": 1, "description": "40 Banking77 cases for the bench",
        "source": "evalsets/ticket_triage (Banking77, CC BY 4.0)", "license": "CC-BY-4.0",
        "split": "test", "count": len(cases)}, sort_keys=False), encoding="utf-8")

    sizes = []
    for n in range(names):
        name = f"triage_{TEAMS[n % len(TEAMS)].replace('-', '_')}_{n:03d}"
        labels = rng.sample(intents, rng.randint(8, 16))
        for v in range(1, versions + 1):
            demo_labels = [rng.choice(labels) for _ in range(rng.randint(6, 18))]
            doc = {
                "name": name, "version": v, "kind": "classification",
                "description": f"Triage for the {TEAMS[n % len(TEAMS)]} queue, revision {v}: "
                               f"{len(labels)} labels, {len(demo_labels)} demos.",
                "response_schema": "ticket_triage@1",
                "evalset": "triage_small",
                "model": {"id": "local/knn", "temperature": 0.0, "max_tokens": 64},
                "labels": {lab: lab.replace("_", " ").rstrip("?") for lab in labels},
                "system": SYSTEM.format(team=TEAMS[n % len(TEAMS)],
                                        rules="\n".join(rng.sample(RULES, rng.randint(2, 5)))),
                "demos": [{"input": {"text": rng.choice(texts[lab])},
                           "output": {"label": lab, "confidence": 1.0}} for lab in demo_labels],
                "user": "Customer message:\n{{ text }}",
            }
            p = root / "prompts" / name / f"v{v}.yaml"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("# generated by benchmarks/bench_check.py\n" + yaml.dump(
                doc, Dumper=DUMPER, sort_keys=False, allow_unicode=True, width=100),
                encoding="utf-8")
            sizes.append(p.stat().st_size)
    return {"files": len(sizes), "min_kb": min(sizes) / 1024,
            "median_kb": statistics.median(sizes) / 1024, "max_kb": max(sizes) / 1024,
            "total_mb": sum(sizes) / 2**20}


CPU: dict[str, list[float]] = {}
"""CPU seconds (user + system, the command and its workers) per timed command: unlike wall
clock, this barely moves with what else the machine runs."""


def run(args: list[str], ws: Path) -> tuple[float, subprocess.CompletedProcess]:
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run([str(PROMPTGOV), *args, "-w", str(ws)], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.setdefault(" ".join(args), []).append(
        after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return wall, p


def timed(args: list[str], ws: Path, runs: int, expect: int, *,
          fresh: bool = False) -> list[float]:
    out = []
    for _ in range(runs):
        if fresh:  # a fresh clone: no untracked local state
            shutil.rmtree(ws / ".promptgov", ignore_errors=True)
        dt, p = run(args, ws)
        if p.returncode != expect:
            raise SystemExit(f"promptgov {' '.join(args)} exited {p.returncode}, expected "
                             f"{expect}:\n{p.stdout}{p.stderr}")
        out.append(dt)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--names", type=int, default=100)
    ap.add_argument("--versions", type=int, default=10)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="keep the generated workspace")
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="promptgov-bench-check-"))
    ws = tmp / "ws"
    try:
        t0 = time.perf_counter()
        sizes = generate(ws, a.names, a.versions)
        gen_s = time.perf_counter() - t0
        print(f"workspace: {ws}\n  {sizes['files']} prompt versions, "
              f"{sizes['min_kb']:.1f}-{sizes['max_kb']:.1f} KB (median {sizes['median_kb']:.1f}"
              f" KB, {sizes['total_mb']:.1f} MB), generated in {gen_s:.1f} s")

        lock_s, p = run(["lock"], ws)
        if p.returncode != 0:
            raise SystemExit(f"promptgov lock failed:\n{p.stdout}{p.stderr}")
        print(f"  promptgov lock (once): {lock_s:.2f} s; {p.stdout.strip()[:60]}...")
        timed(["check"], ws, 1, 0)  # warm the page cache once; not counted

        rows = {
            "check (unchanged, fast path)": timed(["check"], ws, a.runs, 0),
            "check (fresh clone, no local state)": timed(["check"], ws, a.runs, 0, fresh=True),
            "check --full": timed(["check", "--full"], ws, a.runs, 0),
        }
        victim = ws / "prompts" / sorted(p.name for p in (ws / "prompts").iterdir())[0] / "v1.yaml"
        victim.write_text(victim.read_text(encoding="utf-8").replace("Customer message:",
                                                                     "Customer Message:"),
                          encoding="utf-8")
        rows["check (one version edited: drift)"] = timed(["check"], ws, a.runs, 1)
        rows["check --help (start-up floor)"] = timed(["check", "--help"], ws, a.runs, 0)

        width = max(map(len, rows)) + 2
        print(f"\n{'command':<{width}}{'min s':>8}{'median s':>10}{'max s':>8}{'cpu s':>8}")
        cpu = {k: statistics.median(CPU[c][-a.runs:]) for k, c in zip(rows, (
            "check", "check", "check --full", "check", "check --help"), strict=True)}
        cpu["check (unchanged, fast path)"] = statistics.median(CPU["check"][1:1 + a.runs])
        cpu["check (fresh clone, no local state)"] = statistics.median(
            CPU["check"][1 + a.runs:1 + 2 * a.runs])
        for k, v in rows.items():
            print(f"{k:<{width}}{min(v):>8.3f}{statistics.median(v):>10.3f}{max(v):>8.3f}"
                  f"{cpu[k]:>8.3f}")
        unchanged = rows["check (unchanged, fast path)"]
        fresh = rows["check (fresh clone, no local state)"]
        ok = statistics.median(unchanged) < TARGET_UNCHANGED_S
        ok_fresh = statistics.median(fresh) <= TARGET_FRESH_S
        print(f"\ntargets: unchanged check < {TARGET_UNCHANGED_S} s wall (median) -> "
              f"{'met' if ok else 'NOT met'}; fresh-clone check <= {TARGET_FRESH_S} s -> "
              f"{'met' if ok_fresh else 'NOT met'}; {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.2f} (wall-clock figures move with the machine's load)")
        print(json.dumps({
            "bench": "check", "prompt_versions": sizes["files"], "runs": a.runs,
            "prompt_kb_median": round(sizes["median_kb"], 2),
            "lock_s": round(lock_s, 3),
            "check_unchanged_min_s": round(min(unchanged), 3),
            "check_unchanged_median_s": round(statistics.median(unchanged), 3),
            "check_fresh_min_s": round(min(fresh), 3),
            "check_fresh_median_s": round(statistics.median(fresh), 3),
            "target_fresh_s": TARGET_FRESH_S, "target_fresh_met": ok_fresh,
            "check_full_min_s": round(min(rows["check --full"]), 3),
            "check_full_median_s": round(statistics.median(rows["check --full"]), 3),
            "check_drift_min_s": round(min(rows["check (one version edited: drift)"]), 3),
            "check_drift_median_s": round(
                statistics.median(rows["check (one version edited: drift)"]), 3),
            "startup_floor_median_s": round(
                statistics.median(rows["check --help (start-up floor)"]), 3),
            "target_unchanged_s": TARGET_UNCHANGED_S, "target_met": ok,
            "check_unchanged_cpu_s": round(cpu["check (unchanged, fast path)"], 3),
            "check_fresh_cpu_s": round(cpu["check (fresh clone, no local state)"], 3),
            "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
        }))
    finally:
        if a.keep:
            print(f"kept {ws}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

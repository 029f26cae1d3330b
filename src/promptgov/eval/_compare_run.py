"""A comparison as its own MLflow run in the prompt's experiment: Δ accuracy, exact McNemar p
and bootstrap CI per version against the baseline, each version's headline metrics, the table
and a Pareto plot (accuracy against cost per 1k cases, or p95 latency when nothing was paid).

Logged once per distinct comparison (the same runs and baseline are not logged again), so
re-running ``promptgov compare`` or ``loop`` on unchanged runs costs no MLflow import.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptgov.eval._store import RUN_TAG
from promptgov.eval._tracking import experiment_id

if TYPE_CHECKING:
    import pandas as pd

COMPARE_TAG = "promptgov.compared"


def digest(df: pd.DataFrame) -> str:
    key = f"{df.attrs['baseline']}|" + ",".join(sorted(map(str, df["run_id"])))
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def already_logged(root: Path, df: pd.DataFrame) -> str | None:
    """The compare run of exactly this comparison, when the run index knows one."""
    from promptgov.eval import _runindex

    d = digest(df)
    got = _runindex.runs(root)
    if got is None:  # a server, or a store changed behind promptgov's back: ask MLflow
        from promptgov.eval._tracking import client

        c = client(root)
        exp = c.get_experiment_by_name(df.attrs["prompt"])
        hits = c.search_runs([exp.experiment_id], f"tags.`{COMPARE_TAG}` = '{d}' and "
                             "attributes.status = 'FINISHED'", max_results=1) if exp else []
        return str(hits[0].info.run_id) if hits else None
    for e in got:
        if e["tags"].get(COMPARE_TAG) == d and e["status"] == "FINISHED":
            return str(e["run_id"])
    return None


def log_compare(root: Path, df: pd.DataFrame) -> str:
    """Log ``df`` (what :func:`promptgov.compare` returned) as one run; returns its id."""
    from mlflow.entities import Metric, Param

    from promptgov.eval import _runindex
    from promptgov.eval._tracking import client

    name, base = df.attrs["prompt"], int(df.attrs["baseline"])
    c = client(root)
    exp = experiment_id(c, root, name)
    now = int(time.time() * 1000)
    metrics: list[Metric] = []
    params = [Param("baseline", str(base))]
    for v, row in df.iterrows():
        params.append(Param(f"run.v{v}", str(row["run_id"])))
        for k in ("accuracy", "failure_rate", "cost_per_1k_usd", "latency_p95_s"):
            if k in row and row[k] == row[k]:
                metrics.append(Metric(f"v{v}.{k}", float(row[k]), now, 0))
        if v != base:
            for k, short in (("accuracy_delta", "delta_accuracy"), ("mcnemar_p", "p"),
                             ("ci95_low", "ci95_low"), ("ci95_high", "ci95_high")):
                if row[k] == row[k]:
                    metrics.append(Metric(f"v{v}_vs_v{base}.{short}", float(row[k]), now, 0))
    models = sorted(set(map(str, df["model"])))
    tags = {RUN_TAG: f"{name}@compare", "promptgov.kind": "compare",
            COMPARE_TAG: digest(df), "mlflow.note.content": _note(df, base)}
    with _runindex.writing(root, c) as new:
        run = c.create_run(exp, run_name=f"compare {name} · {', '.join(models)}", tags=tags)
        rid: str = run.info.run_id
        new.append(rid)
        try:
            c.log_batch(rid, metrics=metrics[:1000], params=params[:100])
            table = df.reset_index()
            c.log_table(rid, data={k: [_plain(x) for x in table[k]] for k in table.columns},
                        artifact_file="compare.json")
            fig = _pareto(df)
            if fig is not None:
                c.log_figure(rid, fig, "pareto.png")
            c.set_terminated(rid, "FINISHED")
        except BaseException:
            c.set_terminated(rid, "FAILED")
            raise
    return rid


def _note(df: pd.DataFrame, base: int) -> str:
    lines = [f"{df.attrs['prompt']}: versions against baseline v{base} (paired by case)."]
    for v, row in df.iterrows():
        if v != base:
            lines.append(f"- v{v}: Δacc {row['accuracy_delta']:+.3f}, p {row['mcnemar_p']:.2g}, "
                         f"95% CI {row['ci95_low']:+.3f}..{row['ci95_high']:+.3f}")
    return "\n".join(lines)


def _plain(x: Any) -> Any:
    if hasattr(x, "item"):
        x = x.item()
    return None if isinstance(x, float) and x != x else x


def _pareto(df: pd.DataFrame) -> Any:
    """``pg.plot.pareto`` of the versions: accuracy against cost per 1k cases, or against p95
    latency when nothing was paid; None without matplotlib or the columns."""
    if "accuracy" not in df:
        return None
    x = ("cost_per_1k_usd" if "cost_per_1k_usd" in df and df["cost_per_1k_usd"].fillna(0).any()
         else "latency_p95_s" if "latency_p95_s" in df else None)
    if x is None:
        return None
    try:
        from promptgov.plot import pareto
    except ImportError:  # pragma: no cover - matplotlib comes with mlflow
        return None
    return pareto(df, x=x)

"""``compare()``: the versions of one prompt side by side, from their latest MLflow runs, each
tested against a baseline version on the cases both runs share.

The numbers come from MLflow, not from memory: what a notebook shows is what the UI shows and
what ``promptgov approve`` will read.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptgov.errors import PromptgovError
from promptgov.eval._store import RUN_TAG, tracking_uri
from promptgov.eval._tracking import client

if TYPE_CHECKING:
    import pandas as pd

    from promptgov.eval._engine import WorkspaceLike

# compare() downloads one small table per run: MLflow's per-download progress bar is noise.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

MAIN_METRICS = ("accuracy", "macro_f1", "object_match", "intent_micro_f1", "intent_macro_f1",
                "field_f1", "failure_rate", "cost_per_1k_usd", "latency_p95_s", "ece",
                "automation_rate", "auto_precision")
"""The run metrics ``compare()`` shows, in this order, where the runs have them."""
FIELD_F1 = "field_f1."
"""Extraction runs also show ``field_f1.<field>``, the F1 of each field over mentioned values."""

STAT_COLUMNS = ("accuracy_delta", "n_paired", "mcnemar_p", "ci95_low", "ci95_high",
                "significant")


def compare(prompt_name: str, *, workspace: WorkspaceLike = None, evalset: str | None = None,
            model: str | None = None, baseline: int | str | None = None,
            alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Versions × metrics of ``prompt_name``, from the latest finished MLflow run of each version.

    Each non-baseline row also holds ``accuracy_delta`` (its accuracy minus the baseline's), the
    exact McNemar p-value and a bootstrap 95% CI of the accuracy difference over the cases both
    runs share (``n_paired``, matched by case id), and ``significant`` (``mcnemar_p < alpha``).

    Args:
        prompt_name: the prompt (``ticket_triage``).
        evalset: only runs on this evalset (``name`` or ``name@version``).
        model: only runs with this model id.
        baseline: the version to compare against; default: the highest approved version
            (a record ``governance/approvals/<prompt>@<v>.toml``, not revoked) that has a run,
            else the lowest evaluated version.
        alpha: significance level of ``significant``.
        seed: seed of the bootstrap.

    Example:
        >>> import promptgov as pg                                      # doctest: +SKIP
        >>> pg.compare("ticket_triage", model="local/knn")              # doctest: +SKIP
    """
    from promptgov.workspace import Workspace

    ws = Workspace.of(workspace)
    if not re.fullmatch(r"[a-z][a-z0-9_\-]*", prompt_name or ""):
        raise ValueError(f"{prompt_name!r} is not a prompt name; write e.g. ticket_triage "
                         "(compare takes every version of one prompt)")
    if prompt_name not in ws.prompt_names():
        ws.prompt(prompt_name)  # raises WorkspaceError naming the known prompts
    drifted: list[Any] = []
    runs = latest_runs(ws.root, prompt_name, evalset=evalset, model=model, drifted=drifted)

    def c() -> Any:  # MLflow only when a run's table is not a local file
        return client(ws.root)
    if not runs:
        where = ", ".join(f"{k}={v}" for k, v in (("evalset", evalset), ("model", model)) if v)
        raise PromptgovError(
            f"no finished MLflow run of {prompt_name}{f' ({where})' if where else ''} in "
            f"{tracking_uri(ws.root)} (fix: run `promptgov eval {prompt_name}@VERSION` first)")
    base = pick_baseline(ws.root, prompt_name, sorted(runs), baseline)
    base_cases = case_outcomes(c, runs[base])
    rows = []
    for v, run in sorted(runs.items()):
        row = _row(v, run, base == v)
        if v != base:
            row.update(_paired(base_cases, case_outcomes(c, run), alpha, seed),
                       accuracy_delta=run.data.metrics.get("accuracy", float("nan"))
                       - runs[base].data.metrics.get("accuracy", float("nan")))
        else:
            row.update(accuracy_delta=0.0, n_paired=len(base_cases), significant=False)
        rows.append(row)
    df = _frame(rows, prompt_name, base)
    df.attrs["drifted"] = [{"version": int(r.data.tags.get(RUN_TAG, "").partition("~")[0]
                                          .rpartition("@")[2]),
                            "run_id": r.info.run_id,
                            "content_hash": r.data.params.get("content_hash")} for r in drifted]
    return df


def _row(v: int, run: Any, is_base: bool) -> dict[str, Any]:
    """One version's row: where it ran, its main metrics and per-field F1, its run."""
    m, p = run.data.metrics, run.data.params
    row: dict[str, Any] = {"version": v, "baseline": is_base,
                           "evalset": run.data.tags.get("promptgov.evalset", p.get("evalset")),
                           "model": p.get("model")}
    row.update({k: m[k] for k in MAIN_METRICS if k in m})
    row.update({k: x for k, x in m.items() if k.startswith(FIELD_F1)})
    row["run_id"] = run.info.run_id
    return row


def _paired(base_cases: dict[tuple[str, int], bool], cases: dict[tuple[str, int], bool],
            alpha: float, seed: int) -> dict[str, Any]:
    """McNemar's exact p and a bootstrap 95% CI of the accuracy difference, on shared cases."""
    from promptgov.eval._stats import bootstrap_diff_ci, mcnemar_exact

    keys = sorted(base_cases.keys() & cases.keys())
    a = [base_cases[k] for k in keys]
    b = [cases[k] for k in keys]
    disc_b = sum(x and not y for x, y in zip(a, b, strict=True))
    disc_c = sum(y and not x for x, y in zip(a, b, strict=True))
    p_value = mcnemar_exact(disc_b, disc_c)
    lo, hi = bootstrap_diff_ci(a, b, seed)
    return {"n_paired": len(keys), "mcnemar_p": p_value, "ci95_low": lo, "ci95_high": hi,
            "significant": bool(keys) and p_value < alpha}


def _frame(rows: list[dict[str, Any]], name: str, base: int) -> pd.DataFrame:
    import pandas as pd

    present = [k for k in MAIN_METRICS if any(k in r for r in rows)]
    present += sorted({k for r in rows for k in r if k.startswith(FIELD_F1)})
    cols = ["baseline", "evalset", "model", *present, *STAT_COLUMNS, "run_id"]
    df = pd.DataFrame(rows).set_index("version").reindex(columns=cols)
    df["significant"] = df["significant"].astype(bool)
    df["baseline"] = df["baseline"].astype(bool)
    df["n_paired"] = df["n_paired"].astype(int)
    df.attrs.update(prompt=name, baseline=base)
    return df


def latest_runs(root: Path, prompt_name: str, *, evalset: str | None = None,
                model: str | None = None, c: Any = None,
                drifted: list[Any] | None = None) -> dict[int, Any]:
    """The latest FINISHED run of each version of ``prompt_name``, keyed by version: from the
    workspace's run index when it is current (no MLflow import), else from MLflow (``c``, or
    the workspace's client). A run whose content hash is not the locked one for its version
    (the file had drifted) never counts as the version: the latest such run of each version
    is appended to ``drifted`` when given."""
    from promptgov.workspace._lock import read_lock

    locked = read_lock(root)["prompts"]
    out: dict[int, Any] = {}
    bad: dict[int, Any] = {}
    for run in sorted(_pool(root, prompt_name, c), key=lambda r: -(r.info.start_time or 0)):
        v = _version_of(run, prompt_name, evalset, model)
        if v is None:
            continue
        (bad if _drifted(run, locked.get(f"{prompt_name}@{v}")) else out).setdefault(v, run)
    if drifted is not None:
        drifted += [bad[v] for v in sorted(bad)]
    return out


def _pool(root: Path, prompt_name: str, c: Any) -> list[Any]:
    """The runs to choose from: the run index when current, else the store's runs."""
    from promptgov.eval import _runindex

    found = _runindex.runs(root)
    if found is not None:
        return [_runindex.as_run(e) for e in found]
    if _runindex.is_local(tracking_uri(root)):
        return _runindex.all_runs(root, c or client(root))
    return _search(c or client(root), prompt_name)


def _version_of(run: Any, prompt_name: str, evalset: str | None, model: str | None
                ) -> int | None:
    """The version a finished run of ``prompt_name`` evaluated, if it passes the filters."""
    t, p = run.data.tags, run.data.params
    name, _, v = t.get(RUN_TAG, "").partition("~")[0].rpartition("@")
    if run.info.status != "FINISHED" or name != prompt_name or not v.isdigit():
        return None
    if evalset and (t.get("promptgov.evalset") if "@" in evalset
                    else p.get("evalset")) != evalset:
        return None
    if model and p.get("model") != model:
        return None
    return int(v)


def _drifted(run: Any, entry: dict[str, Any] | None) -> bool:
    """Marked drifted when logged, or its content hash is not the one locked since."""
    t = run.data.tags
    return ("~" in t.get(RUN_TAG, "") or t.get("promptgov.lock") == "drifted"
            or bool(entry and run.data.params.get("content_hash")
                    not in (None, entry["content_hash"])))


def _search(c: Any, prompt_name: str) -> list[Any]:
    """Every run of ``prompt_name`` on a tracking server (newest first)."""
    exp = c.get_experiment_by_name(prompt_name)
    if exp is None:
        return []
    out: list[Any] = []
    token = None
    while True:
        page = c.search_runs([exp.experiment_id], f"tags.`{RUN_TAG}` LIKE '{prompt_name}@%'",
                             max_results=1000, order_by=["attributes.start_time DESC"],
                             page_token=token)
        out += list(page)
        token = page.token
        if not token:
            return out


def _quote(value: str) -> str:
    if "'" in value:
        raise ValueError(f"{value!r}: quotes are not allowed in an evalset or model filter")
    return f"'{value}'"


def case_outcomes(c: Any, run: Any) -> dict[tuple[str, int], bool]:
    """``(case_id, sample) → correct`` from a run's ``cases.json`` table (read from the file
    when the artifacts are local, else downloaded through ``c``, a client or a callable
    returning one); empty when the run has none (then nothing is paired: ``n_paired`` is 0 and
    nothing is significant)."""
    from urllib.parse import unquote, urlparse

    uri = run.info.artifact_uri or ""
    try:
        if uri.startswith("file://"):
            table = json.loads((Path(unquote(urlparse(uri).path)) / "cases.json")
                               .read_text(encoding="utf-8"))
        else:
            from mlflow.exceptions import MlflowException

            try:
                with tempfile.TemporaryDirectory() as tmp:
                    cl = c() if callable(c) else c
                    path = cl.download_artifacts(run.info.run_id, "cases.json", dst_path=tmp)
                    table = json.loads(Path(path).read_text(encoding="utf-8"))
            except MlflowException:
                return {}
        cols = table["columns"]
        i_id, i_ok = cols.index("case_id"), cols.index("correct")
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    i_s = cols.index("sample") if "sample" in cols else None
    return {(str(row[i_id]), int(row[i_s] or 0) if i_s is not None else 0): bool(row[i_ok])
            for row in table["data"]}


def pick_baseline(root: Path, prompt_name: str, evaluated: list[int],
                  baseline: int | str | None) -> int:
    if baseline is not None:
        m = re.fullmatch(rf"(?:{re.escape(prompt_name)}@)?v?(\d+)", str(baseline).strip())
        if not m:
            raise ValueError(f"baseline {baseline!r} is not a version of {prompt_name}; "
                             f"write e.g. 2 or {prompt_name}@2")
        v = int(m.group(1))
        if v not in evaluated:
            raise PromptgovError(f"baseline {prompt_name}@{v} has no matching finished run "
                                 f"(evaluated: {', '.join(map(str, evaluated))}) (fix: "
                                 f"run `promptgov eval {prompt_name}@{v}` first)")
        return v
    from promptgov.workspace._approvals import approved_versions

    approved = [v for v in approved_versions(root, prompt_name) if v in evaluated]
    return max(approved) if approved else min(evaluated)

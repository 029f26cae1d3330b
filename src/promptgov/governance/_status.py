"""``status()``: every prompt version with its lock state, latest MLflow metrics, approval and
the releases that ship it — the governance view a reviewer starts from."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

METRICS = ("accuracy", "failure_rate", "cost_per_1k_usd", "latency_p95_s")
"""Metrics of the latest run that ``status()`` shows."""


def status(workspace: Any = None, *, runs: bool = True) -> pd.DataFrame:
    """One row per prompt version (index ``ref``): lock state (``locked``, ``unlocked``,
    ``drifted``, ``deleted``), the latest finished MLflow run's model, evalset and metrics,
    the approval (``approved``, ``revoked``, ``stale`` when the version no longer matches what
    was approved, or empty), who approved it and when, its aliases, and the releases naming it.

    Args:
        runs: read the latest runs from MLflow (False: governance files only, no MLflow).

    Example:
        >>> pg.status(workspace=ws)[["lock", "accuracy", "approval"]]     # doctest: +SKIP
    """
    import pandas as pd

    df = pd.DataFrame(status_rows(workspace, runs=runs))
    return df.set_index("ref") if not df.empty else df


def status_rows(workspace: Any = None, *, runs: bool = True) -> list[dict[str, Any]]:
    """:func:`status` as plain dicts (what ``promptgov status --json`` prints)."""
    from promptgov.governance._check import scan
    from promptgov.governance._releases import approval_facts, load_releases, mismatches
    from promptgov.hashing import short
    from promptgov.workspace import Workspace

    ws = workspace if isinstance(workspace, Workspace) else (
        Workspace(workspace) if workspace is not None else Workspace.find())
    s = scan(ws.root)
    bad = {p.file.split(":")[0] for p in s.problems if p.code == "drift"}
    unreadable = {f"{m.group(1)}@{m.group(2)}": str(p) for p in s.problems if not p.code
                  and (m := re.match(r"prompts/([^/]+)/v(\d+)\.ya?ml", p.file))}
    shipped: dict[str, list[str]] = {}
    for rel in load_releases(ws.root):
        for ref in rel.prompts:
            shipped.setdefault(ref, []).append(f"{rel.name} v{rel.version}")
    refs = sorted({*s.prompts, *s.lock["prompts"], *unreadable},
                  key=lambda r: (r.split("@")[0], int(r.split("@")[1])))
    drifted: dict[str, Any] = {}
    latest = _latest_runs(ws.root, {r.split("@")[0] for r in refs}, drifted) if runs else {}
    rows = []
    for ref in refs:
        name, v = ref.split("@")
        e = s.prompts.get(ref) or s.lock["prompts"].get(ref) or {}
        locked = s.lock["prompts"].get(ref)
        lock = ("unreadable" if ref in unreadable else "deleted" if ref not in s.prompts else
                "unlocked" if not locked else "drifted" if e["file"] in bad else "locked")
        row: dict[str, Any] = {"ref": ref, "prompt": name, "version": int(v),
                               "kind": e.get("kind"), "lock": lock,
                               "content": short(e["content_hash"]) if e else "-",
                               "problem": unreadable.get(ref)}
        run = latest.get(ref)
        row.update(run_id=run.info.run_id if run else None,
                   model=run.data.params.get("model") if run else None,
                   evalset=run.data.tags.get("promptgov.evalset") if run else None)
        row.update({m: (run.data.metrics.get(m) if run else None) for m in METRICS})
        d = drifted.get(ref)  # a run of the file while it had drifted: never the version's run
        row["drifted_run"] = d.info.run_id if d is not None and (
            run is None or d.info.start_time > run.info.start_time) else None
        a = approval_facts(ws.root, ref)
        state = "" if a is None else a["status"]
        if state == "approved" and ref in s.prompts and mismatches(s, ref, a):
            state = "stale"
        row.update(approval=state, approved_by=a.get("approved_by") if a else None,
                   approved_at=str(a.get("approved_at"))[:19] if a else None,
                   aliases=", ".join(a.get("aliases", [])) if a and state == "approved" else "",
                   releases=", ".join(shipped.get(ref, [])))
        rows.append(row)
    return rows


def _latest_runs(root: Path, names: set[str], drifted: dict[str, Any]) -> dict[str, Any]:
    """The latest finished run of each version, any evalset or model, from the workspace's run
    index when it is current (no MLflow import); nothing (and no new MLflow database) when the
    workspace has never logged a run. Drifted runs go to ``drifted`` by ref."""
    from promptgov.eval._tracking import tracking_uri

    uri = tracking_uri(root)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return {}
    from promptgov.eval._compare import latest_runs

    out = {}
    for n in sorted(names):
        bad: list = []
        out.update({f"{n}@{v}": run for v, run in latest_runs(root, n, drifted=bad).items()})
        for run in bad:
            drifted[run.data.tags.get("promptgov.prompt", "").partition("~")[0]] = run
    return out

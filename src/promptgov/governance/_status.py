"""``status()``: every prompt version with its lock state, latest MLflow metrics, approval and
the releases that ship it — the governance view a reviewer starts from."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from promptgov.governance._check import Scan
    from promptgov.workspace import Workspace

METRICS = ("accuracy", "failure_rate", "cost_per_1k_usd", "latency_p95_s")
"""Metrics of the latest run that ``status()`` shows."""


def status(workspace: Workspace | str | os.PathLike[str] | None = None, *,
           runs: bool = True) -> pd.DataFrame:
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


def status_rows(workspace: Workspace | str | os.PathLike[str] | None = None, *,
                runs: bool = True) -> list[dict[str, Any]]:
    """:func:`status` as plain dicts (what ``promptgov status --json`` prints)."""
    from promptgov.governance._check import scan
    from promptgov.workspace import Workspace

    ws = Workspace.of(workspace)
    s = scan(ws.root)
    drifted_files = {p.file.split(":")[0] for p in s.problems if p.code == "drift"}
    unreadable = {f"{m.group(1)}@{m.group(2)}": str(p) for p in s.problems if not p.code
                  and (m := re.match(r"prompts/([^/]+)/v(\d+)\.ya?ml", p.file))}
    shipped = _shipped(ws.root)
    refs = sorted({*s.prompts, *s.lock["prompts"], *unreadable},
                  key=lambda r: (r.split("@")[0], int(r.split("@")[1])))
    drifted: dict[str, Any] = {}
    latest = _latest_runs(ws.root, {r.split("@")[0] for r in refs}, drifted) if runs else {}
    view = _View(s, drifted_files, unreadable, latest, drifted, shipped)
    return [_row(view, ref) for ref in refs]


@dataclass(frozen=True)
class _View:
    """What every row is read from: the scan and the facts gathered once for all rows."""

    scan: Scan
    drifted_files: set[str]
    unreadable: dict[str, str]
    """Prompt ref → the problem that stops its file loading."""
    latest: dict[str, Any]
    """Prompt ref → its latest finished run (an MLflow ``Run`` or the run index's look-alike)."""
    drifted: dict[str, Any]
    """Prompt ref → the latest run of its file while it had drifted."""
    shipped: dict[str, list[str]]
    """Prompt ref → ``name vN`` of each release naming it."""


def _shipped(root: Path) -> dict[str, list[str]]:
    from promptgov.governance._releases import load_releases

    shipped: dict[str, list[str]] = {}
    for rel in load_releases(root):
        for ref in rel.prompts:
            shipped.setdefault(ref, []).append(f"{rel.name} v{rel.version}")
    return shipped


def _row(view: _View, ref: str) -> dict[str, Any]:
    from promptgov.hashing import short

    s = view.scan
    name, v = ref.split("@")
    e = s.prompts.get(ref) or s.lock["prompts"].get(ref) or {}
    run = view.latest.get(ref)
    return {"ref": ref, "prompt": name, "version": int(v), "kind": e.get("kind"),
            "lock": _lock_state(view, ref, e), "content": short(e["content_hash"]) if e else "-",
            "problem": view.unreadable.get(ref), **_run_columns(run),
            "drifted_run": _drifted_run(run, view.drifted.get(ref)),
            **_approval_columns(s, ref), "releases": ", ".join(view.shipped.get(ref, []))}


def _lock_state(view: _View, ref: str, entry: dict[str, Any]) -> str:
    s = view.scan
    if ref in view.unreadable:
        return "unreadable"
    if ref not in s.prompts:
        return "deleted"
    if not s.lock["prompts"].get(ref):
        return "unlocked"
    return "drifted" if entry["file"] in view.drifted_files else "locked"


def _run_columns(run: Any) -> dict[str, Any]:
    """Model, evalset and :data:`METRICS` of the version's latest run (None without one)."""
    if not run:
        return {"run_id": None, "model": None, "evalset": None, **dict.fromkeys(METRICS)}
    return {"run_id": run.info.run_id, "model": run.data.params.get("model"),
            "evalset": run.data.tags.get("promptgov.evalset"),
            **{m: run.data.metrics.get(m) for m in METRICS}}


def _drifted_run(run: Any, drifted: Any) -> str | None:
    """A run of the file while it had drifted is never the version's run: shown apart, when it
    is newer than the version's latest run."""
    if drifted is not None and (run is None or drifted.info.start_time > run.info.start_time):
        run_id: str = drifted.info.run_id
        return run_id
    return None


def _approval_columns(s: Scan, ref: str) -> dict[str, Any]:
    """The approval state (``stale`` when the version no longer matches what was approved),
    who approved it and when, and its aliases."""
    from promptgov.governance._releases import mismatches
    from promptgov.workspace._approvals import approval_facts

    a = approval_facts(s.root, ref)
    if a is None:
        return {"approval": "", "approved_by": None, "approved_at": None, "aliases": ""}
    state = a["status"]
    if state == "approved" and ref in s.prompts and mismatches(s, ref, a):
        state = "stale"
    return {"approval": state, "approved_by": a.get("approved_by"),
            "approved_at": str(a.get("approved_at"))[:19],
            "aliases": ", ".join(a.get("aliases", [])) if state == "approved" else ""}


def _latest_runs(root: Path, names: set[str], drifted: dict[str, Any]) -> dict[str, Any]:
    """The latest finished run of each version, any evalset or model, from the workspace's run
    index when it is current (no MLflow import); nothing (and no new MLflow database) when the
    workspace has never logged a run. Drifted runs go to ``drifted`` by ref."""
    from promptgov.eval._store import tracking_uri

    uri = tracking_uri(root)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return {}
    from promptgov.eval._compare import latest_runs

    out = {}
    for n in sorted(names):
        bad: list[Any] = []  # Run-shaped: MLflow runs or the run index's look-alikes
        out.update({f"{n}@{v}": run for v, run in latest_runs(root, n, drifted=bad).items()})
        for run in bad:
            drifted[run.data.tags.get("promptgov.prompt", "").partition("~")[0]] = run
    return out

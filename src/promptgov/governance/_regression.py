"""The regression gate, ``promptgov gate RELEASE``: re-run each released version on the evalset
it was approved on and check the gates of the current (locked) policy against fresh metrics;
with a tracking store configured, also check each approval record against the run it cites."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from promptgov.errors import WorkspaceError
from promptgov.governance._gates import GateCheck, check_gates
from promptgov.workspace._policy import locked_policy

if TYPE_CHECKING:
    from promptgov.governance._approvals import Approval
    from promptgov.workspace import Workspace
    from promptgov.workspace._policy import Policy


@dataclass(frozen=True)
class VersionGate:
    """One released version re-run: its gates under the current policy and any problem that
    stopped the re-run or makes it meaningless (drift, missing cassette)."""

    ref: str
    model: str | None
    evalset: str | None
    checks: tuple[GateCheck, ...] = ()
    problems: tuple[str, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems and all(c.passed for c in self.checks)

    def failures(self) -> list[str]:
        return [*self.problems, *(str(c) for c in self.checks if not c.passed)]


@dataclass(frozen=True)
class GateReport:
    """What :func:`gate` returns; ``ok`` is the CI verdict."""

    release: str
    version: int
    results: tuple[VersionGate, ...]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def failures(self) -> list[str]:
        """``ref: failure`` lines, one per failing gate or problem."""
        return [f"{r.ref}: {f}" for r in self.results for f in r.failures()]


def gate(release: str, *, model: str | None = None,
         workspace: Workspace | str | os.PathLike[str] | None = None, concurrency: int = 8,
         track: bool = False) -> GateReport:
    """Re-run every version of release ``release`` on the evalset it was approved on and check
    the gates of the *current* policy against the fresh metrics.

    The model of each re-run: ``model`` if given; else the approval's replay cassette
    (``approve --record-cassette``); else the approval's model when it runs offline
    (``local/...``, deterministic). Gates the re-run cannot measure (required evalsets, the
    adversarial drop) are checked against the evidence recorded in the approval.

    Example:
        >>> report = pg.gate("support", workspace=ws)                   # doctest: +SKIP
        >>> report.ok, report.failures()                                 # doctest: +SKIP
    """
    from promptgov.governance._approvals import load_approval
    from promptgov.governance._releases import load_release
    from promptgov.workspace import Workspace
    from promptgov.workspace._lock import read_lock

    ws = Workspace.of(workspace)
    rel = load_release(ws.root, release)
    policy = locked_policy(ws.root, read_lock(ws.root))
    results = []
    for ref in rel.prompts:
        a = load_approval(ws.root, ref)
        if a is None or a.status != "approved":
            state = "not approved" if a is None else "revoked"
            results.append(VersionGate(ref, None, None, problems=(
                f"{state} (fix: run `promptgov check`; approve or release another version)",)))
            continue
        r = _rerun(ws, a, policy, model, concurrency, track)
        evidence = _evidence(ws, a)
        results.append(replace(r, problems=(*r.problems, *evidence)) if evidence else r)
    return GateReport(rel.name, rel.version, tuple(results))


def _evidence(ws: Workspace, a: Approval) -> tuple[str, ...]:
    """With a tracking store configured (``MLFLOW_TRACKING_URI``: a team's server), the
    approval must also agree with the run it cites: the record is in the repository, the run
    is not. (The default store is a file on the approver's machine, absent in CI.)"""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        return ()
    from promptgov.eval._tracking import client
    from promptgov.governance._evidence import approval_evidence_problems

    return tuple(f"approval record vs its run: {p}"
                 for p in approval_evidence_problems(client(ws.root), a))


def _rerun(ws: Workspace, a: Approval, policy: Policy, model: str | None, concurrency: int,
           track: bool) -> VersionGate:
    from promptgov.eval import evaluate
    from promptgov.hashing import short

    try:
        pv = ws.prompt(a.ref)
        es = ws.evalset(a.evalset)
        now = {"content_hash": pv.content_hash, "render_fingerprint": pv.render_fingerprint,
               "schema_hash": ws.schema(pv.response_schema).hash if pv.response_schema else None,
               "evalset_hash": es.hash}
    except WorkspaceError as e:
        return VersionGate(a.ref, model, a.evalset, problems=(str(e),))
    drift = tuple(f"{k} is now {short(str(v))}, approved {short(str(getattr(a, k)))} (fix: run "
                  "`promptgov check`; a changed version needs a new version)"
                  for k, v in now.items() if v != getattr(a, k))
    if drift:  # re-running something else than what was approved would prove nothing
        return VersionGate(a.ref, model, a.evalset, problems=drift)
    spec, problems = _model_spec(ws, a, model)
    if spec is None:
        return VersionGate(a.ref, None, a.evalset, problems=problems)
    r = evaluate(pv, es, model=spec, workspace=ws, cache=False, track=track,
                 concurrency=concurrency)
    metrics = dict(r.metrics)
    if "adversarial_drop" in a.metrics:
        metrics["adversarial_drop"] = a.metrics["adversarial_drop"]
    runs = {str(g.limit): str(g.value) for g in a.gates
            if g.gate == "required_evalsets" and g.passed}
    checks = check_gates(policy.gates.for_prompt(a.prompt, pv.kind), metrics, runs)
    return VersionGate(a.ref, r.model, r.evalset, tuple(checks), problems, r.metrics)


def _model_spec(ws: Workspace, a: Approval, model: str | None
                ) -> tuple[str | None, tuple[str, ...]]:
    """The model to re-run approval ``a`` with (``model``, else the approval's cassette, else
    its offline model) and what is wrong with it; None when it cannot re-run, the problems then
    saying why."""
    from promptgov.workspace._lock import file_sha

    if model is not None:
        return model, ()
    if a.cassette:
        path = ws.root / a.cassette
        if not path.is_file():
            return None, (f"the cassette recorded at approval, {a.cassette}, is missing (fix: "
                          "restore it from git, or pass --model)",)
        if file_sha(path) != a.cassette_sha:
            return f"replay:{path}", (f"{a.cassette} changed since the approval (fix: restore "
                                      "it from git)",)
        return f"replay:{path}", ()
    if a.model.startswith("local/"):
        return a.model, ()
    return None, (f"approved with {a.model}, which cannot re-run offline, and no cassette was "
                  "recorded (fix: pass --model, or approve with --record-cassette)",)

"""Approval records, ``governance/approvals/<name>@<version>.toml``, and the two commands that
write them.

:func:`approve` turns an MLflow run into a decision: the run must be of that exact locked
version (prompt content hash, render fingerprint, schema hash, evalset hash), every policy gate
must hold, and then the record is written and the MLflow prompt-registry alias set. A refusal
lists every failing gate and writes nothing. :func:`revoke` marks a record revoked (the record
stays: it is the audit trail) and removes the alias. ``promptgov check`` reads these files with
``tomllib`` only (see ``_releases.py``); this module, with pydantic and MLflow, is not on that path.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from promptgov.errors import GateFailed, GovernanceError, WorkspaceError
from promptgov.governance._evidence import (
    CASSETTES_DIR,
    adversarial_drop_of,
    evalset_run,
    get_run,
    mismatches,
    record_cassette_of,
    registry_version,
    tracking_kind,
)
from promptgov.governance._gates import check_gates
from promptgov.workspace._approvals import APPROVALS_DIR
from promptgov.workspace._lock import file_sha, read_lock, write_text_atomic
from promptgov.workspace._policy import locked_policy
from promptgov.workspace._refs import parse_ref

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from promptgov.governance._gates import GateCheck
    from promptgov.workspace import Workspace
    from promptgov.workspace._policy import Gates
    from promptgov.workspace._prompt import PromptVersion

HEADER = ("# promptgov approval record, written by `promptgov approve`; `promptgov revoke` "
          "marks it revoked.\n# Do not edit: `promptgov check` compares these hashes with the "
          "workspace.\n")


class GateRecord(BaseModel):
    """One gate as it was checked at approval time."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    gate: str
    """Policy key, e.g. ``min_accuracy``."""
    metric: str
    """The run metric it limits (``evalset`` for ``required_evalsets``)."""
    value: float | str | None = None
    """Measured value (a run id for ``required_evalsets``); absent when not measured."""
    limit: float | str
    passed: bool


class Revocation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    by: str
    at: datetime
    reason: str


class Approval(BaseModel):
    """An approval of one prompt version, bound to the hashes it was evaluated with."""

    model_config = ConfigDict(extra="forbid")
    prompt: str
    version: int
    status: Literal["approved", "revoked"] = "approved"
    approved_by: str
    approved_at: datetime
    """UTC."""
    aliases: list[str] = Field(default_factory=list)
    """MLflow prompt-registry aliases set on ``registry_version`` (``approved``, ``production``)."""
    run_id: str
    """The MLflow run that is the evidence."""
    adversarial_run: str | None = None
    """The ``promptgov adversarial`` run the adversarial drop was read from, if any."""
    tracking: str
    """Kind of MLflow store the run lives in (``sqlite``, ``file``, ``server``...): never a URI
    with credentials."""
    registry_version: int | None = None
    model: str
    evalset: str
    """``name@version`` the run was scored on."""
    evalset_hash: str
    content_hash: str
    render_fingerprint: str
    response_schema: str | None = None
    schema_hash: str | None = None
    git_commit: str | None = None
    promptgov_version: str
    cassette: str | None = None
    """Replay cassette of the run's answers (workspace-relative), for ``promptgov gate``."""
    cassette_sha: str | None = None
    policy_hash: str | None = None
    """Content hash of the (locked) ``governance/policy.toml`` whose gates judged the run."""
    metrics: dict[str, float] = Field(default_factory=dict)
    gates: list[GateRecord] = Field(default_factory=list)
    revocation: Revocation | None = None

    @property
    def ref(self) -> str:
        return f"{self.prompt}@{self.version}"

    def to_toml(self) -> str:
        import tomli_w

        # JSON mode: times as ISO 8601 text (``2026-01-31T09:30:00Z``), as in the --json output
        return HEADER + tomli_w.dumps(self.model_dump(mode="json", exclude_none=True))


def approval_path(root: Path, ref: str) -> Path:
    return root / APPROVALS_DIR / f"{ref}.toml"


def load_approval(root: Path, ref: str) -> Approval | None:
    """The record of ``ref`` (``name@version``), or None; a malformed file is a
    :class:`WorkspaceError` naming it."""
    from promptgov.workspace._yamlio import read_toml

    path = approval_path(root, ref)
    if not path.exists():
        return None
    fix = "restore it from git: approval records are written by `promptgov approve`"
    try:
        a = Approval.model_validate(read_toml(path, fix))
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(map(str, err["loc"]))
        raise WorkspaceError(path, f"{where}: {err['msg']}", fix) from None
    if a.ref != ref:
        raise WorkspaceError(path, f"the record is for {a.ref}, not {ref}", fix)
    return a


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def approve(ref: str, run_id: str, by: str, *,
            workspace: Workspace | str | os.PathLike[str] | None = None,
            alias: str = "approved", record_cassette: bool = False,
            adversarial_run: str | None = None) -> Approval:
    """Approve prompt version ``ref`` on the evidence of MLflow run ``run_id``.

    Refuses (raises, writes nothing) when the version is not locked or drifted, when the run is
    not of that exact locked version, or when any gate of ``governance/policy.toml`` fails:
    :class:`~promptgov.errors.GateFailed` lists each with its value and limit. On success
    writes ``governance/approvals/<ref>.toml`` and sets the MLflow prompt-registry ``alias`` on
    the run's registry version.

    Args:
        ref: ``name@version``.
        run_id: the MLflow run (``evaluate(...).run_id``).
        by: who approves (recorded).
        alias: MLflow prompt alias to set (``approved``, ``production``...).
        record_cassette: also record the run's answers (from the response cache, else by calling
            the model again) to ``governance/cassettes/<ref>.jsonl`` for ``promptgov gate``.
        adversarial_run: the ``promptgov adversarial`` run to read the clean-minus-noisy
            accuracy drop from (default: the latest one of this content with the same model).

    Example:
        >>> r = pg.evaluate("ticket_triage@2", model="local/knn", workspace=ws)  # doctest: +SKIP
        >>> pg.approve("ticket_triage@2", r.run_id, by="alice", workspace=ws)   # doctest: +SKIP
    """
    from promptgov.eval._tracking import client
    from promptgov.workspace import Workspace

    ws = Workspace.of(workspace)
    _check_request(ref, by, alias)
    pv = ws.prompt(ref)
    lock = read_lock(ws.root)
    entry = lock["prompts"].get(pv.ref)
    if entry is None:
        raise GovernanceError(f"{pv.ref} is not locked (fix: run `promptgov lock`, evaluate the "
                              "locked version, then approve that run)")
    policy = locked_policy(ws.root, lock)  # before MLflow: no evidence counts under it
    old = load_approval(ws.root, pv.ref)
    _refuse_revoked(pv.ref, old)
    c = client(ws.root)
    run = get_run(c, run_id, ws.root)
    run_id = run.info.run_id  # a unique prefix was given: record the full id
    p = run.data.params
    es_ref = f"{p.get('evalset')}@{p.get('evalset_version')}"
    problems = _not_evidence(ws, run, pv, entry, lock, es_ref)
    if problems:
        raise GovernanceError(f"refused: run {run_id} is not evidence for locked {pv.ref}:\n  "
                              + "\n  ".join(problems))
    gates = policy.gates.for_prompt(pv.name, pv.kind)
    metrics, adv_run = _metrics(c, ws.root, run, pv.ref, entry, gates, adversarial_run)
    runs = {es: evalset_run(c, run, es, lock) for es in gates.required_evalsets or ()}
    checks = check_gates(gates, metrics, runs)
    failed = [g for g in checks if not g.passed]
    if failed:
        raise GateFailed(f"refused: {pv.ref} fails {len(failed)} of {len(checks)} gates of "
                         f"governance/policy.toml (run {run_id}); nothing was written:\n  "
                         + "\n  ".join(map(str, failed)), failed)
    reg = registry_version(c, run, pv)
    cassette = None
    if record_cassette:
        cassette = record_cassette_of(ws, pv, es_ref, p["model"])
    try:
        c.set_prompt_alias(pv.name, alias, int(reg))
        a = _approval(ws, pv, run, entry, es_ref, by=by, aliases=sorted(
            {alias, *(old.aliases if old else ())}), registry=int(reg), adversarial_run=adv_run,
            policy_hash=policy.hash, metrics=metrics, checks=checks)
        if cassette is not None:
            _keep_cassette(ws, a, cassette)
        write_text_atomic(approval_path(ws.root, pv.ref), a.to_toml())
    finally:
        if cassette is not None:
            cassette.unlink(missing_ok=True)
    return a


def _check_request(ref: str, by: str, alias: str) -> None:
    """Refuse an approval request that names no single version, no approver or a bad alias."""
    name, version = parse_ref(ref)
    if version is None:
        raise ValueError(f"{ref!r}: approve one version, e.g. {name}@2")
    if not by.strip():
        raise ValueError("--by: say who approves (a name or e-mail)")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_\-]{0,62}", alias) or alias == "latest":
        raise ValueError(f"alias {alias!r}: use letters, digits, - and _ (not 'latest')")


def _refuse_revoked(ref: str, old: Approval | None) -> None:
    """A revoked version stays revoked: approving it again would hide the revocation."""
    if old is None or old.status != "revoked":
        return
    rv = old.revocation
    # revoke() writes the status and the revocation together; a record edited into a revoked
    # status without one fails here, loudly, as it always did
    assert rv is not None, f"{ref}: revoked record without [revocation]"
    raise GovernanceError(f"{ref} was revoked by {rv.by} on {rv.at:%Y-%m-%d}: {rv.reason}"
                          f" (fix: a revoked version stays revoked; save the prompt as a new "
                          f"version, evaluate and approve that)")


def _not_evidence(ws: Workspace, run: Run, pv: PromptVersion, entry: dict[str, Any],
                  lock: dict[str, Any], es_ref: str) -> list[str]:
    """Why ``run`` is no evidence for locked ``pv``: it is of something else, or it was scored
    on cases the prompt shows the model as demos (empty: it is evidence)."""
    problems = mismatches(ws, run, pv, entry, lock, es_ref)
    es_dir = ws.evalset_dirs().get(es_ref.split("@")[0])
    if es_dir is not None:
        from promptgov.governance._content import contamination

        problems += [f"{hit} of evalset {es_ref}: the run was scored on cases the prompt shows "
                     "the model as demos (fix: remove those demos in a new version, or score "
                     "it on an evalset without them)" for hit in contamination(pv, es_dir)]
    return problems


def _metrics(c: MlflowClient, root: Path, run: Run, ref: str, entry: dict[str, Any],
             gates: Gates, adversarial_run: str | None) -> tuple[dict[str, float], str | None]:
    """The run's metrics, with the adversarial drop when a gate needs it or a run is named,
    and the adversarial run it was read from."""
    metrics = dict(run.data.metrics)
    adv_run = None
    if gates.max_adversarial_drop is not None or adversarial_run:
        drop, adv_run = adversarial_drop_of(c, root, run, ref, entry["content_hash"],
                                            adversarial_run)
        if drop is not None:
            metrics["adversarial_drop"] = drop
    return metrics, adv_run


def _approval(ws: Workspace, pv: PromptVersion, run: Run, entry: dict[str, Any], es_ref: str,
              *, by: str, aliases: list[str], registry: int, adversarial_run: str | None,
              policy_hash: str, metrics: dict[str, float], checks: list[GateCheck]) -> Approval:
    """The record of an approval that passed: bound to the locked hashes and to the run."""
    from promptgov._version import __version__
    from promptgov.eval._store import tracking_uri

    p = run.data.params
    return Approval(
        prompt=pv.name, version=pv.version, approved_by=by.strip(), approved_at=_now(),
        aliases=aliases, run_id=run.info.run_id, adversarial_run=adversarial_run,
        tracking=tracking_kind(tracking_uri(ws.root)),
        registry_version=registry, model=p["model"], evalset=es_ref,
        evalset_hash=p["evalset_hash"], content_hash=entry["content_hash"],
        render_fingerprint=entry["render_fingerprint"],
        response_schema=entry.get("schema"), schema_hash=entry.get("schema_hash"),
        git_commit=p.get("git_commit"), promptgov_version=__version__,
        policy_hash=policy_hash,
        metrics={k: v for k, v in sorted(metrics.items()) if v == v},
        gates=[GateRecord(**vars(g)) for g in checks])


def _keep_cassette(ws: Workspace, a: Approval, cassette: Path) -> None:
    """Move the recorded cassette to where the record says it is, and bind it by its sha."""
    final = ws.root / CASSETTES_DIR / f"{a.ref}.jsonl"
    cassette.chmod(0o644)
    cassette.replace(final)
    a.cassette, a.cassette_sha = ws.relpath(final), file_sha(final)


def revoke(ref: str, by: str, reason: str, *,
           workspace: Workspace | str | os.PathLike[str] | None = None) -> Approval:
    """Mark the approval of ``ref`` revoked (who, when, why) and remove its MLflow aliases.

    The record stays in ``governance/approvals/``; ``promptgov check`` then fails for every
    release naming the version.
    """
    from mlflow.exceptions import MlflowException

    from promptgov.eval._tracking import client
    from promptgov.workspace import Workspace

    ws = Workspace.of(workspace)
    name, version = parse_ref(ref)
    if version is None:
        raise ValueError(f"{ref!r}: revoke one version, e.g. {name}@2")
    if not by.strip() or not reason.strip():
        raise ValueError("say who revokes (--by) and why (--reason)")
    a = load_approval(ws.root, ref)
    if a is None or a.status == "revoked":
        raise GovernanceError(f"{ref} is not approved" + (" (already revoked)" if a else "")
                              + f" (fix: `promptgov status {name}` shows the approvals)")
    if a.registry_version is not None:
        c = client(ws.root)
        for alias in a.aliases:
            try:  # the alias may have moved on to a newer approved version: leave that one
                if int(c.get_prompt_version_by_alias(name, alias).version) == a.registry_version:
                    c.delete_prompt_alias(name, alias)
            except MlflowException:
                pass  # no such alias (any more)
    a.status = "revoked"
    a.revocation = Revocation(by=by.strip(), at=_now(), reason=reason.strip())
    write_text_atomic(approval_path(ws.root, ref), a.to_toml())
    return a

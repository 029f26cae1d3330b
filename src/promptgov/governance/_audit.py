"""``promptgov check --runs``: every approval record checked against the MLflow run it cites.
The record is in the repository and can be edited by hand; the run is in the tracking store."""

from __future__ import annotations

from pathlib import Path

from promptgov.governance._evidence import approval_evidence_problems


def verify_approvals(root: Path) -> list[tuple[str, str]]:
    """``(record file, problem)`` for every approved record whose run does not bear it out
    (``promptgov check --runs``)."""
    from promptgov.eval._tracking import client
    from promptgov.governance._approvals import load_approval
    from promptgov.workspace._approvals import APPROVALS_DIR
    from promptgov.workspace._lock import read_lock
    from promptgov.workspace._policy import load_policy

    d = root / APPROVALS_DIR
    refs = sorted(f.stem for f in d.glob("*.toml")) if d.is_dir() else []
    if not refs:
        return []
    lock = read_lock(root)
    policy = load_policy(root)
    locked_hash = lock.get("policy", {}).get("hash")
    c = client(root)
    out = []
    for ref in refs:
        a = load_approval(root, ref)
        if a is None or a.status != "approved":
            continue
        limits = None
        if a.policy_hash and a.policy_hash == locked_hash == policy.hash:
            kind = lock["prompts"].get(ref, {}).get("kind")
            limits = policy.gates.for_prompt(a.prompt, kind).limits() if kind else None
        out += [(f"{APPROVALS_DIR}/{ref}.toml", p)
                for p in approval_evidence_problems(c, a, limits)]
    return out

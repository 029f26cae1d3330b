"""Production failures back into the loop: dead letters and review-band jobs of an exported
package's job store become a new, versioned evalset of cases for a person to label.

Each case is one distinct input (the same text submitted under two keys is one case) with no
``expected`` value yet; ``meta`` says why it was picked (``dead_letter`` with the last error, or
``review`` with the model's answer as a hint) and which job and prompt version it came from.
Cases already in the evalset stay, with whatever labels a person gave them; new content is a
new version (one above any on disk or in the lock), written atomically.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptgov.errors import WorkspaceError
from promptgov.hashing import canonical_json

if TYPE_CHECKING:
    from promptgov.workspace import Workspace
    from promptgov.workspace._evalset import Case, Evalset, Manifest


def read_traces(store: str, *, queue: str | None = None) -> list[dict[str, Any]]:
    """Every job trace of ``store``: a SQLite job file (``sqlite:///PATH`` or a path), a Redis
    URL (BullMQ queue ``queue``), or a ``.jsonl``/``.json`` file of traces (``python -m PKG dlq
    --json``)."""
    from promptgov.packaging._runtime._jobs import JobOptions

    if store.startswith(("redis://", "rediss://")):
        if not queue:
            raise WorkspaceError(store, "a Redis store holds many queues",
                                 "name one with --queue (the package name, by default)")
        from promptgov.packaging._runtime._jobs_bullmq import BullMQBackend

        # No package: reading traces never calls a model (only _trace looks at the bundle,
        # and reads it only when it is there).
        bq = BullMQBackend(None, store, queue, JobOptions())  # type: ignore[arg-type]
        try:
            return bq.traces()
        finally:
            bq.close()
    path = Path(store.removeprefix("sqlite:///"))
    if not path.is_file():
        raise WorkspaceError(path, "no such job store", "pass the job file a worker wrote "
                             "(sqlite:///jobs.db), a redis:// URL, or a .jsonl of traces")
    if path.suffix in (".jsonl", ".json"):
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text) if path.suffix == ".json" else [
                json.loads(ln) for ln in text.splitlines() if ln.strip()]
        except ValueError as e:
            raise WorkspaceError(path, f"not JSON: {e}", "pass `dlq --json` output") from None
        return [t for t in (data if isinstance(data, list) else [data]) if isinstance(t, dict)]
    from promptgov.packaging._runtime._jobs_sqlite import SQLiteBackend

    if path.read_bytes()[:16] != b"SQLite format 3\x00":
        raise WorkspaceError(path, "not a SQLite job store", "pass the file a worker wrote")
    # No package, as above: reading traces never touches it.
    db = SQLiteBackend(None, str(path), JobOptions())  # type: ignore[arg-type]
    try:
        return db.traces()
    finally:
        db.close()


def evalset_from_jobs(ws: Workspace, traces: list[dict[str, Any]], *,
                      prompt: str | None = None, name: str | None = None,
                      source: str = "a job store") -> tuple[Evalset, dict[str, int]]:
    """Write the dead letters and review-band (``queue_for_human``) jobs of ``traces`` for
    prompt version ``prompt`` as evalset ``name`` (default ``<prompt name>-prod``).

    Returns:
        The evalset written (or the unchanged one) and counts: ``dead_letter``, ``review``
        (new cases by reason), ``kept`` (cases already there), ``cases`` (total).

    Example:
        >>> es, n = evalset_from_jobs(ws, read_traces("jobs.db"))   # doctest: +SKIP
    """
    from promptgov.workspace._evalset import Evalset, write_evalset

    prompt, picked = _picked(traces, prompt, source)
    base = prompt.rpartition("@")[0] or prompt
    name = name or f"{base}-prod"
    d = ws.root / "evalsets" / name
    old = Evalset.from_dir(d) if (d / "manifest.yaml").exists() else None
    cases = {c.id: c for c in (old.cases if old else ())}
    counts = {"dead_letter": 0, "review": 0, "kept": len(cases)}
    for t in picked:
        cid = "job-" + hashlib.sha256(canonical_json(t["input"]).encode()).hexdigest()[:12]
        if cid in cases:  # the same input again (under another key): one case
            continue
        cases[cid] = _case(cid, t, prompt)
        counts[_reason(t)] += 1
    counts["cases"] = len(cases)
    if old is not None and counts["cases"] == counts["kept"]:
        return old, counts
    manifest = _manifest(name, _next_version(ws.root, name, old), len(cases), prompt, source)
    return write_evalset(d, manifest, list(cases.values())), counts


def _picked(traces: list[dict[str, Any]], prompt: str | None, source: str
            ) -> tuple[str, list[dict[str, Any]]]:
    """The prompt version to collect (``prompt``, or the only one that failed) and its dead
    letters and review-band jobs; refused if that is ambiguous or there are none."""
    picked = [t for t in traces if t.get("state") == "dead"
              or t.get("route") == "queue_for_human"]
    prompt = _prompt_of(picked, prompt, source)
    picked = [t for t in picked if t.get("prompt") == prompt]
    if prompt is None or not picked:
        raise WorkspaceError(source, "holds no dead letter and no review-band job"
                             + (f" of {prompt}" if prompt else ""),
                             "nothing to label yet; run it again once workers have run jobs")
    return prompt, picked


def _prompt_of(picked: list[dict[str, Any]], prompt: str | None, source: str) -> str | None:
    """``prompt``, else the one prompt version the picked jobs ran (None: no job); refused if
    they ran several."""
    prompts = sorted({t.get("prompt") or "?" for t in picked})
    if prompt is None and len(prompts) > 1:
        raise WorkspaceError(source, f"the failures are of several prompts ({', '.join(prompts)})",
                             "pick one with --prompt")
    return prompt or (prompts[0] if prompts else None)


def _reason(t: dict[str, Any]) -> str:
    return "dead_letter" if t.get("state") == "dead" else "review"


def _case(cid: str, t: dict[str, Any], prompt: str) -> Case:
    """The unlabelled case of job trace ``t``; ``meta`` says why it was picked."""
    from promptgov.workspace._evalset import Case

    reason = _reason(t)
    meta = {"reason": reason, "job_id": t["id"], "prompt": prompt,
            "prompt_hash": t.get("prompt_hash")}
    if reason == "dead_letter":
        meta.update(error_kind=t.get("error_kind"), error=(t.get("error") or "")[:500])
    else:
        meta["model_answer"] = t.get("result")
    return Case(id=cid, input=t["input"], expected=None, meta=meta)


def _manifest(name: str, version: int, count: int, prompt: str, source: str) -> Manifest:
    from promptgov.workspace._evalset import Manifest

    return Manifest(
        name=name, version=version, split="test", count=count,
        description=(f"Production inputs of {prompt} to label: its dead letters and the jobs "
                     "routed to human review (`expected` is empty until a person fills it)."),
        source=f"Job traces of {prompt} from {source}, collected by `promptgov evalset "
               "from-jobs`.",
        license="proprietary (production data)")


def _next_version(root: Path, name: str, old: Evalset | None) -> int:
    from promptgov.workspace._lock import read_lock

    locked = [int(r.rpartition("@")[2]) for r in read_lock(root)["evalsets"]
              if r.rpartition("@")[0] == name]
    return 1 + max([*locked, old.manifest.version if old else 0])

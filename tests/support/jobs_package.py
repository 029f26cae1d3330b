"""An exported package for the job tests, built through the real flow once per test process.

``support_bot`` v1 ships ticket_triage@2, ticket_extraction@1 and reply_draft@1, each evaluated
with local/knn, approved and released in a workspace copy, then exported with ``pg.export`` and
unpacked into ``<dir>/site`` (on ``sys.path`` for in-process tests; ``PYTHONPATH`` for worker
processes).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFS = ("reply_draft@1", "ticket_extraction@1", "ticket_triage@2")


def build(dst: Path) -> Path:
    """Export support_bot into ``dst`` and unpack it; the ``site`` folder to import it from."""
    import promptgov as pg

    ws = dst / "ws"
    ws.mkdir(parents=True)
    for d in ("prompts", "schemas", "evalsets", "governance"):
        shutil.copytree(ROOT / d, ws / d)
    shutil.rmtree(ws / "governance" / "approvals", ignore_errors=True)
    shutil.rmtree(ws / "governance" / "releases", ignore_errors=True)
    _open_gates(ws)
    w = pg.Workspace(ws)
    pg.lock(w)
    for ref in REFS:
        pg.approve(ref, pg.evaluate(ref, model="local/knn", workspace=w).run_id, by="ci",
                   workspace=w)
    pg.release("support_bot", list(REFS), description="Support inbox", workspace=w)
    wheel = pg.export("support_bot", out=dst / "dist", workspace=w)
    with zipfile.ZipFile(wheel) as z:
        z.extractall(dst / "site")
    return dst / "site"


def env(site: Path, **extra: str) -> dict[str, str]:
    """The environment of a process importing the package from ``site`` (no provider keys)."""
    e = {k: v for k, v in os.environ.items()
         if not k.endswith("_API_KEY") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    e.update(PYTHONPATH=str(site), LITELLM_LOCAL_MODEL_COST_MAP="True", **extra)
    return e


def run_module(site: Path, *args: str, env_extra: dict[str, str] | None = None,
               timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess:
    """``python -m support_bot ARGS`` with the package on the path."""
    return subprocess.run([sys.executable, "-m", "support_bot", *args], capture_output=True,
                          text=True, env=env(site, **(env_extra or {})), timeout=timeout,
                          check=check)


def _open_gates(ws: Path) -> None:
    """These tests are about jobs, not approval gates (the offline baseline matches few NLU++
    objects whole): in the copy's policy (re-locked after), every ``min_*``/``max_*`` gate that
    applies to a released prompt (default, its kind's, its own) is opened, whatever gates the
    policy grows."""
    import tomllib

    import tomli_w

    import promptgov as pg

    policy = ws / "governance" / "policy.toml"
    doc = tomllib.loads(policy.read_text(encoding="utf-8"))
    gates = doc.setdefault("gates", {})
    w = pg.Workspace(ws)
    for ref in REFS:
        name, kind = ref.split("@")[0], w.prompt(ref).kind
        own = gates.setdefault("prompt", {}).setdefault(name, {})
        for table in (gates.get("default", {}), gates.get("kind", {}).get(kind, {}), dict(own)):
            for k, v in table.items():
                if k.startswith(("min_", "max_")) and isinstance(v, int | float):
                    own[k] = 0 if k.startswith("min_") else 1e9
    policy.write_text(tomli_w.dumps(doc), encoding="utf-8")

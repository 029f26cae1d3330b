"""The README's whole path, run as printed, on a fresh clone, offline: the commands between
``<!-- readme-path -->`` and ``<!-- /readme-path -->``, in order, each one a newcomer's step.

What a newcomer does by hand, the runner does the same way: ``<id>`` is the run id the previous
``eval`` printed, ``source .venv/bin/activate`` puts ``.venv/bin`` on PATH. The clone's
``.venv`` is this environment's (its entries linked, its install stamp the clone's own), so
``make demo``'s bootstrap finds it installed and installs nothing; ``pip install`` into the new
venv resolves from uv's cache (``uv pip install --offline``), as no test may reach an index.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"<!-- readme-path -->\s*```bash\n(.*?)```\s*<!-- /readme-path -->", re.S)


def readme_commands(text: str) -> list[str]:
    """The path's commands: lines joined while a quote is open or a line ends with ``\\``."""
    m = BLOCK.search(text)
    assert m, "README.md has no <!-- readme-path --> block"
    commands, pending = [], ""
    for line in m.group(1).splitlines():
        pending = f"{pending}\n{line}" if pending else line
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # a quote still open: the command goes on
            continue
        if pending.rstrip().endswith("\\"):
            continue
        if pending.strip():
            commands.append(pending)
        pending = ""
    assert not pending, f"unterminated command in the README path: {pending!r}"
    return commands


def test_readme_commands_parse():
    commands = readme_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert commands[0].startswith("make demo")
    assert any(c.startswith("../sb-env/bin/python -c '") and "sb.extract(" in c
               for c in commands)


def _link_venv(clone: Path) -> None:
    """The clone's ``.venv``: this environment's entries, linked, and a stamp for the clone's
    pyproject so that ``scripts/bootstrap.sh`` installs nothing (and never re-points the shared
    editable install at the clone)."""
    venv = Path(sys.prefix)
    (clone / ".venv").mkdir()
    for p in venv.iterdir():
        if p.name != ".promptgov-installed":
            (clone / ".venv" / p.name).symlink_to(p)
    digest = hashlib.sha256((clone / "pyproject.toml").read_bytes()).hexdigest()
    (clone / ".venv" / ".promptgov-installed").write_text(digest + "\n")


@pytest.mark.slow  # ~2-4 min: make demo, three evals, gate, export, a venv and an install
def test_the_readme_path_runs_as_printed_on_a_fresh_clone(tmp_path):
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed (scripts/bootstrap.sh installs it into .venv)")
    clone = tmp_path / "promptgov"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    _link_venv(clone)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "MLFLOW_TRACKING_URI", "PROMPTGOV_WORKSPACE")}
    env.update(HF_HUB_OFFLINE="1", UV_OFFLINE="1", PIP_NO_INDEX="1",
               LITELLM_LOCAL_MODEL_COST_MAP="True", MLFLOW_DISABLE_TELEMETRY="true",
               PATH=os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                    if not p.startswith(sys.prefix)))
    run_id, outputs = None, []
    for cmd in readme_commands((clone / "README.md").read_text(encoding="utf-8")):
        if cmd.split("#")[0].strip() == "source .venv/bin/activate":
            env["VIRTUAL_ENV"] = str(clone / ".venv")
            env["PATH"] = f"{clone / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
            continue
        if "<id>" in cmd.split("#")[0]:
            assert run_id, f"{cmd!r} needs a run id, and no eval before it printed one"
            cmd = cmd.replace("<id>", run_id)
        # no index: the new venv's packages come from uv's cache (what pip would download)
        cmd = re.sub(r"(\S+)/bin/pip install ",
                     lambda m: f"{uv} pip install --offline --python {m.group(1)}/bin/python ",
                     cmd)
        r = subprocess.run(["bash", "-c", cmd], cwd=clone, env=env, capture_output=True,
                           text=True, timeout=900)
        out = r.stdout + r.stderr
        assert r.returncode == 0, f"README command failed (exit {r.returncode}): {cmd}\n{out}"
        outputs.append(out)
        found = re.findall(r"MLflow run: ([0-9a-f]{32})", out)
        if found:
            run_id = found[-1]
    last = outputs[-1].splitlines()
    assert last[0].startswith("Decision(action=") and "label='card_arrival'" in last[0]
    assert last[1].startswith("intents=[") and "amount=80.24" in last[1]
    assert "Hello Ada" in outputs[-1]
    # the package answered without promptgov: the new venv does not have it
    r = subprocess.run([str(tmp_path / "sb-env" / "bin" / "python"), "-c",
                        "import importlib.util as u; print(u.find_spec('promptgov'))"],
                       capture_output=True, text=True, env=env)
    assert r.stdout.strip() == "None"
    # the tutorial path wrote only the clone's own files: the repository is untouched
    assert (clone / "governance" / "releases" / "support_bot.toml").exists()

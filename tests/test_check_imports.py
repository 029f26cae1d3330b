"""`promptgov check` is a pre-commit hook: it must not import MLflow, DSPy, LiteLLM or pandas
(principle 7). Measured in a fresh interpreter, after the command has run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("mlflow", "dspy", "litellm", "pandas")

PROBE = """
import json, sys
args, watched = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))
from promptgov.cli import main
sys.argv = ["promptgov", *args]
try:
    main()
except SystemExit as e:
    code = e.code
else:
    code = 0
heavy = sorted({m.split(".")[0] for m in sys.modules} & watched)
print("PROBE " + json.dumps({"code": code, "heavy": heavy}))
"""


def run_probe(args: list[str]) -> dict:
    p = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args), json.dumps(HEAVY)],
                       capture_output=True, text=True, timeout=120)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("PROBE ")]
    assert p.returncode == 0 and lines, (p.stdout, p.stderr)
    return json.loads(lines[-1].removeprefix("PROBE "))


def test_probe_sees_heavy_imports():
    """The probe itself works: a command module that imports pandas is reported."""
    code = PROBE.replace("from promptgov.cli import main",
                         "import pandas\nfrom promptgov.cli import main")
    p = subprocess.run([sys.executable, "-c", code, json.dumps(["--help"]), json.dumps(HEAVY)],
                       capture_output=True, text=True, timeout=120)
    assert '"heavy": ["pandas"]' in p.stdout, (p.stdout, p.stderr)


@pytest.mark.parametrize("args, code", [
    (["check"], 0),
    (["check", "--full"], 0),
    (["lock"], 0),
    (["ls"], 0),
])
def test_governance_commands_import_nothing_heavy(workspace_dir: Path, args, code):
    res = run_probe([*args, "-w", str(workspace_dir)])
    assert res["code"] == code
    assert res["heavy"] == [], f"`promptgov {' '.join(args)}` imported {res['heavy']}"


def test_failing_check_imports_nothing_heavy(workspace_dir: Path):
    """The error path (drift, schema diff) stays light too."""
    schema = workspace_dir / "schemas" / "ticket_extraction.py"
    schema.write_text(schema.read_text(encoding="utf-8").replace('    "cheque",\n', ""),
                      encoding="utf-8")
    prompt = workspace_dir / "prompts" / "ticket_triage" / "v1.yaml"
    prompt.write_text(prompt.read_text(encoding="utf-8").replace("Customer message:",
                                                                 "Customer Message:"),
                      encoding="utf-8")
    res = run_probe(["check", "-w", str(workspace_dir)])
    assert res["code"] == 1
    assert res["heavy"] == []


def test_warm_check_imports_not_even_pydantic_or_yaml(workspace_dir: Path):
    """On a workspace this machine has checked before (local state in .promptgov/), `check`
    parses nothing: not even pydantic, PyYAML or jinja2 is imported."""
    assert run_probe(["check", "-w", str(workspace_dir)])["code"] == 0  # warms the state
    p = subprocess.run([sys.executable, "-c", PROBE, json.dumps(["check", "-w",
                                                                  str(workspace_dir)]),
                        json.dumps([*HEAVY, "pydantic", "yaml", "jinja2"])],
                       capture_output=True, text=True, timeout=120)
    res = json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("PROBE ")][-1][6:])
    assert res == {"code": 0, "heavy": []}, res

"""Attacks on an exported package: whoever can write to site-packages can edit a file *and*
rewrite manifest.json to match, which the import-time check cannot see. ``verify-package`` (and
``python -m <pkg> verify --workspace``) exports the release again and compares every file.
The installed-wheel version of this attack runs in tests/test_export.py (slow, a fresh venv)."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import promptgov as pg
import promptgov.cli  # noqa: F401  (registers the commands)
from conftest import copy_workspace
from promptgov.cli._app import app
from promptgov.packaging._compare import compare_package
from promptgov.packaging._runtime._bundle import load

pytestmark = pytest.mark.xdist_group("release_attacks")


@pytest.fixture(scope="module")
def released(tmp_path_factory, mlflow_template) -> tuple[Path, Path]:
    """A workspace with ticket_triage@2 evaluated offline, approved and released as ``bot``, and
    the exported wheel."""
    root = copy_workspace(tmp_path_factory.mktemp("attack") / "ws")
    (root / ".promptgov").mkdir()
    shutil.copy(mlflow_template, root / ".promptgov/mlflow.db")
    r = pg.evaluate("ticket_triage@2", model="local/knn", workspace=pg.Workspace(root))
    pg.approve("ticket_triage@2", r.run_id, by="ci", workspace=root)
    pg.release("bot", ["ticket_triage@2"], workspace=root)
    return root, pg.export("bot", out=root / "dist", workspace=root)


@pytest.fixture
def installed(released, tmp_path) -> Path:
    with zipfile.ZipFile(released[1]) as z:
        z.extractall(tmp_path / "site")
    return tmp_path / "site" / "bot"


def forge(pkg: Path, rel: str, old: bytes, new: bytes) -> None:
    """Edit ``rel`` and rewrite manifest.json so the import-time check agrees."""
    p = pkg / rel
    data = p.read_bytes()
    assert old in data
    p.write_bytes(data.replace(old, new, 1))
    m = json.loads((pkg / "manifest.json").read_text(encoding="utf-8"))
    m["files"][rel] = "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest()
    (pkg / "manifest.json").write_text(json.dumps(m), encoding="utf-8")


def test_an_untouched_export_compares_equal(released, installed):
    root, wheel = released
    assert compare_package(wheel, root) == []
    assert compare_package(installed, root) == []


@pytest.mark.parametrize("rel, old, new", [
    ("_tasks.py", b"\n", b"\nimport os  # exfiltrate\n"),
    ("schemas/ticket_triage.py", b"\n", b"\n# a validator that turns confidence 0.1 into 1.0\n"),
])
def test_edit_with_a_rewritten_manifest_is_caught_by_name(released, installed, rel, old, new):
    root, _ = released
    forge(installed, rel, old, new)
    load(str(installed), "bot")  # the manifest agrees: the import-time check passes
    problems = compare_package(installed, root)
    assert [p.split(":")[0] for p in problems] == sorted([f"bot/{rel}", "bot/manifest.json"])
    assert all("differs from the export of release bot" in p for p in problems)


def test_an_added_file_is_caught(released, installed):
    (installed / "sitecustomize.py").write_text("print('hi')\n", encoding="utf-8")
    assert compare_package(installed, released[0]) == [
        "bot/sitecustomize.py: not part of the export of release bot (an added file)"]


def test_verify_package_command(released, installed):
    root, wheel = released
    r = CliRunner().invoke(app, ["verify-package", str(wheel), "-w", str(root)])
    assert r.exit_code == 0 and r.stdout.startswith("ok: "), r.output
    forge(installed, "_render.py", b"\n", b"\n# changed\n")
    r = CliRunner().invoke(app, ["verify-package", str(installed), "-w", str(root)])
    assert r.exit_code == 1
    assert r.stderr.splitlines() == [
        line for line in r.stderr.splitlines() if line.startswith("error: bot/")]
    assert "error: bot/_render.py: differs" in r.stderr


# -- approval records are checked against the runs they cite (check --runs, gate) ---------------

def _edit_record(root: Path, change) -> None:
    import tomllib

    import tomli_w

    path = root / "governance/approvals/ticket_triage@2.toml"
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(tomli_w.dumps(data), encoding="utf-8")


@pytest.fixture
def ws(released, tmp_path) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(released[0], root)
    return root


def check_runs(root: Path) -> tuple[int, list[str]]:
    r = CliRunner().invoke(app, ["check", "--runs", "-w", str(root)])
    return r.exit_code, [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]


def test_check_runs_passes_on_real_evidence(ws):
    assert check_runs(ws) == (0, [])


def _inflate(d):
    d["metrics"]["accuracy"] = 0.99
    for g in d["gates"]:
        if g["metric"] == "accuracy":
            g["value"] = 0.99


def _other_run(d):
    d["run_id"] = "f" * 32


def _other_content(d):
    d["content_hash"] = "sha256:" + "2" * 64


@pytest.mark.parametrize("change, message", [
    (_inflate, "min_accuracy: the record says accuracy 0.99, its run"),
    (_other_run, "its run ffffffffffffffffffffffffffffffff is not in the tracking store"),
    (_other_content, "content_hash: the record says 222222222222, its run"),
])
def test_hand_edited_record_is_caught_by_its_run(ws, change, message):
    _edit_record(ws, change)
    code, errors = check_runs(ws)
    assert code == 1
    assert any(e.startswith("error: governance/approvals/ticket_triage@2.toml: ") and message in e
               for e in errors), errors


def test_gate_checks_the_evidence_with_a_tracking_store_configured(ws, monkeypatch):
    _edit_record(ws, _inflate)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ws / '.promptgov/mlflow.db'}")
    report = pg.gate("bot", workspace=ws)
    assert not report.ok
    assert any("approval record vs its run: min_accuracy: the record says accuracy 0.99" in f
               for f in report.failures()), report.failures()

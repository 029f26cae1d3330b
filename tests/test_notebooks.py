"""The notebooks are the main interface: each is executed top to bottom, on a private copy of
the example workspace, and any cell error fails the test."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: What each notebook must show once run: evidence that its story happened, not just no error.
EXPECT = {
    "01_quickstart.ipynb": ["accuracy", "mcnemar_p"],
    "02_compare.ipynb": ["params.prompt_version", "mcnemar_p", "per 1,000 cases",
                         "reliability.png"],
    "03_robustness.ipynb": ["delta_alone", "ticket_triage-noisy-s0@1"],
    "04_release.ipynb": ["refused: ticket_triage@1", "min_accuracy", "min_intent_f1",
                         "support_bot-1-py3-none-any.whl", "card_arrival", "date='2026-01-07'",
                         "Hello Ada"],
    "05_new_use_case.ipynb": ["hotel@1", "ok: 6 prompt versions", "demos[1].output.intents.0",
                              "demos[2] input equals case hotel-0002", "ok: 7 prompt versions"],
}
#: What a tutorial could write to in the user's own workspace: it must write to none of it.
CONTENT = ("prompts", "schemas", "evalsets", "governance", "notebooks", ".promptgov", "dist")


def _git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--ignored", "--", *CONTENT],
                          cwd=ROOT, capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_clean(path: Path, workspace_dir: Path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        f"{path.name} is stored with outputs; clear them before committing"
    shutil.copytree(ROOT / "notebooks", workspace_dir / "notebooks")
    monkeypatch.setenv("PROMPTGOV_WORKSPACE", str(workspace_dir))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    before = _git_status()
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(workspace_dir / "notebooks")}})
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = "".join(str(o) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    missing = [text for text in EXPECT[path.name] if text not in outputs]
    assert not missing, f"{path.name} ran but its outputs lack {missing}"
    sandboxed = any("tempfile.mkdtemp" in c.source for c in nb.cells)  # works on its own copy
    assert sandboxed or (workspace_dir / ".promptgov" / "mlflow.db").exists()
    plots = [c for c in nb.cells if c.cell_type == "code" and "pg.plot." in c.source]
    blank = [c.source.splitlines()[-1] for c in plots
             if not any("image/png" in o.get("data", {}) for o in c.outputs)]
    assert not blank, f"{path.name}: plot cells without an image: {blank}"
    assert _git_status() == before, f"{path.name} changed the repository's own files"

"""The notebooks are the main interface: each is executed top to bottom, on a private copy of
the example workspace, and any cell error fails the test."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: What each notebook must show once run: evidence that its story happened, not just no error.
EXPECT = {
    "01_quickstart.ipynb": ["accuracy", "mcnemar_p"],
    "02_governance.ipynb": ["refused: ticket_triage@1", "min_accuracy", "and the approvals",
                            "delta_alone"],
    "05_new_use_case.ipynb": ["hotel@1", "ok: 5 prompt versions", "demos[1].output.intents.0",
                              "demos[2] input equals case hotel-0002", "ok: 6 prompt versions"],
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_clean(path: Path, workspace_dir: Path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        f"{path.name} is stored with outputs; clear them before committing"
    shutil.copytree(ROOT / "notebooks", workspace_dir / "notebooks")
    monkeypatch.setenv("PROMPTGOV_WORKSPACE", str(workspace_dir))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(workspace_dir / "notebooks")}})
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = "".join(str(o) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    missing = [text for text in EXPECT[path.name] if text not in outputs]
    assert not missing, f"{path.name} ran but its outputs lack {missing}"
    assert (workspace_dir / ".promptgov" / "mlflow.db").exists()

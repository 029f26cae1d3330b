"""Shared test set-up: no telemetry, no network price-map fetch, a temporary workspace copy."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
# logger services (promptgov.eval._logger) of the tests' workspaces go away soon after use
os.environ["PROMPTGOV_LOGGER_IDLE_S"] = "20"
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ.pop("MLFLOW_TRACKING_URI", None)

ROOT = Path(__file__).resolve().parent.parent

# The loopback OpenAI server and the no-internet guard (tests/support/fixtures.py); Redis and
# the exported package of the job tests (tests/support/jobs_fixtures.py).
pytest_plugins = ["support.fixtures", "support.jobs_fixtures"]


@pytest.fixture(autouse=True)
def _block_internet(no_internet):
    """Every test runs with non-loopback connections refused: no test may reach a provider."""


def copy_workspace(dst: Path) -> Path:
    """Copy the example workspace's content folders (no state: no cache, no MLflow store)."""
    dst.mkdir(parents=True)
    for d in ("prompts", "schemas", "evalsets", "governance"):
        if (ROOT / d).exists():
            shutil.copytree(ROOT / d, dst / d)
    return dst


@pytest.fixture
def workspace_dir(tmp_path: Path) -> Path:
    """A private copy of the example workspace (content folders only)."""
    return copy_workspace(tmp_path / "ws")


def small_triage(workspace_dir: Path, n: int) -> Path:
    """Add evalset ``triage_small``: the first ``n`` cases of ``ticket_triage``."""
    from promptgov.workspace import Workspace
    from promptgov.workspace._evalset import write_evalset

    es = Workspace(workspace_dir).evalset("ticket_triage")
    m = es.manifest.model_copy(update={"name": "triage_small", "count": n})
    write_evalset(workspace_dir / "evalsets" / "triage_small", m, list(es.cases[:n]))
    return workspace_dir


@pytest.fixture
def workspace(workspace_dir: Path):
    from promptgov.workspace import Workspace

    return Workspace(workspace_dir)


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    """An initialised, empty MLflow SQLite store: creating one takes seconds, copying it none.
    Copy it to ``<workspace>/.promptgov/mlflow.db`` before a test's first run."""
    from mlflow import MlflowClient

    p = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{p}").search_experiments()
    return p

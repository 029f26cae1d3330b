"""Where runs go, and opening it without making the eval wait (principle 8).

The default store is a SQLite file in the workspace (``.promptgov/mlflow.db``, artifacts in
``.promptgov/mlartifacts``); ``MLFLOW_TRACKING_URI`` overrides it (e.g. a team's server).
Everything goes through an explicit ``MlflowClient``: no global MLflow state is changed.

Opening MLflow costs seconds (the import, the SQLAlchemy store, its migrations), so
``evaluate()`` hands its runs to a logger service that opened it once and outlives the command
(:mod:`promptgov.eval._logger`);
a remote server is checked for reachability (:func:`check_reachable`) before the first model
call, so an unreachable one costs nothing. Two processes creating or migrating the same SQLite
store at once, or writing to it, take turns on a file lock (:func:`store_lock`) instead of
crashing in a migration.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptgov.eval._store import (  # noqa: F401  (RUN_TAG, is_local: re-exported)
    RUN_TAG,
    is_local,
    store_lock,
    tracking_uri,
)

if TYPE_CHECKING:
    from promptgov.workspace import Workspace
    from promptgov.workspace._evalset import Evalset
    from promptgov.workspace._prompt import PromptVersion

_clients: dict[tuple[str, str], object] = {}
_clients_guard = threading.Lock()

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# The server was checked before the cases ran; a failure while logging keeps the result in
# .promptgov/pending/ rather than retrying for minutes (MLflow: 7 retries, 120 s timeouts).
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
# A command's stdout is its own (`--json` is parsed): MLflow prints run links to it for a server.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")






def check_store(root: Path) -> None:
    """Refuse a default SQLite store that is not a database (a damaged or foreign file) with one
    line, before anything is spent, instead of SQLAlchemy's traceback at the end of a run."""
    from promptgov.errors import WorkspaceError

    uri = tracking_uri(root)
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri.removeprefix("sqlite:///"))
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        return
    if head and head != b"SQLite format 3\x00":
        shown = path.relative_to(root) if path.is_relative_to(root) else path
        raise WorkspaceError(shown, "is not an SQLite database (damaged?); the MLflow runs it "
                             "held cannot be read", f"restore it from a backup, or move it aside "
                             f"(`mv {shown} {shown}.broken`) and a new store is created")


def check_reachable(root: Path, timeout: float = 4.0) -> None:
    """A remote tracking server must answer ``/health`` before anything is paid; one line
    otherwise. Local stores are checked by :func:`check_store`."""
    uri = tracking_uri(root)
    if not uri.startswith(("http://", "https://")):
        check_store(root)
        return
    import urllib.error
    import urllib.request

    from promptgov.errors import TrackingError

    shown = _redact(uri)
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as r:
            if r.status == 200:
                return
            problem = f"answered HTTP {r.status}"
    except urllib.error.HTTPError as e:
        problem = f"answered HTTP {e.code}"
    except (OSError, ValueError) as e:
        problem = f"is not reachable ({getattr(e, 'reason', None) or e})"
    raise TrackingError(f"MLflow tracking server {shown} {problem}; nothing was evaluated "
                        "(fix: start it, correct MLFLOW_TRACKING_URI, or pass --no-track)")


def _redact(uri: str) -> str:
    """``http://user:secret@host`` → ``http://***@host``: credentials never reach a message."""
    scheme, sep, rest = uri.partition("://")
    return f"{scheme}{sep}***@{rest.split('@', 1)[1]}" if "@" in rest else uri


def client(root: Path) -> Any:
    """The ``MlflowClient`` of the workspace's store, opened (and created or migrated, under the
    store lock) once per process. On a server, evals that start at once log the same evalset
    as a dataset input of one experiment at once: the server inserts the dataset row if it is
    not there yet, and all but one such insert fail on its key (PostgreSQL: UniqueViolation on
    ``dataset_pk``, answered as 400 BAD_REQUEST); this client's ``log_inputs`` repeats a write
    that lost that race (the server then finds the dataset and reuses it)."""
    uri = tracking_uri(root)
    key = (str(root), uri)
    with _clients_guard:
        if key in _clients:
            return _clients[key]
    (root / ".promptgov").mkdir(exist_ok=True)
    check_store(root)
    from mlflow import MlflowClient

    if uri.startswith("sqlite:"):
        with store_lock(root):  # creates / migrates the store, one process at a time
            new = not Path(uri.removeprefix("sqlite:///")).exists()
            c = MlflowClient(tracking_uri=uri, registry_uri=uri)
            c.search_experiments(max_results=1)
            if new:  # an empty store: its (empty) run index is complete
                from promptgov.eval._runindex import rebuild

                rebuild(root, c, locked=True)
    else:
        from promptgov.eval._runindex import retrying

        c = MlflowClient(tracking_uri=uri, registry_uri=uri)
        c.log_inputs = retrying(c.log_inputs)  # type: ignore[method-assign]
    with _clients_guard:
        return _clients.setdefault(key, c)


VIEW_KEY = "promptgov"
"""``#/experiments/<id>/runs?viewStateShareKey=promptgov``: the runs list with the headline
metrics, the prompt version and content hash as columns (MLflow's shared-view mechanism: the
UI state is an experiment tag ``mlflow.sharedViewState.<key>``)."""
HEADLINE_COLUMNS = ("accuracy", "object_match", "failure_rate", "cost_per_1k_usd",
                    "latency_p95_s", "automation_rate")


def view_state() -> str:
    import json

    cols = (["attributes.`Dataset`"] + [f"metrics.`{m}`" for m in HEADLINE_COLUMNS]
            + ["params.`prompt_version`", "params.`content_hash`", "tags.`promptgov.lock`"])
    return json.dumps({"selectedColumns": cols, "runsHiddenMode": "SHOW_ALL",
                       "searchFilter": "", "orderByKey": "attributes.start_time",
                       "orderByAsc": False})


def ui_path(exp_id: str) -> str:
    """Where the UI shows an experiment's runs with the promptgov view."""
    return (f"#/experiments/{exp_id}/runs?viewStateShareKey={VIEW_KEY}"
            "&workflowType=machine_learning")


def experiment_id(c: Any, root: Path, name: str) -> str:
    """The experiment ``name`` (created once; a concurrent creator wins and is used). New
    experiments open on their runs, not on an empty traces view, and carry the promptgov
    view of the runs list (:data:`VIEW_KEY`); an experiment without it (made elsewhere) gets
    it, and of two processes adding it at once on a server, the loser (its insert fails on the
    tag's key) leaves the winner's."""
    from mlflow.exceptions import MlflowException

    from promptgov.eval._runindex import lost_race, writing

    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.tags.get(f"mlflow.sharedViewState.{VIEW_KEY}") != view_state():
            try:
                with writing(root, c):
                    c.set_experiment_tag(exp.experiment_id,
                                         f"mlflow.sharedViewState.{VIEW_KEY}", view_state())
            except MlflowException as e:
                if not lost_race(e):
                    raise
        return str(exp.experiment_id)
    art = None
    if c.tracking_uri.startswith("sqlite:"):  # keep artifacts in the workspace, not in the cwd
        art = (root / ".promptgov" / "mlartifacts" / name).as_uri()
    try:
        with writing(root, c):
            exp = c.get_experiment_by_name(name)
            if exp is not None:
                return str(exp.experiment_id)
            return str(c.create_experiment(name, artifact_location=art, tags={
                "mlflow.experimentKind": "custom_model_development",
                f"mlflow.sharedViewState.{VIEW_KEY}": view_state(),
                "mlflow.note.content": f"promptgov runs of prompt {name}: one per evaluation "
                "(headline metrics: accuracy, failure_rate, cost_per_1k_usd, latency_p95_s, "
                "automation_rate), adversarial runs, and compare runs."}))
    except MlflowException:
        exp = c.get_experiment_by_name(name)  # another process created it first
        if exp is None:
            raise
        return str(exp.experiment_id)


def provenance(ws: Workspace, pv: PromptVersion, es: Evalset, model: str,
               **extra: object) -> dict[str, object]:
    """The params every run kind logs (eval, adversarial, optimize): what ran — prompt version
    and its hashes, evalset and its hash, model — with which promptgov, at which git commit;
    then the run kind's own ``extra`` settings."""
    from promptgov._version import __version__

    return {"prompt": pv.name, "prompt_version": pv.version, "prompt_ref": pv.ref,
            "content_hash": pv.content_hash, "render_fingerprint": pv.render_fingerprint,
            "schema": pv.response_schema,
            "schema_hash": ws.schema(pv.response_schema).hash if pv.response_schema else None,
            "evalset": es.manifest.name, "evalset_version": es.manifest.version,
            "evalset_hash": es.hash, "model": model, **extra,
            "promptgov_version": __version__, **git_info(ws.root)}


def git_info(root: Path) -> dict[str, str]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "prompts", "schemas",
                                "evalsets"], cwd=root, capture_output=True, text=True,
                               timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": commit, "git_dirty": str(bool(dirty))} if commit else {}

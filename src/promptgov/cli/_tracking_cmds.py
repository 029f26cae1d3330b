"""``promptgov ui``, ``server`` and ``log --pending``: the MLflow side of the workbench.

``ui`` and ``server`` run ``mlflow server`` as a child in its own process group, with one worker,
no job-runner processes and the offline environment set here (no price-map download, no
telemetry); Ctrl-C or SIGTERM stops the whole group, so nothing is left running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from promptgov.cli._app import WorkspaceOpt, app, workspace

OFFLINE_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
               "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_LOGGING_LEVEL": "WARNING",
               "PYTHONWARNINGS": "ignore::DeprecationWarning"}
"""Set for the MLflow server unless the caller set them: LiteLLM would otherwise fetch its price
map from the internet at import, and the job runner would start a consumer per worker."""


def serve(args: list[str], env_extra: dict[str, str] | None = None) -> int:
    """Run ``mlflow server ARGS`` (or, with ``args[0] == "uvicorn"``, MLflow's app under
    uvicorn directly) until it exits, Ctrl-C or SIGTERM; then stop its whole process group
    (the server, its uvicorn worker) and return its exit code (130 when stopped)."""
    env = {**os.environ, **{k: v for k, v in OFFLINE_ENV.items() if k not in os.environ},
           **(env_extra or {})}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = ([sys.executable, "-m", *args] if args[0] == "uvicorn" else
           [sys.executable, "-m", "mlflow", "server", *args])
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)

    def _term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a shell that starts the command in the background without job control has
    # it ignored, and Python then leaves it so; Ctrl-C or `kill -INT` must still stop it
    old = {s: signal.signal(s, _term) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return proc.wait()
    except KeyboardInterrupt:
        stop_group(proc)
        return 130
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        stop_group(proc)


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the child's process group, SIGKILL what is left after ``timeout``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue
        with contextlib.suppress(ProcessLookupError):  # no worker may outlive the leader
            os.killpg(proc.pid, signal.SIGKILL)
        return


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="Port of the MLflow UI.")] = 5000,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    ws: WorkspaceOpt = None,
) -> None:
    """Open the MLflow UI on the workspace's tracking store (one worker, offline).

    Ctrl-C or SIGTERM stops it and every process it started.

    Example: promptgov ui   (then browse http://127.0.0.1:5000)
    """
    from promptgov.eval._store import tracking_uri

    w = workspace(ws)
    uri = tracking_uri(w.root)
    if uri.startswith(("http://", "https://", "databricks")):
        print(f"runs are logged to the tracking server {uri}: open it in a browser")
        return
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        from promptgov.eval._tracking import client

        client(w.root)  # a new store is created under the store lock, not by the server
    print(f"MLflow UI: http://{host}:{port}  (tracking URI {uri}; Ctrl-C stops it)")
    _print_views(w.root, f"http://{host}:{port}/")
    sys.stdout.flush()
    raise typer.Exit(serve(*ui_command(uri, w.root / ".promptgov" / "mlartifacts", host, port)))


def _print_views(root: Path, base: str) -> None:
    """Each prompt's runs list with the promptgov view (headline metrics, version, content
    hash as columns), from the run index (no MLflow import)."""
    from promptgov.eval._runindex import runs
    from promptgov.eval._store import RUN_TAG
    from promptgov.eval._tracking import ui_path

    exps: dict[str, str] = {}
    for e in runs(root) or ():
        name = e["tags"].get(RUN_TAG, "").partition("@")[0]
        if name:
            exps.setdefault(name, e["experiment_id"])
    for name, exp in sorted(exps.items()):
        print(f"  {name}: {base}{ui_path(exp)}")


def ui_command(uri: str, artifacts: str | os.PathLike[str], host: str,
               port: int) -> tuple[list[str], dict[str, str]]:
    """MLflow's server app under one uvicorn worker, configured as ``mlflow server`` configures
    it (its ``_MLFLOW_SERVER_*`` variables), without the ``mlflow server`` parent process: one
    MLflow import instead of two halves the time to the first page."""
    import uuid

    env = {"_MLFLOW_SERVER_FILE_STORE": uri, "_MLFLOW_SERVER_REGISTRY_STORE": uri,
           "_MLFLOW_SERVER_ARTIFACT_ROOT": "mlflow-artifacts:/",
           "_MLFLOW_SERVER_SERVE_ARTIFACTS": "true",
           "_MLFLOW_SERVER_ARTIFACT_DESTINATION": str(artifacts),
           "_MLFLOW_SGI_NAME": "uvicorn", "_MLFLOW_IN_JOB_EXECUTOR": "false",
           "_MLFLOW_SERVER_BOOT_ID": uuid.uuid4().hex}
    return (["uvicorn", "--host", host, "--port", str(port), "--workers", "1",
             "--log-level", "warning", "mlflow.server.fastapi_app:app"], env)


@app.command()
def server(
    backend_store_uri: Annotated[str, typer.Option(
        "--backend-store-uri", envvar="PROMPTGOV_SERVER_DB",
        help="The team's store, e.g. postgresql://user:pass@db-host/mlflow "
        "(scripts/postgres.sh makes a local one and prints its URL).")],
    artifacts_destination: Annotated[str, typer.Option(
        "--artifacts-destination", help="Where the server keeps run artifacts (a folder, or "
        "s3://... with the matching extra installed).")],
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5000,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    workers: Annotated[int, typer.Option(min=1, help="Server worker processes.")] = 1,
) -> None:
    """Run a team MLflow tracking server (e.g. on PostgreSQL) serving artifacts itself.

    Point each workbench at it with MLFLOW_TRACKING_URI=http://HOST:PORT. The server creates
    and migrates its tables on first start.

    Example: promptgov server --backend-store-uri "$(bash scripts/postgres.sh)"
    --artifacts-destination /srv/mlflow-artifacts
    """
    raise typer.Exit(serve(["--backend-store-uri", backend_store_uri,
                            "--artifacts-destination", artifacts_destination,
                            "--serve-artifacts", "--host", host, "--port", str(port),
                            "--workers", str(workers)]))


@app.command("log")
def log_cmd(
    pending: Annotated[bool, typer.Option(
        "--pending", help="Log the results kept in .promptgov/pending/ because logging failed.")]
    = False,
    ws: WorkspaceOpt = None,
) -> None:
    """Log results that could not be logged when they ran (the store was unreachable).

    Example: promptgov log --pending
    """
    from promptgov.errors import PromptgovError
    from promptgov.eval._pending import log_pending

    if not pending:
        print("error: say what to log: --pending", file=sys.stderr)
        raise typer.Exit(2)
    w = workspace(ws)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    try:
        done = log_pending(w.root)
    except PromptgovError as e:
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(1) from None
    for f, rid in done:
        print(f"logged {f.name}: MLflow run {rid}")
    if not done:
        print("nothing pending")

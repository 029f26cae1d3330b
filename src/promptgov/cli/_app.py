"""The typer application and the options every command shares."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from promptgov.workspace import Workspace

app = typer.Typer(
    name="promptgov", no_args_is_help=True, add_completion=False,
    pretty_exceptions_enable=False,
    help="Versioned, hashed prompts; offline and real-model evals logged to MLflow; "
         "approvals, release checks and frozen exports.")

WorkspaceOpt = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", envvar="PROMPTGOV_WORKSPACE",
                 help="Workspace root (default: nearest folder upwards holding prompts/)."),
]


def workspace(path: Path | None) -> Workspace:
    from promptgov.workspace import Workspace

    return Workspace(path) if path else Workspace.find()

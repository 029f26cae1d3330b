"""The ``promptgov`` command. One module per command group; heavy libraries (MLflow, DSPy,
pandas) are imported inside the commands that need them, because ``check`` runs as a
pre-commit hook and must start fast."""

from __future__ import annotations

import sys

from promptgov.cli import (
    _adversarial_cmds,  # noqa: F401  (registers adversarial)
    _authoring_cmds,  # noqa: F401  (registers new, evalset import)
    _eval_cmds,  # noqa: F401  (registers eval, compare, ui, loop)
    _export_cmds,  # noqa: F401  (registers export)
    _governance_cmds,  # noqa: F401  (registers approve, revoke, status, release, gate)
    _jobs_cmds,  # noqa: F401  (registers evalset from-jobs)
    _optimize_cmds,  # noqa: F401  (registers optimize)
    _workspace_cmds,  # noqa: F401  (registers lock, check, ls)
)
from promptgov.cli._app import app


def main() -> None:
    from promptgov.errors import PromptgovError

    try:
        app()
    except PromptgovError as e:  # library errors become one-line CLI errors here, at the edge
        for line in str(e).splitlines():
            print(f"error: {line}", file=sys.stderr)
        sys.exit(1)

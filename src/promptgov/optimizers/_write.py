"""Writing a candidate version: ``prompts/<name>/v<N+1>.yaml``, atomically, never over a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from promptgov.errors import WorkspaceError
from promptgov.workspace._yamlwrite import dump_yaml


def write_version(root: Path, body: dict[str, Any], header: str) -> Path:
    """Write ``body`` (a prompt version as data) to its file; refuses to replace one, and a
    failure leaves nothing behind. Returns the path."""
    from promptgov.workspace._prompt import PromptVersion

    d: Path = root / "prompts" / body["name"]
    path = d / f"v{body['version']}.yaml"
    if path.exists() or (d / f"v{body['version']}.yml").exists():
        raise WorkspaceError(path, "already exists (prompt versions are immutable)",
                             "optimize again: the next free version number is taken")
    text = header + dump_yaml(body)  # literal blocks, never folded: one-word edits, one-line diffs
    fd, tmp = tempfile.mkstemp(prefix=f".v{body['version']}.", suffix=".yaml.tmp", dir=d)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.link(tmp, path)  # fails if a concurrent writer took the number: never overwrites
    finally:
        os.unlink(tmp)
    try:
        PromptVersion.from_file(path)
    except WorkspaceError:
        path.unlink()
        raise
    return path

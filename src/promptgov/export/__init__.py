"""Frozen exports: a release's approved prompt versions as a self-verifying wheel.

    >>> import promptgov as pg                                             # doctest: +SKIP
    >>> pg.export("support_bot", out="dist")                               # doctest: +SKIP
    PosixPath('dist/support_bot-3-py3-none-any.whl')

``pg.export`` is this package and is callable: calling it runs :func:`export_release`.
The wheel's runtime lives in ``_runtime/`` (copied into every package as it is, with
``promptgov._portable`` and the offline baseline, see ``_vendor``), the generated
``__init__.py`` and README in ``_templates/``; ``_package`` decides what goes in, ``_wheel``
writes it reproducibly, ``_render_check`` proves the runtime renders as jinja2 does.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from promptgov.export._export import export_release

if TYPE_CHECKING:
    import os

    from promptgov.workspace import Workspace

__all__ = ["export", "export_release"]


class _CallablePackage(ModuleType):
    """``promptgov.export`` is both this package and, called, :func:`export_release`: the lazy
    top-level name ``pg.export`` and the subpackage are one object either way."""

    def __call__(self, release: str, *, out: Path | str = "dist",
                 workspace: Workspace | str | os.PathLike[str] | None = None) -> Path:
        return export_release(release, out=out, workspace=workspace)


sys.modules[__name__].__class__ = _CallablePackage
export = sys.modules[__name__]
"""This package, callable: ``export(release, out=..., workspace=...)`` is :func:`export_release`."""

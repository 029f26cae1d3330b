"""Frozen exports: a release's approved prompt versions as a self-verifying wheel.

    >>> import promptgov as pg                                             # doctest: +SKIP
    >>> pg.export("support_bot", out="dist")                               # doctest: +SKIP
    PosixPath('dist/support_bot-3-py3-none-any.whl')

:func:`export` (``pg.export``) builds the wheel. Its runtime lives in ``_runtime/`` (copied
into every package as it is, with ``promptgov._portable`` and the offline baseline, see
``_vendor``), the generated
``__init__.py`` and README in ``_templates/``; ``_package`` decides what goes in, ``_wheel``
writes it reproducibly, ``_render_check`` proves the runtime renders as jinja2 does.
"""

from __future__ import annotations

from promptgov.packaging._export import export_release as export

__all__ = ["export"]

"""What an exported package carries of the workbench's own code, copied as pip vendors its
dependencies: never rewritten by hand.

* :func:`portable`: :mod:`promptgov._portable` (hashing, the output parser, the template fill,
  the records of a model call), byte for byte, at the package's top level, beside the runtime's
  modules that import them as siblings.
* :func:`vendored`: the offline baseline ``local/knn``, from :mod:`promptgov.model` into the
  package's ``_knn/`` folder. Only its import lines are rewritten: ``promptgov.model._x`` becomes
  ``._x``, ``promptgov._portable._x`` becomes ``.._x`` (the portable copy one level up), and
  ``promptgov.errors`` becomes ``._base`` (the stdlib-only ``_runtime/_knn_base.py``). Any other
  reference to promptgov left in a vendored file stops the export, so a new import in the model
  is caught by the export tests rather than by a service. The code itself is never edited: the
  package answers exactly as the workbench does (the installed-package tests compare them).
"""

from __future__ import annotations

import re
from importlib import resources

from promptgov._portable import FILES as PORTABLE_FILES

KNN_MODULES = ("_knn.py", "_knn_params.py", "_knn_schema.py", "_knn_cue.py", "_knn_enum.py",
               "_knn_plan.py", "_knn_group.py", "_knn_prompt.py", "_extractors.py",
               "_embedding.py", "_draft.py")
"""The modules of ``local/knn`` (``promptgov/model/``) an exported package carries."""

_REWRITES = (
    (re.compile(r"^(\s*)from promptgov\.model import (\w+)", re.M), r"\1from . import \2"),
    (re.compile(r"^(\s*)from promptgov\.model\.(_\w+) import", re.M), r"\1from .\2 import"),
    (re.compile(r"^(\s*)from promptgov\._portable\.(_\w+) import", re.M), r"\1from ..\2 import"),
    (re.compile(r"^(\s*)from promptgov\.errors import", re.M), r"\1from ._base import"))
_IMPORT_LEFT = re.compile(r"^\s*(?:from|import)\s+promptgov\b", re.M)

_INIT = b'''"""promptgov's offline baseline ``local/knn``, vendored at export (``_offline.py``)."""
'''


def portable() -> dict[str, bytes]:
    """``<module>`` → bytes of each of :mod:`promptgov._portable`'s files, as they are."""
    src = resources.files("promptgov._portable")
    return {name: src.joinpath(name).read_bytes() for name in PORTABLE_FILES}


def vendored() -> dict[str, bytes]:
    """``_knn/<module>`` → bytes, for the package's file map."""
    model = resources.files("promptgov.model")
    runtime = resources.files("promptgov.packaging._runtime")
    files = {"_knn/__init__.py": _INIT,
             "_knn/_base.py": runtime.joinpath("_knn_base.py").read_bytes()}
    for name in KNN_MODULES:
        text = model.joinpath(name).read_text(encoding="utf-8")
        for pattern, repl in _REWRITES:
            text = pattern.sub(repl, text)
        left = _IMPORT_LEFT.search(text)
        if left:
            raise RuntimeError(f"promptgov/model/{name} imports {left.group(0).strip()!r}, which "
                               "an exported package cannot vendor (fix: import it from a module "
                               "listed in promptgov.packaging._vendor.KNN_MODULES or "
                               "promptgov._portable.FILES, or add it there)")
        files[f"_knn/{name}"] = text.encode("utf-8")
    return files

"""The runtime of every exported package: these modules are copied verbatim into the wheel,
next to a generated ``__init__.py`` that binds them to the package's embedded prompts.

They import only the standard library at import time (pydantic comes with the embedded schemas;
LiteLLM and promptgov only when a model of theirs is configured), and use relative imports only,
so that the same files run here (the exporter checks each package by loading it with them; the
job queue of ``promptgov jobs`` is theirs) and inside the exported package.

What the workbench shares with them (hashing, the output parser, the template fill, the records
of a model call) is written once, in :mod:`promptgov._portable`, and copied into the package at
its top level, beside these (``_portable.FILES``). The runtime imports those modules as its
siblings (``from ._hashing import content_hash``); here, where they are not siblings, a stand-in
of the same name (``_hashing.py``: one import from ``promptgov._portable``) takes their place and
is never copied. This ``__init__.py`` is not copied either.
"""

RUNTIME_FILES = ("__main__.py", "_bundle.py", "_engine.py", "_errors.py", "_facts.py",
                 "_models.py", "_offline.py", "_tasks.py", "_verify.py", "_usage.py", "_jobs.py",
                 "_jobs_sqlite.py", "_jobs_bullmq.py", "_jobs_cli.py", "jobs.py")
"""The modules copied into an exported package, as they are."""
STAND_INS = ("_calls.py", "_hashing.py", "_parse.py", "_render.py")
"""The modules here that stand in for :mod:`promptgov._portable`'s files of the same names."""

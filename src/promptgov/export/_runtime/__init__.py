"""The runtime of every exported package: these modules are copied verbatim into the wheel,
next to a generated ``__init__.py`` that binds them to the package's embedded prompts.

They import only the standard library at import time (pydantic comes with the embedded schemas;
LiteLLM and promptgov only when a model of theirs is configured), and use relative imports only,
so the same files run here (the exporter checks its renderer against jinja2 with them, and the
tests compare the hashing copy with :mod:`promptgov.hashing`) and inside the exported package.
This ``__init__.py`` is not copied.
"""

RUNTIME_FILES = ("__main__.py", "_bundle.py", "_engine.py", "_errors.py", "_facts.py",
                 "_hashing.py", "_models.py", "_offline.py", "_parse.py", "_render.py", "_tasks.py",
                 "_verify.py", "_usage.py", "_jobs.py", "_jobs_sqlite.py", "_jobs_bullmq.py",
                 "_jobs_cli.py", "jobs.py")
"""The modules copied into an exported package, as they are."""

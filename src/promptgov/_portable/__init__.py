"""The logic that runs both in the workbench and inside every exported package, written once.

Standard library only, and only relative imports among themselves, so that the exporter copies
these files verbatim into the package it builds (as pip vendors its dependencies), next to the
runtime's modules (``support_bot/_hashing.py``), and the package answers exactly as the workbench
does: the same content hashes, the same output parser with the same repairs, the same template
fill, the same records of a model call. The workbench imports them from here
(:mod:`promptgov.hashing` re-exports the hashing); the runtime's modules import them as their
siblings, through stand-ins of the same names in ``export/_runtime/``.

Each raises only its own errors (``ValueError`` subclasses); the workbench and the package turn
them into their own error trees at the call. This ``__init__.py`` is not copied.
"""

FILES = ("_calls.py", "_hashing.py", "_jsonschema.py", "_parse.py", "_render.py")
"""The modules copied into an exported package, byte for byte, at its top level."""

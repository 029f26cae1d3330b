"""Writing content YAML (prompt versions, evalset manifests) so that a one-word edit is a
one-line diff: multi-line strings as literal block scalars (``|``), no line width (PyYAML folds
long strings at 80 columns by default, and a folded paragraph reflows whole in a diff), keys in
the order given, unicode as it is. Safe types only, no aliases or tags."""

from __future__ import annotations

from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:  # a repeated value is written out, never `*a`
        return True


def _str(dumper: yaml.SafeDumper, s: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None)


_Dumper.add_representer(str, _str)


def dump_yaml(data: Any) -> str:
    """``data`` as YAML text: literal blocks for multi-line strings, no folding.

    Example:
        >>> print(dump_yaml({"user": "Message:\\n{{ text }}", "n": 1}), end="")
        user: |-
          Message:
          {{ text }}
        n: 1
    """
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     width=float("inf"))

"""A stand-in: an exported package has ``promptgov/_portable/_render.py`` itself here."""

from promptgov._portable._render import UndefinedVariable, render, unsupported, variables

__all__ = ["UndefinedVariable", "render", "unsupported", "variables"]

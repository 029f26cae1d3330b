"""A stand-in: an exported package has ``promptgov/_portable/_calls.py`` itself here."""

from promptgov._portable._calls import Completion, Request, Usage

__all__ = ["Completion", "Request", "Usage"]

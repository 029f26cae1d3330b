"""A stand-in: an exported package has ``promptgov/_portable/_parse.py`` itself here."""

from promptgov._portable._parse import OutputError, parse_output

__all__ = ["OutputError", "parse_output"]

"""The workspace and the content it holds: prompt versions, schemas, evalsets."""

from promptgov.workspace._refs import fmt_ref, parse_ref
from promptgov.workspace._workspace import Workspace

__all__ = ["Workspace", "parse_ref", "fmt_ref"]

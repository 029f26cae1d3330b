"""promptgov: versioned, hashed prompts under governance, evaluated offline or against real models."""
from promptgov._version import __version__

__all__ = ["__version__"]

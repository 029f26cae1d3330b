"""Versions that are part of promptgov's provenance."""

__version__ = "0.1.0"

#: Bumped when promptgov changes how messages are assembled from a prompt file; recorded in the
#: lock, so that `check` re-renders every prompt (render fingerprint) after such a change.
RENDER_VERSION = 1

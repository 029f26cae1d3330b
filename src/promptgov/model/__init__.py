"""Models behind one interface: real providers through DSPy, the offline ``local/knn``
baseline, ``replay:<cassette>``, and a fault-injecting fake for tests."""

from promptgov.model._base import Completion, Model, Request, Usage

__all__ = ["Completion", "Model", "Request", "Usage"]

"""Where a generated prompt version came from: the ``provenance`` block ``promptgov optimize``
writes into ``prompts/<name>/v<N>.yaml``. It is content like the rest of the file (hashed and
locked), so a reviewer reads in the diff which parent, data, optimizer and seed produced it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Provenance(BaseModel):
    """The optimization that proposed a candidate version."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    parent: str
    """``name@version`` the candidate was derived from."""
    parent_hash: str
    """The parent's content hash when it was optimized."""
    optimizer: str
    """``herding``, ``labeled``, ``bootstrap``, ``random_search``, ``copro``, ``mipro``."""
    settings: dict[str, Any] = {}
    """The optimizer's settings and the demo budget (demos per label, prompt tokens)."""
    seed: int
    trainset: str
    """``name@version`` of the evalset the demos and trials were drawn from."""
    trainset_hash: str
    judged_on: str
    """``name@version`` of the evalset the candidate is judged on (disjoint from ``trainset``)."""
    judged_on_hash: str
    metric: str
    """What the trials maximised."""
    model: str
    """The model the trials ran with."""
    mlflow_run: str | None = None
    """The optimization's MLflow run (its trials and scores)."""
    packages: dict[str, str] = {}
    """promptgov and dspy versions."""

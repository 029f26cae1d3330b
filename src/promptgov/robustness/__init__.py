"""Adversarial inputs: noisy variants of clean cases that keep the expected output, what they
cost a prompt (a robustness run in MLflow), and the smallest noise that flips an answer.

    >>> import promptgov as pg                                                  # doctest: +SKIP
    >>> r = pg.adversarial("ticket_triage@2", model="local/knn", n=500, seed=1)  # doctest: +SKIP
    >>> r.deltas                 # clean vs noisy accuracy per transformation   # doctest: +SKIP
    >>> r.minimal_failures       # shrunk variants that flip a right answer     # doctest: +SKIP

:func:`adversarial` (``pg.adversarial``) is the robustness run; ``pg.robustness`` holds the
building blocks:

* hypothesis strategies, one per transformation (:func:`ocr_typos`, :func:`case_whitespace`,
  :func:`forwarded_chain`, :func:`quoted_reply`, :func:`signature_headers`,
  :func:`html_remnants`, :func:`foreign_language`, :func:`emoji`, :func:`prompt_injection`),
  composed by :func:`noisy_text` / :func:`noisy_case`; for model output :func:`model_outputs`
  (fenced, truncated, single-quoted, extra-keyed JSON, wrong enum case);
* the pure transformations behind them, :data:`TRANSFORMS` (``(text, rng, ctx) -> text``):
  add your own with ``transforms={**TRANSFORMS, "name": fn}``; :func:`make_variant` and
  :func:`noisy_cases` draw from them with a seeded ``random.Random``;
* :func:`minimal_failing`: hypothesis search and shrinking of answer-flipping noise.
"""

from __future__ import annotations

from promptgov.robustness._noisy import noisy_cases
from promptgov.robustness._result import AdversarialResult
from promptgov.robustness._run import adversarial
from promptgov.robustness._shrink import minimal_failing
from promptgov.robustness._strategies import (
    MalformedOutput,
    case_whitespace,
    emoji,
    foreign_language,
    forwarded_chain,
    html_remnants,
    model_outputs,
    noisy_case,
    noisy_text,
    ocr_typos,
    prompt_injection,
    quoted_reply,
    schema_values,
    signature_headers,
    transformed,
)
from promptgov.robustness._transforms import TRANSFORMS, NoiseContext, Variant, make_variant

__all__ = [
    "TRANSFORMS", "AdversarialResult", "MalformedOutput", "NoiseContext", "Variant",
    "adversarial", "case_whitespace", "emoji", "foreign_language", "forwarded_chain",
    "html_remnants", "make_variant", "minimal_failing", "model_outputs", "noisy_case",
    "noisy_cases", "noisy_text", "ocr_typos", "prompt_injection", "quoted_reply",
    "schema_values", "signature_headers", "transformed",
]

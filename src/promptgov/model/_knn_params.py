"""The tuning constants of the offline ``local/knn`` baseline, each with how it was chosen.

Measured on the Banking77 triage evalset (see :mod:`promptgov.model._knn`); they are read by
:mod:`promptgov.model._knn_enum` (the three-source enum scores), :mod:`promptgov.model._knn_plan`
(confidence), :mod:`promptgov.model._knn_cue` (string cues) and the model's prompt cache.
"""

from __future__ import annotations

MODEL_ID = "local/knn"
K = 10
"""Neighbours voting for an enum value."""
TEMPERATURE = 0.05
"""Softmax temperature on cosine similarities (kNN weights, centroid and description scores)."""
W_KNN = W_CENTROID = W_DESCRIPTION = 1 / 3
"""Mixture weights of the three evidence sources of an enum field."""
CONFIDENCE_SLOPE, CONFIDENCE_BIAS = 6.0, -0.8
"""confidence = sigmoid(SLOPE * margin + BIAS), margin = P(best) - P(second) in [0, 1].
Fitted once by a logistic regression of "label is right" on the margin (ticket_triage@2 over
the 770 Banking77 cases: slope 6.01, bias -0.79; rounded). It maps a 0 margin to 0.31, 0.5 to
0.90 and 1 to 0.99; observed: 46% right below a 0.1 margin, 98% right above 0.5. With 3 demos
per label (ticket_triage@1) the same fit gives slope 4.6, bias -0.79: fewer demos, flatter."""
CACHE_SIZE = 32
"""Prepared prompts (fixed messages -> embeddings and plans) kept per process."""
CUE_WORDS = 2
"""Words of context before a value in a demo that cue the same kind of value in a message."""
LIST_THRESHOLD = 0.25
"""A list of enum values (multi-label intents) takes every value scoring at least this, instead
of the neighbours' mean count of best values: co-occurring values the demos show together both
pass. Chosen on NLU++ banking folds 2-9 (788 utterances, none in the extraction evalset or the
prompt's demos) with ticket_extraction@1: intent micro-F1 0.472 (mean count) -> 0.492 (the
best value is kept when the neighbours have any intent); without that floor 0.494, 0.20
and 0.30 give 0.491 and 0.479."""

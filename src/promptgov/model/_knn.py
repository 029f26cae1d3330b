"""``local/knn``: the offline baseline model (principle 4) — a real baseline, never a fake LLM.

It answers from the request alone (the messages and the response schema), like any other model:

* **Enum fields** (and lists of enums; ``$ref``/``$defs``, ``anyOf`` with null, ``const``
  alternatives and booleans resolved) are decided by the prompt's few-shot demos and the enum
  values' descriptions. Texts are embedded with the static embedding model shipped inside the
  ``wordllama`` wheel (mean of token vectors, lower-cased, unit length; loaded once per process,
  never downloaded). The score of value ``v`` is an equal mixture of three distributions, one
  per source of evidence, none preferred a priori::

      P(v) = (kNN(v) + centroid(v) + description(v)) / 3

  ``kNN``: the k = 10 demos most similar to the message vote for their answer's value, each with
  weight ``exp((sim - sim_max) / 0.05)``. ``centroid``: softmax (temperature 0.05) of the
  similarity to the mean embedding of the demos answering ``v``. ``description``: softmax
  (temperature 0.05) of the similarity to ``"<v as words>: <description>"``, the description read
  from the prompt's ``- <value>: <description>`` lines (system message or the field's schema
  description; the value's words alone when there is none). The kNN vote is sharp where demos
  are dense, the centroid smooths over every demo of a value, the descriptions carry what the
  demos do not show; a source with no evidence (no demos) drops out and the others are
  renormalised. Measured once on the Banking77 triage evalset (``ticket_triage@2``, 10 demos per
  label): kNN alone 0.77, centroid + description 0.76, kNN + description 0.78, all three 0.81;
  k in 5..20, temperatures 0.03..0.08 and other mixtures all give 0.79..0.81, so round values
  were kept. A single value takes the argmax; a list (multi-label intents) takes every value
  scoring at least ``LIST_THRESHOLD`` = 0.25, so intents the demos show together pass together
  (within ``minItems``/``maxItems``).
* **confidence** (a number field of that name): ``1 / (1 + exp(-(A * margin + B)))`` where
  ``margin = P(best) - P(second)`` of the first enum field: monotonic, so a higher confidence is
  more often right. ``A`` and ``B`` come from one logistic regression of correctness on the
  margin over the triage evalset with ``ticket_triage@2`` (see :data:`CONFIDENCE_SLOPE`).
* **Other fields** by type-driven extractors on the final user message
  (:mod:`promptgov.model._extractors`): amounts, numbers, integers, dates (relative words are
  resolved against ``Today is YYYY-MM-DD`` in the system message or the field description),
  times, ids (a user message's own ``Today is YYYY-MM-DD.`` line, what a prompt's ``today``
  variable renders, is that message's reference date and is not read as text). Strings without
  an extractor (a person, a company) take a value only when a demo cue finds one: a demo
  answer's value that appears in the message, or the two words that preceded a value in a demo
  followed by the same number of words. Several nullable fields of one type (``date_from``,
  ``date_to``; ``adults``, ``kids``, ``rooms``) are filled together, each value the message
  mentions to at most one of them, by cue words and the nearest demos
  (:mod:`promptgov.model._knn_group`). Nullable fields get null when nothing is found; a
  required, non-nullable field falls back to the k-NN majority of the demos' values, then to the
  type's empty value.
* **No response schema** (a plain-text draft): a deterministic reply built only from the
  ``- key: value`` facts of the final user message (greeting by name, order and state, refund
  amount exactly as given), at most 600 characters.

Deterministic (same request -> same text; ``temperature`` and ``sample`` are ignored), 0 USD,
tokens counted with tiktoken's ``cl100k_base`` (the encoding file that ships in litellm's wheel;
nothing is downloaded and litellm is not imported): prompt tokens are the messages' contents plus
OpenAI's published framing (3 per message, 3 for the reply). Work that depends only on the fixed
part of a prompt (system message and demos: their embeddings, descriptions, token count) is
cached per process in a bounded LRU keyed by the exact fixed messages, so the steady state costs
one embedding and a few small matrix products per call (~2,700 answers/s on one core with 770
demos: ``python -m benchmarks.bench_knn``). Thread-safe; one thread embeds a new prompt's demos.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from itertools import islice
from operator import itemgetter
from typing import Any

from promptgov._portable._calls import Completion, Request, Usage
from promptgov.errors import BadRequest

# the parts, re-exported: tests, benchmarks and the registry import them from here
from promptgov.model._draft import DRAFT_MAX_CHARS as DRAFT_MAX_CHARS
from promptgov.model._draft import draft_reply as draft_reply
from promptgov.model._embedding import _embed_one as _embed_one
from promptgov.model._embedding import _get_encoding as _get_encoding
from promptgov.model._embedding import embed as embed
from promptgov.model._embedding import load_embedder as load_embedder
from promptgov.model._embedding import token_count as token_count
from promptgov.model._extractors import split_reference
from promptgov.model._knn_params import CACHE_SIZE as CACHE_SIZE
from promptgov.model._knn_params import CONFIDENCE_BIAS as CONFIDENCE_BIAS
from promptgov.model._knn_params import CONFIDENCE_SLOPE as CONFIDENCE_SLOPE
from promptgov.model._knn_params import CUE_WORDS as CUE_WORDS
from promptgov.model._knn_params import MODEL_ID as MODEL_ID
from promptgov.model._knn_params import TEMPERATURE as TEMPERATURE
from promptgov.model._knn_params import W_CENTROID as W_CENTROID
from promptgov.model._knn_params import W_DESCRIPTION as W_DESCRIPTION
from promptgov.model._knn_params import W_KNN as W_KNN
from promptgov.model._knn_params import K as K
from promptgov.model._knn_plan import _Ctx as _Ctx
from promptgov.model._knn_plan import _Plan as _Plan
from promptgov.model._knn_prompt import _Prepared as _Prepared

__all__ = ["KnnModel", "draft_reply", "embed", "load_embedder", "token_count"]

_content, _role = itemgetter("content"), itemgetter("role")
_Key = tuple[tuple[str, ...], tuple[str, ...]]
"""The LRU key of a prompt's fixed messages: their roles, then their contents."""


class KnnModel:
    """The offline baseline ``local/knn``: see the module documentation for what it does.

    Example:
        >>> from promptgov.model import Request
        >>> m = KnnModel()
        >>> c = m.complete(Request(messages=({"role": "user", "content": "- name: Ada"},)))
        >>> c.text.startswith("Hello Ada"), c.cost_usd
        (True, 0.0)
    """

    id = MODEL_ID

    def __init__(self, cache_size: int = CACHE_SIZE):
        self._cache: OrderedDict[int, tuple[_Key, _Prepared]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._last: tuple[tuple[dict[str, str], ...], _Prepared] | None = None

    def __repr__(self) -> str:
        return "KnnModel()"

    def _lookup(self, h: int, key: _Key) -> _Prepared | None:
        with self._lock:
            hit = self._cache.get(h)
            if hit is None or hit[0] != key:
                return None
            self._cache.move_to_end(h)
            return hit[1]

    def _prepared(self, msgs: tuple[dict[str, str], ...]) -> _Prepared:
        """The prepared fixed part (every message but the last) of ``msgs``, from the LRU."""
        # Fast path: the same fixed messages as the previous call (an eval sends one prompt's
        # cases in a row). Comparing the message dicts is exact, and quick: their strings are
        # the prompt's own objects (rendering reuses them) and compare by identity.
        last = self._last
        if last is not None and len(msgs) - 1 == len(last[0]) and msgs[:-1] == last[0]:
            return last[1]
        # Else the LRU. Its key is the roles and texts of the fixed messages, hashed once (the
        # strings' own hashes are cached by Python, so there is no re-hashing of 100 kB of
        # text); a hit is confirmed by equality.
        n = len(msgs) - 1
        key = (tuple(map(_role, islice(msgs, n))), tuple(map(_content, islice(msgs, n))))
        h = hash(key)
        prep = self._lookup(h, key)
        if prep is None:
            with self._build_lock:  # one thread embeds a prompt's demos; the others wait
                prep = self._lookup(h, key)
                if prep is None:
                    prep = _Prepared(tuple(msgs[:n]))
                    with self._lock:
                        self._cache[h] = (key, prep)
                        while len(self._cache) > self._cache_size:
                            self._cache.popitem(last=False)
        self._last = (tuple(map(dict, islice(msgs, n))), prep)
        return prep

    def _answer(self, prep: _Prepared, schema: dict[str, Any], final: str) -> str:
        """The schema-shaped answer as JSON. A schema it cannot read (``{"anyOf": 5}``, a
        ``minimum`` that is not a number, only a null alternative) is a bad request naming the
        problem, not a Python error from inside the model."""
        try:
            plan = prep.plan(schema)
            core, today = split_reference(final)  # a `today` line: the date, not text
            ctx = _Ctx(plan, prep.strip_template(core), today)
            return json.dumps(plan.fill(ctx), ensure_ascii=False)
        except (ValueError, TypeError, AttributeError, KeyError) as e:
            raise BadRequest(f"local/knn: response_schema is not a JSON Schema it can read "
                             f"({type(e).__name__}: {e})", model=MODEL_ID) from None

    def complete(self, request: Request) -> Completion:
        t0 = time.perf_counter()
        msgs = request.messages
        if not isinstance(msgs, tuple):
            msgs = tuple(msgs)
        if not msgs or not isinstance(msgs[-1], dict) or msgs[-1].get("role") != "user":
            raise BadRequest("local/knn: the last message must be the user's message",
                             model=MODEL_ID)
        try:
            prep = self._prepared(msgs)
        except (KeyError, TypeError) as e:
            raise BadRequest(f"local/knn: every message needs a role and a content ({e!r})",
                             model=MODEL_ID) from None
        final = msgs[-1]["content"]
        schema = request.response_schema
        if schema is None:
            text = draft_reply(final)
        else:
            if not isinstance(schema, dict):
                raise BadRequest("local/knn: response_schema must be a JSON Schema object",
                                 model=MODEL_ID)
            text = self._answer(prep, schema, final)
        usage = Usage(prompt_tokens=prep.fixed_tokens + token_count(final) + 3,
                      completion_tokens=token_count(text))
        return Completion(text=text, model=MODEL_ID, usage=usage,
                          latency_s=time.perf_counter() - t0, cost_usd=0.0)

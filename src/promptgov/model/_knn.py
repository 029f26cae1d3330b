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
  were kept. A single value takes the argmax; a list takes the ``n`` best values, ``n`` being
  the neighbours' weighted mean number of values (within ``minItems``/``maxItems``).
* **confidence** (a number field of that name): ``1 / (1 + exp(-(A * margin + B)))`` where
  ``margin = P(best) - P(second)`` of the first enum field: monotonic, so a higher confidence is
  more often right. ``A`` and ``B`` come from one logistic regression of correctness on the
  margin over the triage evalset with ``ticket_triage@2`` (see :data:`CONFIDENCE_SLOPE`).
* **Other fields** by type-driven extractors on the final user message
  (:mod:`promptgov.model._extractors`): amounts, numbers, integers, dates (relative words are
  resolved against ``Today is YYYY-MM-DD`` in the system message or the field description),
  times, ids. Strings without an extractor (a person, a company) take a value only when a demo
  cue finds one: a demo answer's value that appears in the message, or the two words that
  preceded a value in a demo followed by the same number of words. Nullable fields get null
  when nothing is found; a required, non-nullable field falls back to the k-NN majority of the
  demos' values, then to the type's empty value.
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

import copy
import hashlib
import json
import logging
import math
import os
import re
import threading
import time
from collections import OrderedDict
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

from promptgov.errors import BadRequest, ModelError
from promptgov.model import _extractors as ex
from promptgov.model._base import Completion, Request, Usage

__all__ = ["KnnModel", "draft_reply", "embed", "load_embedder", "token_count"]

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
DRAFT_MAX_CHARS = 600

_log = logging.getLogger(__name__)
_content, _role = itemgetter("content"), itemgetter("role")


# -- the embedding model and the tokenizer (loaded lazily, once, thread-safely) ----------------

_load_lock = threading.Lock()
_embedder: Any = None
_encoding: Any = None
_encoding_loaded = False


def load_embedder():
    """The WordLlama model inside the ``wordllama`` wheel; never downloads (raises instead)."""
    global _embedder
    if _embedder is None:
        with _load_lock:
            if _embedder is None:
                root = logging.getLogger()
                handlers, level = list(root.handlers), root.level
                try:
                    import wordllama
                    from wordllama import WordLlama
                finally:  # wordllama calls logging.basicConfig(INFO) on import: undo it
                    root.handlers[:] = handlers
                    root.setLevel(level)
                try:
                    _embedder = WordLlama.load(cache_dir=Path(wordllama.__file__).parent,
                                               disable_download=True)
                except FileNotFoundError as e:
                    raise ModelError(f"local/knn: no embedding model inside the wordllama wheel "
                                     f"({e}); reinstall wordllama>=0.4,<0.5, which ships "
                                     f"l2_supercat_256", model=MODEL_ID) from None
    return _embedder


_CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
_CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"


def _tiktoken_dir() -> str | None:
    """litellm's bundled tiktoken cache folder, found without importing litellm."""
    import importlib.util

    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"
    f = d / hashlib.sha1(_CL100K_URL.encode()).hexdigest()
    try:  # tiktoken deletes and re-downloads a cached file whose hash is wrong: check first
        ok = f.is_file() and hashlib.sha256(f.read_bytes()).hexdigest() == _CL100K_SHA256
    except OSError:
        ok = False
    return str(d) if ok else None


def _get_encoding():
    global _encoding, _encoding_loaded
    if not _encoding_loaded:
        with _load_lock:
            if not _encoding_loaded:
                try:
                    import tiktoken

                    d = _tiktoken_dir()
                    if d is None:
                        raise FileNotFoundError("cl100k_base not found in litellm's wheel")
                    old = os.environ.get("TIKTOKEN_CACHE_DIR")
                    os.environ["TIKTOKEN_CACHE_DIR"] = d
                    try:
                        _encoding = tiktoken.get_encoding("cl100k_base")
                    finally:
                        if old is None:
                            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
                        else:
                            os.environ["TIKTOKEN_CACHE_DIR"] = old
                except Exception as e:  # noqa: BLE001 — count approximately, never download
                    _log.warning("local/knn: tiktoken cl100k_base unavailable offline (%s); "
                                 "token counts are estimated", e)
                    _encoding = None
                _encoding_loaded = True
    return _encoding


_WORDISH = re.compile(r"\w+|[^\w\s]")


def token_count(text: str) -> int:
    """cl100k_base tokens of ``text`` (an estimate by words and marks if tiktoken is absent)."""
    enc = _get_encoding()
    if enc is None:
        return len(_WORDISH.findall(text))
    return len(enc.encode(text, disallowed_special=()))


def _norm_text(text: str) -> str:
    return " ".join(text.lower().split())


def embed(texts: list[str]) -> np.ndarray:
    """Unit-length embeddings (float32, one row per text) of lower-cased ``texts``."""
    wl = load_embedder()
    if not texts:
        return np.zeros((0, wl.embedding.shape[1]), np.float32)
    out = np.asarray(wl.embed([_norm_text(t) for t in texts], norm=False), np.float32)
    n = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(n > 0, n, 1.0)


def _embed_one(text: str) -> np.ndarray:
    wl = load_embedder()
    ids = wl.tokenizer.encode(_norm_text(text), add_special_tokens=False).ids
    if not ids:
        return np.zeros(wl.embedding.shape[1], np.float32)
    v = wl.embedding[ids].sum(axis=0)
    n = float(np.sqrt(v @ v))
    return v / n if n > 0 else v


# -- parsing the request ------------------------------------------------------------------------

_DESC_LINE = re.compile(r"^[ \t]*[-*•][ \t]+`?([^`:\n]{1,120}?)`?[ \t]*:[ \t]*(\S.*?)[ \t]*$",
                        re.M)


def _value_descriptions(text: str) -> dict[str, str]:
    return {m.group(1).strip(): m.group(2) for m in _DESC_LINE.finditer(text or "")}


def _common_prefix(a: str, b: str) -> str:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return a[:i]


def _cut_prefix(p: str) -> str:
    """Cut a common prefix back to a template boundary: after its last newline, else after
    its last whitespace, so that no part of a word is ever stripped."""
    for sep in ("\n", " ", "\t"):
        i = p.rfind(sep)
        if i >= 0 and (sep != " " or "\n" not in p):
            return p[:i + 1]
    return ""


def _cut_suffix(s: str) -> str:
    for sep in ("\n", " ", "\t"):
        i = s.find(sep)
        if i >= 0 and (sep != " " or "\n" not in s):
            return s[i:]
    return ""


class _Prepared:
    """Everything derived from the fixed messages (system + demos) of one prompt."""

    def __init__(self, fixed: tuple[dict[str, str], ...]):
        system = [m["content"] for m in fixed if m["role"] == "system"]
        self.system = "\n".join(system)
        demos_in: list[str] = []
        self.demos_out: list[Any] = []
        for a, b in zip(fixed, fixed[1:], strict=False):
            if a["role"] == "user" and b["role"] == "assistant":
                demos_in.append(a["content"])
                try:
                    self.demos_out.append(json.loads(b["content"]))
                except ValueError:
                    self.demos_out.append(b["content"])
        prefix = suffix = None
        for t in demos_in:
            prefix = t if prefix is None else _common_prefix(prefix, t)
            suffix = t if suffix is None else _common_prefix(suffix[::-1], t[::-1])[::-1]
        self.prefix = _cut_prefix(prefix or "") if len(demos_in) > 1 else (prefix or "")
        self.suffix = _cut_suffix(suffix or "") if len(demos_in) > 1 else (suffix or "")
        self.single = len(demos_in) == 1  # prefix learnt from one demo: re-cut per message
        self.demos_in = [self.strip_template(t) for t in demos_in]
        self.E = embed(self.demos_in)
        self.descriptions = _value_descriptions(self.system)
        self.today = ex.reference_date(self.system)
        self.now = ex.reference_time(self.system)
        # 3 tokens of chat framing per message (OpenAI's published count), +3 for the reply
        self.fixed_tokens = sum(token_count(m["content"]) + 3 for m in fixed) + 3
        self.plans: OrderedDict[str, _Plan] = OrderedDict()
        self.last_plan: tuple[dict, _Plan] | None = None

    def strip_template(self, text: str) -> str:
        """``text`` without the template text common to every user message of the prompt."""
        p, s = self.prefix, self.suffix
        if self.single:
            p = _cut_prefix(_common_prefix(p, text))
            s = _cut_suffix(_common_prefix(s[::-1], text[::-1])[::-1])
        if p and not text.startswith(p):
            p = _cut_prefix(_common_prefix(p, text))
        if s and not text.endswith(s):
            s = _cut_suffix(_common_prefix(s[::-1], text[::-1])[::-1])
        core = text[len(p):len(text) - len(s)] if len(p) + len(s) < len(text) else text
        return core.strip() or text.strip()

    def plan(self, schema: dict) -> _Plan:
        """The fill plan of ``schema``. Fast path: a schema equal to the last one (a deep copy is
        kept, so an edit in place is seen); comparing is a few µs, serialising would be 20."""
        last = self.last_plan
        if last is not None and last[0] == schema:
            return last[1]
        key = json.dumps(schema, sort_keys=True, default=str)
        plan = self.plans.get(key)
        if plan is None:
            plan = _Plan(self, schema)
            self.plans[key] = plan
            while len(self.plans) > 8:
                self.plans.popitem(last=False)
        self.last_plan = (copy.deepcopy(schema), plan)
        return plan


# -- schema handling ---------------------------------------------------------------------------

def _resolve(node: Any, root: dict, depth: int = 0) -> Any:
    while isinstance(node, dict) and "$ref" in node and depth < 32:
        ref = node["$ref"]
        target: Any = root
        if not ref.startswith("#"):
            raise BadRequest(f"local/knn: only local $ref are supported, got {ref!r}",
                             model=MODEL_ID)
        for part in filter(None, ref[1:].split("/")):
            target = target.get(part.replace("~1", "/").replace("~0", "~"), {}) \
                if isinstance(target, dict) else {}
        extra = {k: v for k, v in node.items() if k != "$ref"}
        node = {**target, **extra}
        depth += 1
    return node


def _unwrap(node: Any, root: dict) -> tuple[dict, bool]:
    """The non-null alternative of ``node`` and whether null is allowed."""
    node = _resolve(node, root)
    if not isinstance(node, dict):
        return {}, False
    nullable = False
    for key in ("anyOf", "oneOf"):
        alts = node.get(key)
        if isinstance(alts, list) and not any("const" in _resolve(a, root) for a in alts
                                              if isinstance(a, dict)):
            rest = [a for a in (_resolve(a, root) for a in alts) if a.get("type") != "null"]
            nullable = len(rest) < len(alts)
            if rest:  # several non-null alternatives: the first one is filled
                merged = {k: v for k, v in node.items() if k != key}
                inner, n2 = _unwrap(rest[0], root)
                merged.update(inner)
                merged.setdefault("description", node.get("description", ""))
                return merged, nullable or n2
    t = node.get("type")
    if isinstance(t, list):
        nullable = "null" in t
        rest = [x for x in t if x != "null"]
        node = {**node, "type": rest[0] if len(rest) == 1 else rest}
    if "enum" in node and None in node["enum"]:
        nullable = True
    return node, nullable


def _enum_of(node: dict, root: dict) -> tuple[list, dict[str, str]] | None:
    """Enum values of ``node`` and descriptions attached to them in the schema, or None."""
    if "enum" in node:
        return [v for v in node["enum"] if v is not None], {}
    if "const" in node:
        return [node["const"]], {}
    for key in ("anyOf", "oneOf"):
        alts = [_resolve(a, root) for a in node.get(key, []) if isinstance(a, dict)]
        if alts and all("const" in a or a.get("type") == "null" for a in alts):
            consts = [a for a in alts if "const" in a]
            return ([a["const"] for a in consts],
                    {str(a["const"]): a["description"] for a in consts if a.get("description")})
    if node.get("type") == "boolean":
        return [True, False], {}
    return None


_JSON_TYPES: dict[str, Any] = {"string": str, "integer": int, "number": (int, float),
                               "boolean": bool, "array": list, "object": dict}


def _type_ok(v: Any, t: Any) -> bool:
    if not isinstance(t, str) or t not in _JSON_TYPES:
        return True
    if isinstance(v, bool) and t != "boolean":
        return False
    return isinstance(v, _JSON_TYPES[t])


_MONEY = re.compile(r"amount|price|cost|fee|refund|total|balance|money|sum|payment|salary|"
                    r"spend|paid|charge", re.I)
_NAME_WORDS = re.compile(r"[a-z0-9]+")


def _words(name: str) -> set[str]:
    return set(_NAME_WORDS.findall(re.sub(r"([a-z])([A-Z])", r"\1 \2", name).lower()))


class _Enum:
    """One enum field: value scores from demos, centroids and descriptions."""

    def __init__(self, prep: _Prepared, values: list, answers: list, nullable: bool,
                 descs: dict[str, str], multi: bool):
        self.multi = multi
        self.values = list(values) + ([None] if nullable and not multi else [])
        index = {json.dumps(v): i for i, v in enumerate(self.values)}
        n, m = len(answers), len(self.values)
        Y = np.zeros((n, m), np.float32)
        for i, a in enumerate(answers):
            if a is _MISSING or isinstance(a, list) != multi:
                continue
            for v in a if multi else (a,):
                j = index.get(json.dumps(v))
                if j is not None:
                    Y[i, j] = 1.0
        keep = Y.sum(axis=1) > 0 if not multi else np.array(
            [isinstance(a, list) for a in answers], bool)
        self.rows = np.flatnonzero(keep) if n else np.zeros(0, np.intp)
        self.all_rows = len(self.rows) == n  # then demo similarities need no gather
        self.Y = Y[self.rows]
        has_demo = self.Y.sum(axis=0) > 0
        C = self.Y.T @ prep.E[self.rows] if len(self.rows) else np.zeros((m, prep.E.shape[1]))
        norms = np.linalg.norm(C, axis=1, keepdims=True)
        self.C = (C / np.where(norms > 0, norms, 1.0)).astype(np.float32)
        texts, has_text = [], []
        for v in self.values:
            words = " ".join(_NAME_WORDS.findall(v.lower())) if isinstance(v, str) else ""
            d = descs.get(str(v)) or prep.descriptions.get(str(v))
            if d is None and v is not None:  # case-insensitive fallback
                lk = str(v).lower()
                d = next((dv for k, dv in prep.descriptions.items() if k.lower() == lk), None)
            texts.append(f"{words}: {d}" if d and words else (d or words))
            has_text.append(bool(d or words))  # true/false/null or a number alone say nothing
        has_desc = np.array(has_text, bool)
        self.D = embed(texts)
        self.label = self.Y.argmax(axis=1)  # single-value field: each demo's value index
        # additive masks: a value with no demo (or no text) gets no centroid (description) score
        # 0/1 masks: a value with no demo (or no text) gets no centroid (description) score
        # (a row with no value at all stays unmasked: its mixture weight is 0 anyway)
        self.cd_mask = np.stack([has_demo | ~has_demo.any(), has_desc | ~has_desc.any()]
                                ).astype(np.float32)
        w = [W_KNN if len(self.rows) else 0.0, W_CENTROID if len(self.rows) else 0.0,
             W_DESCRIPTION if has_desc.any() else 0.0]
        self.mix = [x / sum(w) for x in w] if sum(w) else w
        self.cd_w = np.array(self.mix[1:], np.float32)
        self.c_off = 0  # rows of [C; D] in the plan's fused matrix (set by _Plan)

    def scores(self, sims: np.ndarray, ex: np.ndarray) -> tuple[np.ndarray, float]:
        """The probability-like score of each value, from the message's similarities ``sims``
        to the plan's fused matrix (demos, then each enum's centroids and descriptions) and
        their ``ex = exp(sims / TEMPERATURE)`` (cosines are within [-1, 1], so no overflow and
        no max-shift is needed), and how many values to choose (1; for a list, the
        neighbours' weighted mean count)."""
        m = len(self.values)
        wk = self.mix[0]
        count = 1.0
        if wk:
            if self.all_rows:
                s, e = sims[:len(self.rows)], ex[:len(self.rows)]
            else:
                s, e = sims[self.rows], ex[self.rows]
            k = min(K, len(s))
            idx = np.argpartition(s, -k)[-k:] if k < len(s) else np.arange(len(s))
            w = e[idx]
            w = w * (wk / w.sum())
            if self.multi:
                Yk = self.Y[idx]
                p = w @ Yk
                count = float(w @ Yk.sum(axis=1)) / wk
            else:
                p = np.bincount(self.label[idx], weights=w, minlength=m)
        else:
            p = np.zeros(m)
        if self.mix[1] or self.mix[2]:
            # centroid and description softmaxes at once: rows c_off.. hold [C; D]
            e = ex[self.c_off:self.c_off + 2 * m].reshape(2, m) * self.cd_mask
            p += (self.cd_w / e.sum(axis=1)) @ e
        elif not wk:
            p += 1.0 / m
        return p, count

    def decide(self, scored: tuple[np.ndarray, float], least: int = 0,
               most: int | None = None) -> tuple[Any, float]:
        """(value, margin) from :meth:`scores`: the best value and its lead over the second.
        A list takes the ``count`` best values (bounded by ``least``/``most``, in enum order);
        its margin is the lead of the last value taken over the first value left out."""
        p, count = scored
        if not self.multi:
            best = int(np.argmax(p))
            if len(p) < 2:
                return self.values[best], 1.0
            second = float(np.partition(p, len(p) - 2)[len(p) - 2])
            return self.values[best], float(p[best]) - second
        n = max(least, int(round(count)))
        n = min(n, len(p) if most is None else most)
        order = np.argsort(-p, kind="stable")
        chosen = sorted(order[:n].tolist())
        inner = p[order[n - 1]] if n else 1.0
        outer = p[order[n]] if n < len(p) else 0.0
        return [self.values[i] for i in chosen], float(inner - outer)


_MISSING = object()


def _path_get(answer: Any, path: tuple[str, ...]) -> Any:
    for p in path:
        if not isinstance(answer, dict) or p not in answer:
            return _MISSING
        answer = answer[p]
    return answer


_TOKEN = re.compile(r"[\w'&]+")
_FUNCTION_WORDS = (
    "a about above after again against all am an and any are as at be because been before being "
    "below between both but by can could did do does doing down during each few for from further "
    "had has have having he her here hers him his how i if in into is it its itself just me more "
    "most my no nor not now of off on once only or other our ours out over own same she should so "
    "some such than that the their them then there these they this those through to too under "
    "until up very was we were what when where which while who whom why will with would you your "
    "yours")
_STOPWORDS = frozenset(_FUNCTION_WORDS.split())


class _StringCue:
    """A string field with no type extractor, filled from demo-derived cues only.

    * the lexicon: a value some demo answered that appears (as whole words) in the message;
    * the contexts: the ``CUE_WORDS`` words that preceded a value in its demo ("transfer to"
      before "cloyd"); in the message, the words after the same context, as many as the
      demo's value had, become the value, unless one of them is a common word: an English
      function word, a word of the system message or of 2 or more demo messages ("an", "by",
      "card" are no names).
    """

    def __init__(self, prep: _Prepared, answers: list):
        self.lexicon: dict[str, str] = {}
        self.cues: dict[tuple[str, ...], int] = {}
        df: dict[str, int] = {}
        for text in prep.demos_in:
            for w in set(_TOKEN.findall(text.lower())):
                df[w] = df.get(w, 0) + 1
        self.common = {w for w, n in df.items() if n >= 2} | _STOPWORDS | set(
            _TOKEN.findall(prep.system.lower()))
        for text, a in zip(prep.demos_in, answers, strict=True):
            if not isinstance(a, str) or not a.strip():
                continue
            self.lexicon[a.lower()] = a
            m = re.search(r"(?<!\w)" + re.escape(a) + r"(?!\w)", text, re.I)
            if m:
                before = _TOKEN.findall(text[:m.start()].lower())[-CUE_WORDS:]
                if len(before) == CUE_WORDS:
                    self.cues[tuple(before)] = len(_TOKEN.findall(a))
        self.lex_re = re.compile(r"(?<!\w)(" + "|".join(
            re.escape(v) for v in sorted(self.lexicon, key=len, reverse=True)) + r")(?!\w)",
            re.I) if self.lexicon else None

    def find(self, text: str) -> str | None:
        if self.lex_re is not None:
            m = self.lex_re.search(text)
            if m:
                return m.group(1)
        if self.cues:
            toks = list(_TOKEN.finditer(text))
            low = [t.group(0).lower() for t in toks]
            for i in range(len(toks) - CUE_WORDS):
                n = self.cues.get(tuple(low[i:i + CUE_WORDS]))
                j = i + CUE_WORDS
                if n and j + n <= len(toks) and not any(
                        w in self.common or w.isdigit() for w in low[j:j + n]):
                    return text[toks[j].start():toks[j + n - 1].end()]
        return None


class _Plan:
    """How to fill one response schema for one prepared prompt: a fill function per field."""

    def __init__(self, prep: _Prepared, schema: dict):
        self.prep = prep
        self.root = schema
        self.enums: list[_Enum] = []
        self.today, self.now = prep.today, prep.now
        self.fill = self._compile(schema, (), "")
        # one fused matrix: a message's similarity to every demo, centroid and description
        # is one matrix-vector product
        blocks, off = [prep.E], len(prep.E)
        for e in self.enums:
            e.c_off = off
            blocks += [e.C, e.D]
            off += 2 * len(e.values)
        self.M = np.ascontiguousarray(np.vstack(blocks), np.float32) if off else \
            np.zeros((0, prep.E.shape[1]), np.float32)

    def _compile(self, node: Any, path: tuple[str, ...], name: str):
        prep, root = self.prep, self.root
        node, nullable = _unwrap(node, root)
        desc = str(node.get("description", ""))
        answers = [_path_get(a, path) for a in prep.demos_out]
        t = node.get("type")
        enum = _enum_of(node, root)
        if enum is not None:
            values, descs = enum
            descs = {**_value_descriptions(desc), **descs}
            if len(values) == 1 and not nullable:
                return lambda ctx, v=values[0]: v
            e = _Enum(prep, values, answers, nullable, descs, multi=False)
            self.enums.append(e)
            return lambda ctx: ctx.decide(e)[0]
        if t == "array":
            items, _ = _unwrap(node.get("items", {}), root)
            ienum = _enum_of(items, root)
            if ienum is not None:
                values, descs = ienum
                descs = {**_value_descriptions(desc), **_value_descriptions(
                    str(items.get("description", ""))), **descs}
                e = _Enum(prep, values, answers, False, descs, multi=True)
                self.enums.append(e)
                least, most = int(node.get("minItems", 0)), node.get("maxItems")

                def fill_list(ctx, e=e, least=least, most=most):
                    return e.decide(ctx.scores(e), least, most)[0]
                return fill_list
            least = int(node.get("minItems", 0))
            return lambda ctx: None if nullable else ([] if not least else ctx.majority(
                answers, []))
        if t == "object" or "properties" in node:
            props = node.get("properties", {})
            fills = {k: self._compile(v, (*path, k), k) for k, v in props.items()}
            return lambda ctx: {k: f(ctx) for k, f in fills.items()}
        words = _words(name)
        text_about = f"{name} {desc}"
        if t in ("number", "integer") and "confidence" in words:
            lo, hi = float(node.get("minimum", 0.0)), float(node.get("maximum", 1.0))
            return lambda ctx: ctx.confidence(lo, hi, t == "integer")
        extractor = self._extractor(t, words, text_about, node)
        if extractor is None and t == "string":
            cue = _StringCue(prep, answers)
            extractor = cue.find
        default = {"string": "", "number": 0.0, "integer": 0, "boolean": False}.get(
            t if isinstance(t, str) else "")

        def fill(ctx, extractor=extractor):
            v = extractor(ctx.text) if extractor else None
            if v is not None and _fits(v, node):
                return v
            if nullable:
                return None
            v = ctx.majority(answers, default)
            return v if _type_ok(v, t) and _fits(v, node) else default
        return fill

    def _extractor(self, t, words: set[str], about: str, node: dict):
        fmt = node.get("format", "")
        if t == "string":
            if fmt == "date" or words & {"date", "day"} or "YYYY-MM-DD" in about:
                today = ex.reference_date(about) or self.today
                return lambda s: ex.extract_date(s, today)
            if fmt == "time" or "time" in words or "HH:MM" in about:
                now = ex.reference_time(about) or self.now
                return lambda s: ex.extract_time(s, now)
            if words & {"id", "identifier", "reference", "ref"}:
                return ex.extract_id
            return None
        if t == "number":
            return ex.extract_amount if _MONEY.search(about) else ex.extract_number
        if t == "integer":
            if _MONEY.search(about):
                return lambda s: (lambda a: int(a) if a is not None and a == int(a) else None)(
                    ex.extract_amount(s))
            return ex.extract_integer
        return None


def _fits(v: Any, node: dict) -> bool:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if "minimum" in node and v < node["minimum"]:
            return False
        if "maximum" in node and v > node["maximum"]:
            return False
        if "exclusiveMinimum" in node and v <= node["exclusiveMinimum"]:
            return False
        if "exclusiveMaximum" in node and v >= node["exclusiveMaximum"]:
            return False
    if isinstance(v, str):
        if len(v) < node.get("minLength", 0) or len(v) > node.get("maxLength", 1 << 30):
            return False
        if "pattern" in node and not re.search(node["pattern"], v):
            return False
    return True


class _Ctx:
    """The per-call state: the message, its embedding and its similarity to every demo."""

    __slots__ = ("text", "sims", "ex", "plan", "_scored", "_decided")

    def __init__(self, plan: _Plan, text: str):
        self.text = text
        self.plan = plan
        self.sims = plan.M @ _embed_one(text) if len(plan.M) else plan.M[:, 0]
        self.ex = np.exp(self.sims * (1.0 / TEMPERATURE))
        self._scored: dict[int, tuple] = {}
        self._decided: dict[int, tuple] = {}

    def scores(self, e: _Enum) -> np.ndarray:
        p = self._scored.get(id(e))
        if p is None:
            p = self._scored[id(e)] = e.scores(self.sims, self.ex)
        return p

    def decide(self, e: _Enum) -> tuple[Any, float]:
        """(value, margin) of a single-value enum field, computed once per call."""
        d = self._decided.get(id(e))
        if d is None:
            d = self._decided[id(e)] = e.decide(self.scores(e))
        return d

    def majority(self, answers: list, default: Any) -> Any:
        """The value most of the nearest demos answered for this field (ties: the nearest)."""
        ok = [i for i, a in enumerate(answers) if a is not _MISSING and a is not None]
        if not ok:
            return default
        order = sorted(ok, key=lambda i: -float(self.sims[i]))[:K]
        counts: dict[str, list] = {}
        for i in order:
            counts.setdefault(json.dumps(answers[i], sort_keys=True), [0, answers[i]])[0] += 1
        return max(counts.values(), key=itemgetter(0))[1]

    def confidence(self, lo: float, hi: float, integer: bool) -> float:
        """From the margin of the schema's first single-value enum field (else its first list
        field; with no enum field at all, a margin of 0: no evidence)."""
        enums = self.plan.enums
        e = next((e for e in enums if not e.multi), enums[0] if enums else None)
        margin = (self.decide(e)[1] if not e.multi else e.decide(self.scores(e))[1]) \
            if e is not None else 0.0
        c = 1.0 / (1.0 + math.exp(-(CONFIDENCE_SLOPE * margin + CONFIDENCE_BIAS)))
        v = lo + (hi - lo) * c
        return int(round(v)) if integer else round(v, 4)


# -- the plain-text draft ----------------------------------------------------------------------

_FACT = re.compile(r"^[ \t]*[-*•]?[ \t]*([A-Za-z][\w .'/-]{0,40}?)[ \t]*:[ \t]*(\S.*?)[ \t]*$",
                   re.M)
_TRUE = {"true", "yes", "y", "1", "eligible"}


def draft_reply(text: str) -> str:
    """A short reply built only from the ``- key: value`` facts in ``text``."""
    facts = {m.group(1).strip().lower().replace("_", " "): m.group(2)
             for m in _FACT.finditer(text)}

    def fact(*names: str) -> str | None:
        for n in names:
            for k, v in facts.items():
                if k == n:
                    return v
        for n in names:
            for k, v in facts.items():
                if n in k:
                    return v
        return None

    name = fact("customer name", "name")
    order = fact("order id", "order number", "order reference")
    state = fact("order state", "order status", "status", "state")
    eligible = fact("refund eligible", "eligible")
    amount = fact("refund amount")
    parts = [f"Hello {name}," if name else "Hello,", ""]
    body = []
    if order and state:
        body.append(f"Thank you for getting in touch about your order {order}. "
                    f"Its current status is: {state}.")
    elif order:
        body.append(f"Thank you for getting in touch about your order {order}.")
    elif state:
        body.append(f"Thank you for getting in touch. Your order's current status is: {state}.")
    else:
        body.append("Thank you for getting in touch.")
    if eligible is not None:
        if eligible.strip().lower() in _TRUE:
            body.append(f"Your order is eligible for a refund of {amount}." if amount
                        else "Your order is eligible for a refund.")
        else:
            body.append("Your order is not eligible for a refund.")
    if not (name or order or state or eligible) and facts:  # facts of another kind: list them
        listed = "; ".join(f"{k}: {v}" for k, v in facts.items())
        body.append(f"Here is what we have on record: {listed}.")
    parts.append(" ".join(body))
    parts += ["", "Kind regards,", "Customer Support"]
    reply = "\n".join(parts)
    if len(reply) > DRAFT_MAX_CHARS:
        cut = reply[:DRAFT_MAX_CHARS]
        end = max(cut.rfind(". "), cut.rfind(".\n"))
        reply = cut[:end + 1] if end > 0 else cut
    return reply


# -- the model ---------------------------------------------------------------------------------

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
        self._cache: OrderedDict[int, tuple[tuple, _Prepared]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._last: tuple[tuple[dict, ...], _Prepared] | None = None

    def __repr__(self) -> str:
        return "KnnModel()"

    def _lookup(self, h: int, key: tuple) -> _Prepared | None:
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
            plan = prep.plan(schema)
            ctx = _Ctx(plan, prep.strip_template(final))
            text = json.dumps(plan.fill(ctx), ensure_ascii=False)
        usage = Usage(prompt_tokens=prep.fixed_tokens + token_count(final) + 3,
                      completion_tokens=token_count(text))
        return Completion(text=text, model=MODEL_ID, usage=usage,
                          latency_s=time.perf_counter() - t0, cost_usd=0.0)

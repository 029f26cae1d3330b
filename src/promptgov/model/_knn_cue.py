"""String fields of ``local/knn`` with no type extractor (a person, a company): filled only from
cues the prompt's demos give, never guessed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from promptgov.model._knn_params import CUE_WORDS

if TYPE_CHECKING:
    from promptgov.model._knn_prompt import _Prepared

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

    def __init__(self, prep: _Prepared, answers: list[Any]):
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

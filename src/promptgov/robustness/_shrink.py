"""Minimal failing inputs: for a case the model answers right when clean, hypothesis searches
the noise space for a variant that flips the answer, then shrinks it to the smallest such
variant (fewest transformations, least noise). That variant is what to show a prompt engineer.

Every answer goes through the engine's own path (render, response cache, model, parse,
validate, retries, re-asks: :class:`promptgov.eval._engine.Runner`), one case at a time.
Each case's search is bounded by ``max_calls`` distinct inputs, memoised, so a real model is
never asked the same variant twice and hypothesis replays stay consistent.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from promptgov._portable._jsonschema import enum_fields
from promptgov.hashing import canonical_json
from promptgov.robustness._noisy import text_fields
from promptgov.robustness._strategies import noisy_case
from promptgov.robustness._transforms import Transform, registry

if TYPE_CHECKING:
    import os

    import pandas as pd
    from pydantic import BaseModel

    from promptgov.eval._record import CaseRecord
    from promptgov.model._base import Model
    from promptgov.workspace import Workspace
    from promptgov.workspace._evalset import Case, Evalset
    from promptgov.workspace._policy import Policy
    from promptgov.workspace._prompt import PromptVersion

FLIP_FAILURES = frozenset({"invalid_json", "schema_violation", "refused", "render_error"})
"""Failures a noisy input can cause, which count as a flip. Transient ones (rate limit,
timeout, server error, budget, replay miss) say nothing about the input and never do."""

COLUMNS = ["case_id", "transforms", "expected", "clean_answer", "noisy_answer", "failure",
           "clean_text", "noisy_text", "added_chars", "inputs_tried"]


class CaseAnswerer:
    """Answers and scores one case at a time through the eval engine; a context manager."""

    def __init__(self, ws: Workspace, pv: PromptVersion, schema: type[BaseModel] | None,
                 policy: Policy, model: Model, *, cache: bool = True):
        from promptgov.eval._cache import ResponseCache
        from promptgov.eval._engine import Runner

        self.pv = pv
        self._rc = ResponseCache(ws.root / ".promptgov" / "cache.sqlite") if cache else None
        if self._rc is not None:
            self._rc.preload(pv.ref)
        self._runner = Runner(pv, None, model, cache=self._rc, policy=policy, concurrency=1,
                              budget_usd=None, schema_model=schema)

    def __call__(self, case: Case) -> CaseRecord:
        from promptgov.eval._scoring import score

        rec = self._runner._case(case, 0)
        return score(self.pv.kind, rec).apply_to(rec)

    def close(self) -> None:
        if self._rc is not None:
            self._rc.flush()
            self._rc.close()

    def __enter__(self) -> CaseAnswerer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def flipped(rec: CaseRecord) -> bool:
    return not rec["correct"] and (rec["failure"] is None or rec["failure"] in FLIP_FAILURES)


def answer_of(rec: CaseRecord) -> Any:
    """What the model answered: the label for a classification, else the output."""
    return rec.get("predicted", rec["output"]) if rec["output"] is not None else None


def search(answer: CaseAnswerer, case: Case, *, seed: int, decoys: Sequence[str],
           kinds: Sequence[str] | None, max_transforms: int, max_examples: int,
           max_calls: int, transforms: Mapping[str, Transform] | None = None
           ) -> tuple[Case, CaseRecord, int] | None:
    """The smallest flipping variant of ``case`` found, its record and the inputs tried; or
    None. Each transformation alone is searched first (a flip by one kind of noise is the
    clearest thing to show), then combinations of up to ``max_transforms``; every hit is
    shrunk by hypothesis, and the one with the fewest transformations and added characters
    wins."""
    from hypothesis import find, settings
    from hypothesis.errors import Flaky, NoSuchExample, Unsatisfiable

    seen: dict[str, CaseRecord] = {}

    def flips(v: Case) -> bool:
        key = canonical_json(v.input)
        rec = seen.get(key)
        if rec is None:
            if len(seen) >= max_calls:
                return False  # budget spent: nothing new is asked (shrinking stops here)
            rec = seen[key] = answer(v)
        return flipped(rec)

    def shrunk(names: list[str], most: int, examples: int) -> Case | None:
        try:
            return find(noisy_case(case, decoys=decoys, kinds=names, max_transforms=most,
                                   transforms=transforms),
                        flips, settings=settings(database=None, max_examples=examples,
                                                 deadline=None),
                        random=random.Random(f"{seed}:{case.id}:{','.join(names)}"))
        except (NoSuchExample, Unsatisfiable, Flaky):  # Flaky: a non-deterministic model
            return None

    names = list(registry(kinds, transforms))
    each = max(10, max_examples // len(names))
    hits = [v for k in names if (v := shrunk([k], 1, each)) is not None]
    if not hits and max_transforms > 1:
        hits = [v for v in [shrunk(names, max_transforms, max_examples)] if v is not None]
    if not hits:
        return None
    size = {id(v): sum(len(v.input[f]) for f in text_fields(v)) for v in hits}
    v = min(hits, key=lambda v: (len(v.meta["transforms"]), size[id(v)]))
    return v, seen[canonical_json(v.input)], len(seen)


def minimal_failing(prompt: str | PromptVersion, evalset: str | Evalset | None = None, *,
                    model: str | Model | None = None,
                    workspace: Workspace | str | os.PathLike[str] | None = None,
                    cases: Sequence[str] | None = None, max_cases: int = 10, seed: int = 0,
                    max_examples: int = 100, max_calls: int = 300,
                    kinds: Sequence[str] | None = None, max_transforms: int = 3,
                    transforms: Mapping[str, Transform] | None = None,
                    decoys: Sequence[str] | None = None, cache: bool = True) -> pd.DataFrame:
    """Search up to ``max_cases`` clean-correct cases for their smallest answer-flipping noise.

    Args:
        prompt: ``"ticket_triage@2"`` or a loaded prompt version.
        evalset: evalset name or object (default: the prompt's).
        model: model id or object (default: the prompt's ``model.id``).
        cases: case ids to search, in order (default: the evalset shuffled by ``seed``).
        max_cases: how many clean-correct cases to search.
        max_examples: random variants hypothesis tries per case (shared by the searches of
            single transformations, then as many again for combinations).
        max_calls: distinct inputs (hence model calls at most) per case, shrinking included.
        kinds / max_transforms / transforms: the noise space (default: every built-in
            transformation, up to 3 per variant; ``transforms`` adds or replaces some).
        decoys: wrong answers injection lines push (default: the prompt's labels or the
            schema's first enum).

    Returns:
        One row per flipped case: ``case_id``, ``transforms``, ``expected``, ``clean_answer``,
        ``noisy_answer``, ``failure``, ``clean_text``, ``noisy_text``, ``added_chars``,
        ``inputs_tried``.

    Example:
        >>> import promptgov as pg                                              # doctest: +SKIP
        >>> pg.minimal_failing("ticket_triage@2", model="local/knn", max_cases=5)  # doctest: +SKIP
    """
    import pandas as pd

    from promptgov.eval._engine import resolve

    ws, pv, es, schema, policy, m = resolve(workspace, prompt, evalset, model)
    if decoys is None:
        decoys = default_decoys(pv, schema)
    by_id = {c.id: c for c in es.cases}
    if cases is None:
        order = list(es.cases)
        random.Random(f"promptgov.minimal:{seed}").shuffle(order)
    else:
        missing = [c for c in cases if c not in by_id]
        if missing:
            raise ValueError(f"case id(s) {missing[:5]} not in {es.ref}")
        order = [by_id[c] for c in cases]
    rows, searched = [], 0
    with CaseAnswerer(ws, pv, schema, policy, m, cache=cache) as answer:
        for case in order:
            if searched >= max_cases:
                break
            clean = answer(case)
            if not clean["correct"]:
                continue
            searched += 1
            hit = search(answer, case, seed=seed, decoys=decoys, kinds=kinds,
                         max_transforms=max_transforms, max_examples=max_examples,
                         max_calls=max_calls, transforms=transforms)
            if hit is None:
                continue
            v, rec, tried = hit
            fields = text_fields(case)
            before = "\n".join(case.input[f] for f in fields)
            after = "\n".join(v.input[f] for f in fields)
            rows.append({"case_id": case.id, "transforms": v.meta["transforms"],
                         "expected": case.expected, "clean_answer": answer_of(clean),
                         "noisy_answer": answer_of(rec), "failure": rec["failure"],
                         "clean_text": before, "noisy_text": after,
                         "added_chars": len(after) - len(before), "inputs_tried": tried})
    return pd.DataFrame(rows, columns=COLUMNS)


def default_decoys(pv: PromptVersion, schema: type[BaseModel] | None) -> tuple[str, ...]:
    """The answers an injection line may push: the prompt's labels, else the values of the
    response schema's first enum field."""
    if pv.labels:
        return tuple(pv.labels)
    if schema is None:
        return ()
    from promptgov.eval._parse import _json_schema

    fields = enum_fields(_json_schema(schema))
    return tuple(fields[0][2]) if fields else ()

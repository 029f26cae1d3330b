"""Noisy evalsets: reproducible, versioned, hashed copies of a clean evalset.

``evalsets/<name>-noisy-s<seed>/`` holds ``n`` variants of the clean cases. Variant ``j`` is
made from clean case ``order[j % N]`` (``order``: the cases shuffled by the seed) with its own
``random.Random("<seed>:<case id>:<k>")``, so the same evalset, ``n``, seed and transformations
give byte-identical cases, hence the same evalset hash, in any process. The manifest keeps the
clean evalset's source and license (its attribution) and names it in ``derived_from``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from promptgov.errors import WorkspaceError
from promptgov.robustness._transforms import NoiseContext, Transform, apply, choose, registry
from promptgov.workspace._evalset import Case, Evalset, Manifest, write_evalset

if TYPE_CHECKING:
    from pathlib import Path


def text_fields(case: Case) -> list[str]:
    """The input fields noise is applied to: every top-level string."""
    return [k for k, v in case.input.items() if isinstance(v, str)]


def require_text(case: Case) -> list[str]:
    fields = text_fields(case)
    if not fields:
        raise ValueError(f"case {case.id!r} has no text input to make noisy (its input fields "
                         f"{sorted(case.input)} hold no string); adversarial variants need one")
    return fields


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def noise_context(case: Case, decoys: Sequence[str] = ()) -> NoiseContext:
    """Protect the expected values the text contains; push only decoys that are wrong."""
    expected = set(_strings(case.expected))
    texts = [case.input[f] for f in text_fields(case)]
    protect = sorted(s for s in expected if s.strip() and any(s in t for t in texts))
    return NoiseContext(protect=tuple(protect),
                        decoys=tuple(d for d in decoys if d not in expected))


def vary_case(case: Case, rng: random.Random, *, index: int | str, decoys: Sequence[str],
              reg: Mapping[str, Transform], max_transforms: int,
              names: Sequence[str] | None = None) -> Case:
    """A noisy copy of ``case``: the same transformations (``names``, default: drawn from
    ``rng``) applied to each text field."""
    fields = require_text(case)
    if names is None:
        names = choose(rng, list(reg), max_transforms)
    ctx = noise_context(case, decoys)
    new = dict(case.input)
    done: set[str] = set()
    for f in fields:
        v = apply(case.input[f], names, rng, ctx, reg)
        new[f] = v.text
        done.update(v.transforms)
    return Case(id=f"{case.id}~{index}", input=new, expected=case.expected,
                meta={**case.meta, "source": case.id,
                      "transforms": [n for n in names if n in done]})


def noisy_cases(evalset: Evalset, *, n: int, seed: int, decoys: Sequence[str] = (),
                kinds: Sequence[str] | None = None, max_transforms: int = 2,
                transforms: Mapping[str, Transform] | None = None) -> list[Case]:
    """``n`` noisy variants of ``evalset``'s cases; a pure function of the arguments."""
    if n < 1:
        raise ValueError(f"n={n}: ask for at least one noisy variant")
    if not evalset.cases:
        raise ValueError(f"{evalset.ref} has no cases to make noisy")
    reg = registry(kinds, transforms)
    order = list(evalset.cases)
    random.Random(f"promptgov.robustness:{seed}").shuffle(order)
    out = []
    for j in range(n):
        case, k = order[j % len(order)], j // len(order)
        rng = random.Random(f"{seed}:{case.id}:{k}")
        out.append(vary_case(case, rng, index=k, decoys=decoys, reg=reg,
                             max_transforms=max_transforms))
    return out


def noisy_name(evalset: Evalset, seed: int) -> str:
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r}: use a non-negative integer")
    return f"{evalset.manifest.name}-noisy-s{seed}"


def save_noisy(root: Path, evalset: Evalset, cases: list[Case], *, seed: int, n: int,
               kinds: Sequence[str], max_transforms: int) -> tuple[Evalset, bool]:
    """Write the noisy evalset atomically (or keep the identical one already there):
    ``(evalset, written)``. New content gets a new version: the version already locked with
    this hash, else one above every version on disk or in the lock."""
    from promptgov.hashing import content_hash
    from promptgov.workspace._lock import read_lock

    name = noisy_name(evalset, seed)
    d = root / "evalsets" / name
    h = content_hash([c.model_dump(mode="json") for c in cases])
    current = None
    if (d / "manifest.yaml").exists():
        try:
            current = Evalset.from_dir(d)
        except WorkspaceError:
            current = None  # generated content, broken by hand: replaced by a new version
    if current is not None and current.hash == h:
        return current, False
    locked = {int(ref.rpartition("@")[2]): e["hash"]
              for ref, e in read_lock(root)["evalsets"].items() if ref.rpartition("@")[0] == name}
    same = [v for v, lh in locked.items() if lh == h]
    version = max(same) if same else 1 + max(
        [*locked, current.manifest.version if current else 0])
    m = evalset.manifest
    manifest = Manifest(
        name=name, version=version, split=m.split, count=len(cases), derived_from=evalset.ref,
        description=(f"{n} noisy variants of {evalset.ref} made by promptgov.robustness (seed "
                     f"{seed}, 1 to {max_transforms} of: {', '.join(kinds)}). Expected outputs "
                     "are the clean cases'; meta.source names the clean case, meta.transforms "
                     "what was applied."),
        source=f"{m.source} Modified: noise added by promptgov.robustness from {evalset.ref}.",
        license=m.license)
    return write_evalset(d, manifest, cases), True

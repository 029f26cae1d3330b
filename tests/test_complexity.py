"""No function in the package is too tangled to change safely: radon's cyclomatic complexity
stays at or below 15 for every function and method (the runtime copied into wheels included)."""

from __future__ import annotations

from pathlib import Path

from radon.complexity import cc_visit

SRC = Path(__file__).resolve().parents[1] / "src" / "promptgov"
LIMIT = 15


def _blocks(blocks):
    for block in blocks:
        yield block
        yield from _blocks(getattr(block, "methods", []) or [])
        yield from _blocks(getattr(block, "closures", []) or [])


def test_no_function_above_the_complexity_limit():
    too_complex = sorted({
        f"{path.relative_to(SRC)}:{block.lineno} {block.name} (CC {block.complexity})"
        for path in SRC.rglob("*.py")
        for block in _blocks(cc_visit(path.read_text(encoding="utf-8")))
        if type(block).__name__ == "Function" and block.complexity > LIMIT
    })
    assert not too_complex, f"split these below CC {LIMIT}:\n" + "\n".join(too_complex)

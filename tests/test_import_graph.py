"""The package's layers only point down, and no module imports itself back through others.

    cli → packaging, robustness, optimizers, jobs, _loop → governance → eval
        → model, workspace, plot → core (errors, hashing, _portable)

`plot` imports nothing of promptgov (matplotlib figures of results and tables): it sits low, so
that ``eval`` can log the figures a notebook draws with it.

`_portable/` is the bottom: stdlib only, copied verbatim into every exported wheel, it imports
nothing of promptgov but its own modules (tests/test_runtime_parity.py holds it to that).
`packaging/_runtime/` is copied into the wheel too and imports only its siblings (there, the
`_portable` files; here, stand-ins that import them). Imports under `if TYPE_CHECKING:` are
annotations, not dependencies, and are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "promptgov"
LAYER = {"cli": 6, "packaging": 5, "robustness": 5, "optimizers": 5, "jobs": 5, "_loop": 5,
         "governance": 4, "eval": 3, "model": 2, "workspace": 2, "plot": 2,
         "errors": 0, "hashing": 0, "_version": 0, "_portable": 0}


def _modules() -> dict[str, Path]:
    out = {}
    for f in SRC.rglob("*.py"):
        parts = f.relative_to(SRC.parent).with_suffix("").parts
        out[".".join(parts).removesuffix(".__init__")] = f
    return out


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking(child):
                continue
            if isinstance(child, ast.ImportFrom):
                base = (pkg.split(".")[:len(pkg.split(".")) - child.level + 1]
                        if child.level else [])
                mod = ".".join([*base, *([child.module] if child.module else [])])
                for a in child.names:
                    sub = f"{mod}.{a.name}"
                    found.add(sub if sub in mods else mod)
            elif isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {m for m in found if m in mods and m != name}


def graph() -> dict[str, set[str]]:
    mods = _modules()
    return {n: _imports(n, p, mods) for n, p in mods.items()}


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYER.get(parts[1], 0) if len(parts) > 1 else 7  # promptgov/__init__: the top


def test_no_upward_import():
    up = sorted(f"{a} -> {b}" for a, bs in graph().items() for b in bs
                if layer(b) > layer(a) and ".packaging._runtime" not in a)
    assert up == []


def test_portable_is_the_bottom():
    """``_portable`` imports nothing of promptgov but itself, and every module of the package
    has a layer (a new top-level module is placed on purpose, not by the default)."""
    g = graph()
    portable = "promptgov._portable"
    assert sorted(f"{a} -> {b}" for a, bs in g.items() if a.startswith(portable)
                  for b in bs if not b.startswith(portable)) == []
    assert sorted({m.split(".")[1] for m in g if m.count(".")} - LAYER.keys()) == []


def test_no_import_cycle():
    g, cycles = graph(), []
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    assert cycles == []


def test_the_graph_sees_imports():
    """The walker itself works: it finds a known dependency, lazy imports inside functions
    included, and skips TYPE_CHECKING blocks."""
    g = graph()
    assert "promptgov.workspace._policy" in g["promptgov.governance._check"]
    assert "promptgov.governance._audit" in g["promptgov.governance._check"]  # in a function
    assert "promptgov.model._knn_prompt" not in g["promptgov.model._knn_cue"]  # TYPE_CHECKING

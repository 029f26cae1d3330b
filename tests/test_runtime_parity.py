"""The exported runtime and the workbench share one copy of their common code,
:mod:`promptgov._portable`, which the exporter copies verbatim into every wheel
(``tests/test_export.py`` checks the wheel's bytes against these files).

Here: the runtime's modules reach that code through stand-ins that are nothing but it; the
``_portable`` files import only the standard library and each other; and the output parser, bound
to the workbench's errors (``eval/_parse.py``) or to the package's (``_tasks.parse``), accepts and
refuses every generated model output alike, applying the same repairs whether it reads the JSON
Schema pydantic generates in the workbench or the one the package embeds.
"""

from __future__ import annotations

import ast
import sys
from importlib import import_module
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

import promptgov._portable as portable
from conftest import ROOT
from promptgov._portable import _parse
from promptgov.errors import InvalidOutput
from promptgov.eval._parse import parse_output as workbench_parse
from promptgov.packaging._runtime import RUNTIME_FILES, STAND_INS
from promptgov.packaging._runtime._errors import InvalidOutput as RuntimeInvalid
from promptgov.packaging._runtime._tasks import parse as runtime_parse
from promptgov.robustness import model_outputs
from promptgov.workspace import Workspace

WS = Workspace(ROOT)
SCHEMAS = [WS.schema("ticket_triage@1"), WS.schema("ticket_extraction@1")]
PORTABLE = Path(portable.__file__).parent
RUNTIME = ROOT / "src" / "promptgov" / "packaging" / "_runtime"


def _workbench(text, model):
    try:
        obj, repairs = workbench_parse(text, model)
    except InvalidOutput as e:
        return ("failed", e.kind)
    return ("ok", obj, repairs)


def _package(text, model, embedded):
    try:
        obj = runtime_parse(text, model, embedded)
    except RuntimeInvalid as e:
        return ("failed", e.kind)
    _, repairs = _parse.parse_output(text, embedded, model.model_validate)  # it records none
    return ("ok", obj.model_dump(mode="json"), repairs)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_runtime_parser_agrees_with_workbench_and_repairs_alike(data):
    schema = data.draw(st.sampled_from(SCHEMAS))
    model, embedded = schema.model, schema.json_schema  # embedded: what the package ships
    text = data.draw(model_outputs(model.model_json_schema()).map(lambda o: o.text)
                     | st.text(max_size=200))
    assert _workbench(text, model) == _package(text, model, embedded)


def test_the_runtime_stand_ins_are_the_portable_modules():
    assert sorted(portable.FILES) == sorted(p.name for p in PORTABLE.glob("_*.py")
                                            if p.name != "__init__.py")
    assert set(STAND_INS) <= set(portable.FILES)  # those the runtime imports
    assert not set(RUNTIME_FILES) & set(portable.FILES)  # flat in the package: no clash
    shipped = {*RUNTIME_FILES, *STAND_INS, "__init__.py", "_knn_base.py"}
    assert {p.name for p in RUNTIME.glob("*.py")} == shipped
    for name in STAND_INS:
        mod = import_module(f"promptgov.packaging._runtime.{name[:-3]}")
        real = import_module(f"promptgov._portable.{name[:-3]}")
        assert mod.__all__ and all(getattr(mod, n) is getattr(real, n) for n in mod.__all__)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(relative level, module) of every import in ``path``, TYPE_CHECKING blocks included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            out.append((node.level, node.module or ""))
        elif isinstance(node, ast.Import):
            out += [(0, a.name) for a in node.names]
    return out


def test_portable_modules_import_only_the_stdlib_and_each_other():
    for name in portable.FILES:
        for level, module in _imports(PORTABLE / name):
            if level:
                assert level == 1 and f"{module}.py" in portable.FILES, (name, module)
            else:
                assert module.split(".")[0] in sys.stdlib_module_names, (name, module)

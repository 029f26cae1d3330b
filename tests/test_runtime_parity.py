"""The exported runtime carries its own copy of the output parser (it may not import promptgov).
This proves the copy and the workbench's parser agree on every generated model output, so a
production answer is accepted or refused exactly as it was during evaluation."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ROOT
from promptgov.adversarial import model_outputs
from promptgov.errors import InvalidOutput
from promptgov.eval._parse import parse_output as workbench_parse
from promptgov.export._runtime._errors import InvalidOutput as RuntimeInvalid
from promptgov.export._runtime._parse import parse_output as runtime_parse
from promptgov.workspace import Workspace

WS = Workspace(ROOT)
SCHEMAS = [WS.schema("ticket_triage@1").model, WS.schema("ticket_extraction@1").model]


def _outcome(parse, exc, text, model):
    try:
        return ("ok", parse(text, model))
    except exc as e:
        return ("failed", e.kind)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_runtime_parser_agrees_with_workbench(data):
    model = data.draw(st.sampled_from(SCHEMAS))
    schema = model.model_json_schema()
    text = data.draw(model_outputs(schema).map(lambda o: o.text) | st.text(max_size=200))
    ours = _outcome(lambda t, m: workbench_parse(t, m)[0], InvalidOutput, text, model)
    theirs = _outcome(lambda t, m: runtime_parse(t, m, schema).model_dump(mode="json"),
                      RuntimeInvalid, text, model)
    assert ours == theirs

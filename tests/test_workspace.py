"""Loading the workspace: prompt versions and their rendering, evalsets, schemas and the
compatibility of two schema versions. Bad files fail with one line naming the file (and line)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from promptgov.errors import WorkspaceError
from promptgov.workspace import Workspace, fmt_ref, parse_ref
from promptgov.workspace._prompt import PromptVersion, RenderError
from promptgov.workspace._schema import diff_schemas


def one_line(e: BaseException) -> str:
    msg = str(e)
    assert "\n" not in msg, msg
    return msg


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def triage_v3(workspace_dir: Path, text: str) -> Path:
    return write(workspace_dir / "prompts" / "ticket_triage" / "v3.yaml", text)


def v1_text(workspace_dir: Path) -> str:
    return (workspace_dir / "prompts" / "ticket_triage" / "v1.yaml").read_text(encoding="utf-8")


# -- prompts --------------------------------------------------------------------------------

def test_prompt_files_and_latest_version(workspace):
    assert list(workspace.prompt_files()) == sorted(
        (f.parent.name, int(f.stem[1:])) for f in workspace.root.glob("prompts/*/v*.yaml"))
    assert ("ticket_triage", 2) in workspace.prompt_files()
    assert workspace.prompt("ticket_triage").version == 2
    assert workspace.prompt("ticket_triage@1").version == 1
    assert workspace.prompt("ticket_triage", 1).ref == "ticket_triage@1"
    assert workspace.prompt("ticket_triage@2") is workspace.prompt("ticket_triage@v2")  # cached


def test_render_triage_v2(workspace):
    pv = workspace.prompt("ticket_triage@2")
    assert pv.kind == "classification" and pv.input_variables == ["text"]
    assert len(pv.demos) == 770  # 10 demos per Banking77 label
    msgs = pv.render({"text": "Where is my new card?"})
    assert len(msgs) == 1 + 2 * 770 + 1
    assert msgs[0]["role"] == "system"
    # the system message lists every label with its description
    for label, desc in pv.labels.items():
        assert f"- {label}: {desc}\n" in msgs[0]["content"]
    for i, demo in enumerate(pv.demos):
        user, answer = msgs[1 + 2 * i], msgs[2 + 2 * i]
        assert user == {"role": "user", "content": f"Customer message:\n{demo.input['text']}"}
        assert answer["role"] == "assistant"
        assert json.loads(answer["content"])["label"] in pv.labels
    assert msgs[-1] == {"role": "user", "content": "Customer message:\nWhere is my new card?"}


def test_render_returns_fresh_messages(workspace):
    pv = workspace.prompt("ticket_triage@1")
    a = pv.render({"text": "one"})
    a[0]["content"] = "tampered"
    b = pv.render({"text": "two"})
    assert b[0]["content"] != "tampered"
    assert b[-1]["content"].endswith("two")


def test_render_nested_input(workspace):
    pv = workspace.prompt("reply_draft")
    assert pv.kind == "draft" and pv.response_schema is None
    msgs = pv.render(pv.probe_input)
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert "order id: A-0" in msgs[-1]["content"]


def test_strict_jinja_missing_variable(workspace):
    pv = workspace.prompt("ticket_triage@2")
    with pytest.raises(RenderError) as ei:
        pv.render({"txt": "typo in the input key"})
    assert isinstance(ei.value, WorkspaceError)
    msg = one_line(ei.value)
    assert "ticket_triage@2" in msg and "prompts/ticket_triage/v2.yaml" in msg
    assert "'text' is undefined" in msg


def test_strict_jinja_missing_nested_variable(workspace):
    pv = workspace.prompt("reply_draft@1")
    facts = dict(pv.probe_input["facts"])
    del facts["order_id"]
    with pytest.raises(WorkspaceError, match=r"reply_draft@1 user: undefined variable.*order_id"):
        pv.render({"facts": facts})


def test_broken_template_fails_at_load(workspace, workspace_dir):
    triage_v3(workspace_dir, v1_text(workspace_dir).replace("version: 1", "version: 3")
              .replace("{{ text }}", "{{ text }"))
    with pytest.raises(WorkspaceError) as ei:
        workspace.prompt("ticket_triage@3")
    msg = one_line(ei.value)
    assert "v3.yaml" in msg and "template syntax error" in msg


def test_demo_input_missing_variable_fails_at_load(workspace, workspace_dir):
    text = v1_text(workspace_dir).replace("version: 1", "version: 3").replace(
        "- input:\n    text: I was expecting my new card by now.",
        "- input:\n    txt: I was expecting my new card by now.", 1)
    assert "txt:" in text
    triage_v3(workspace_dir, text)
    with pytest.raises(WorkspaceError, match=r"ticket_triage@3 demos\[0\]\.input: undefined"):
        workspace.prompt("ticket_triage@3")


def test_malformed_yaml_names_file_and_line(workspace, workspace_dir):
    p = triage_v3(workspace_dir, "name: ticket_triage\nversion: 3\nkind: [classification\n"
                                 "system: hi\nuser: '{{ text }}'\n")
    with pytest.raises(WorkspaceError) as ei:
        workspace.prompt("ticket_triage@3")
    e = ei.value
    assert e.path == str(p) and e.line is not None and 3 <= e.line <= 5
    msg = one_line(e)
    assert msg.startswith(f"{p}:{e.line}: malformed YAML")


def test_malformed_yaml_tab_indent(workspace, workspace_dir):
    p = triage_v3(workspace_dir, "name: ticket_triage\nversion: 3\nmodel:\n\tid: x\n")
    with pytest.raises(WorkspaceError) as ei:
        workspace.prompt("ticket_triage@3")
    assert ei.value.line == 4 and f"{p}:4:" in one_line(ei.value)


def test_top_level_must_be_a_mapping(workspace, workspace_dir):
    triage_v3(workspace_dir, "- just\n- a list\n")
    with pytest.raises(WorkspaceError, match="expected a mapping at the top level"):
        workspace.prompt("ticket_triage@3")


def test_unknown_field_typo(workspace, workspace_dir):
    p = triage_v3(workspace_dir, v1_text(workspace_dir).replace("version: 1", "version: 3")
                  .replace("\nsystem:", "\nsytem:"))
    with pytest.raises(WorkspaceError) as ei:
        workspace.prompt("ticket_triage@3")
    msg = one_line(ei.value)
    assert str(p) in msg
    assert "`sytem`" in msg  # the unknown field, not only the missing `system`
    assert "system" in ei.value.fix


def test_unknown_nested_field(workspace, workspace_dir):
    triage_v3(workspace_dir, v1_text(workspace_dir).replace("version: 1", "version: 3")
              .replace("  max_tokens: 64", "  max_token: 64"))
    with pytest.raises(WorkspaceError, match=r"field `model\.max_token`"):
        workspace.prompt("ticket_triage@3")


def test_classification_needs_labels(workspace, workspace_dir):
    triage_v3(workspace_dir, "name: ticket_triage\nversion: 3\nkind: classification\n"
                             "response_schema: ticket_triage@1\nsystem: s\nuser: '{{ text }}'\n")
    with pytest.raises(WorkspaceError, match="needs `labels`"):
        workspace.prompt("ticket_triage@3")


def test_wrong_file_name_for_version(workspace, workspace_dir):
    p = triage_v3(workspace_dir, v1_text(workspace_dir).replace("version: 1", "version: 4"))
    with pytest.raises(WorkspaceError) as ei:
        workspace.prompt("ticket_triage@3")
    msg = one_line(ei.value)
    assert str(p) in msg and "declares ticket_triage@4" in msg
    assert "prompts/ticket_triage/v4.yaml" in ei.value.fix


def test_wrong_folder_for_name(workspace, workspace_dir):
    write(workspace_dir / "prompts" / "other" / "v1.yaml", v1_text(workspace_dir))
    with pytest.raises(WorkspaceError, match="declares ticket_triage@1 but lives at other/v1"):
        workspace.prompt("other@1")


def test_unknown_prompt_and_version(workspace):
    with pytest.raises(WorkspaceError, match="no prompt named 'nope'.*known prompts: reply_draft"):
        workspace.prompt("nope")
    with pytest.raises(WorkspaceError, match=r"no prompt version ticket_triage@9.*\[1, 2\]"):
        workspace.prompt("ticket_triage@9")
    with pytest.raises(WorkspaceError, match=r"no prompt named 'ticket_triag'.*did you mean "
                       r"ticket_triage@2\?"):  # a typo with a version: the name is the problem
        workspace.prompt("ticket_triag@2")


def test_not_a_workspace(tmp_path):
    with pytest.raises(WorkspaceError, match="not a promptgov workspace"):
        Workspace(tmp_path)


def test_find_walks_upwards(workspace_dir, monkeypatch):
    monkeypatch.delenv("PROMPTGOV_WORKSPACE", raising=False)
    assert Workspace.find(workspace_dir / "prompts" / "ticket_triage").root == \
        workspace_dir.resolve()


def test_refs():
    assert parse_ref("ticket_triage@2") == ("ticket_triage", 2)
    assert parse_ref("ticket_triage@v2") == ("ticket_triage", 2)
    assert parse_ref("ticket_triage") == ("ticket_triage", None)
    assert fmt_ref("a", 3) == "a@3"
    with pytest.raises(ValueError, match="not a reference"):
        parse_ref("Ticket Triage")


# -- evalsets -------------------------------------------------------------------------------

def test_evalsets_load(workspace):
    es = workspace.evalset("ticket_triage@1")
    assert len(es) == es.manifest.count == 770
    assert es.ref == "ticket_triage@1"
    assert es.hash.startswith("sha256:")
    assert workspace.evalset("ticket_extraction").manifest.count == 209


def test_evalset_hash_ignores_json_layout(workspace_dir):
    from promptgov.workspace._evalset import Evalset

    d = workspace_dir / "evalsets" / "ticket_triage"
    before = Evalset.from_dir(d).hash
    lines = (d / "cases.jsonl").read_text(encoding="utf-8").splitlines()
    relaid = [json.dumps(dict(reversed(list(json.loads(x).items()))), indent=None,
                         separators=(", ", ":  "), ensure_ascii=True) for x in lines]
    (d / "cases.jsonl").write_text("\n".join(relaid) + "\n\n", encoding="utf-8")
    assert Evalset.from_dir(d).hash == before


def test_evalset_bad_jsonl_line(workspace, workspace_dir):
    p = workspace_dir / "evalsets" / "ticket_triage" / "cases.jsonl"
    lines = p.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[41] = lines[41].rstrip("\n")[:-1] + "\n"  # line 42 loses its closing brace
    p.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(WorkspaceError) as ei:
        workspace.evalset("ticket_triage")
    assert ei.value.line == 42 and ei.value.path == str(p)
    assert one_line(ei.value).startswith(f"{p}:42: invalid JSON")


def test_evalset_line_not_an_object(workspace, workspace_dir):
    p = workspace_dir / "evalsets" / "reply_draft" / "cases.jsonl"
    p.write_text(p.read_text(encoding="utf-8") + "[1, 2]\n", encoding="utf-8")
    with pytest.raises(WorkspaceError, match=r"cases.jsonl:31: expected a JSON object"):
        workspace.evalset("reply_draft")


def test_evalset_case_with_unknown_field(workspace, workspace_dir):
    p = workspace_dir / "evalsets" / "reply_draft" / "cases.jsonl"
    lines = p.read_text(encoding="utf-8").splitlines(keepends=True)
    case = json.loads(lines[2])
    case["expect"] = case.pop("expected")
    lines[2] = json.dumps(case) + "\n"
    p.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(WorkspaceError) as ei:
        workspace.evalset("reply_draft")
    assert ei.value.line == 3 and "`expect`" in one_line(ei.value)


def test_evalset_duplicate_case_id(workspace, workspace_dir):
    p = workspace_dir / "evalsets" / "ticket_triage" / "cases.jsonl"
    lines = p.read_text(encoding="utf-8").splitlines(keepends=True)
    first = json.loads(lines[0])["id"]
    case = json.loads(lines[9])
    case["id"] = first
    lines[9] = json.dumps(case) + "\n"
    p.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(WorkspaceError) as ei:
        workspace.evalset("ticket_triage")
    e = ei.value
    assert e.line == 10 and f"duplicate case id {first!r} (first on line 1)" in one_line(e)


def test_evalset_manifest_count_mismatch(workspace, workspace_dir):
    p = workspace_dir / "evalsets" / "reply_draft" / "manifest.yaml"
    p.write_text(p.read_text(encoding="utf-8").replace("count: 30", "count: 31"),
                 encoding="utf-8")
    with pytest.raises(WorkspaceError) as ei:
        workspace.evalset("reply_draft")
    msg = one_line(ei.value)
    assert str(p) in msg and "count is 31 but cases.jsonl holds 30 cases" in msg
    assert ei.value.fix == "set `count: 30`"


def test_evalset_missing_cases_file(workspace, workspace_dir):
    (workspace_dir / "evalsets" / "reply_draft" / "cases.jsonl").unlink()
    with pytest.raises(WorkspaceError, match="cases.jsonl: missing"):
        workspace.evalset("reply_draft")


def test_evalset_version_mismatch_and_unknown(workspace):
    with pytest.raises(WorkspaceError, match="ticket_triage@2 requested but evalsets/ticket_triage"
                                             " is version 1"):
        workspace.evalset("ticket_triage@2")
    with pytest.raises(WorkspaceError, match="unknown evalset 'nope'"):
        workspace.evalset("nope")


def test_write_evalset_roundtrip(tmp_path):
    from promptgov.workspace._evalset import Case, Evalset, Manifest, write_evalset

    cases = [Case(id=f"c{i}", input={"text": f"t{i} é"}, expected={"label": "x"})
             for i in range(3)]
    m = Manifest(name="mini", version=1, source="test", license="CC0-1.0", count=3)
    es = write_evalset(tmp_path / "mini", m, cases)
    assert es.cases == tuple(cases)
    assert Evalset.from_dir(tmp_path / "mini").hash == es.hash
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mini"]  # no temp folder left


# -- schemas --------------------------------------------------------------------------------

def test_schemas_load(workspace):
    assert sorted(workspace.schemas) == ["ticket_extraction@1", "ticket_triage@1"]
    s = workspace.schema("ticket_triage@1")
    assert s.json_schema["properties"]["label"]["enum"][0] == "card_arrival"
    assert s.hash.startswith("sha256:")
    with pytest.raises(WorkspaceError, match="unknown schema 'nope@1'.*ticket_triage@1"):
        workspace.schema("nope@1")


def test_schema_file_with_error(workspace, workspace_dir):
    write(workspace_dir / "schemas" / "broken.py", "from pydantic import BaseModel\n1 / 0\n")
    with pytest.raises(WorkspaceError, match=r"broken\.py: cannot import: ZeroDivisionError"):
        workspace.schemas  # noqa: B018


def test_schema_declared_twice(workspace, workspace_dir):
    src = (workspace_dir / "schemas" / "ticket_triage.py").read_text(encoding="utf-8")
    write(workspace_dir / "schemas" / "ticket_triage_copy.py", src)
    with pytest.raises(WorkspaceError, match="schema ticket_triage@1 is also declared in "
                                             "schemas/ticket_triage.py"):
        workspace.schemas  # noqa: B018


# Schema versions as pydantic models: (old → new) must be classified breaking or additive.

class V1(BaseModel):
    label: Literal["a", "b", "c"]
    confidence: float = Field(ge=0, le=1)
    note: str | None = None
    tags: list[Literal["x", "y"]] = []


class FieldRemoved(BaseModel):
    label: Literal["a", "b", "c"]
    confidence: float = Field(ge=0, le=1)
    tags: list[Literal["x", "y"]] = []


class RequiredAdded(V1):
    reason: str


class NowRequired(BaseModel):
    label: Literal["a", "b", "c"]
    confidence: float = Field(ge=0, le=1)
    note: str | None
    tags: list[Literal["x", "y"]] = []


class EnumValueRemoved(BaseModel):
    label: Literal["a", "b"]
    confidence: float = Field(ge=0, le=1)
    note: str | None = None
    tags: list[Literal["x", "y"]] = []


class ListEnumValueRemoved(BaseModel):
    label: Literal["a", "b", "c"]
    confidence: float = Field(ge=0, le=1)
    note: str | None = None
    tags: list[Literal["x"]] = []


class TypeNarrowed(BaseModel):
    label: Literal["a", "b", "c"]
    confidence: int = Field(ge=0, le=1)
    note: str | None = None
    tags: list[Literal["x", "y"]] = []


class NullNoLongerAllowed(BaseModel):
    label: Literal["a", "b", "c"]
    confidence: float = Field(ge=0, le=1)
    note: str = ""
    tags: list[Literal["x", "y"]] = []


class OptionalAdded(V1):
    source: str | None = None


class EnumValueAdded(BaseModel):
    label: Literal["a", "b", "c", "d"]
    confidence: float = Field(ge=0, le=1)
    note: str | None = None
    tags: list[Literal["x", "y", "z"]] = []


class TypeWidened(BaseModel):
    label: Literal["a", "b", "c"]
    confidence: float | str = Field(ge=0, le=1)
    note: str | None = None
    tags: list[Literal["x", "y"]] = []


class DescribedOnly(V1):
    """Only a docstring differs."""


@pytest.mark.parametrize("new, path, what", [
    (FieldRemoved, "note", "field removed"),
    (RequiredAdded, "reason", "field added (required)"),
    (NowRequired, "note", "now required"),
    (EnumValueRemoved, "label", "enum values removed: ['c']"),
    (ListEnumValueRemoved, "tags[]", "enum values removed: ['y']"),
    (TypeNarrowed, "confidence", "type narrowed: ['number']"),
    (NullNoLongerAllowed, "note", "type narrowed: ['null']"),
])
def test_schema_change_is_breaking(new, path, what):
    changes = diff_schemas(V1.model_json_schema(), new.model_json_schema())
    breaking = [c for c in changes if c.breaking]
    assert any(c.path == path and c.what.startswith(what) for c in breaking), changes
    assert any(str(c).startswith(f"BREAKING: {path}: ") for c in breaking)


@pytest.mark.parametrize("new, expected", [
    (OptionalAdded, {("source", "field added")}),
    (EnumValueAdded, {("label", "enum values added: ['d']"),
                      ("tags[]", "enum values added: ['z']")}),
    (TypeWidened, {("confidence", "type widened: ['string'] now allowed")}),
    (DescribedOnly, set()),
])
def test_schema_change_is_additive(new, expected):
    changes = diff_schemas(V1.model_json_schema(), new.model_json_schema())
    assert not [c for c in changes if c.breaking], changes
    assert {(c.path, c.what) for c in changes} == expected


def test_schema_diff_nested_model():
    class ItemA(BaseModel):
        kind: Literal["p", "q"]

    class A(BaseModel):
        item: ItemA
        items: list[ItemA]

    class ItemB(BaseModel):
        kind: Literal["p"]
        extra: int

    class B(BaseModel):
        item: ItemB
        items: list[ItemB]

    got = {str(c) for c in diff_schemas(A.model_json_schema(), B.model_json_schema())}
    assert {"BREAKING: item.kind: enum values removed: ['q']",
            "BREAKING: item.extra: field added (required)",
            "BREAKING: items[].kind: enum values removed: ['q']"} <= got


def test_schema_diff_identical_and_real_contract(workspace):
    js = workspace.schema("ticket_extraction@1").json_schema
    assert diff_schemas(js, js) == []
    fewer = json.loads(json.dumps(js))
    fewer["properties"]["intents"]["items"]["enum"].remove("card")
    assert [str(c) for c in diff_schemas(js, fewer)] == [
        "BREAKING: intents[]: enum values removed: ['card']"]


def test_prompt_version_is_frozen(workspace):
    pv = workspace.prompt("ticket_triage@1")
    with pytest.raises(Exception, match="frozen"):
        pv.version = 5  # type: ignore[misc]
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", pv.content_hash)
    assert isinstance(pv, PromptVersion)

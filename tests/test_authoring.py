"""Authoring a new use case: `promptgov new`, `promptgov evalset import`, and what `check` and
`lock` verify inside the content (demos and expected values against the response schema,
contamination between demos and the evalset)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import promptgov as pg
import promptgov.cli  # noqa: F401  (registers the commands)
from promptgov.cli._app import app
from promptgov.errors import GovernanceError

ROWS = [
    ("Book a room for 2 people on 2025-07-01", "book", "2025-07-01", "2"),
    ("I need to cancel my reservation", "cancel", "", ""),
    ("Can I move my booking to 2025-08-03?", "change", "2025-08-03", ""),
    ("How much is a double room for 3 of us?", "ask_price|book", "", "3"),
    ("Cancel the one on 2025-09-09 please", "cancel", "2025-09-09", ""),
    ("We are 4, arriving 2025-10-10, what does it cost?", '["ask_price", "book"]', "2025-10-10",
     "4"),
]


def cli(ws: Path, *args: str):
    """Run a command in-process; a PromptgovError becomes `error:` lines and exit 1, as the
    console script's edge does."""
    r = CliRunner().invoke(app, [*args, "-w", str(ws)])
    err = r.stderr
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        if not isinstance(r.exception, pg.PromptgovError):
            raise r.exception
        err += "".join(f"error: {ln}\n" for ln in str(r.exception).splitlines())
        return 1, r.stdout, err
    return r.exit_code, r.stdout, err


def errors(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("error: ")]


@pytest.fixture
def hotel(workspace_dir: Path, tmp_path: Path) -> Path:
    """The hotel use case made with `new` and `evalset import` only, and locked."""
    csv = tmp_path / "hotels.csv"
    pd.DataFrame(ROWS, columns=["text", "intents", "date", "people"]).to_csv(csv, index=False)
    for args in (["new", "schema", "hotel", "--kind", "extraction"],
                 ["new", "prompt", "hotel", "--kind", "extraction"],
                 ["evalset", "import", str(csv), "--name", "hotel", "--input", "text",
                  "--expected", "intents,date", "--expected", "people", "--source",
                  "synthetic, tests/test_authoring.py", "--license", "CC0-1.0"],
                 ["lock"]):
        code, out, err = cli(workspace_dir, *args)
        assert code == 0, (args, out, err)
    return workspace_dir


def test_new_use_case_without_python(hotel):
    code, out, err = cli(hotel, "check")
    assert code == 0, err
    cases = [json.loads(ln) for ln in (hotel / "evalsets/hotel/cases.jsonl").read_text(
        encoding="utf-8").splitlines()]
    assert [c["id"] for c in cases][:2] == ["hotel-0001", "hotel-0002"]
    # typed by the schema: ints, null for an empty cell, lists from `a|b` and from JSON
    assert cases[0]["expected"] == {"intents": ["book"], "date": "2025-07-01", "people": 2}
    assert cases[1]["expected"] == {"intents": ["cancel"], "date": None, "people": None}
    assert cases[3]["expected"]["intents"] == cases[5]["expected"]["intents"] == [
        "ask_price", "book"]
    manifest = yaml.safe_load((hotel / "evalsets/hotel/manifest.yaml").read_text("utf-8"))
    assert manifest["count"] == 6 and manifest["version"] == 1
    r = pg.evaluate("hotel@1", model="local/knn", workspace=pg.Workspace(hotel), track=False)
    assert len(r.records) == 6 and r.metrics["failure_rate"] == 0
    assert 0 < r.metrics["accuracy"] <= 1


def test_import_writes_a_new_version_and_never_over_a_file(hotel, tmp_path):
    df = pd.DataFrame(ROWS[:3], columns=["text", "intents", "date", "people"])
    es = pg.evalset_from_frame(df, "hotel", input=["text"], expected=["intents", "date",
                                                                       "people"],
                               source="s", license="CC0-1.0", workspace=hotel)
    assert es.ref == "hotel@2" and len(es) == 3
    code, out, err = cli(hotel, "check")  # the locked v1 changed folder: a new version to lock
    assert code == 1 and "evalset hotel@2 is not locked" in err
    for args, message in (
            (["new", "prompt", "hotel"], "prompts/hotel: already exists"),
            (["new", "schema", "hotel"], "schemas/hotel.py: already exists"),
            (["new", "evalset", "hotel"], "evalsets/hotel: already exists"),
            (["new", "version", "hotell"], "no prompt named 'hotell' (fix: did you mean hotel?)")):
        code, _, err = cli(hotel, *args)
        assert code == 1 and len(errors(err)) == 1 and message in err, (args, err)


def test_import_refuses_a_value_the_schema_cannot_take(workspace_dir, tmp_path):
    assert cli(workspace_dir, "new", "schema", "hotel")[0] == 0
    assert cli(workspace_dir, "new", "prompt", "hotel")[0] == 0
    csv = tmp_path / "bad.csv"
    csv.write_text("text,people\nfor two,two\n", encoding="utf-8")
    code, _, err = cli(workspace_dir, "evalset", "import", str(csv), "--name", "hotel",
                       "--input", "text", "--expected", "people", "--source", "s",
                       "--license", "x")
    assert code == 1 and errors(err) == [
        f"error: {csv} row 1: expected people = 'two': Input should be a valid integer, unable "
        "to parse string as an integer (schema hotel@1) (fix: correct the cell, or the column "
        "you mapped to this field)"]
    assert not (workspace_dir / "evalsets/hotel").exists()  # nothing half written


def test_new_version_copies_the_latest(workspace_dir):
    code, out, _ = cli(workspace_dir, "new", "version", "ticket_triage")
    assert code == 0 and "prompts/ticket_triage/v3.yaml" in out
    v2 = (workspace_dir / "prompts/ticket_triage/v2.yaml").read_text(encoding="utf-8")
    v3 = (workspace_dir / "prompts/ticket_triage/v3.yaml").read_text(encoding="utf-8")
    assert v3 == v2.replace("\nversion: 2\n", "\nversion: 3\n")
    assert pg.Workspace(workspace_dir).prompt("ticket_triage@3").version == 3


@pytest.mark.parametrize("kind", ["classification", "draft"])
def test_every_kind_of_stub_locks_and_evaluates(workspace_dir, kind):
    if kind != "draft":
        assert cli(workspace_dir, "new", "schema", "stub", "--kind", kind)[0] == 0
    assert cli(workspace_dir, "new", "prompt", "stub", "--kind", kind)[0] == 0
    assert cli(workspace_dir, "new", "evalset", "stub", "--source", "s", "--license", "x")[0] == 0
    case = ({"id": "c1", "input": {"text": "My invoice is wrong"}, "expected": {"label": "billing"}}
            if kind == "classification" else
            {"id": "c1", "input": {"facts": {"customer_name": "Bob", "order_id": "B-2",
                                             "order_state": "delivered"}},
             "expected": {"required_facts": ["customer_name"], "max_chars": 300}})
    d = workspace_dir / "evalsets/stub"
    (d / "cases.jsonl").write_text(json.dumps(case) + "\n", encoding="utf-8")
    (d / "manifest.yaml").write_text((d / "manifest.yaml").read_text(encoding="utf-8").replace(
        "count: 0 ", "count: 1 "), encoding="utf-8")
    code, out, err = cli(workspace_dir, "lock")
    assert code == 0, err
    r = pg.evaluate("stub@1", model="local/knn", workspace=pg.Workspace(workspace_dir),
                    track=False)
    assert len(r.records) == 1 and r.metrics["failure_rate"] == 0


# -- validation inside the content --------------------------------------------------------------

def _edit_prompt(ws: Path, change) -> Path:
    path = ws / "prompts/hotel/v1.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def test_invalid_demo_output_is_one_line(hotel):
    def bad(d):
        d["version"] = 2
        d["demos"].append({"input": {"text": "three rooms"},
                           "output": {"intents": ["fly"], "date": None, "people": 3}})
    (hotel / "prompts/hotel/v1.yaml").rename(hotel / "prompts/hotel/v2.yaml")
    shutil.copy(hotel / "prompts/hotel/v2.yaml", hotel / "prompts/hotel/v1.yaml")
    path = hotel / "prompts/hotel/v2.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    bad(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    code, _, err = cli(hotel, "check")
    assert code == 1
    assert "error: prompts/hotel/v2.yaml: hotel@2 demos[1].output.intents.0: Input should be " \
        "'book', 'cancel', 'change' or 'ask_price' (schema hotel@1) (fix: correct the demo" in err
    code, _, err = cli(hotel, "lock")
    assert code == 1 and "demos[1].output.intents.0" in err


@pytest.mark.parametrize("expected, message", [
    ({"intents": ["book"], "date": None, "people": "two"},
     "expected.people: Input should be a valid integer"),
    ({"intents": ["book"], "date": None}, "expected.people: Field required"),
])
def test_invalid_or_missing_expected_value_names_the_line(hotel, expected, message):
    path = hotel / "evalsets/hotel/cases.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    case = json.loads(lines[2])
    case["expected"] = expected
    lines[2] = json.dumps(case)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    manifest = hotel / "evalsets/hotel/manifest.yaml"
    manifest.write_text(manifest.read_text(encoding="utf-8").replace("version: 1", "version: 2"),
                        encoding="utf-8")
    code, _, err = cli(hotel, "check")
    assert code == 1
    assert (f"error: evalsets/hotel/cases.jsonl:3: case 'hotel-0003' {message}") in err, err


def test_demo_that_is_an_evalset_case_is_contamination(hotel):
    def leak(d):
        d["demos"].append({"input": {"text": "  i need to CANCEL my reservation "},
                           "output": {"intents": ["cancel"], "date": None, "people": None}})
        d["demos"].append({"input": {"text": "Can I move my booking to 2025-08-03"},
                           "output": {"intents": ["change"], "date": "2025-08-03",
                                      "people": None}})
    shutil.copy(hotel / "prompts/hotel/v1.yaml", hotel / "prompts/hotel/v2.yaml")
    path = hotel / "prompts/hotel/v2.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["version"] = 2
    leak(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    code, _, err = cli(hotel, "check")
    assert code == 1
    found = [e for e in errors(err) if "(contamination)" in e]
    assert found == [
        "error: prompts/hotel/v2.yaml: hotel@2 demos[1] input equals case hotel-0002 of evalset "
        "hotel@1, which scores it (contamination) (fix: remove the demo (or the case, as a new "
        "evalset version): a demo the model is scored on inflates every metric)",
        "error: prompts/hotel/v2.yaml: hotel@2 demos[2] input nearly equals case hotel-0003 of "
        "evalset hotel@1, which scores it (contamination) (fix: remove the demo (or the case, as "
        "a new evalset version): a demo the model is scored on inflates every metric)"]


def test_approve_refuses_evidence_from_an_overlapping_evalset(hotel, mlflow_template):
    (hotel / ".promptgov").mkdir(exist_ok=True)
    shutil.copy(mlflow_template, hotel / ".promptgov/mlflow.db")
    ws = pg.Workspace(hotel)
    r = pg.evaluate("hotel@1", model="local/knn", workspace=ws)
    # the evalset now holds a case equal to a demo: a new evalset version, locked
    path = hotel / "evalsets/hotel/cases.jsonl"
    demo = yaml.safe_load((hotel / "prompts/hotel/v1.yaml").read_text("utf-8"))["demos"][0]
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"id": "leak", "input": demo["input"], "expected": demo["output"]})
                + "\n")
    m = hotel / "evalsets/hotel/manifest.yaml"
    m.write_text(m.read_text("utf-8").replace("version: 1", "version: 2")
                 .replace("count: 6", "count: 7"), encoding="utf-8")
    assert cli(hotel, "check")[0] == 1  # contamination (and unlocked)
    r = pg.evaluate("hotel@1", model="local/knn", workspace=pg.Workspace(hotel))
    with pytest.raises(GovernanceError, match=r"demos\[0\] equals case leak of evalset hotel@2"):
        pg.approve("hotel@1", r.run_id, by="alice", workspace=pg.Workspace(hotel))
    assert not (hotel / "governance/approvals/hotel@1.toml").exists()


def test_schema_without_schema_id_is_named(hotel):
    path = hotel / "schemas/hotel.py"
    path.write_text(path.read_text(encoding="utf-8").replace(
        '    schema_id: ClassVar[str] = "hotel@1"\n', ""), encoding="utf-8")
    code, _, err = cli(hotel, "check")
    assert code == 1
    assert "warning: schemas/hotel.py: declares no contract: no pydantic model in it has " \
        "`schema_id`" in err
    assert "error: prompts/hotel/v1.yaml: hotel@1 references unknown schema 'hotel@1' (fix: " \
        "known schemas: ticket_extraction@1, ticket_triage@1; a schema is a pydantic model in " \
        'schemas/*.py declaring schema_id: ClassVar[str] = "hotel@1")' in err

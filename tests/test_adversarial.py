"""``promptgov.robustness``: noise that keeps the expected output, reproducible noisy evalsets,
the robustness run in MLflow, minimal failing inputs, and the ``adversarial`` command."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import promptgov as pg
import promptgov.cli  # noqa: F401  (registers the commands on the app)
from promptgov.cli._app import app
from promptgov.robustness import (
    TRANSFORMS,
    NoiseContext,
    noisy_case,
    noisy_cases,
    noisy_text,
)
from promptgov.robustness import _phrases as phrases
from promptgov.workspace import Workspace
from promptgov.workspace._evalset import Case, write_evalset

ROOT = Path(__file__).resolve().parent.parent
_WS = Workspace(ROOT)
TRIAGE = [c.input["text"] for c in _WS.evalset("ticket_triage").cases[:60]]
EXTRACTION = [c for c in _WS.evalset("ticket_extraction").cases
              if any(isinstance(v, str) and v in c.input["text"] for v in c.expected.values())]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
STRATEGY = {k: getattr(pg.robustness, k) for k in TRANSFORMS}  # the public per-kind strategies

# Texts with numbers, protected values and odd whitespace, beside the real Banking77 ones.
texts = st.sampled_from(TRIAGE) | st.sampled_from(
    ["I paid 25.50 GBP to Amazon on 3 March and it's still pending", "ok", "", "   ", "12 34",
     "Transfer of 1,000 EUR to Anna Müller?\nThanks!", "can't log in 😕 since 9:05"])


def normal(s: str) -> str:
    return " ".join(s.casefold().split())


def edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def recovered(kind: str, original: str, noisy: str) -> bool:
    """Is the original message still there, or recoverable from the noise?"""
    if kind in ("forwarded_chain", "quoted_reply", "signature_headers", "foreign_language",
                "prompt_injection"):
        return original in noisy  # wrappers: intact
    if kind == "emoji":
        return normal("".join(c for c in noisy if not any(c in e for e in phrases.EMOJI))) \
            == normal(original)
    if kind == "html_remnants":
        text = re.sub(r"</?(p|div|span|br|html|body)\b[^>]*>", " ", noisy)
        return normal(html.unescape(text)) == normal(original)
    if kind == "case_whitespace":
        return normal(noisy) == normal(original)
    return edit_distance(original, noisy) <= 6  # ocr_typos: at most three one- or two-char edits


@pytest.mark.parametrize("kind", list(TRANSFORMS))
@SETTINGS
@given(data=st.data(), text=texts, protect=st.sampled_from([(), ("Amazon",), ("Anna Müller",)]))
def test_transformation_keeps_the_message_and_records_itself(kind, data, text, protect):
    ctx = NoiseContext(protect=tuple(p for p in protect if p in text),
                       decoys=("card_arrival", "pin_blocked"))
    v = data.draw(STRATEGY[kind](text, ctx))
    assert v.transforms == ((kind,) if v.text != text else ())
    assert recovered(kind, text, v.text), (text, v.text)
    assert re.findall(r"\d+", v.text) == re.findall(r"\d+", text)  # numbers: untouched, none added
    assert all(p in v.text for p in ctx.protect)


def test_added_phrases_hold_no_digit():
    for name, value in vars(phrases).items():
        if name.isupper():
            items = value.items() if isinstance(value, dict) else [value]
            assert not re.search(r"\d", json.dumps(list(items), ensure_ascii=False)), name


@SETTINGS
@given(data=st.data(), text=texts)
def test_noisy_text_composes_in_registry_order(data, text):
    v = data.draw(noisy_text(text, max_transforms=3))
    order = list(TRANSFORMS)
    assert len(v.transforms) <= 3 and list(v.transforms) == sorted(v.transforms, key=order.index)
    assert re.findall(r"\d+", v.text) == re.findall(r"\d+", text)


@SETTINGS
@given(data=st.data(), case=st.sampled_from(EXTRACTION))
def test_noisy_case_keeps_expected_and_protects_expected_values(data, case):
    v = data.draw(noisy_case(case, decoys=["pin", "loan"]))
    assert v.expected == case.expected and v.meta["source"] == case.id
    assert set(v.meta["transforms"]) <= set(TRANSFORMS)
    for value in case.expected.values():
        if isinstance(value, str) and value in case.input["text"]:
            assert value in v.input["text"]


def test_unknown_kind_and_textless_case_are_clear_errors():
    with pytest.raises(ValueError, match="unknown transformation.*known: ocr_typos"):
        noisy_text("x", kinds=["ocr_typo"])
    with pytest.raises(ValueError, match="no text input"):
        noisy_case(Case(id="d", input={"facts": {"a": 1}}))


def test_a_custom_transformation_composes_with_the_built_in_ones():
    def sorry(text, rng, ctx):
        return text + rng.choice([" Sorry.", " Sorry for the bother."])

    reg = {**TRANSFORMS, "sorry": sorry}
    es = _WS.evalset("ticket_triage")
    cases = noisy_cases(es, n=20, seed=1, kinds=["sorry", "emoji"], max_transforms=2,
                        transforms=reg)
    assert {t for c in cases for t in c.meta["transforms"]} == {"sorry", "emoji"}
    assert all(c.meta["transforms"] != ["sorry", "emoji"] for c in cases)  # registry order
    v = find(noisy_text("Hi", kinds=["sorry"], transforms=reg), lambda v: True)  # the minimal
    assert v.transforms == ("sorry",) and v.text == "Hi Sorry."


# -- the noisy evalset ------------------------------------------------------------------------

def test_same_seed_same_cases_in_another_process_different_seed_differs():
    from promptgov.hashing import content_hash

    es = _WS.evalset("ticket_triage")

    def digest(seed):
        return content_hash([c.model_dump(mode="json") for c in noisy_cases(es, n=300, seed=seed)])

    code = ("from promptgov.workspace import Workspace; from promptgov.hashing import "
            "content_hash; from promptgov.robustness import noisy_cases; "
            f"es = Workspace({str(ROOT)!r}).evalset('ticket_triage'); "
            "print(content_hash([c.model_dump(mode='json') for c in "
            "noisy_cases(es, n=300, seed=7)]))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": "12345"}, check=True)
    assert other.stdout.strip() == digest(7) != digest(8)


# -- the robustness run -----------------------------------------------------------------------

@pytest.fixture
def ws(workspace_dir: Path, mlflow_template: Path) -> Workspace:
    """The workspace copy with a 40-case triage evalset and an initialised MLflow store."""
    (workspace_dir / ".promptgov").mkdir()
    shutil.copy(mlflow_template, workspace_dir / ".promptgov" / "mlflow.db")
    es = Workspace(workspace_dir).evalset("ticket_triage")
    write_evalset(workspace_dir / "evalsets" / "triage_small",
                  es.manifest.model_copy(update={"name": "triage_small", "count": 40}),
                  list(es.cases[:40]))
    return Workspace(workspace_dir)


def test_robustness_run_logs_clean_noisy_and_per_transformation_deltas(ws):
    from mlflow import MlflowClient

    r = pg.adversarial("ticket_triage@2", "triage_small", model="local/knn", workspace=ws,
                       n=80, seed=3, minimal=1, lock=True)
    es = r.noisy_evalset
    assert es.dir == ws.root / "evalsets" / "triage_small-noisy-s3" and r.written
    assert (es.manifest.derived_from, es.manifest.license, es.manifest.count) == \
        ("triage_small@1", "CC-BY-4.0", 80)
    assert "CC BY 4.0" in es.manifest.source and "Casanueva" in es.manifest.source
    assert all(c.meta["transforms"] and c.meta["source"] for c in es.cases)
    assert "evalset triage_small-noisy-s3@1" in r.locked
    assert not [p for p in pg.check(ws.root).problems if "noisy" in str(p)]

    c = MlflowClient(tracking_uri=f"sqlite:///{ws.root / '.promptgov' / 'mlflow.db'}")
    run = c.get_run(r.run_id)
    assert run.data.tags["promptgov.kind"] == "adversarial"
    assert "promptgov.prompt" not in run.data.tags  # never taken for an eval run by compare
    p, m = run.data.params, run.data.metrics
    assert (p["seed"], p["n"], p["noisy_evalset_hash"]) == ("3", "80", es.hash)
    # the params every run kind logs; "evalset" as a ref, so never taken for an eval's evidence
    assert {"promptgov_version", "evalset_version", "schema_hash", "content_hash"} <= set(p)
    assert p["evalset"] == r.evalset and "@" in p["evalset"]
    assert m["clean.accuracy"] == pytest.approx(r.deltas.loc["(all)", "clean_accuracy"])
    assert m["noisy.accuracy"] == pytest.approx(r.deltas.loc["(all)", "noisy_accuracy"])
    assert m["delta.accuracy"] == pytest.approx(m["noisy.accuracy"] - m["clean.accuracy"])
    used = {t for row in r.rows for t in row["transforms"]}
    assert len(used) >= 5
    detail = c.get_run(run.data.tags["promptgov.detail_run"])  # nested: never crowds the list
    assert detail.data.tags["mlflow.parentRunId"] == r.run_id
    assert not [k for k in m if k.count(".") > 1]
    for t in used:
        assert detail.data.metrics[f"delta.accuracy.{t}"] == pytest.approx(r.deltas.loc[t, "delta"])
    assert m["minimal_failures"] == len(r.minimal_failures)
    arts = {a.path for a in c.list_artifacts(r.run_id)}
    assert {"deltas.json", "minimal_failures.json", "variants.json"} <= arts

    again = pg.adversarial("ticket_triage@2", "triage_small", model="local/knn", workspace=ws,
                           n=80, seed=3, minimal=0)
    assert not again.written and again.noisy_evalset.hash == es.hash  # reproducible
    assert c.get_run(again.run_id).data.params["noisy_evalset_hash"] == es.hash
    assert again.metrics["noisy.accuracy"] == m["noisy.accuracy"]
    bigger = pg.adversarial("ticket_triage@2", "triage_small", model="local/knn", workspace=ws,
                            n=90, seed=3, minimal=0, track=False)
    assert bigger.written and bigger.noisy_evalset.ref == "triage_small-noisy-s3@2"


def test_minimal_failing_input_flips_a_right_answer(ws):
    df = pg.robustness.minimal_failing("ticket_triage@2", "triage_small", model="local/knn",
                                        workspace=ws, max_cases=3, seed=0)
    assert len(df) >= 1
    row = df.iloc[0]
    assert row["transforms"] and row["noisy_text"] != row["clean_text"]
    src = next(c for c in ws.evalset("triage_small").cases if c.id == row["case_id"])
    noisy = Case(id="noisy", input={"text": row["noisy_text"]}, expected=src.expected)
    from promptgov.workspace._evalset import Evalset

    two = Evalset(ws.evalset("triage_small").manifest, (src, noisy), ws.root)
    r = pg.evaluate("ticket_triage@2", two, model="local/knn", workspace=ws, track=False)
    clean, flipped = r.records
    assert clean["correct"] and not flipped["correct"]
    assert flipped["predicted"] == row["noisy_answer"] != src.expected["label"]


# -- the command ------------------------------------------------------------------------------

def test_cli_prints_deltas_and_minimal_failures(ws):
    res = CliRunner().invoke(app, ["adversarial", "ticket_triage@2", "-e", "triage_small", "-m",
                                   "local/knn", "-n", "40", "--minimal", "1", "--no-track",
                                   "--workspace", str(ws.root)])
    assert res.exit_code == 0, res.output
    assert "accuracy by transformation" in res.stdout and "minimal failing inputs" in res.stdout
    assert "is not locked: run `promptgov lock`" in res.stdout
    assert (ws.root / "evalsets" / "triage_small-noisy-s0" / "cases.jsonl").exists()


@pytest.mark.parametrize("args", [["nosuch@1"], ["ticket_triage@2", "--transforms", "typo"],
                                  ["reply_draft@1"]])
def test_cli_bad_input_is_one_line_error_and_writes_nothing(workspace_dir, args):
    before = sorted(p.name for p in (workspace_dir / "evalsets").iterdir())
    res = CliRunner().invoke(app, ["adversarial", *args, "-n", "5", "--no-track",
                                   "--workspace", str(workspace_dir)])
    assert res.exit_code == 1
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert sorted(p.name for p in (workspace_dir / "evalsets").iterdir()) == before

"""Content YAML written by the tools: literal blocks, no line width, so a one-word edit of a
prompt is a one-line diff (PyYAML's default folds at 80 columns and reflows a paragraph)."""

from __future__ import annotations

import difflib

import yaml

from promptgov.workspace import Workspace
from promptgov.workspace._evalset import Case, Manifest, write_evalset
from promptgov.workspace._yamlwrite import dump_yaml

LONG = " ".join(f"word{i}" for i in range(60))  # ~470 characters on one line


def _changed(a: str, b: str) -> list[str]:
    return [ln for ln in difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=0)
            if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]


def test_a_one_word_edit_is_a_one_line_diff():
    doc = {"description": LONG, "system": f"{LONG}\nsecond line\n", "demos": [{"x": LONG}] * 2}
    text = dump_yaml(doc)
    assert yaml.safe_load(text) == doc and "*" not in text  # no aliases for the repeated demo
    assert "system: |\n" in text and f"description: {LONG}\n" in text  # literal, unfolded
    edited = dump_yaml({**doc, "description": LONG.replace("word30", "w30"),
                        "system": doc["system"].replace("word7 ", "w7 ")})
    assert len(_changed(text, edited)) == 4  # one line out, one in, for each field


def test_an_evalset_manifest_keeps_its_source_on_one_line(tmp_path):
    src = "Dataset " + LONG
    write_evalset(tmp_path / "evalsets" / "e", Manifest(
        name="e", version=1, description="d", source=src, license="CC0-1.0", split="test",
        count=1), [Case(id="c1", input={"text": "hi"}, expected={"label": "a"})])
    text = (tmp_path / "evalsets" / "e" / "manifest.yaml").read_text(encoding="utf-8")
    assert f"source: {src}\n" in text
    (tmp_path / "prompts").mkdir()
    assert Workspace(tmp_path).evalset("e").manifest.source == src

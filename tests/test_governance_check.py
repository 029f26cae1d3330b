"""`promptgov check`, `lock` and `ls` on a private copy of the example workspace.

Principle 2: locked means immutable. Editing a locked version is drift: `check` fails naming the
file, the version, the old and new hash and the fix; layout-only edits are not drift; bad input
gives a one-line error and nothing is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from promptgov.cli import app
from promptgov.errors import PromptgovError
from promptgov.hashing import short
from promptgov.workspace._prompt import PromptVersion

PROMPTGOV = str(Path(sys.executable).with_name("promptgov"))
runner = CliRunner()

TRIAGE_V1 = "prompts/ticket_triage/v1.yaml"
SUMMARY_OK = ("promptgov check: ok: 5 prompt versions, 2 schemas, 4 evalsets checked against "
              "governance/lock.json")


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def errors(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.startswith("error: ")]

    @property
    def warnings(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.startswith("warning: ")]


def cli(ws: Path, *args: str) -> Run:
    """Run a command in-process; a PromptgovError becomes `error:` lines and exit 1, as
    `promptgov.cli.main` does at the edge."""
    r = runner.invoke(app, [*args, "-w", str(ws)])
    err = r.stderr
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        if not isinstance(r.exception, PromptgovError):
            raise r.exception
        err += "".join(f"error: {ln}\n" for ln in str(r.exception).splitlines())
    return Run(r.exit_code, r.stdout, err)


def snapshot(ws: Path) -> dict[str, str]:
    """Every file and folder of the workspace's content with the hash of its bytes (not the
    untracked local state under .promptgov/, where `check` keeps what it derived)."""
    return {str(p.relative_to(ws)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file()
            else "dir" for p in sorted(ws.rglob("*"))
            if p.relative_to(ws).parts[0] != ".promptgov"}


def lock_data(ws: Path) -> dict:
    return json.loads((ws / "governance" / "lock.json").read_text(encoding="utf-8"))


def edit(path: Path, old: str, new: str, *, last: bool = False) -> str:
    """Replace one occurrence of ``old``; returns the original text."""
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    i = text.rindex(old) if last else text.index(old)
    path.write_text(text[:i] + new + text[i + len(old):], encoding="utf-8")
    return text


@pytest.fixture
def writes_bytecode(monkeypatch):
    """Let the interpreter write .pyc files (the test environment may forbid it), so a test
    can assert that loading schemas/*.py leaves no __pycache__ in the workspace."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)


# -- the unchanged workspace ----------------------------------------------------------------

@pytest.mark.parametrize("full", [False, True])
def test_check_passes(workspace_dir, writes_bytecode, full):
    before = snapshot(workspace_dir)
    r = cli(workspace_dir, "check", *(["--full"] if full else []))
    assert r.code == 0, r.err
    assert r.out.splitlines() == [SUMMARY_OK]
    assert r.err == ""
    assert snapshot(workspace_dir) == before  # check writes nothing (not even __pycache__)


def test_lock_on_locked_workspace_is_a_no_op(workspace_dir):
    before = lock_data(workspace_dir)
    r = cli(workspace_dir, "lock")
    assert r.code == 0, r.err
    assert "locked 0 new version(s); governance/lock.json is up to date" in r.out
    assert lock_data(workspace_dir) == before


def test_ls_lists_all_versions_locked(workspace_dir):
    r = cli(workspace_dir, "ls")
    assert r.code == 0, r.err
    rows = {ln.split("│")[1].strip(): ln for ln in r.out.splitlines() if ln.startswith("│")}
    assert sorted(rows) == sorted(f"{f.parent.name}@{f.stem[1:]}"
                                  for f in workspace_dir.glob("prompts/*/v*.yaml"))
    lock = lock_data(workspace_dir)["prompts"]
    for ref, row in rows.items():
        assert row.split("│")[-2].strip() == "locked"
        assert short(lock[ref]["content_hash"]) in row
    assert "2 schemas: ticket_extraction@1, ticket_triage@1" in r.out
    assert "ticket_triage@1 (770 cases)" in r.out


def test_ls_shows_drift(workspace_dir):
    edit(workspace_dir / TRIAGE_V1, "Customer message:", "Customer Message:", last=True)
    (workspace_dir / "prompts/ticket_triage/v3.yaml").write_text(
        (workspace_dir / TRIAGE_V1).read_text().replace("version: 1", "version: 3"))
    states = {ln.split("│")[1].strip(): ln.split("│")[-2].strip()
              for ln in cli(workspace_dir, "ls").out.splitlines() if ln.startswith("│")}
    assert states["ticket_triage@1"] == "drifted"
    assert states["ticket_triage@2"] == "locked"
    assert states["ticket_triage@3"] == "unlocked"


# -- drift ----------------------------------------------------------------------------------

def test_one_character_edit_is_drift(workspace_dir):
    path = workspace_dir / TRIAGE_V1
    locked = lock_data(workspace_dir)["prompts"]["ticket_triage@1"]["content_hash"]
    original = edit(path, "Customer message:", "Customer Message:", last=True)  # the `user:` text
    now = PromptVersion.from_file(path).content_hash
    assert now != locked

    r = cli(workspace_dir, "check")
    assert r.code == 1
    assert len(r.errors) == 1, r.err
    err = r.errors[0]
    assert err.startswith(f"error: {TRIAGE_V1}: ticket_triage@1 changed since it was locked")
    assert f"locked {short(locked)}, now {short(now)}" in err
    assert "bump the version" in err
    # v2 exists: the fix names the next free version, not v2
    assert "prompts/ticket_triage/v3.yaml" in err and "`version: 3`" in err
    assert r.out.startswith("promptgov check: FAILED (1 problem)")

    path.write_text(original, encoding="utf-8")  # revert
    r = cli(workspace_dir, "check")
    assert r.code == 0 and r.out.splitlines() == [SUMMARY_OK]


def test_drift_is_caught_by_full_check_too(workspace_dir):
    edit(workspace_dir / "prompts/reply_draft/v1.yaml", "At most 600", "At most 700")
    r = cli(workspace_dir, "check", "--full")
    assert r.code == 1
    assert any("prompts/reply_draft/v1.yaml: reply_draft@1 changed since it was locked" in e
               and "v2.yaml" in e for e in r.errors)


def test_reorder_keys_and_reindent_is_not_drift(workspace_dir, writes_bytecode):
    path = workspace_dir / TRIAGE_V1
    original = path.read_bytes()
    data = yaml.safe_load(original)
    reordered = dict(reversed(list(data.items())))  # user: first, name: last
    path.write_text(yaml.safe_dump(reordered, sort_keys=False, indent=4, width=4096,
                                   allow_unicode=True, default_flow_style=False),
                    encoding="utf-8")
    assert path.read_bytes() != original
    assert path.read_text(encoding="utf-8").startswith("user: ")

    before = snapshot(workspace_dir)
    for args in (["check"], ["check", "--full"]):
        r = cli(workspace_dir, *args)
        assert r.code == 0, r.err
        assert r.out.splitlines() == [SUMMARY_OK] and r.err == ""
    assert snapshot(workspace_dir) == before
    h = lock_data(workspace_dir)["prompts"]["ticket_triage@1"]["content_hash"]
    assert PromptVersion.from_file(path).content_hash == h


def test_flow_style_rewrite_is_not_drift(workspace_dir):
    path = workspace_dir / "prompts/ticket_extraction/v1.yaml"
    data = yaml.safe_load(path.read_bytes())
    path.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=True, width=60,
                                   allow_unicode=True), encoding="utf-8")
    r = cli(workspace_dir, "check")
    assert r.code == 0, r.err


def test_reordering_demo_output_keys_is_drift(workspace_dir):
    """Same content hash (keys are sorted), but every few-shot answer sent to the model changes:
    the render fingerprint catches it."""
    path = workspace_dir / TRIAGE_V1
    data = yaml.safe_load(path.read_bytes())
    for d in data["demos"]:
        d["output"] = dict(reversed(list(d["output"].items())))
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    r = cli(workspace_dir, "check")
    assert r.code == 1
    assert len(r.errors) == 1
    assert "ticket_triage@1 renders different messages than when it was locked" in r.errors[0]


def test_deleted_locked_version(workspace_dir):
    (workspace_dir / "prompts/ticket_triage/v1.yaml").unlink()
    r = cli(workspace_dir, "check")
    assert r.code == 1
    assert r.errors == ["error: prompts/ticket_triage/v1.yaml: locked version ticket_triage@1 "
                        "was deleted (fix: restore it from git: locked versions are immutable)"]


def test_evalset_edit_is_drift(workspace_dir):
    path = workspace_dir / "evalsets/reply_draft/cases.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    case = json.loads(lines[0])
    case["input"]["facts"]["customer_name"] += "x"
    lines[0] = json.dumps(case) + "\n"
    path.write_text("".join(lines), encoding="utf-8")
    r = cli(workspace_dir, "check")
    assert r.code == 1
    assert any(e.startswith("error: evalsets/reply_draft: evalset reply_draft@1 changed since it "
                            "was locked") and "bump `version:`" in e for e in r.errors), r.err


def test_lock_refuses_drift(workspace_dir):
    edit(workspace_dir / TRIAGE_V1, "Customer message:", "Customer Message:", last=True)
    before = snapshot(workspace_dir)
    r = cli(workspace_dir, "lock")
    assert r.code == 1
    assert len(r.errors) == 1 and "ticket_triage@1 changed since it was locked" in r.errors[0]
    assert snapshot(workspace_dir) == before  # lock.json untouched


# -- new versions ---------------------------------------------------------------------------

def test_new_version_must_be_locked(workspace_dir):
    v3 = workspace_dir / "prompts/ticket_triage/v3.yaml"
    v3.write_text((workspace_dir / "prompts/ticket_triage/v2.yaml").read_text(encoding="utf-8")
                  .replace("version: 2", "version: 3")
                  .replace("Customer message:", "Customer e-mail:"), encoding="utf-8")
    r = cli(workspace_dir, "check")
    assert r.code == 1
    assert r.errors == ["error: prompts/ticket_triage/v3.yaml: prompt version ticket_triage@3 is "
                        "not locked (fix: run `promptgov lock`)"]

    r = cli(workspace_dir, "lock")
    assert r.code == 0, r.err
    assert r.out.strip() == "locked 1 new version(s): prompt ticket_triage@3"
    entry = lock_data(workspace_dir)["prompts"]["ticket_triage@3"]
    pv = PromptVersion.from_file(v3)
    assert entry["content_hash"] == pv.content_hash
    assert entry["render_fingerprint"] == pv.render_fingerprint
    assert entry["file"] == "prompts/ticket_triage/v3.yaml"

    r = cli(workspace_dir, "check")
    assert r.code == 0, r.err
    assert r.out.startswith("promptgov check: ok: 6 prompt versions")


def test_unknown_schema_reference(workspace_dir, writes_bytecode):
    (workspace_dir / "prompts/ticket_triage/v3.yaml").write_text(
        (workspace_dir / TRIAGE_V1).read_text(encoding="utf-8")
        .replace("version: 1", "version: 3")
        .replace("response_schema: ticket_triage@1", "response_schema: nope@1"),
        encoding="utf-8")
    before = snapshot(workspace_dir)
    r = cli(workspace_dir, "check")
    assert r.code == 1
    assert ("error: prompts/ticket_triage/v3.yaml: ticket_triage@3 references unknown schema "
            "'nope@1' (fix: known schemas: ticket_extraction@1, ticket_triage@1; a schema is a "
            'pydantic model in schemas/*.py declaring schema_id: ClassVar[str] = "nope@1")'
            ) in r.errors
    r = cli(workspace_dir, "lock")
    assert r.code == 1
    assert len(r.errors) == 1 and "unknown schema 'nope@1'" in r.errors[0]
    assert snapshot(workspace_dir) == before


# -- schemas --------------------------------------------------------------------------------

def test_breaking_schema_change_under_same_version(workspace_dir):
    path = workspace_dir / "schemas/ticket_extraction.py"
    edit(path, '    shopping_category: str | None = Field(description="Category of an expense '
               'mentioned.")\n', "")
    before = snapshot(workspace_dir)
    r = cli(workspace_dir, "check")
    assert r.code == 1
    assert len(r.errors) == 1, r.err
    err = r.errors[0]
    assert err.startswith("error: schemas/ticket_extraction.py: schema ticket_extraction@1 changed "
                          "in a breaking way under the same version")
    assert "BREAKING: shopping_category: field removed" in err
    assert "ticket_extraction@2" in err
    r = cli(workspace_dir, "lock")
    assert r.code == 1 and "BREAKING" in r.err
    assert snapshot(workspace_dir) == before


def test_enum_value_removed_from_list_is_breaking(workspace_dir):
    edit(workspace_dir / "schemas/ticket_extraction.py", '    "cheque",\n', "")
    r = cli(workspace_dir, "check")
    assert r.code == 1
    assert "BREAKING: intents[]: enum values removed: ['cheque']" in r.err


def test_additive_schema_change_warns(workspace_dir):
    path = workspace_dir / "schemas/ticket_extraction.py"
    path.write_text(path.read_text(encoding="utf-8") + '    iban: str | None = Field(None, '
                    'description="An IBAN mentioned.")\n', encoding="utf-8")
    r = cli(workspace_dir, "check")
    assert r.code == 0, r.err
    assert r.errors == []
    assert len(r.warnings) == 1
    assert "schema ticket_extraction@1 changed additively (additive: iban: field added)" \
        in r.warnings[0]
    assert r.out.splitlines() == [SUMMARY_OK]

    old = lock_data(workspace_dir)["schemas"]["ticket_extraction@1"]["hash"]
    r = cli(workspace_dir, "lock")
    assert r.code == 0, r.err
    new = lock_data(workspace_dir)["schemas"]["ticket_extraction@1"]
    assert new["hash"] != old and "iban" in new["json_schema"]["properties"]
    assert lock_data(workspace_dir)["prompts"]["ticket_extraction@1"]["schema_hash"] == new["hash"]
    r = cli(workspace_dir, "check")
    assert r.code == 0 and r.err == ""


# -- bad input: one line naming the file (and line), non-zero exit, nothing written ----------

# Each breakage returns (the text the error line holds, how many error lines are expected).

def _malformed_prompt(ws: Path) -> tuple[str, int]:
    edit(ws / TRIAGE_V1, "kind: classification", "kind: [classification")
    return f"{TRIAGE_V1}:5: malformed YAML", 1


def _malformed_new_prompt(ws: Path) -> tuple[str, int]:
    (ws / "prompts/reply_draft/v2.yaml").write_text("name: reply_draft\nversion: 2\n"
                                                    "system: hello: world\n", encoding="utf-8")
    return "prompts/reply_draft/v2.yaml:3: malformed YAML: mapping values are not allowed", 1


def _bad_jsonl_line(ws: Path) -> tuple[str, int]:
    path = ws / "evalsets/ticket_triage/cases.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[99] = lines[99][:20] + "\n"
    path.write_text("".join(lines), encoding="utf-8")
    return "evalsets/ticket_triage/cases.jsonl:100: invalid JSON", 1


def _unknown_schema(ws: Path) -> tuple[str, dict[str, int]]:
    (ws / "prompts/ticket_extraction/v9.yaml").write_text(
        (ws / "prompts/ticket_extraction/v1.yaml").read_text(encoding="utf-8")
        .replace("version: 1", "version: 9")
        .replace("response_schema: ticket_extraction@1", "response_schema: ticket_extraction@7"),
        encoding="utf-8")
    # `check` also says that v9 is not locked; `lock` refuses for the unknown schema only
    return ("prompts/ticket_extraction/v9.yaml: ticket_extraction@9 references unknown schema "
            "'ticket_extraction@7'"), {"check": 2, "lock": 1}


def _broken_schema_file(ws: Path) -> tuple[str, int]:
    path = ws / "schemas/ticket_triage.py"
    path.write_text(path.read_text(encoding="utf-8") + "\nclass Oops(BaseModel)\n",
                    encoding="utf-8")
    return "schemas/ticket_triage.py: cannot import: SyntaxError", 1


def _manifest_count(ws: Path) -> tuple[str, int]:
    edit(ws / "evalsets/reply_draft/manifest.yaml", "count: 30", "count: 29")
    return "evalsets/reply_draft/manifest.yaml: count is 29 but cases.jsonl holds 30 cases", 1


@pytest.mark.parametrize("breakage", [_malformed_prompt, _malformed_new_prompt, _bad_jsonl_line,
                                      _unknown_schema, _broken_schema_file, _manifest_count])
def test_bad_input_one_line_error_and_nothing_written(workspace_dir, writes_bytecode, breakage):
    expected, n = breakage(workspace_dir)
    before = snapshot(workspace_dir)
    for cmd in (["check"], ["check", "--full"], ["lock"]):
        r = cli(workspace_dir, *cmd)
        assert r.code == 1, (cmd, r)
        # one problem, on one line; nothing cascades from it (the prompts whose evalset or
        # schema failed to load are not reported again)
        assert len(r.errors) == (n if isinstance(n, int) else n[cmd[0]]), (cmd, r.err)
        assert sum(expected in e for e in r.errors) == 1, (cmd, r.errors)
        assert "Traceback" not in r.err
        assert snapshot(workspace_dir) == before, cmd


def test_invalid_lock_file(workspace_dir):
    path = workspace_dir / "governance/lock.json"
    path.write_text(path.read_text(encoding="utf-8")[:200], encoding="utf-8")
    before = snapshot(workspace_dir)
    r = cli(workspace_dir, "check")
    assert r.code == 1
    assert len(r.errors) == 1 and "governance/lock.json:" in r.errors[0]
    assert "invalid JSON" in r.errors[0]
    r = cli(workspace_dir, "lock")
    assert r.code == 1
    assert snapshot(workspace_dir) == before


def test_not_a_workspace(tmp_path):
    r = cli(tmp_path, "check")
    assert r.code == 1 and "not a promptgov workspace" in r.errors[0]


# -- render fingerprint ---------------------------------------------------------------------

def _tamper_fingerprint(ws: Path, *, render_version: int | None) -> str:
    data = lock_data(ws)
    entry = data["prompts"]["ticket_triage@1"]
    old = entry["render_fingerprint"]
    entry["render_fingerprint"] = "sha256:" + "0" * 64
    if render_version is not None:
        data["tooling"]["render"] = render_version
    (ws / "governance/lock.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    return old


def test_render_change_after_tooling_change(workspace_dir):
    """The lock was written by another renderer: the fast path is off, every prompt is
    re-rendered and a different rendering is reported like an edit."""
    real = _tamper_fingerprint(workspace_dir, render_version=0)
    r = cli(workspace_dir, "check")
    assert r.code == 1
    assert len(r.errors) == 1, r.err
    err = r.errors[0]
    assert err.startswith(f"error: {TRIAGE_V1}: ticket_triage@1 renders different messages than "
                          f"when it was locked (locked 000000000000, now {short(real)})")
    assert "dependency upgrade" in err


def test_check_trusts_no_lock_value(workspace_dir):
    """A lock entry is what the file is compared with, never a sign that the file is unchanged:
    a forged fingerprint is caught by a plain `check`, with warm local state too."""
    assert cli(workspace_dir, "check").code == 0  # warms .promptgov/derived.json
    _tamper_fingerprint(workspace_dir, render_version=None)
    r = cli(workspace_dir, "check")
    assert r.code == 1
    assert len(r.errors) == 1 and "ticket_triage@1 renders different messages" in r.errors[0]


def test_fresh_clone_renders_only_what_the_lock_does_not_determine(workspace_dir, monkeypatch):
    """On a fresh clone a file whose ordered content hashes as locked takes the locked render
    fingerprint (rendering is a pure function of it and the tools); any other file renders."""
    from promptgov.workspace import _prompt

    rendered = []
    real = _prompt.PromptVersion.check_templates
    monkeypatch.setattr(_prompt.PromptVersion, "check_templates",
                        lambda self, path: rendered.append(self.ref) or real(self, path))
    assert cli(workspace_dir, "check").code == 0 and rendered == []
    shutil.rmtree(workspace_dir / ".promptgov")
    path = workspace_dir / TRIAGE_V1
    data = yaml.safe_load(path.read_bytes())
    data["demos"][0]["output"] = dict(reversed(list(data["demos"][0]["output"].items())))
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    r = cli(workspace_dir, "check")
    assert rendered == ["ticket_triage@1"]  # same content hash, other order: rendered, caught
    assert r.code == 1 and "renders different messages" in r.errors[0]
    shutil.rmtree(workspace_dir / ".promptgov")
    assert cli(workspace_dir, "check", "--full").code == 1
    every = sorted(f"{p.parent.name}@{p.stem[1:]}"
                   for p in workspace_dir.glob("prompts/*/v*.yaml"))
    assert sorted(rendered[1:]) == every  # --full renders everything


def test_local_state_is_used_and_full_ignores_it(workspace_dir):
    assert cli(workspace_dir, "check").code == 0
    state = workspace_dir / ".promptgov/derived.json"
    data = json.loads(state.read_text(encoding="utf-8"))
    sha = "sha256:" + hashlib.sha256((workspace_dir / TRIAGE_V1).read_bytes() + b"\0").hexdigest()
    data["prompts"][sha]["content_hash"] = "sha256:" + "1" * 64
    state.write_text(json.dumps(data), encoding="utf-8")
    r = cli(workspace_dir, "check")  # the (poisoned) local shortcut is what check used
    assert r.code == 1 and "ticket_triage@1 changed since it was locked" in r.errors[0]
    r = cli(workspace_dir, "check", "--full")  # --full derives everything from the files
    assert r.code == 0, r.err
    state.write_text("{not json", encoding="utf-8")  # damaged local state: rebuilt, no error
    assert cli(workspace_dir, "check").code == 0
    assert json.loads(state.read_text(encoding="utf-8"))["prompts"]


# -- the real console script ----------------------------------------------------------------

def test_console_script_errors_are_one_line(workspace_dir):
    edit(workspace_dir / TRIAGE_V1, "Customer message:", "Customer Message:", last=True)
    before = snapshot(workspace_dir)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for cmd in ("check", "lock"):
        p = subprocess.run([PROMPTGOV, cmd, "-w", str(workspace_dir)], capture_output=True,
                           text=True, env=env, timeout=60)
        assert p.returncode == 1, p
        lines = p.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {TRIAGE_V1}: ticket_triage@1 "
                                                       "changed since it was locked"), p.stderr
    assert snapshot(workspace_dir) == before


@pytest.mark.parametrize("cmd", [["ls"], ["status", "--no-runs"]])
def test_a_prompt_that_does_not_load_is_shown_not_skipped(workspace_dir, cmd):
    (workspace_dir / "prompts/ticket_triage/v9.yaml").write_text("x: [\n", encoding="utf-8")
    r = cli(workspace_dir, *cmd)
    assert r.code == 1
    assert r.errors == ["error: prompts/ticket_triage/v9.yaml:2: malformed YAML: did not find "
                        "expected node content (fix: fix the YAML syntax)"]

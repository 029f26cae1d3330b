"""Attacks through workspace content, as a careless or hostile pull request would make them.

Each test runs the real command on a private copy of the example workspace and asserts the
answer the governance promise needs: a one-line error naming the file, exit 1, and nothing run,
written or approved.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import promptgov as pg
import promptgov.cli  # noqa: F401  (registers the commands)
from promptgov.cli._app import app
from promptgov.errors import GovernanceError, PromptgovError

PROMPTGOV = str(Path(sys.executable).with_name("promptgov"))
V2 = "prompts/ticket_triage/v2.yaml"
V3 = "prompts/ticket_triage/v3.yaml"
PAYLOAD = "{{ cycler.__init__.__globals__.os.popen('touch pwned').read() }}"


def run(ws: Path, *args: str, max_bytes: int | None = None) -> subprocess.CompletedProcess:
    """The console script, as the pre-commit hook and CI run it; ``max_bytes`` caps its address
    space (a command that tries to expand a bomb then dies instead of passing)."""
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}

    def cap() -> None:
        if max_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))

    return subprocess.run([PROMPTGOV, *args, "-w", str(ws)], capture_output=True, text=True,
                          cwd=ws, env=env, timeout=120, preexec_fn=cap)


def content(ws: Path) -> dict[str, str]:
    """Every content file with its bytes' hash (not .promptgov/, the untracked local state)."""
    return {str(p.relative_to(ws)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(ws.rglob("*")) if p.is_file()
            and p.relative_to(ws).parts[0] != ".promptgov"}


def one_error(p: subprocess.CompletedProcess, file: str) -> str:
    """The single `error:` line of a failed command, which names ``file`` (relative to the
    workspace, or absolute where the command was given the workspace's absolute path)."""
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 1, p
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    where = lines[0].removeprefix("error: ")
    assert where.startswith(file) or f"/ws/{file.rstrip(': ')}" in where.split(" ", 1)[0], p.stderr
    return lines[0]


def new_version(ws: Path, system_prefix: str = "", user: str | None = None,
                extra: str = "") -> Path:
    text = (ws / V2).read_text(encoding="utf-8").replace("version: 2", "version: 3")
    if system_prefix:
        text = text.replace("system: |-\n", f"system: |-\n  {system_prefix}\n", 1)
        assert system_prefix in text
    if user is not None:
        head, _, _ = text.rpartition("\nuser:")
        text = head + f"\nuser: {json.dumps(user)}\n"
    (ws / V3).write_text(text + extra, encoding="utf-8")
    return ws / V3


# -- 1. templates execute no code --------------------------------------------------------------

@pytest.mark.parametrize("where", ["system", "user"])
def test_template_payload_runs_nowhere(workspace_dir, where):
    if where == "system":
        new_version(workspace_dir, system_prefix=PAYLOAD)
    else:
        new_version(workspace_dir, user=PAYLOAD + " {{ text }}")
    before = content(workspace_dir)
    for cmd in (["check"], ["check", "--full"], ["lock"], ["eval", "ticket_triage@3", "--no-track",
                                                             "--no-cache"]):
        p = run(workspace_dir, *cmd)
        err = one_error(p, V3)
        assert "refused by the template sandbox" in err and "__init__" in err, err
    p = run(workspace_dir, "ls")  # ls lists what loads; the payload must not run either
    assert not (workspace_dir / "pwned").exists()
    assert content(workspace_dir) == before  # no trace on disk, lock untouched


@pytest.mark.parametrize("template, problem", [
    ("{{ 9 ** 9 ** 9 }}", "the ** operator is not allowed"),
    ("{{ 'x' * 1000000000 }}", "would build 1,000,000,000 items"),
    ("{{ labels.__class__.__mro__ }}", "access to attribute '__class__'"),
    ("{{ labels.clear() }}", "clear"),
])
def test_sandbox_refuses_resource_and_escape_tricks(workspace_dir, template, problem):
    new_version(workspace_dir, system_prefix=template)
    t0 = time.monotonic()
    p = run(workspace_dir, "check")
    assert time.monotonic() - t0 < 30
    err = one_error(p, V3)
    assert problem in err, err


# -- 2. no verdict on a value a commit can forge -------------------------------------------------

@pytest.mark.parametrize("state", ["warm", "fresh clone"])
def test_forged_file_sha_in_the_lock_is_not_trusted(workspace_dir, state):
    if state == "warm":
        assert run(workspace_dir, "check").returncode == 0  # local state, as on a laptop
    path = workspace_dir / V2
    text = path.read_text(encoding="utf-8").replace(
        "You triage customer messages", "You triage customer messages; always say confidence 1",
        1)
    path.write_text(text, encoding="utf-8")
    lock_path = workspace_dir / "governance/lock.json"
    lock = json.loads(lock_path.read_text(encoding="utf-8"))
    lock["prompts"]["ticket_triage@2"]["file_sha"] = (
        "sha256:" + hashlib.sha256(text.encode() + b"\0").hexdigest())
    lock_path.write_text(json.dumps(lock, indent=2), encoding="utf-8")
    err = one_error(run(workspace_dir, "check"), V2)
    assert "ticket_triage@2 changed since it was locked" in err


# -- 3. the policy is governed ---------------------------------------------------------------------

def test_lowered_gate_fails_check_and_approves_nothing(workspace_dir):
    policy = workspace_dir / "governance/policy.toml"
    text = policy.read_text(encoding="utf-8")
    assert "\n[gates.prompt.reply_draft]" not in text
    policy.write_text(text + "\n[gates.prompt.reply_draft]\nmin_accuracy = 0.05\n",
                      encoding="utf-8")
    err = one_error(run(workspace_dir, "check"), "governance/policy.toml")
    assert "the policy changed since it was locked" in err
    assert "weakens 1 gate: reply_draft: min_accuracy 0.95 → 0.05" in err
    with pytest.raises(GovernanceError, match="differs from the locked policy"):
        pg.approve("reply_draft@1", "0" * 32, by="mallory", workspace=workspace_dir)
    assert not (workspace_dir / "governance/approvals").exists()
    # locking it is the way through, and the lock's diff then shows the change for review
    assert run(workspace_dir, "lock").returncode == 0
    lock = json.loads((workspace_dir / "governance/lock.json").read_text(encoding="utf-8"))
    assert lock["policy"]["content"]["gates"]["prompt"]["reply_draft"] == {"min_accuracy": 0.05}
    assert run(workspace_dir, "check").returncode == 0


@pytest.mark.parametrize("old, new, message", [
    ("auto = 0.85", 'auto = "high"', "[routing] auto = 'high' is not a number >= 0"),
    ("max_retries = 4 ", 'max_retries = "4" ', "[retry] max_retries = '4' is not a whole number"),
])
def test_policy_values_are_type_checked_with_their_line(workspace_dir, old, new, message):
    policy = workspace_dir / "governance/policy.toml"
    text = policy.read_text(encoding="utf-8")
    line = text[:text.index(old)].count("\n") + 1
    policy.write_text(text.replace(old, new), encoding="utf-8")
    for cmd in (["check"], ["eval", "reply_draft@1", "--no-track"]):
        err = one_error(run(workspace_dir, *cmd), f"governance/policy.toml:{line}: ")
        assert message in err, err


# -- 4. loaders hold on hostile input ------------------------------------------------------------

def _bomb(key: str, indent: str) -> str:
    lines = [f'{indent}a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"{indent}a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 12)]
    return "\n".join(lines) + f"\n{indent}{key}: *a11\n"


@pytest.mark.parametrize("where", ["probe", "demo"])
def test_yaml_alias_bomb_is_refused_in_under_a_second(workspace_dir, where):
    if where == "probe":
        new_version(workspace_dir, extra="probe:\n" + _bomb("text", "  "))
    else:
        path = new_version(workspace_dir)
        text = path.read_text(encoding="utf-8")
        text = text.replace("demos:\n", "demos:\n- input:\n" + _bomb("text", "    ")
                            + "  output: {label: card_arrival, confidence: 1.0}\n", 1)
        path.write_text(text, encoding="utf-8")
    t0 = time.monotonic()
    p = run(workspace_dir, "check", max_bytes=2 << 30)  # the bomb expands to 31 G items
    assert time.monotonic() - t0 < 30  # a loaded CI box; the refusal itself takes ms
    err = one_error(p, V3 + ":")
    assert "YAML aliases (`*name`) are not allowed" in err


def test_invalid_utf8_in_cases_names_the_line(workspace_dir):
    path = workspace_dir / "evalsets/reply_draft/cases.jsonl"
    n = len(path.read_bytes().splitlines()) + 1
    with path.open("ab") as f:
        f.write(b'{"id": "x", "input": {"text": "caf\xe9"}, "expected": "y"}\n')
    err = one_error(run(workspace_dir, "check"), f"evalsets/reply_draft/cases.jsonl:{n}: ")
    assert "not UTF-8 text" in err


@pytest.mark.parametrize("lock", ["[]", '{"prompts": []}', '{"prompts": {"a@1": {"file": 1}}}',
                                  b'{"prompts": "\xff"}'])
def test_wrong_shaped_lock_is_one_line(workspace_dir, lock):
    path = workspace_dir / "governance/lock.json"
    path.write_bytes(lock if isinstance(lock, bytes) else lock.encode())
    for cmd in ("check", "lock", "status"):
        err = one_error(run(workspace_dir, cmd), "governance/lock.json")
        assert "git checkout governance/lock.json" in err
    assert path.read_bytes() == (lock if isinstance(lock, bytes) else lock.encode())


@pytest.mark.parametrize("kind", ["approvals", "releases"])
def test_broken_approval_or_release_file_is_one_line(workspace_dir, kind):
    d = workspace_dir / "governance" / kind
    d.mkdir(parents=True, exist_ok=True)
    (d / "ticket_triage@2.toml" if kind == "approvals" else d / "support.toml").write_bytes(
        b'name = "caf\xe9"\n')
    if kind == "approvals":
        (workspace_dir / "governance/releases").mkdir(parents=True)
        (workspace_dir / "governance/releases/support.toml").write_text(
            'name = "support"\nversion = 1\nprompts = ["ticket_triage@2"]\n', encoding="utf-8")
    p = run(workspace_dir, "check")
    assert p.returncode == 1
    assert any(ln.startswith(f"error: governance/{kind}/") and "not UTF-8 text" in ln
               for ln in p.stderr.splitlines()), p.stderr
    assert "Traceback" not in p.stderr


def test_corrupt_mlflow_store_is_one_line_and_overwritten_never(workspace_dir):
    store = workspace_dir / ".promptgov/mlflow.db"
    store.parent.mkdir()
    garbage = os.urandom(4096)
    store.write_bytes(garbage)
    for cmd in (["status"], ["eval", "reply_draft@1"]):
        err = one_error(run(workspace_dir, *cmd), ".promptgov/mlflow.db")
        assert "is not an SQLite database" in err and "mv .promptgov/mlflow.db" in err
    assert store.read_bytes() == garbage


def test_in_process_api_raises_the_same_one_line_errors(workspace_dir):
    new_version(workspace_dir, system_prefix=PAYLOAD)
    r = CliRunner().invoke(app, ["check", "-w", str(workspace_dir)])
    assert r.exit_code == 1
    with pytest.raises(PromptgovError, match="refused by the template sandbox"):
        pg.Workspace(workspace_dir).prompt("ticket_triage@3")
    assert not (workspace_dir / "pwned").exists()


def test_corrupt_response_cache_is_one_line_and_overwritten_never(workspace_dir):
    cache = workspace_dir / ".promptgov/cache.sqlite"
    cache.parent.mkdir()
    garbage = os.urandom(4096)
    cache.write_bytes(garbage)
    err = one_error(run(workspace_dir, "eval", "reply_draft@1", "--no-track"),
                    ".promptgov/cache.sqlite")
    assert "not a usable SQLite database" in err and "--no-cache" in err
    assert cache.read_bytes() == garbage
    assert run(workspace_dir, "eval", "reply_draft@1", "--no-track", "--no-cache").returncode == 0

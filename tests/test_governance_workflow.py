"""The governance workflow end to end: policy gates, `promptgov approve` / `revoke` / `status`,
release manifests checked by `promptgov check`, MLflow prompt-registry aliases, and the
regression gate `promptgov gate`.

Every run uses the offline baseline `local/knn` (deterministic, free): ticket_triage@2 scores
accuracy 0.806 / auto precision 0.969 and passes the example policy; ticket_triage@1 (0.691 /
0.913) fails it. The two evaluations are made once per module; each test works on a copy.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import promptgov as pg
import promptgov.cli  # noqa: F401  (registers the commands on the app)
from conftest import copy_workspace
from promptgov.cli._app import app
from promptgov.errors import GateFailed, GovernanceError, WorkspaceError
from promptgov.workspace._policy import Gates, load_policy

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> tuple[Path, dict[int, str]]:
    """A workspace copy with ticket_triage@1 and @2 evaluated by local/knn (runs in MLflow)."""
    root = copy_workspace(tmp_path_factory.mktemp("gov") / "ws")
    shutil.rmtree(root / "governance" / "approvals", ignore_errors=True)
    shutil.rmtree(root / "governance" / "releases", ignore_errors=True)
    w = pg.Workspace(root)
    runs = {v: pg.evaluate(f"ticket_triage@{v}", model="local/knn", workspace=w).run_id
            for v in (1, 2)}
    return root, runs


@pytest.fixture
def ws(evaluated, tmp_path) -> tuple[Path, dict[int, str]]:
    src, runs = evaluated
    root = tmp_path / "ws"
    shutil.copytree(src, root)
    return root, runs


def cli(root: Path, *args: str):
    return runner.invoke(app, [*args, "--workspace", str(root)])


def mlflow(root: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{root / '.promptgov' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def registry_version(root: Path, run_id: str) -> int:
    return int(mlflow(root).get_run(run_id).data.tags["promptgov.registry_version"])


def bump(root: Path, edit=lambda doc: doc) -> str:
    """Save ticket_triage@2 with its template edited as ticket_triage@3; lock; evaluate."""
    doc = yaml.safe_load((root / "prompts/ticket_triage/v2.yaml").read_text(encoding="utf-8"))
    doc["version"] = 3
    doc["user"] = doc["user"].replace("Customer message:", "Customer Message:")
    (root / "prompts/ticket_triage/v3.yaml").write_text(
        yaml.safe_dump(edit(doc), sort_keys=False, allow_unicode=True), encoding="utf-8")
    pg.lock(root)
    return pg.evaluate("ticket_triage@3", model="local/knn",
                       workspace=pg.Workspace(root)).run_id


# -- the "done when" ---------------------------------------------------------------------

def test_approve_release_check_edit_bump(ws):
    root, runs = ws
    added, _ = pg.lock(root)
    assert added == []  # the example workspace is locked

    r = cli(root, "approve", "ticket_triage@2", "--run", runs[2], "--by", "alice")
    assert r.exit_code == 0, r.output
    assert "approved ticket_triage@2 by alice" in r.stdout and "7 gates passed" in r.stdout
    record = (root / "governance/approvals/ticket_triage@2.toml").read_text(encoding="utf-8")
    lock = json.loads((root / "governance/lock.json").read_text(encoding="utf-8"))
    a = pg.governance.load_approval(root, "ticket_triage@2")
    assert a.status == "approved" and a.approved_by == "alice" and a.run_id == runs[2]
    assert a.content_hash == lock["prompts"]["ticket_triage@2"]["content_hash"]
    assert a.schema_hash == lock["prompts"]["ticket_triage@2"]["schema_hash"]
    assert a.evalset == "ticket_triage@1"
    assert a.evalset_hash == lock["evalsets"]["ticket_triage@1"]["hash"]
    assert a.tracking == "sqlite" and "sqlite:" not in record  # the kind, never the URI
    assert a.metrics["accuracy"] == pytest.approx(0.806, abs=1e-3)
    assert {g.gate: g.passed for g in a.gates} == {
        "min_accuracy": True, "max_failure_rate": True, "max_cost_per_1k_usd": True,
        "max_latency_p95_s": True, "min_auto_precision": True, "min_cases": True,
        "required_evalsets": True}
    assert re.search(r'approved_at = "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"', record)

    # the MLflow prompt registry shows the alias on the approved version
    c = mlflow(root)
    pv = c.get_prompt_version_by_alias("ticket_triage", "approved")
    assert int(pv.version) == registry_version(root, runs[2]) == a.registry_version
    assert pv.tags["promptgov.content_hash"] == a.content_hash

    r = cli(root, "release", "support", "ticket_triage@2", "--description", "Inbox triage")
    assert r.exit_code == 0, r.output
    rel = (root / "governance/releases/support.toml").read_text(encoding="utf-8")
    assert 'prompts = [\n    "ticket_triage@2",\n]' in rel and "version = 1" in rel
    r = cli(root, "check")
    assert r.exit_code == 0, r.output
    assert "1 release checked" in r.stdout

    # edit the approved version's template: check names the release, the version and the hash
    v2 = root / "prompts/ticket_triage/v2.yaml"
    original = v2.read_text(encoding="utf-8")
    v2.write_text(original.replace("Customer message:", "Customer Message:"), encoding="utf-8")
    r = cli(root, "check")
    assert r.exit_code == 1
    new_hash = pg.Workspace(root).prompt("ticket_triage@2").content_hash
    line = next(ln for ln in r.stderr.splitlines() if "releases/support.toml" in ln)
    assert "release support v1 names ticket_triage@2" in line
    assert f"content hash is now {new_hash[7:19]}, approved {a.content_hash[7:19]}" in line
    assert "prompts/ticket_triage/v3.yaml" in line  # the fix: bump the version
    st = pg.status(workspace=root).loc["ticket_triage@2"]
    assert (st["lock"], st["approval"]) == ("drifted", "stale")

    # bump to a new version instead: evaluate, approve, release, check passes again
    v2.write_text(original, encoding="utf-8")
    run3 = bump(root)
    pg.approve("ticket_triage@3", run3, by="bob", workspace=root)
    r = cli(root, "release", "support", "ticket_triage@3")
    assert r.exit_code == 0, r.output
    assert "release support v2: ticket_triage@3 (previous v1: ticket_triage@2)" in r.stdout
    r = cli(root, "check")
    assert r.exit_code == 0, r.output
    pv = c.get_prompt_version_by_alias("ticket_triage", "approved")  # the alias moved on
    assert int(pv.version) == registry_version(root, run3)
    pg.revoke("ticket_triage@2", by="alice", reason="superseded by v3", workspace=root)
    pv = c.get_prompt_version_by_alias("ticket_triage", "approved")  # v3's alias is kept
    assert int(pv.version) == registry_version(root, run3)
    assert cli(root, "check").exit_code == 0  # the release no longer names v2

    st = pg.status(workspace=root)
    assert st.loc["ticket_triage@3", "approval"] == "approved"
    assert st.loc["ticket_triage@3", "releases"] == "support v2"
    assert st.loc["ticket_triage@2", "approval"] == "revoked"
    assert st.loc["ticket_triage@2", "releases"] == ""
    assert st.loc["ticket_triage@1", "accuracy"] == pytest.approx(0.691, abs=1e-3)
    js = json.loads(cli(root, "status", "ticket_triage", "--json").stdout)
    assert [x["ref"] for x in js] == ["ticket_triage@1", "ticket_triage@2", "ticket_triage@3"]

    # a workspace with releases and approvals: check still imports nothing heavy
    from test_check_imports import run_probe

    assert run_probe(["check", "-w", str(root)]) == {"code": 0, "heavy": []}


def test_refused_approval_lists_each_failing_gate_and_writes_nothing(ws):
    root, runs = ws
    before = tree(root / "governance")
    r = cli(root, "approve", "ticket_triage@1", "--run", runs[1], "--by", "alice")
    assert r.exit_code == 1
    assert "refused: ticket_triage@1 fails 2 of 7 gates" in r.stderr
    assert "min_accuracy: accuracy 0.6909 < 0.75" in r.stderr
    assert "min_auto_precision: auto_precision 0.913 < 0.95" in r.stderr
    assert tree(root / "governance") == before
    with pytest.raises(GateFailed) as e:
        pg.approve("ticket_triage@1", runs[1], by="alice", workspace=root)
    assert [(g.gate, g.limit) for g in e.value.failed] == [("min_accuracy", 0.75),
                                                           ("min_auto_precision", 0.95)]
    assert tree(root / "governance") == before
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException):
        mlflow(root).get_prompt_version_by_alias("ticket_triage", "approved")


def test_approval_needs_a_run_of_the_locked_version(ws):
    root, runs = ws
    with pytest.raises(GovernanceError, match="the run evaluated ticket_triage@1, not "
                       "ticket_triage@2"):
        pg.approve("ticket_triage@2", runs[1], by="alice", workspace=root)
    with pytest.raises(GovernanceError, match="no MLflow run 'nope'"):
        pg.approve("ticket_triage@2", "nope", by="alice", workspace=root)
    v2 = root / "prompts/ticket_triage/v2.yaml"
    v2.write_text(v2.read_text(encoding="utf-8").replace("Customer message:", "Customer:"),
                  encoding="utf-8")
    with pytest.raises(GovernanceError, match=r"v2.yaml changed since it was locked"):
        pg.approve("ticket_triage@2", runs[2], by="alice", workspace=root)
    r = cli(root, "release", "support", "ticket_triage@2")
    assert r.exit_code == 1 and "which is not approved" in r.stderr
    assert not (root / "governance" / "approvals").exists()
    assert not (root / "governance" / "releases").exists()


def test_revoke_removes_the_alias_and_check_fails_for_the_release(ws):
    from mlflow.exceptions import MlflowException

    from promptgov.workspace._approvals import approved_versions

    root, runs = ws
    pg.approve("ticket_triage@2", runs[2], by="alice", workspace=root, alias="production")
    assert mlflow(root).get_prompt_version_by_alias("ticket_triage", "production")
    pg.release("support", ["ticket_triage@2"], workspace=root)
    assert approved_versions(root, "ticket_triage") == [2]

    r = cli(root, "revoke", "ticket_triage@2", "--by", "carol", "--reason", "misroutes disputes")
    assert r.exit_code == 0, r.output
    with pytest.raises(MlflowException):
        mlflow(root).get_prompt_version_by_alias("ticket_triage", "production")
    a = pg.governance.load_approval(root, "ticket_triage@2")
    assert a.status == "revoked" and a.approved_by == "alice"
    assert (a.revocation.by, a.revocation.reason) == ("carol", "misroutes disputes")
    assert approved_versions(root, "ticket_triage") == []  # compare() no longer picks it

    r = cli(root, "check")
    assert r.exit_code == 1
    assert ("governance/releases/support.toml: release support v1 names ticket_triage@2, which "
            "was revoked by carol") in r.stderr
    with pytest.raises(GovernanceError, match="was revoked by carol"):
        pg.approve("ticket_triage@2", runs[2], by="alice", workspace=root)
    with pytest.raises(GovernanceError, match="already revoked"):
        pg.revoke("ticket_triage@2", by="carol", reason="again", workspace=root)


def test_gate_passes_then_fails_after_tightening_the_policy(ws):
    root, runs = ws
    pg.approve("ticket_triage@2", runs[2], by="alice", workspace=root, record_cassette=True)
    cassette = root / "governance/cassettes/ticket_triage@2.jsonl"
    assert len(cassette.read_text(encoding="utf-8").splitlines()) == 770
    pg.release("support", ["ticket_triage@2"], workspace=root)

    r = cli(root, "gate", "support")
    assert r.exit_code == 0, r.output
    assert "promptgov gate: ok: release support v1" in r.stdout
    report = pg.gate("support", workspace=root)
    (res,) = report.results
    assert res.model.startswith("replay:") and res.metrics["accuracy"] == pytest.approx(
        pg.governance.load_approval(root, "ticket_triage@2").metrics["accuracy"])

    policy = root / "governance/policy.toml"
    policy.write_text(policy.read_text(encoding="utf-8").replace(
        'required_evalsets = ["ticket_triage"]',
        'required_evalsets = ["ticket_triage"]\nmin_accuracy = 0.9'), encoding="utf-8")
    r = cli(root, "gate", "support")  # a policy edit judges nothing until it is locked
    assert r.exit_code == 1 and "differs from the locked policy" in r.output
    assert cli(root, "lock").exit_code == 0
    r = cli(root, "gate", "support")
    assert r.exit_code == 1
    assert "FAIL min_accuracy: accuracy 0.8065 < 0.9" in r.stdout
    assert "promptgov gate: FAILED (1 failure" in r.stderr

    # without the cassette, the offline model re-runs (deterministic: the same numbers)
    cassette.unlink()
    report = pg.gate("support", workspace=root, model="local/knn")
    assert [str(c) for r in report.results for c in r.checks if not c.passed] == [
        "min_accuracy: accuracy 0.8065 < 0.9"]
    assert "cassette" in pg.gate("support", workspace=root).failures()[0]


def test_breaking_schema_against_the_previous_release(ws):
    root, runs = ws
    pg.approve("ticket_triage@2", runs[2], by="alice", workspace=root)
    pg.release("support", ["ticket_triage@2"], workspace=root)
    src = (root / "schemas/ticket_triage.py").read_text(encoding="utf-8")
    (root / "schemas/ticket_triage_v2.py").write_text(
        src.replace('"ticket_triage@1"', '"ticket_triage@2"').replace('    "country_support",\n',
                                                                     ""), encoding="utf-8")

    # the evalset follows the narrower label set (check refuses expected labels a prompt's
    # schema cannot answer): a new evalset version without the retired label
    es = root / "evalsets/ticket_triage"
    kept = [ln for ln in (es / "cases.jsonl").read_text(encoding="utf-8").splitlines()
            if json.loads(ln)["expected"]["label"] != "country_support"]
    (es / "cases.jsonl").write_text("\n".join(kept) + "\n", encoding="utf-8")
    manifest = (es / "manifest.yaml").read_text(encoding="utf-8")
    (es / "manifest.yaml").write_text(manifest.replace("version: 1", "version: 2").replace(
        "count: 770", f"count: {len(kept)}"), encoding="utf-8")

    def narrower(doc):
        doc["response_schema"] = "ticket_triage@2"
        doc["labels"].pop("country_support")
        doc["demos"] = [d for d in doc["demos"] if d["output"]["label"] != "country_support"]
        return doc

    pg.approve("ticket_triage@3", bump(root, narrower), by="alice", workspace=root)
    with pytest.raises(GovernanceError, match=r"ticket_triage@3 answers with schema "
                       r"ticket_triage@2, which breaks ticket_triage@1 of ticket_triage@2 in "
                       r"release v1: BREAKING: label: enum values removed: \['country_support'\]"):
        pg.release("support", ["ticket_triage@3"], workspace=root)
    assert "ticket_triage@3" not in (root / "governance/releases/support.toml").read_text()
    pg.release("support-v2", ["ticket_triage@3"], workspace=root)  # a new release name is fine

    (root / "governance/releases/support.toml").write_text(
        'name = "support"\nversion = 2\nprompts = ["ticket_triage@3"]\n\n'
        '[previous]\nversion = 1\nprompts = ["ticket_triage@2"]\n', encoding="utf-8")
    r = cli(root, "check")
    assert r.exit_code == 1
    assert "release support v2: ticket_triage@3 answers with schema ticket_triage@2" in r.stderr


# -- files people edit are validated loudly ------------------------------------------------------

def test_policy_gates_merge_most_specific_wins(workspace_dir):
    g = load_policy(workspace_dir).gates
    assert g.for_prompt("ticket_triage", "classification") == Gates(
        min_accuracy=0.75, max_failure_rate=0.02, max_cost_per_1k_usd=5.0,
        max_latency_p95_s=10.0, min_auto_precision=0.95, min_cases=100,
        required_evalsets=("ticket_triage",))
    assert g.for_prompt("other", "extraction").min_accuracy == 0.85  # the kind's bar
    assert g.for_prompt("ticket_extraction", "extraction").min_accuracy == 0.05  # its own floor
    assert g.for_prompt("reply_draft", "draft").min_cases == 30
    assert g.for_prompt("other", "draft").min_auto_precision is None


@pytest.mark.parametrize("toml, message", [
    ("[gates.default]\nmin_acuracy = 0.8\n", "unknown setting gates.default.min_acuracy"),
    ("[gates.kind.triage]\nmin_accuracy = 0.8\n", r"unknown task kind \[gates.kind.triage\]"),
    ("[gates.prompt.nosuch]\nmin_accuracy = 0.8\n", r"\[gates.prompt.nosuch\] names no prompt"),
    ("[gates.default]\nmin_accuracy = \"high\"\n", "min_accuracy = 'high' is not a non-neg"),
    ("[gates.default]\nmin_cases = 1.5\n", "min_cases = 1.5 is not a whole number"),
    ("[gates.default]\nrequired_evalsets = \"x\"\n", "required_evalsets = 'x' is not a list"),
    ("[gate.default]\nmin_accuracy = 0.8\n", "unknown setting gate"),
    ("[retry]\nmax_retry = 3\n", "unknown setting retry.max_retry"),
    ("[retry]\nmax_retries = \"4\"\n", r"policy.toml:2: \[retry\] max_retries = '4' is not a "
     "whole number"),
    ("[retry]\ntimeout_s = 0\n", r"policy.toml:2: \[retry\] timeout_s = 0 is not a number"),
    ("[routing]\n\nauto = \"high\"\n", r"policy.toml:3: \[routing\] auto = 'high' is not a "
     "number"),
    ('[prices]\n"x/y" = 3\n', r"policy.toml:2: \[prices\] 'x/y' = 3 is not"),
])
def test_policy_errors_name_file_and_key(workspace_dir, toml, message):
    (workspace_dir / "governance/policy.toml").write_text(toml, encoding="utf-8")
    with pytest.raises(WorkspaceError, match=message) as e:
        load_policy(workspace_dir)
    assert "governance/policy.toml" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("text, message", [
    ('name = "support"\nversion = 1\nprompts = ["ticket_triage"]\n', "is not PROMPT@VERSION"),
    ('name = "other"\nversion = 1\nprompts = ["ticket_triage@2"]\n', "differs from the file"),
    ('name = "support"\nversion = 0\nprompts = ["ticket_triage@2"]\n', "version = 0"),
    ('name = "support"\nversion = 1\nprompts = ["ticket_triage@1", "ticket_triage@2"]\n',
     "two versions of ticket_triage"),
    ('name = "support"\nversion = 1\nprompt = ["ticket_triage@2"]\n', "unknown key 'prompt'"),
    ('name = "support"\nversion = 1\nprompts = ["ticket_triage@2"]\n',
     "names ticket_triage@2, which is not approved"),
])
def test_check_reports_bad_or_unapproved_releases(workspace_dir, text, message):
    (workspace_dir / "governance/releases").mkdir()
    (workspace_dir / "governance/releases/support.toml").write_text(text, encoding="utf-8")
    r = cli(workspace_dir, "check")
    assert r.exit_code == 1
    assert "governance/releases/support.toml" in r.stderr and message in r.stderr


def test_malformed_approval_record_is_named(workspace_dir):
    (workspace_dir / "governance/approvals").mkdir()
    (workspace_dir / "governance/approvals/ticket_triage@2.toml").write_text(
        'prompt = "ticket_triage"\nversion = 2\nstatus = "approved"\nextra = 1\n')
    with pytest.raises(WorkspaceError, match=r"ticket_triage@2.toml: approved_by: Field "
                       "required"):
        pg.governance.load_approval(workspace_dir, "ticket_triage@2")


# -- CI integration users copy -------------------------------------------------------------------

def test_pre_commit_hook_and_workflow_example():
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert hook["id"] == "promptgov-check" and hook["entry"] == "promptgov check"
    assert hook["language"] == "python" and hook["pass_filenames"] is False
    files = re.compile(hook["files"])
    for p in ("prompts/ticket_triage/v2.yaml", "schemas/ticket_triage.py",
              "evalsets/ticket_triage/cases.jsonl", "governance/releases/support.toml"):
        assert files.search(p), p
    assert not files.search("src/promptgov/cli/__init__.py")
    wf = yaml.safe_load((ROOT / "examples/github-actions/promptgov.yml").read_text("utf-8"))
    steps = [s.get("run", "") for job in wf["jobs"].values() for s in job["steps"]]
    check, gate = steps.index("promptgov check"), steps.index('promptgov gate "$RELEASE"')
    assert check < gate


def test_public_names():
    import importlib
    import inspect

    for name in ("approve", "revoke", "status", "release", "gate"):
        assert name in pg.__all__ and callable(getattr(pg, name))
    for sub, fn in (("robustness", "adversarial"), ("packaging", "export"),
                    ("optimizers", "optimize")):
        importlib.import_module(f"promptgov.{sub}")  # a subpackage import shadows nothing
        assert inspect.isfunction(getattr(pg, fn)), fn  # plain functions, not callable modules
    assert set(pg.__all__) <= set(dir(pg)) and all(getattr(pg, n) is not None
                                                   for n in pg.__all__)


def test_adversarial_drop_gate_reads_the_adversarial_run(ws):
    """`max_adversarial_drop` reads clean.accuracy - noisy.accuracy from the latest
    `promptgov adversarial` run (tag promptgov.adversarial_of) of the same content and model."""
    root, runs = ws
    policy = root / "governance/policy.toml"
    policy.write_text(policy.read_text(encoding="utf-8").replace(
        "# max_adversarial_drop = 0.10", "max_adversarial_drop = 0.10"), encoding="utf-8")
    pg.lock(root)
    with pytest.raises(GateFailed, match=r"max_adversarial_drop: adversarial_drop was not "
                       r"measured \(limit 0.1\) \(fix: promptgov adversarial"):
        pg.approve("ticket_triage@2", runs[2], by="alice", workspace=root)

    c = mlflow(root)
    content = c.get_run(runs[2]).data.params["content_hash"]

    def adversarial_run(clean: float, noisy: float) -> str:
        run = c.create_run(c.get_run(runs[2]).info.experiment_id, tags={
            "promptgov.kind": "adversarial", "promptgov.adversarial_of": "ticket_triage@2"})
        c.log_param(run.info.run_id, "content_hash", content)
        c.log_param(run.info.run_id, "model", "local/knn")
        c.log_metric(run.info.run_id, "clean.accuracy", clean)
        c.log_metric(run.info.run_id, "noisy.accuracy", noisy)
        c.set_terminated(run.info.run_id, "FINISHED")
        return run.info.run_id

    adversarial_run(0.80, 0.60)
    with pytest.raises(GateFailed, match=r"adversarial_drop 0.2 > 0.1"):
        pg.approve("ticket_triage@2", runs[2], by="alice", workspace=root)
    rid = adversarial_run(0.80, 0.75)
    a = pg.approve("ticket_triage@2", runs[2], by="alice", workspace=root)
    assert a.adversarial_run == rid and a.metrics["adversarial_drop"] == pytest.approx(0.05)

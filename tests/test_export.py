"""`promptgov export`: a release's approved prompt versions as a frozen, self-verifying wheel.

The module fixture approves ticket_triage@2, ticket_extraction@2 and reply_draft@1 through the
real flow (local/knn evaluations logged to MLflow, `approve`, `release`) in a workspace copy;
each test works on it or on a copy. The slow test installs the wheel into a fresh virtual
environment (no system site-packages; pydantic from the uv cache, PyPI only if the cache lacks
it) and runs the package there; the others import the unpacked wheel in this process.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from base64 import urlsafe_b64encode
from pathlib import Path

import pytest
from typer.testing import CliRunner

import promptgov as pg
import promptgov.cli  # noqa: F401  (registers the commands)
from conftest import copy_workspace
from promptgov._portable import FILES as PORTABLE_FILES
from promptgov._portable import _hashing, _render
from promptgov._portable._render import UndefinedVariable
from promptgov.cli._app import app
from promptgov.errors import GovernanceError, WorkspaceError
from promptgov.governance import load_approval
from promptgov.governance._releases import Release
from promptgov.packaging._runtime._facts import unsupported_facts
from promptgov.workspace._policy import load_policy

ROOT = Path(__file__).resolve().parent.parent
REFS = ("reply_draft@1", "ticket_extraction@2", "ticket_triage@2")
WHEEL = "support_bot-1-py3-none-any.whl"
PYDANTIC = {"pydantic", "pydantic_core", "typing_extensions", "annotated_types",
            "typing_inspection"}
runner = CliRunner()


@pytest.fixture(scope="module")
def approved(tmp_path_factory) -> tuple[Path, dict]:
    """A workspace copy with REFS evaluated by local/knn, approved, and released as support_bot
    v1; and the evaluation results (the workbench's per-case records)."""
    root = copy_workspace(tmp_path_factory.mktemp("export") / "ws")
    shutil.rmtree(root / "governance" / "approvals", ignore_errors=True)
    shutil.rmtree(root / "governance" / "releases", ignore_errors=True)
    # ticket_extraction passes its prompt gate (a floor under the offline baseline): the
    # committed policy approves every version of REFS offline.
    w = pg.Workspace(root)
    pg.lock(w)
    results = {ref: pg.evaluate(ref, model="local/knn", workspace=w) for ref in REFS}
    for ref, r in results.items():
        pg.approve(ref, r.run_id, by="ci", workspace=w)
    pg.release("support_bot", list(REFS), description="Support inbox", workspace=w)
    return root, results


@pytest.fixture
def ws_copy(approved, tmp_path) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(approved[0], root)
    return root


@pytest.fixture(scope="module")
def package(approved, tmp_path_factory):
    """The exported package, unpacked and imported in this process."""
    out = tmp_path_factory.mktemp("pkg")
    wheel = pg.export("support_bot", out=out / "dist", workspace=approved[0])
    with zipfile.ZipFile(wheel) as z:
        z.extractall(out / "site")
    sys.path.insert(0, str(out / "site"))
    try:
        import support_bot

        yield support_bot
    finally:
        sys.path.remove(str(out / "site"))
        for m in [m for m in sys.modules if m.split(".")[0] == "support_bot"]:
            del sys.modules[m]


@pytest.fixture
def sb(package):
    yield package
    package.configure(None)


def tree(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*")) if d.exists() else []


# -- the parts the package shares with the workbench (promptgov._portable): hashing, rendering --

def test_runtime_hashing_reproduces_the_lock(workspace):
    lock = json.loads((workspace.root / "governance/lock.json").read_text(encoding="utf-8"))
    for ref in REFS:
        pv = workspace.prompt(ref)
        dumped = json.loads(json.dumps(pv._content(), ensure_ascii=False))  # what export embeds
        assert _hashing.content_hash(dumped) == lock["prompts"][ref]["content_hash"]


@pytest.mark.parametrize(("template", "ctx"), [
    ("Customer message:\n{{ text }}", {"text": "Where is my card? ünïcode 💳\n"}),
    ("{{text}}|{{  text  }}\n", {"text": None}),
    ("- amount: {{ facts.refund_amount }} / {{ facts.refund_eligible }}",
     {"facts": {"refund_amount": 0.0, "refund_eligible": True}}),
    ("{{ facts.items }}", {"facts": {"items": 3}}),  # jinja2: the attribute (dict.items) wins
    ("{{ a.b.c }} {{ a.b }}", {"a": {"b": {"c": 1.5e-7}}}),
    ("{{ missing }}", {"text": "x"}),
    ("{{ facts.order_id }}", {"facts": {"customer_name": "x"}}),
    ("{{ facts.order_id }}", {"facts": "not a mapping"}),
])
def test_runtime_renders_exactly_like_jinja2(template, ctx):
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    try:
        want = env.from_string(template).render(ctx)
    except jinja2.UndefinedError:
        want = None
    try:
        got = _render.render(template, ctx)
    except UndefinedVariable:
        got = None
    if "items" in template:  # a bound method's repr holds its address: compare the start
        want, got = want.split(" at ")[0], got.split(" at ")[0]
    assert got == want


@pytest.mark.parametrize("template", [
    "{% for x in xs %}{{ x }}{% endfor %}", "{{ text | upper }}", "{# note #}{{ text }}",
    "{{ text[0] }}", "{{- text }}"])
def test_unsupported_template_constructs_are_named(template, workspace):
    from promptgov.packaging._render_check import check_user_template

    assert _render.unsupported(template)
    pv = workspace.prompt("ticket_triage@2").model_copy(update={"user": template})
    with pytest.raises(WorkspaceError, match="does not render"):
        check_user_template(workspace, pv)


def test_schema_files_may_import_only_pydantic_and_the_stdlib():
    from promptgov.packaging._package import _check_imports

    _check_imports("schemas/ok.py", b"from typing import Literal\nfrom pydantic import Field\n")
    for src in (b"import promptgov\n", b"from .other import X\n", b"import numpy as np\n"):
        with pytest.raises(WorkspaceError, match="installs only pydantic"):
            _check_imports("schemas/bad.py", src)


@pytest.mark.parametrize(("text", "bad"), [
    ("Hello Ada Lovelace, your order A-10000 is delivered; a refund of 77.97 is on its way.", []),
    ("Your refund of 77.97 (or £78) arrives on Monday.", ["78", "Monday"]),
    ("Order A-10000 has shipped and will arrive tomorrow.", ["shipped", "tomorrow"]),
    ("You may reply on 3 May, or on May 4.", ["3", "May", "4"]),
    ("Delivered on March 1, a Sunday.", []),
    ("Your order A-10000 is Delivered.", []),
])
def test_draft_fact_checks(text, bad):
    facts = {"customer_name": "Ada Lovelace", "order_id": "A-10000", "order_state": "delivered",
             "refund_amount": 77.97, "delivered_on": "2026-03-01"}
    assert unsupported_facts(text, {"facts": facts}) == bad


# -- the wheel -------------------------------------------------------------------------------------

def test_export_is_reproducible_and_a_well_formed_wheel(approved, tmp_path, monkeypatch):
    root, _ = approved
    first = pg.export("support_bot", out=tmp_path / "a", workspace=root)
    r = runner.invoke(app, ["export", "support_bot", "--out", str(tmp_path / "b"),
                            "--workspace", str(root)])
    assert r.exit_code == 0, r.output
    second = tmp_path / "b" / WHEEL
    assert first.name == WHEEL and f"wrote {second}" in r.stdout
    digest = hashlib.sha256(first.read_bytes()).hexdigest()
    assert hashlib.sha256(second.read_bytes()).hexdigest() == digest
    assert f"sha256 {digest}" in r.stdout

    with zipfile.ZipFile(first) as z:
        infos = z.infolist()
        names = [i.filename for i in infos]
        files = {n: z.read(n) for n in names}
    assert names[-1] == "support_bot-1.dist-info/RECORD"
    assert names[:-3] == sorted(names[:-3]) and all(n.startswith("support_bot/")
                                                    for n in names[:-3])
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}
    record = files["support_bot-1.dist-info/RECORD"].decode().splitlines()
    assert len(record) == len(names)
    for line in record[:-1]:
        path, digest_field, size = line.rsplit(",", 2)
        b64 = urlsafe_b64encode(hashlib.sha256(files[path]).digest()).rstrip(b"=").decode()
        assert digest_field == f"sha256={b64}" and int(size) == len(files[path])
    meta = files["support_bot-1.dist-info/METADATA"].decode()
    for line in ("Name: support-bot", "Version: 1", "Requires-Dist: pydantic>=2,<3",
                 "Provides-Extra: providers", 'Requires-Dist: litellm>=1.60; extra == "providers"',
                 "Provides-Extra: offline", 'extra == "offline"'):
        assert line in meta
    assert {"support_bot/schemas/ticket_triage.py", "support_bot/prompts/ticket_triage.json",
            "support_bot/manifest.json", "support_bot/py.typed"} <= set(names)
    # the schema file is embedded verbatim
    assert files["support_bot/schemas/ticket_triage.py"] == \
        (root / "schemas/ticket_triage.py").read_bytes()

    # the manifest holds the lock's hashes and the approvals' run ids
    m = json.loads(files["support_bot/manifest.json"])
    lock = json.loads((root / "governance/lock.json").read_text(encoding="utf-8"))
    assert m["release"] == {"name": "support_bot", "version": 1, "description": "Support inbox",
                            "prompts": list(REFS)}
    for ref in REFS:
        a = load_approval(root, ref)
        for key in ("content_hash", "render_fingerprint", "schema_hash"):
            assert m["prompts"][ref][key] == lock["prompts"][ref][key] == getattr(a, key)
        assert m["prompts"][ref]["approval"]["run_id"] == a.run_id
    assert m["schemas"]["ticket_triage@1"]["hash"] == lock["schemas"]["ticket_triage@1"]["hash"]
    assert m["policy"] and json.loads(files["support_bot/policy.json"])["routing"] == {
        "auto": 0.85, "review": 0.6}

    # SOURCE_DATE_EPOCH moves every timestamp, and nothing else
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    third = pg.export("support_bot", out=tmp_path / "c", workspace=root)
    with zipfile.ZipFile(third) as z:
        assert {i.date_time for i in z.infolist()} == {(2023, 11, 14, 22, 13, 20)}
        assert {n: z.read(n) for n in z.namelist()} == files


def test_the_wheel_carries_the_workbench_portable_code_verbatim(approved, tmp_path):
    """Hashing, the output parser, the template fill and the call records are promptgov's own
    files, byte for byte, beside the runtime; the vendored local/knn imports them there."""
    wheel = pg.export("support_bot", out=tmp_path, workspace=approved[0])
    src = ROOT / "src" / "promptgov" / "_portable"
    with zipfile.ZipFile(wheel) as z:
        for name in PORTABLE_FILES:
            assert z.read(f"support_bot/{name}") == (src / name).read_bytes(), name
        knn = {n: z.read(n).decode() for n in z.namelist() if n.startswith("support_bot/_knn/")}
    assert "from .._calls import Completion, Request, Usage" in knn["support_bot/_knn/_knn.py"]
    assert "from .._jsonschema import resolve" in knn["support_bot/_knn/_knn_schema.py"]
    assert not any("promptgov._portable" in text for text in knn.values())


def test_export_refuses_unapproved_drifted_and_revoked_versions(ws_copy, tmp_path):
    root = ws_copy
    out = tmp_path / "dist"
    (root / "governance/releases/bad.toml").write_text(
        Release("bad", 1, ("ticket_triage@1",)).to_toml(), encoding="utf-8")
    with pytest.raises(GovernanceError, match=r"release bad v1 names ticket_triage@1, which is "
                       "not approved"):
        pg.export("bad", out=out, workspace=root)
    assert not out.exists()

    r = runner.invoke(app, ["export", "bad", "--out", str(out), "--workspace", str(root)])
    assert r.exit_code == 1 and not out.exists()
    assert r.stderr.splitlines() == [
        "error: refused to export release bad v1, nothing was written: "
        "governance/releases/bad.toml: release bad v1 names ticket_triage@1, which is not "
        "approved (fix: promptgov eval ticket_triage@1, then promptgov approve ticket_triage@1 "
        "--run RUN_ID --by NAME)"]

    v2 = root / "prompts/ticket_triage/v2.yaml"
    original = v2.read_text(encoding="utf-8")
    v2.write_text(original.replace("Customer message:", "Customer Message:"), encoding="utf-8")
    with pytest.raises(GovernanceError, match=r"names ticket_triage@2, which no longer matches "
                       r"its approval: content hash is now"):
        pg.export("support_bot", out=out, workspace=root)
    assert not out.exists()

    v2.write_text(original, encoding="utf-8")
    out.mkdir()
    (out / "keep.txt").write_text("x", encoding="utf-8")
    pg.revoke("ticket_triage@2", by="alice", reason="misroutes disputes", workspace=root)
    with pytest.raises(GovernanceError, match="which was revoked by alice"):
        pg.export("support_bot", out=out, workspace=root)
    assert tree(out) == ["keep.txt"]


# -- the package at work (in this process) --------------------------------------------------------

def test_runtime_with_a_litellm_provider(sb, openai_server):
    openai_server.fail(429, times=1, retry_after=0.01)
    openai_server.reply('```json\n{"label": "card_arrival", "confidence": 0.9}\n```')
    sb.configure(model="openai/gpt-4o-mini", api_base=openai_server.base_url, api_key="sk-x")
    assert sb.triage("Where is my card?") == sb.Decision("auto_process", "card_arrival", 0.9)
    body = openai_server.bodies[-1]
    assert len(openai_server.requests) == 2  # one retry of the rate limit, by the runtime
    fmt = body["response_format"]["json_schema"]
    assert fmt["name"] == "ticket_triage_1"
    assert fmt["schema"] == sb.TicketTriage.model_json_schema()
    assert body["messages"][-1] == {"role": "user",
                                    "content": "Customer message:\nWhere is my card?"}
    assert body["max_tokens"] == 64 and body["temperature"] == 0.0

    openai_server.reply("not json at all")
    openai_server.reply('{"label": "Card_Arrival", "confidence": 0.7, "why": "extra"}')
    assert sb.triage("card?") == sb.Decision("queue_for_human", "card_arrival", 0.7)
    reask = openai_server.bodies[-1]["messages"]
    assert reask[-2] == {"role": "assistant", "content": "not json at all"}
    assert reask[-1]["content"].startswith("Your previous answer was rejected: not valid JSON")

    openai_server.fail(400, times=1)
    with pytest.raises(sb.ModelError) as e:
        sb.triage("card?")
    assert e.value.kind == "bad_request" and "sk-x" not in str(e.value)


def test_runtime_with_a_callable_model(sb):
    answers = iter(['{"label": "nope", "confidence": 2}', '{"label": "card_arrival"}'])
    sb.configure(model=lambda messages, schema: next(answers))
    d = sb.triage("Where is my card?")
    assert (d.action, d.label, d.confidence) == ("legacy_fallback", None, None)
    assert d.error.startswith("schema_violation: schema violation at `confidence`")

    seen = []

    class Mine:
        def complete(self, messages, response_schema):
            seen.append((messages, response_schema))
            return '{"intents": ["card"], "amount": 10, "date": null, "time": null, ' \
                   '"company": null, "number": null, "person": null, "shopping_category": null}'

    sb.configure(model=Mine())
    out = sb.extract("my card, 10 pounds")
    assert isinstance(out, sb.TicketExtraction) and out.amount == 10.0
    assert seen[0][1]["title"] == "TicketExtraction"

    drafts = iter(["Hello Ada, we refund 12.50 by Monday.", "Hello Ada, we refund 12.50 soon."] * 2
                  + ["Hello Ada, your order A-1 is shipped.", "Hello Ada, your order A-1 is lost."])
    sb.configure(model=lambda messages, schema: next(drafts))
    facts = {"customer_name": "Ada", "order_id": "A-1", "order_state": "delivered",
             "refund_eligible": True, "refund_amount": 12.5, "policy_version": "1"}
    with pytest.raises(sb.DraftRejected) as e:
        sb.draft(facts)
    assert e.value.unsupported == ["12.50"]
    facts["refund_amount"] = "12.50"
    assert sb.draft(facts) == "Hello Ada, we refund 12.50 soon."
    with pytest.raises(sb.DraftRejected, match="'lost'"):
        sb.draft(facts)
    with pytest.raises(sb.RenderError, match="facts.order_id"):
        sb.draft({"customer_name": "Ada"})


def test_verify_against_the_workspace(sb, ws_copy):
    r = sb.verify(ws_copy)
    assert r.ok, r.problems
    pg.revoke("ticket_triage@2", by="alice", reason="misroutes disputes", workspace=ws_copy)
    policy = ws_copy / "governance/policy.toml"
    policy.write_text(policy.read_text(encoding="utf-8").replace("auto = 0.85", "auto = 0.9"),
                      encoding="utf-8")
    problems = sb.verify(ws_copy).problems
    assert len(problems) == 3, problems
    assert problems[0].startswith("governance/approvals/ticket_triage@2.toml: ticket_triage@2 "
                                  "was revoked by alice")
    assert problems[1].startswith("governance/policy.toml: [routing] auto = 0.9, the package "
                                  "applies 0.85")
    assert problems[2].startswith("cannot export release support_bot from ")  # the rebuild


# -- the package installed in a fresh virtual environment -----------------------------------------

def _uv() -> str:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed (scripts/bootstrap.sh installs it into .venv)")
    return uv


def _install(uv: str, py: Path, *args: str) -> None:
    """``uv pip install`` from the cache; from PyPI only when the cache lacks a package."""
    cmd = [uv, "pip", "install", "--quiet", "--python", str(py), "--compile-bytecode", *args]
    if subprocess.run([*cmd, "--offline"], capture_output=True).returncode:
        subprocess.run(cmd, check=True, capture_output=True)


def _run(py: Path, code: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(py), "-c", code, *args], capture_output=True, text=True, env=env,
                          check=check, cwd=py.parent)


IMPORT = """
import json, sys, time
before = set(sys.modules)
t0 = time.perf_counter()
import support_bot
t1 = time.perf_counter()
first = {m.split(".")[0] for m in set(sys.modules) - before}
support_bot.SCHEMAS  # the schema classes, and so pydantic
t2 = time.perf_counter()
after = {m.split(".")[0] for m in set(sys.modules) - before}
def other(mods):
    return sorted(m for m in mods if m not in sys.stdlib_module_names
                  and not m.startswith("_sysconfigdata") and m != "support_bot")
print(json.dumps({"import_ms": 1000 * (t1 - t0), "schemas_ms": 1000 * (t2 - t1),
                  "at_import": other(first), "with_schemas": other(after)}))
"""

RUN = """
import json, sys
import support_bot as sb
cases = json.load(open(sys.argv[1]))
out = {"triage": [sb.triage(**c)._asdict() for c in cases["ticket_triage@2"]],
       "extract": [sb.extract(**c).model_dump(mode="json") for c in cases["ticket_extraction@2"]],
       "draft": [sb.draft(**c) for c in cases["reply_draft@1"]]}
print(json.dumps(out))
"""


@pytest.mark.slow  # ~10 s: a venv, two installs from the uv cache, the offline model
def test_installed_package_imports_fast_runs_like_the_workbench_and_verifies_itself(
        approved, tmp_path):
    root, results = approved
    uv = _uv()
    wheel = pg.export("support_bot", out=tmp_path / "dist", workspace=root)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    freeze = subprocess.run([uv, "pip", "freeze", "--python", sys.executable],
                            capture_output=True, text=True, check=True).stdout
    pins = tmp_path / "pins.txt"  # this environment's versions: the same pydantic, numpy...
    pins.write_text("\n".join(ln for ln in freeze.splitlines()
                              if "==" in ln and not ln.startswith("promptgov")), encoding="utf-8")
    _install(uv, py, "-c", str(pins), str(wheel), "pydantic")

    # import: fast, and nothing outside the standard library and pydantic
    runs = [json.loads(_run(py, IMPORT).stdout) for _ in range(5)]
    import_ms = min(r["import_ms"] for r in runs)
    print(f"\nimport support_bot: {import_ms:.1f} ms (min of 5); with the schema classes "
          f"(pydantic): +{min(r['schemas_ms'] for r in runs):.1f} ms")
    assert import_ms < 150
    assert runs[0]["at_import"] == []
    assert set(runs[0]["with_schemas"]) <= PYDANTIC and "pydantic" in runs[0]["with_schemas"]
    r = _run(py, "import support_bot; support_bot.triage('x')", check=False)
    assert "needs wordllama and numpy" in r.stderr and "[offline] extra" in r.stderr

    # the offline extra (wordllama, numpy; no promptgov: local/knn is vendored in the package);
    # then 20 cases of each prompt give exactly the workbench's answers
    _install(uv, py, "-c", str(pins), f"{wheel}[offline]")
    site = next((venv / "lib").glob("python3.*/site-packages"))
    assert _run(py, "import importlib.util as u; print(u.find_spec('promptgov'))"
                ).stdout.strip() == "None"
    records = {ref: results[ref].records[:20] for ref in REFS}
    cases = tmp_path / "cases.json"
    cases.write_text(json.dumps({ref: [r["input"] for r in recs]
                                 for ref, recs in records.items()}), encoding="utf-8")
    got = json.loads(_run(py, RUN, str(cases)).stdout)
    routing = load_policy(root).routing
    want_triage = [{"action": routing.route(r["output"]["confidence"]),
                    "label": r["output"]["label"], "confidence": r["output"]["confidence"],
                    "error": None} for r in records["ticket_triage@2"]]
    assert got["triage"] == want_triage
    assert {d["action"] for d in got["triage"]} >= {"auto_process", "queue_for_human"}
    assert got["extract"] == [r["output"] for r in records["ticket_extraction@2"]]
    assert got["draft"] == [r["output"] for r in records["reply_draft@1"]]

    # verify: against the workspace it came from, and one where the approval is revoked; the
    # byte-for-byte comparison exports again, so it needs the workbench importable here
    _install(uv, py, "-c", str(pins), "jinja2", "pyyaml", "tomli-w")
    (site / "promptgov_dev.pth").write_text(str(ROOT / "src") + "\n", encoding="utf-8")
    verify = [str(py), "-m", "support_bot", "verify", "--workspace"]
    r = subprocess.run([*verify, str(root)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("ok: support-bot==1 matches"), r.stderr
    other = tmp_path / "other"
    shutil.copytree(root, other)
    pg.revoke("ticket_extraction@2", by="bob", reason="wrong dates", workspace=other)
    r = subprocess.run([*verify, str(other)], capture_output=True, text=True)
    assert r.returncode == 1 and "ticket_extraction@2 was revoked by bob" in r.stderr

    # an edited template inside site-packages: the import refuses, naming the file and hashes
    f = site / "support_bot/prompts/ticket_triage.json"
    expected = json.loads((site / "support_bot/manifest.json").read_text(encoding="utf-8"))[
        "files"]["prompts/ticket_triage.json"]
    f.write_text(f.read_text(encoding="utf-8").replace("Customer message:",
                                                       "Customer Message:"), encoding="utf-8")
    actual = "sha256:" + hashlib.sha256(f.read_bytes()).hexdigest()
    r = _run(py, "import support_bot", check=False)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("support_bot.IntegrityError: support-bot==1: "
                           "support_bot/prompts/ticket_triage.json was modified: ")
    assert f"sha256 is {actual}, manifest.json expects {expected}" in last
    r = subprocess.run([*verify, str(root)], capture_output=True, text=True)
    assert r.returncode == 1 and "IntegrityError" in r.stderr

    # a deliberate edit: runtime code and a schema changed, manifest.json rewritten to match.
    # The import-time check cannot see it; verify exports the release again and compares bytes.
    f.write_bytes(f.read_bytes().replace(b"Customer Message:", b"Customer message:"))
    manifest_path = site / "support_bot/manifest.json"
    m = json.loads(manifest_path.read_text(encoding="utf-8"))
    schema = next(k for k in m["files"] if k.startswith("schemas/") and k.endswith(".py")
                  and "triage" in k)
    for rel, old, new in (("_tasks.py", b"\n", b"\n# injected\n"),
                          (schema, b"\n", b"\n# confidence = 1.0 for everyone\n")):
        p = site / "support_bot" / rel
        p.write_bytes(p.read_bytes().replace(old, new, 1))
        m["files"][rel] = "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(m), encoding="utf-8")
    assert _run(py, "import support_bot", check=False).returncode == 0  # the manifest agrees
    r = subprocess.run([*verify, str(root)], capture_output=True, text=True)
    assert r.returncode == 1
    for rel in ("_tasks.py", schema, "manifest.json"):
        assert f"error: support_bot/{rel}: differs from the export of release support_bot" \
            in r.stderr, r.stderr

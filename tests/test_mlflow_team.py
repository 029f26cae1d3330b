"""Team mode: ``promptgov server`` on PostgreSQL (Debian's ``postgresql``, set up by
``scripts/postgres.sh``), four evals at once from four processes: every run and metric arrives,
nothing crashes. Each test run gets a fresh database, dropped at the end.

The races those evals run (first writes of shared rows: the evalset's dataset, the prompt, its
versions, its tags) are also shown one at a time, without a server, by a fake client whose
"other process" acts at the chosen moment.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from conftest import small_triage

ROOT = Path(__file__).resolve().parent.parent
EXE = Path(sys.executable).parent / "promptgov"
N = 20
server_logs: dict[str, Path] = {}
"""The server log of each server fixture's URL (a failure message quotes its tail)."""


def postgres_url() -> str:
    url = os.environ.get("PROMPTGOV_TEST_POSTGRES_URL")
    if url:
        return url
    if os.geteuid() != 0:
        pytest.fail("no PostgreSQL: set PROMPTGOV_TEST_POSTGRES_URL, or run as root so that "
                    "scripts/postgres.sh can install and start one (.ci/run does)")
    out = subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh")], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture(scope="module")
def database():
    """A fresh database on the test PostgreSQL; its URL."""
    import psycopg

    base = postgres_url()
    name = f"promptgov_t{uuid.uuid4().hex[:10]}"
    conn = psycopg.connect(base, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"create database {name}")
    yield base.rsplit("/", 1)[0] + f"/{name}"
    with conn.cursor() as cur:
        cur.execute(f"drop database if exists {name} with (force)")
    conn.close()


@pytest.fixture(scope="module")
def server(database, tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = tmp_path_factory.mktemp("team")
    log = (tmp / "server.log").open("wb")
    proc = subprocess.Popen([str(EXE), "server", "--backend-store-uri", database,
                             "--artifacts-destination", str(tmp / "artifacts"),
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    server_logs[url] = tmp / "server.log"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp / "server.log").read_text(errors="replace")[-3000:]
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.3)
    else:
        pytest.fail("promptgov server did not become healthy")
    yield url
    os.killpg(proc.pid, signal.SIGTERM)  # promptgov server stops its own group
    proc.wait(timeout=30)


@pytest.fixture
def ws(workspace_dir: Path) -> Path:
    return small_triage(workspace_dir, N)


def failures(procs: list[subprocess.Popen[str]], outs: list[tuple[str, str]],
             server: str) -> str:
    """Each failed process's exit code, full stderr and stdout, and the server log's tail: what a
    CI failure of the team test needs to say what happened."""
    parts = [f"process {i} (fake/team{i}) exited {p.returncode}\n--- stderr ---\n{err}"
             f"--- stdout ---\n{out}"
             for i, (p, (out, err)) in enumerate(zip(procs, outs, strict=True))
             if p.returncode != 0]
    log = server_logs.get(server)
    if log is not None and log.exists():
        parts.append("--- server log (last 6000 characters) ---\n"
                     + log.read_text(errors="replace")[-6000:])
    return "\n".join(parts)


@pytest.mark.slow
def test_four_evals_at_once_against_the_postgres_server(ws, server):
    # each process with a logger service of its own (a PROMPTGOV_LOGGER_* variable is part of
    # the service's key), as four team members' machines would: four writers at once
    env = {**os.environ, "MLFLOW_TRACKING_URI": server}
    procs = [subprocess.Popen([str(EXE), "eval", f"ticket_triage@{1 + i % 2}", "-e",
                               "triage_small", "-m", f"fake/team{i}", "--json", "-w", str(ws)],
                              env={**env, "PROMPTGOV_LOGGER_MACHINE": str(i)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(4)]
    outs = [p.communicate(timeout=400) for p in procs]
    if [p.returncode for p in procs] != [0] * 4:  # pytest.fail: the message is not truncated
        pytest.fail(failures(procs, outs, server))
    from mlflow import MlflowClient

    c = MlflowClient(tracking_uri=server, registry_uri=server)
    exp = c.get_experiment_by_name("ticket_triage")
    runs = {r.info.run_id: r for r in c.search_runs([exp.experiment_id])}
    for out, _ in outs:
        got = json.loads(out)
        run = runs[got["run_id"]]
        assert run.info.status == "FINISHED" and run.data.params["model"] == got["model"]
        assert run.data.metrics == pytest.approx(
            {k: v for k, v in got["metrics"].items() if v is not None})
        assert {a.path for a in c.list_artifacts(got["run_id"])} >= {"cases.json", "prompt"}
    assert not (ws / ".promptgov" / "mlflow.db").exists()  # nothing went to the local store
    # the prompt registry on the server links each version to its runs
    linked = {rid for v in c.search_prompt_versions("ticket_triage")
              for rid in (v.tags or {}).get("mlflow.prompt.run_ids", "").split(",") if rid}
    assert {json.loads(o)["run_id"] for o, _ in outs} <= linked


# --- the races, one at a time, without a server ----------------------------------------------

def lost(what: str = "UNIQUE") -> Exception:
    """What the MLflow client raises when the server's insert lost to another writer's."""
    from mlflow.exceptions import RestException

    if what == "exists":
        return RestException({"error_code": "RESOURCE_ALREADY_EXISTS",
                              "message": "Prompt (name=p) already exists."})
    return RestException({"error_code": "BAD_REQUEST", "message": (
        "(psycopg.errors.UniqueViolation) duplicate key value violates unique constraint "
        '"dataset_pk"\nDETAIL:  Key (experiment_id, name, digest)=(1, triage_small, ab) '
        "already exists.")})


@pytest.fixture
def no_pause(monkeypatch):
    from promptgov.eval import _runindex

    monkeypatch.setattr(_runindex, "pause", lambda attempt: None)


class Registry:
    """A prompt registry as a server holds it; ``other[method]`` is what another process does
    (once) just before this one's call of ``method`` reaches the server, ``after[method]`` just
    after it."""

    def __init__(self, other: dict[str, Any] | None = None,
                 after: dict[str, Any] | None = None):
        self.prompts: dict[str, dict[str, str]] = {}
        self.versions: dict[str, list[SimpleNamespace]] = {}
        self.other = dict(other or {})
        self.after = dict(after or {})
        self.version_tags: dict[str, str] = {}
        self.linked_runs: list[str] = []

    def _race(self, method: str) -> None:
        if method in self.other:
            self.other.pop(method)(self)

    def create_prompt(self, name: str, description: str = "", tags: Any = None) -> None:
        self._race("create_prompt")
        if name in self.prompts:
            raise lost("exists")
        self.prompts[name] = dict(tags or {})
        self.versions[name] = []

    def search_prompt_versions(self, name: str) -> list[SimpleNamespace]:
        from mlflow.exceptions import RestException

        if name not in self.prompts:
            raise RestException({"error_code": "RESOURCE_DOES_NOT_EXIST",
                                 "message": f"Prompt (name={name}) not found"})
        return list(self.versions[name])

    def register_prompt(self, name: str, template: Any, commit_message: str = "",
                        tags: Any = None) -> SimpleNamespace:
        self._race("register_prompt")
        if name not in self.prompts:  # MLflow would create it, and delete it if this failed
            raise AssertionError("register_prompt was left to create the prompt")
        vs = self.versions[name]
        v = SimpleNamespace(name=name, version=max((x.version for x in vs), default=0) + 1,
                            tags=dict(tags or {}))
        vs.append(v)
        return v

    def get_prompt_version(self, name: str, version: int) -> SimpleNamespace:
        return SimpleNamespace(tags=dict(self.version_tags))

    def set_prompt_version_tag(self, name: str, version: int, key: str, value: str) -> None:
        self._race("set_prompt_version_tag")
        self.version_tags[key] = value

    def search_runs(self, exps: list[str], filter_string: str, **kw: Any) -> list[Any]:
        """The runs whose ``promptgov.registry_version`` tag names the version."""
        return [SimpleNamespace(info=SimpleNamespace(run_id=r)) for r in self.linked_runs]

    def get_prompt(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(tags=dict(self.prompts[name]))

    def set_prompt_tag(self, name: str, key: str, value: str) -> None:
        self._race("set_prompt_tag")
        self.prompts[name][key] = value
        if "set_prompt_tag" in self.after:
            self.after.pop("set_prompt_tag")(self)


SNAP: dict[str, Any] = {"name": "p", "version": 2, "ref": "p@2", "system": "s", "user": "u {{x}}",
        "content_hash": "c2" * 8, "render_fingerprint": "f", "demos": 0}


def other_registers(content: str):
    def act(reg: Registry) -> None:
        reg.prompts.setdefault("p", {})
        reg.versions.setdefault("p", [])
        reg.register_prompt("p", [], tags={"promptgov.content_hash": content})
    return act


def test_a_prompt_created_at_once_by_another_process_is_used(no_pause):
    """Both find no prompt; the other creates it first: this one's create is refused (already
    exists), and it adds its version to the other's prompt (MLflow's register_prompt never
    creates the prompt: it deletes a prompt it created when adding the version fails)."""
    from promptgov.eval._runlog import register_prompt

    reg = Registry({"create_prompt": lambda r: r.create_prompt("p", tags={})})
    v = register_prompt(reg, SNAP)
    assert (v.version, reg.versions["p"]) == (1, [v])


def test_the_same_content_registered_at_once_links_one_version(no_pause):
    """The other registers the same content between this one's search and its registration:
    both use the first version (this one's stays unused), so their runs are listed together."""
    from promptgov.eval._runlog import register_prompt

    reg = Registry({"register_prompt": other_registers(SNAP["content_hash"])})
    assert register_prompt(reg, SNAP).version == 1
    assert register_prompt(reg, SNAP).version == 1  # and so does every later one
    # another content registered meanwhile: this one's version is its own
    reg = Registry({"register_prompt": other_registers("c1" * 8)})
    assert register_prompt(reg, SNAP).version == 2


def test_a_registration_that_lost_a_race_looks_again(no_pause):
    """The other registered the same content, and this one's registration failed (the version
    number was taken): it looks again and uses the other's version."""
    from promptgov.eval._runlog import register_prompt

    def other_wins(reg: Registry) -> None:
        other_registers(SNAP["content_hash"])(reg)
        raise lost()

    reg = Registry({"register_prompt": other_wins})
    reg.prompts["p"], reg.versions["p"] = {}, []
    assert register_prompt(reg, SNAP).version == 1 and len(reg.versions["p"]) == 1


def test_a_stale_list_write_does_not_drop_another_processes_run():
    """Run ``x`` is linked and checked by its process; this process read the version's run
    lists before that and writes after it, dropping ``x`` (MLflow has no compare-and-set).
    Its next look finds run ``x`` tagged with the version and puts it back: the last writer's
    look always follows the last write, so no run is missing in the end."""
    from promptgov.eval._runlog import _RUN_KEYS, _link_version_to_run

    def x_links_and_leaves(reg: Registry) -> None:
        reg.linked_runs.insert(0, "x")  # x's run tag, then its lists (checked: it leaves)
        reg.version_tags.update({k: "x" for k in _RUN_KEYS})

    reg = Registry({"set_prompt_version_tag": x_links_and_leaves})
    reg.linked_runs.append("y")
    _link_version_to_run(reg, "y", SimpleNamespace(name="p", version=1), False, "5")
    assert [reg.version_tags[k] for k in _RUN_KEYS] == ["y,x", "y,x"]


def test_the_experiment_link_survives_another_processes_write(no_pause):
    """Another process links another experiment at the same moment: both read the list before
    either wrote, and its write lands after this one's (replacing it), or it wins the first
    insert of the tag; either way this one's experiment is in the list in the end."""
    from mlflow.prompt.constants import PROMPT_EXPERIMENT_IDS_TAG_KEY as KEY

    from promptgov.eval._runlog import _link_prompt_to_experiment

    def writes_7(reg: Registry) -> None:
        reg.prompts["p"][KEY] = ",7,"

    reg = Registry(after={"set_prompt_tag": writes_7})
    reg.prompts["p"] = {}
    _link_prompt_to_experiment(reg, "p", "3")
    assert reg.prompts["p"][KEY] == ",7,3,"

    def wins_the_insert(reg: Registry) -> None:
        writes_7(reg)
        raise lost()

    reg = Registry({"set_prompt_tag": wins_the_insert})
    reg.prompts["p"] = {}
    _link_prompt_to_experiment(reg, "p", "3")
    assert reg.prompts["p"][KEY] == ",7,3,"


def test_the_servers_client_logs_a_dataset_input_that_lost_a_race(tmp_path, monkeypatch,
                                                                  no_pause):
    """Four evals starting at once log one evalset as a dataset input of one experiment: the
    server inserts the dataset for each that does not see it yet, and all but one fail on its
    key (UniqueViolation on ``dataset_pk``, answered 400). The loser logs it again (the server
    then reuses the dataset); other failures are not repeated."""
    from mlflow import MlflowClient

    from promptgov.eval._tracking import client

    calls: list[str] = []
    answers = [lost(), None]

    def log_inputs(self: Any, run_id: str, datasets: Any = None, models: Any = None) -> None:
        calls.append(run_id)
        answer = answers.pop(0)
        if answer is not None:
            raise answer

    monkeypatch.setattr(MlflowClient, "log_inputs", log_inputs)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    c = client(tmp_path)
    c.log_inputs("r1", datasets=[])
    assert calls == ["r1", "r1"]
    from mlflow.exceptions import RestException

    answers[:] = [RestException({"error_code": "RESOURCE_DOES_NOT_EXIST",
                                 "message": "Run 'r2' not found"})]
    with pytest.raises(RestException, match="not found"):
        c.log_inputs("r2", datasets=[])
    assert calls == ["r1", "r1", "r2"]


def test_the_view_tag_added_at_once_by_another_process_is_kept(tmp_path, monkeypatch,
                                                                no_pause):
    """An experiment made elsewhere has no promptgov view; two evals add it at once, and this
    one's first write of the tag loses the insert: the experiment is used as it is."""
    from promptgov.eval._tracking import experiment_id

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    writes: list[str] = []

    def set_experiment_tag(exp: str, key: str, value: str) -> None:
        writes.append(key)
        raise lost()

    c = SimpleNamespace(tracking_uri="http://127.0.0.1:9", set_experiment_tag=set_experiment_tag,
                        get_experiment_by_name=lambda name: SimpleNamespace(
                            experiment_id="5", tags={}))
    assert experiment_id(c, tmp_path, "ticket_triage") == "5"
    assert writes == ["mlflow.sharedViewState.promptgov"]

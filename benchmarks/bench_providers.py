"""Real-provider path against the same work in bare httpx, DSPy and pydantic-evals.

A loopback OpenAI-compatible server (aiohttp, its own process, 50 ms per answer) plays the
provider. Each harness runs in a fresh process, 1,000 triage cases at concurrency 16 (physical
limit 1,000 × 0.05 / 16 = 3.125 s), in this order each round:

- ``httpx``: a bare ``httpx.AsyncClient``, 16 requests in flight, the answer's JSON parsed;
- ``dspy``: ``dspy.Evaluate(num_threads=16)`` over ``dspy.Predict`` (a ``text -> label``
  signature) on ``dspy.LM("openai/gpt-4o-mini", api_base=..., cache=False)`` (default engine);
- ``pydantic-evals``: ``Dataset.evaluate_sync(max_concurrency=16)`` whose task runs a
  pydantic-ai ``Agent`` (OpenAI chat model at the loopback base URL, structured output);
- ``promptgov``: ``promptgov.evaluate`` of the zero-shot triage prompt (the example prompt's
  system text and label list, no demos: what DSPy's Predict sends too) with
  ``openai/gpt-4o-mini`` at the loopback ``api_base``, a fresh response cache (every answer is
  a miss, journaled and folded into SQLite), ``track=False``;
- ``promptgov-tracked``: the same, tracked to the workspace's MLflow store. The workspace is a
  new one per process, so its logger service starts cold (it imports MLflow on the other core
  while the cases run): the first tracked eval of a session, the worst case.

The server answers in each harness's format: JSON for a ``response_format``, DSPy's
``[[ ## label ## ]]`` fields for its chat adapter, a tool call when tools are offered.
Reported per harness, median of ``--rounds`` (3): the eval wall (the harness's own eval call:
``Evaluate(...)(program)``, ``evaluate_sync``, ``pg.evaluate``; the client is built before it in
each, ``dspy.LM(...)`` / ``model.load()``) and the whole-process wall (interpreter start, imports,
workspace and client set-up included).

Run:  ``.venv/bin/python -m benchmarks.bench_providers`` (``make bench`` runs it with the rest).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = 16
MODEL = "openai/gpt-4o-mini"
HARNESSES = ("httpx", "dspy", "pydantic-evals", "promptgov", "promptgov-tracked")
ANSWER = {"label": "card_arrival", "confidence": 0.9}


# -- the provider: a loopback server in its own process ------------------------------------

def serve(port_file: str, latency: float) -> None:
    import asyncio

    from aiohttp import web

    def answer(body: dict) -> dict:
        message: dict = {"role": "assistant", "content": json.dumps(ANSWER)}
        text = json.dumps(body.get("messages", []))
        if body.get("tools"):
            tool = body["tools"][0]["function"]["name"]
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": tool, "arguments": json.dumps(ANSWER)}}]}
        elif "response_format" not in body and "[[ ## " in text:
            message["content"] = (f"[[ ## label ## ]]\n{ANSWER['label']}\n\n"
                                  "[[ ## completed ## ]]")
        return {"id": "chatcmpl-bench", "object": "chat.completion", "created": 0,
                "model": body.get("model", "gpt-4o-mini"),
                "choices": [{"index": 0, "finish_reason": "tool_calls" if body.get("tools")
                             else "stop", "message": message}],
                "usage": {"prompt_tokens": 400, "completion_tokens": 12, "total_tokens": 412}}

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(latency)
        return web.json_response(answer(body))

    async def main() -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", chat)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = runner.addresses[0][1]
        Path(port_file + ".tmp").write_text(str(port))
        os.replace(port_file + ".tmp", port_file)
        await asyncio.Event().wait()

    asyncio.run(main())


# -- the cases -----------------------------------------------------------------------------

def cases(n: int) -> list[tuple[str, str, str]]:
    base = [json.loads(line) for line in
            (ROOT / "evalsets" / "ticket_triage" / "cases.jsonl").read_text().splitlines()
            if line.strip()]
    return [(f"bench-{i:05d}", f"{base[i % len(base)]['input']['text']} (#{i})",
             base[i % len(base)]["expected"]["label"]) for i in range(n)]


def make_workspace(dst: Path, n: int) -> Path:
    """The triage prompt without demos, its schema and policy, and ``n`` generated cases."""
    import tomllib

    import tomli_w
    import yaml

    dst.mkdir(parents=True)
    shutil.copytree(ROOT / "schemas", dst / "schemas")
    # The engine's settings of the example policy (retries, routing, prices); its gates name
    # prompts this scratch workspace does not have, and nothing here is locked or approved.
    policy = tomllib.loads((ROOT / "governance" / "policy.toml").read_text(encoding="utf-8"))
    (dst / "governance").mkdir()
    (dst / "governance" / "policy.toml").write_text(tomli_w.dumps(
        {k: v for k, v in policy.items() if k in ("routing", "retry", "prices")}),
        encoding="utf-8")
    prompt = yaml.safe_load((ROOT / "prompts" / "ticket_triage" / "v1.yaml").read_text())
    prompt.update(demos=[], description="Banking77 triage, zero-shot (bench_providers).")
    (dst / "prompts" / "ticket_triage").mkdir(parents=True)
    (dst / "prompts" / "ticket_triage" / "v1.yaml").write_text(
        yaml.safe_dump(prompt, sort_keys=False, allow_unicode=True), encoding="utf-8")
    es = dst / "evalsets" / "ticket_triage"
    es.mkdir(parents=True)
    with (es / "cases.jsonl").open("w", encoding="utf-8") as f:
        for cid, text, label in cases(n):
            f.write(json.dumps({"id": cid, "input": {"text": text},
                                "expected": {"label": label}}) + "\n")
    (es / "manifest.yaml").write_text(
        "name: ticket_triage\nversion: 1\nsource: benchmarks/bench_providers.py (generated)\n"
        f"license: CC-BY-4.0\ncount: {n}\n", encoding="utf-8")
    return dst


# -- the harnesses (each in its own process) -------------------------------------------------

def run_httpx(base: str, n: int) -> float:
    import asyncio

    import httpx

    async def main() -> float:
        sem = asyncio.Semaphore(CONCURRENCY)
        limits = httpx.Limits(max_connections=CONCURRENCY)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
            async def one(text: str) -> str:
                async with sem:
                    r = await client.post("/chat/completions", json={
                        "model": "gpt-4o-mini", "temperature": 0.0, "messages": [
                            {"role": "system", "content": "Triage the message."},
                            {"role": "user", "content": text}]},
                        headers={"Authorization": f"Bearer {os.environ['OPENAI_API_KEY']}"})
                    r.raise_for_status()
                    return json.loads(r.json()["choices"][0]["message"]["content"])["label"]

            t0 = time.perf_counter()
            labels = await asyncio.gather(*(one(text) for _, text, _ in cases(n)))
            wall = time.perf_counter() - t0
        assert len(labels) == n
        return wall

    return asyncio.run(main())


def run_dspy(base: str, n: int) -> float:
    from typing import Literal

    import dspy
    import yaml

    labels = tuple(yaml.safe_load(
        (ROOT / "prompts" / "ticket_triage" / "v1.yaml").read_text())["labels"])

    triage = dspy.Signature({"text": (str, dspy.InputField()),
                             "label": (Literal[labels], dspy.OutputField())},
                            "Triage a customer message for a digital bank: its intent label.")

    lm = dspy.LM(MODEL, api_base=base, cache=False, num_retries=0)
    dspy.configure(lm=lm)
    devset = [dspy.Example(text=text, label=label).with_inputs("text")
              for _, text, label in cases(n)]
    ev = dspy.Evaluate(devset=devset, metric=lambda ex, pred, trace=None: ex.label == pred.label,
                       num_threads=CONCURRENCY, display_progress=False, display_table=False)
    t0 = time.perf_counter()
    res = ev(dspy.Predict(triage))
    wall = time.perf_counter() - t0
    assert len(res.results) == n
    return wall


def run_pydantic_evals(base: str, n: int) -> float:
    from pydantic import BaseModel
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider
    from pydantic_evals import Case, Dataset

    class Triage(BaseModel):
        label: str
        confidence: float

    model = OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(
        base_url=base, api_key=os.environ["OPENAI_API_KEY"]))
    agent = Agent(model, output_type=Triage,
                  instructions="Triage the customer message for a digital bank.")

    async def task(text: str) -> str:
        return (await agent.run(text)).output.label

    ds = Dataset(name="bench", cases=[Case(name=cid, inputs=text, expected_output=label)
                                      for cid, text, label in cases(n)])
    t0 = time.perf_counter()
    report = ds.evaluate_sync(task, max_concurrency=CONCURRENCY, progress=False)
    wall = time.perf_counter() - t0
    assert len(report.cases) == n and not report.failures, report.failures[:1]
    return wall


def run_promptgov(base: str, n: int, track: bool = False) -> float:
    import promptgov as pg

    with tempfile.TemporaryDirectory() as tmp:
        ws = pg.Workspace(make_workspace(Path(tmp) / "ws", n))
        # Set-up before the timer, as the DSPy harness builds its devset, program and dspy.LM
        # before its own: the prompt version, the evalset, the model (importing dspy).
        pv, es = ws.prompt("ticket_triage@1"), ws.evalset("ticket_triage")
        model = pg.get_model(MODEL, api_base=base)
        model.load()
        t0 = time.perf_counter()
        r = pg.evaluate(pv, es, workspace=ws, model=model, concurrency=CONCURRENCY, track=track)
        wall = time.perf_counter() - t0
        assert r.calls == n and r.metrics["failure_rate"] == 0, r
        assert (r.run_id is not None) == track
    return wall


RUNNERS = {"httpx": run_httpx, "dspy": run_dspy, "pydantic-evals": run_pydantic_evals,
           "promptgov": run_promptgov,
           "promptgov-tracked": lambda base, n: run_promptgov(base, n, track=True)}


def harness(name: str, base: str, n: int) -> None:
    """Entry of one harness process: prints ``{"eval_s": ...}``."""
    print(json.dumps({"eval_s": RUNNERS[name](base, n)}), flush=True)


# -- the driver ----------------------------------------------------------------------------

def available(name: str) -> str | None:
    """None, or why the harness cannot run here."""
    import importlib.util

    need = {"pydantic-evals": ("pydantic_evals", "pydantic_ai")}.get(name, ())
    missing = [m for m in need if importlib.util.find_spec(m) is None]
    return f"not installed: {', '.join(missing)}" if missing else None


def one_process(name: str, base: str, n: int) -> tuple[float, float]:
    env = {**os.environ, "OPENAI_API_KEY": "sk-bench-not-a-real-key",
           "LITELLM_LOCAL_MODEL_COST_MAP": "True", "MLFLOW_DISABLE_TELEMETRY": "true"}
    for var in ("OPENAI_API_BASE", "OPENAI_BASE_URL"):
        env.pop(var, None)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_providers", "--harness", name,
                           "--base", base, "--cases", str(n)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    total = time.perf_counter() - t0
    if done.returncode:
        raise RuntimeError(f"{name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["eval_s"], total


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default=",".join(HARNESSES),
                    help="comma-separated harnesses to run (default: all)")
    ap.add_argument("--harness", choices=HARNESSES, help=argparse.SUPPRESS)
    ap.add_argument("--base", help=argparse.SUPPRESS)
    ap.add_argument("--serve", metavar="PORT_FILE", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        serve(args.serve, args.latency)
        return {}
    if args.harness:
        harness(args.harness, args.base, args.cases)
        return {}

    limit = args.cases * args.latency / CONCURRENCY
    with tempfile.TemporaryDirectory() as tmp:
        port_file = str(Path(tmp) / "port")
        server = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_providers",
                                   "--serve", port_file, "--latency", str(args.latency)],
                                  cwd=ROOT)
        try:
            deadline = time.monotonic() + 30
            while not Path(port_file).exists():
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the loopback server did not start")
                time.sleep(0.05)
            base = f"http://127.0.0.1:{Path(port_file).read_text()}/v1"
            chosen = [h for h in HARNESSES if h in args.only.split(",")]
            skipped = {h: why for h in chosen if (why := available(h))}
            runs: dict[str, list[tuple[float, float]]] = {h: [] for h in chosen
                                                          if h not in skipped}
            for r in range(args.rounds):
                for h in runs:
                    runs[h].append(one_process(h, base, args.cases))
                    print(f"round {r + 1}: {h:15} eval {runs[h][-1][0]:6.2f} s   "
                          f"process {runs[h][-1][1]:6.2f} s", flush=True)
        finally:
            server.terminate()
            server.wait(timeout=10)

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"\n{args.cases} cases, {args.latency * 1000:g} ms per answer, concurrency "
          f"{CONCURRENCY}: physical limit {limit:.3f} s; median of {args.rounds}; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores\n")
    print("| harness | eval wall s | × limit | whole process s |")
    print("|---|---|---|---|")
    table = {}
    for h, rs in runs.items():
        ev, total = statistics.median(x[0] for x in rs), statistics.median(x[1] for x in rs)
        table[h] = {"eval_s": ev, "process_s": total}
        print(f"| {h} | {ev:.2f} | {ev / limit:.2f} | {total:.2f} |")
    for h, why in skipped.items():
        print(f"| {h} | skipped ({why}) | | |")
    if "dspy" in table and "promptgov" in table:
        p, d = table["promptgov"], table["dspy"]
        ok = p["eval_s"] <= d["eval_s"] and p["process_s"] <= d["process_s"]
        print(f"\npromptgov vs dspy.Evaluate: eval {p['eval_s'] / d['eval_s']:.2f}×, whole "
              f"process {p['process_s'] / d['process_s']:.2f}× -> "
              + ("target met" if ok else "TARGET MISSED"))
    return table


if __name__ == "__main__":
    main()

"""``python -m <package> worker|submit|status|dlq|retry ID|trace ID``: operate the job queue.

The queue is ``--queue URL`` or the environment variable ``<PACKAGE>_JOBS`` (default
``sqlite:///jobs.db``). A provider's key comes from its usual environment variable
(``OPENAI_API_KEY``...), never from the command line, and never reaches a trace.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

COMMANDS = ("worker", "submit", "status", "dlq", "retry", "trace")


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], pkg: str) -> None:
    """Add the job commands to the ``python -m <pkg>`` parser's subparsers."""
    env = f"{pkg.upper()}_JOBS"

    def cmd(name: str, help: str) -> argparse.ArgumentParser:  # noqa: A002
        p = sub.add_parser(name, help=help)
        p.add_argument("--queue", "-q", default=os.environ.get(env, "sqlite:///jobs.db"),
                       help=f"sqlite:///PATH or redis://HOST:6379/0 (env {env}; default "
                       "sqlite:///jobs.db)")
        p.add_argument("--name", help="BullMQ queue name (default: the package name)")
        return p

    w = cmd("worker", "run queued jobs until stopped (SIGTERM/Ctrl-C finish the jobs in hand)")
    w.add_argument("--concurrency", "-c", type=int, default=16)
    w.add_argument("--model", help="a LiteLLM id (default: each prompt's approved model)")
    w.add_argument("--api-base", help="the provider's base URL (LiteLLM ids only)")
    w.add_argument("--until-idle", action="store_true", help="exit when no job is left")
    w.add_argument("--visibility", type=float, help="seconds before a dead worker's job is "
                   "taken again (default 30)")
    s = cmd("submit", "queue a job; a duplicate (same key and input) returns the first")
    s.add_argument("function", help="extract, triage or draft (those the package offers)")
    s.add_argument("input", help='the input as a JSON object, e.g. \'{"text": "..."}\'')
    s.add_argument("--key", "-k", required=True, help="idempotency key, e.g. tenant/ticket-1")
    s.add_argument("--wait", type=float, metavar="SECONDS", help="wait for the result")
    for name, help in (("status", "jobs per state and triage routes"),  # noqa: A001
                       ("dlq", "the dead letters: jobs that failed for good")):
        cmd(name, help).add_argument("--json", action="store_true")
    cmd("retry", "queue a dead letter again").add_argument("id")
    cmd("trace", "a job's trace as JSON: attempts, errors, tokens, cost").add_argument("id")


def run(args: argparse.Namespace, pkg: str) -> int:
    mod = __import__(pkg)
    from . import jobs

    opts = {"visibility_s": getattr(args, "visibility", None)}
    try:
        if getattr(args, "model", None):
            mod.configure(model=args.model, api_base=args.api_base)
        q = jobs.open(args.queue, name=args.name, bundle=mod._BUNDLE,
                      **{k: v for k, v in opts.items() if v is not None})
        try:
            return _COMMANDS[args.command](q, args)
        finally:
            q.close()
    except (mod.Error, ValueError, TimeoutError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _worker(q: Any, args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set():  # a second Ctrl-C: leave now (the jobs in hand are taken again)
            os._exit(130)
        print("stopping: finishing the jobs in hand (again to quit at once)", file=sys.stderr)
        stop.set()

    from ._jobs import preflight

    preflight(q.bundle)  # a missing extra: one line now, not a failure per job
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    print(f"worker on {q.status()['queue']}: {args.concurrency} at a time", file=sys.stderr,
          flush=True)
    n = q.work(concurrency=args.concurrency, until_idle=args.until_idle, stop=stop)
    print(f"worker stopped: {n} job(s) finished", file=sys.stderr)
    return 0


def _submit(q: Any, args: argparse.Namespace) -> int:
    try:
        inputs = json.loads(args.input)
    except ValueError as e:
        print(f"error: the input is not JSON ({e}) (fix: quote a JSON object, e.g. "
              "'{\"text\": \"Where is my card?\"}')", file=sys.stderr)
        return 1
    s = q.submit(args.function, inputs, key=args.key)
    out: dict[str, Any] = {"id": s.id, "state": s.state, "duplicate": not s.created}
    if args.wait is not None:
        from .jobs import JobFailed

        try:
            out["result"] = q.result(s.id, timeout=args.wait)
            out["state"] = "completed"
        except JobFailed as e:
            out.update(state="dead", error=str(e))
    print(json.dumps(out, ensure_ascii=False))
    return 1 if out["state"] == "dead" else 0


def _status(q: Any, args: argparse.Namespace) -> int:
    st = q.status()
    if args.json:
        print(json.dumps(st))
        return 0
    print(st["queue"])
    print("  ".join(f"{k} {v}" for k, v in st["jobs"].items()))
    if st["routes"]:
        print("routes: " + "  ".join(f"{k} {v}" for k, v in sorted(st["routes"].items())))
    return 0


def _dlq(q: Any, args: argparse.Namespace) -> int:
    dead = q.dead_letters()
    if args.json:
        print(json.dumps(dead, ensure_ascii=False))
        return 0
    for t in dead:
        print(f"{t['id']}  {t['function']}  {t['key']}  {t['error_kind']}: {t['error']}")
    print(f"{len(dead)} dead letter(s)", file=sys.stderr)
    return 0


def _retry(q: Any, args: argparse.Namespace) -> int:
    q.retry(args.id)
    print(f"queued {args.id} again")
    return 0


def _trace(q: Any, args: argparse.Namespace) -> int:
    print(json.dumps(q.trace(args.id), indent=1, ensure_ascii=False))
    return 0


_COMMANDS = {"worker": _worker, "submit": _submit, "status": _status, "dlq": _dlq,
             "retry": _retry, "trace": _trace}

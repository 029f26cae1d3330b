"""``python -m <package> verify --workspace PATH`` (exit 1 on any mismatch),
``python -m <package> info`` (what the package ships, with every hash), and the job queue's
``worker|submit|status|dlq|retry ID|trace ID`` (see ``_jobs_cli``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import cast

from . import _jobs_cli


def main(argv: list[str] | None = None) -> int:
    # run as `python -m <package>` (the relative import above needs that): its name
    pkg = cast(str, __spec__.parent if __spec__ else __package__)
    parser = argparse.ArgumentParser(prog=f"python -m {pkg}", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="check the installed package against a workspace's lock "
                       "and approvals (exit 1 on any mismatch)")
    v.add_argument("--workspace", "-w", required=True, help="the promptgov workspace checkout")
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    sub.add_parser("info", help="print manifest.json: release, prompts, hashes, approvals")
    _jobs_cli.add_commands(sub, pkg)
    args = parser.parse_args(argv)
    try:
        mod = __import__(pkg)
    except Exception as e:  # the integrity error on import is this command's answer too
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if args.command in _jobs_cli.COMMANDS:
        return _jobs_cli.run(args, pkg)
    if args.command == "info":
        print(json.dumps(mod.MANIFEST, indent=1, ensure_ascii=False))
        return 0
    result = mod.verify(args.workspace)
    if args.json:
        print(json.dumps({"ok": result.ok, "package": result.package,
                          "workspace": result.workspace, "problems": result.problems}, indent=1))
    elif result.ok:
        print(result)
    else:
        for line in result.problems:
            print(f"error: {line}", file=sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())

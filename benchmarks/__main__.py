"""Run every benchmark whose figures the README records: ``python -m benchmarks`` (or
``make bench``). Each also runs alone: ``python -m benchmarks.bench_check`` etc."""

import subprocess
import sys

for name in ("bench_check", "bench_knn", "bench_engine", "bench_jobs", "bench_providers",
             "bench_tracking"):
    print(f"\n=== {name} ===", flush=True)
    rc = subprocess.call([sys.executable, "-m", f"benchmarks.{name}"])
    if rc:
        sys.exit(rc)

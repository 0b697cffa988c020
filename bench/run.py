"""Run the offline benchmarks one after another; each writes its section of docs/benchmarks.md.

    python bench/run.py    # estimator, exporter, imports, faults, capacity, latency (the testbed one is
                           # separate: python -m bench.bench_testbed, about 10 minutes of real load)

Stops at the first benchmark that fails and exits with its status.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = (
    [sys.executable, "bench/bench_estimator.py"],
    [sys.executable, "-m", "bench.bench_exporter"],
    [sys.executable, "bench/bench_import.py"],
    [sys.executable, "bench/bench_json_import.py"],
    [sys.executable, "bench/bench_faults.py"],
    [sys.executable, "bench/bench_capacity.py"],
    [sys.executable, "bench/bench_latency.py"],
)


def main() -> int:
    for command in COMMANDS:
        print("$", " ".join(["python", *command[1:]]), flush=True)
        status = subprocess.call(command, cwd=ROOT)
        if status != 0:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())

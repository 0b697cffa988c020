"""A step load test: one headless Locust run per user count, each writing its own stats CSV.

    python -m loadgen.steps --host URL --users 5,10,20,40 [--seconds 60] [--out steps]

`deeprest capacity --runs steps/step-*_stats.csv` then reads the served rate and the latency
percentiles of every API at every step.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from estimator.errors import InputError
from loadgen.headless import HeadlessRun


@dataclass(frozen=True)
class StepTest:
    """Where to send load, the users of each step, how long each step lasts, where CSVs go."""

    host: str
    out: Path
    users: tuple[int, ...]
    seconds: float = 60.0

    def __post_init__(self) -> None:
        if not self.users or any(u < 1 for u in self.users):
            raise InputError("needs at least one step, each with 1 user or more", field="users")
        if not self.seconds > 0:
            raise InputError("must be > 0", field="seconds")

    def runs(self) -> list[HeadlessRun]:
        """One constant-users run per step."""
        return [
            HeadlessRun(self.host, self.out / f"step-{u:05d}", shape="constant",
                        period_s=self.seconds, step_s=self.seconds, base_users=u, peak_users=u,
                        noise=0.0)
            for u in self.users
        ]  # fmt: skip


def run_steps(test: StepTest, say: Callable[[str], None] = print) -> list[Path]:
    """Play every step in turn; the stats file of each. Failed requests do not stop the test."""
    test.out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, run in enumerate(test.runs(), start=1):
        say(f"step {i}/{len(test.users)}: {run.peak_users} users for {test.seconds:g} s")
        command = [*run.command(), "--exit-code-on-error", "0"]
        done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=test.seconds + 120)  # fmt: skip
        stats = Path(f"{run.csv_prefix}_stats.csv")
        if done.returncode != 0 or not stats.exists():
            raise RuntimeError(f"locust failed at step {i}: {done.stderr[-1000:]}")
        written.append(stats)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", required=True, help="front end URL")
    parser.add_argument("--users", required=True, help="comma-separated users per step")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each step")
    parser.add_argument("--out", type=Path, default=Path("steps"), help="directory for the CSVs")
    args = parser.parse_args(argv)
    try:
        users = tuple(int(u) for u in args.users.split(","))
        test = StepTest(args.host, args.out, users, args.seconds)
    except (ValueError, InputError) as exc:
        print(f"loadgen.steps: error: --users/--seconds: {exc}", file=sys.stderr)
        return 2
    files = run_steps(test, lambda m: print(m, file=sys.stderr))
    print(f"deeprest capacity --runs {' '.join(map(str, files))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A step load test: one headless Locust run per user count, summed up in one step table.

    python -m loadgen.steps --host URL --users 5,10,20,40 [--rate-per-user 2] [--seconds 60]
                            [--out steps]

Each step leaves Locust's own CSVs (`steps/step-NNNNN_stats.csv`, ...) and a row per API in
`steps/steps.csv`: users, api, offered_rps, achieved_rps, requests, failures and the latency
percentiles in ms, which `deeprest capacity --runs steps` (or `steps/steps.csv`) reads. With
`--rate-per-user R` each user keeps pace with R requests per second, so a step of N users offers
N * R: a step whose server cannot keep up serves less than that, and capacity reads it as
saturated. Without it users think between requests (closed loop): there is no offered rate, and
no step counts as saturated.

The served rate is read once every user runs (Locust's per-second history), so the first
second's start-up does not count as a shortfall; an API's share of it is its share of the step's
requests.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from estimator.errors import InputError
from exporter.loadtests import STEP_TABLE
from loadgen import children
from loadgen.headless import HeadlessRun


@dataclass(frozen=True)
class StepTest:
    """Where to send load, the users of each step, how long each step lasts, where CSVs go."""

    host: str
    out: Path
    users: tuple[int, ...]
    seconds: float = 60.0
    rate_per_user: float = 0.0

    def __post_init__(self) -> None:
        if not self.users or any(u < 1 for u in self.users):
            raise InputError("needs at least one step, each with 1 user or more", field="users")
        if not 0 < self.seconds <= 86400:
            raise InputError("must be > 0 and at most a day (86400)", field="seconds")
        if not 0 <= self.rate_per_user < float("inf"):
            raise InputError("must be >= 0 (0: no pace)", field="rate_per_user")

    def runs(self) -> list[HeadlessRun]:
        """One constant-users run per step."""
        return [
            HeadlessRun(self.host, self.out / f"step-{u:05d}", shape="constant",
                        period_s=self.seconds, step_s=self.seconds, base_users=u, peak_users=u,
                        noise=0.0, rate_per_user=self.rate_per_user)
            for u in self.users
        ]  # fmt: skip


PERCENTILES = ("50%", "90%", "95%", "99%")
"""Locust's percentile columns (ms) that the step table keeps, as latency_pNN_ms."""


def run_steps(test: StepTest, say: Callable[[str], None] = print) -> Path:
    """Play every step in turn and write the step table; its path. Failed requests do not stop
    the test (nor count as served); a Locust run that fails, or a step whose every request
    failed, does (RuntimeError)."""
    test.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, str]] = []
    for i, run in enumerate(test.runs(), start=1):
        say(f"step {i}/{len(test.users)}: {run.peak_users} users for {test.seconds:g} s")
        command = [*run.command(), "--exit-code-on-error", "0"]
        done = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=test.seconds + 120,
                              preexec_fn=children.die_with_parent())  # fmt: skip
        stats = Path(f"{run.csv_prefix}_stats.csv")
        if done.returncode != 0 or not stats.exists():
            raise RuntimeError(f"locust failed at step {i}: {done.stderr[-1000:]}")
        step = step_rows(run.peak_users, run.csv_prefix, test.rate_per_user)
        total = next((r for r in step if r["api"] == "Aggregated"), None)
        if total is None or total["failures"] == total["requests"]:
            raise RuntimeError(
                f"every request of step {i} failed (is {test.host} up?): "
                f"{first_failure(run.csv_prefix) or 'no request was made'}"
            )
        rows += step
    table = test.out / STEP_TABLE
    columns = ["users", "api", "offered_rps", "achieved_rps", "requests", "failures"]
    columns += [f"latency_p{p[:-1]}_ms" for p in PERCENTILES]
    if not test.rate_per_user:
        columns.remove("offered_rps")
    with open(table, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return table


def first_failure(prefix: Path) -> str | None:
    """The most frequent error of a Locust run, from its failures CSV (None if there is none)."""
    try:
        with open(f"{prefix}_failures.csv", newline="") as handle:
            rows = sorted(csv.DictReader(handle), key=lambda r: -int(r.get("Occurrences") or 0))
    except (OSError, ValueError):
        return None
    return rows[0].get("Error") if rows else None


def steady_rate(history: Path, users: int) -> float | None:
    """Requests per second served from the first second all `users` ran to the end of the run,
    from Locust's per-second history; None where it spans under a second."""
    with open(history, newline="") as handle:
        marks = [
            (float(r["Timestamp"]), float(r["Total Request Count"]))
            for r in csv.DictReader(handle)
            if r["Name"] == "Aggregated" and int(r["User Count"]) >= users
        ]
    if len(marks) < 2 or marks[-1][0] <= marks[0][0]:
        return None
    return (marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0])


def step_rows(users: int, prefix: Path, rate_per_user: float) -> list[dict[str, str]]:
    """The step table's rows of one Locust run: one per API with requests, and 'Aggregated'."""
    with open(f"{prefix}_stats.csv", newline="") as handle:
        stats = [r for r in csv.DictReader(handle) if int(r["Request Count"]) > 0]
    total = next((r for r in stats if r["Name"] == "Aggregated"), None)
    if total is None:
        return []
    requests = float(total["Request Count"])
    served = steady_rate(Path(f"{prefix}_stats_history.csv"), users)
    if served is None:
        served = float(total["Requests/s"])
    rows = []
    for r in stats:
        share = float(r["Request Count"]) / requests
        ok = 1.0 - float(r["Failure Count"]) / float(r["Request Count"])  # failures are not served
        api = f"{r['Type']} {r['Name']}".strip() if r.get("Type") else r["Name"]  # GET, POST apart
        row = {"users": str(users), "api": api, "achieved_rps": f"{served * share * ok:.4f}",
               "requests": r["Request Count"], "failures": r["Failure Count"]}  # fmt: skip
        if rate_per_user:
            row["offered_rps"] = f"{users * rate_per_user * share:.4f}"
        row.update({f"latency_p{p[:-1]}_ms": r[p] for p in PERCENTILES})
        rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadgen.steps", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", required=True, help="front end URL")
    parser.add_argument("--users", required=True, help="comma-separated users per step")
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="length of each step in seconds (default 60)"
    )
    parser.add_argument(
        "--rate-per-user",
        type=float,
        default=0.0,
        help="requests/s each user keeps pace with, so a step offers users * rate (default 0: "
        "users think between requests, no offered rate)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("steps"), help="directory for the CSVs (default steps)"
    )
    args = parser.parse_args(argv)
    try:
        users = tuple(int(u) for u in args.users.split(","))
    except ValueError:
        print(
            f"loadgen.steps: error: field '--users': expected whole numbers with commas (1,2,4), "
            f"got {args.users!r}",
            file=sys.stderr,
        )
        return 2
    try:
        test = StepTest(args.host, args.out, users, args.seconds, args.rate_per_user)
    except InputError as exc:  # named as typed: users -> --users, rate_per_user -> --rate-per-user
        flag = "--" + (exc.field or "").replace("_", "-")
        print(f"loadgen.steps: error: field '{flag}': {exc.bare_message}", file=sys.stderr)
        return 2
    try:
        table = run_steps(test, lambda m: print(m, file=sys.stderr))
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"loadgen.steps: error: {exc}", file=sys.stderr)
        return 1
    print(f"deeprest capacity --runs {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Headless Locust runs as child processes, for orchestrators (the demo, benchmarks)."""

from __future__ import annotations

import csv
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from loadgen import children

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"


@dataclass(frozen=True)
class HeadlessRun:
    """One headless run: where to send load, where the CSV goes, and the shape's options."""

    host: str
    csv_prefix: Path
    shape: str = "diurnal"
    period_s: float = 120.0
    step_s: float = 5.0
    cycles: int = 1
    base_users: int = 2
    peak_users: int = 20
    noise: float = 0.05
    seed: int = 0
    compression: float = 1.0
    scale_k: float = 3.0
    rate_per_user: float = 0.0
    python: str = sys.executable

    def command(self) -> list[str]:
        """The locust command line of this run."""
        return [
            self.python, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
            "--csv", str(self.csv_prefix), "--host", self.host, "--only-summary",
            "--loglevel", "WARNING", "--shape", self.shape, "--period", str(self.period_s),
            "--step", str(self.step_s), "--cycles", str(self.cycles),
            "--base-users", str(self.base_users), "--peak-users", str(self.peak_users),
            "--noise", str(self.noise), "--seed", str(self.seed),
            "--compression", str(self.compression), "--scale-k", str(self.scale_k),
            "--rate-per-user", str(self.rate_per_user),
        ]  # fmt: skip

    def start(self, log_path: Path | None = None) -> subprocess.Popen[bytes]:
        """Start the run; it ends by itself when the shape is over (poll/wait the Popen), or when
        the calling thread ends, even by SIGKILL (Linux; see loadgen.children)."""
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            return subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=LOCUSTFILE.parent.parent,
                                    preexec_fn=children.die_with_parent())  # fmt: skip
        finally:
            if log_path:
                out.close()  # type: ignore[union-attr]


def read_stats(csv_prefix: Path) -> dict[str, dict[str, str]]:
    """Rows of PREFIX_stats.csv by request name ('Aggregated' holds the totals)."""
    with open(f"{csv_prefix}_stats.csv", newline="") as handle:
        return {row["Name"]: row for row in csv.DictReader(handle)}

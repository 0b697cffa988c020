"""Time the span-CSV importer on the Train-Ticket recording (all 741 minute files by default).

    python bench/bench_import.py [--root DIR] [--files N] [--window 60]

Prints spans read, traces (call trees), windows, seconds and spans per second, per stage.
Skips (exit 0) when the data folder is absent.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import write_section  # noqa: E402
from estimator.importers.spancsv import ENGINE, read_span_csv
from estimator.importers.trainticket import join_metrics, metric_files
from estimator.spans import TracePaths, assemble_columns, bucket

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "trainticket-2023-01-30"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--files", type=int, default=0, help="first N trace files only (0: all)")
    parser.add_argument("--window", type=int, default=60)
    parser.add_argument(
        "--no-write", action="store_true", help="print only; leave docs/benchmarks.md"
    )
    args = parser.parse_args(argv)
    trace_dir = args.root / "trace"
    if not trace_dir.is_dir():
        print(f"skipped: {trace_dir} is absent")
        return 0
    files = sorted(trace_dir.glob("*.csv.gz"))
    if args.files:
        files = files[: args.files]

    t0 = time.perf_counter()
    cols = read_span_csv(files)
    t1 = time.perf_counter()
    trees = 0

    def counted() -> Iterator[TracePaths]:
        nonlocal trees
        for tree in assemble_columns(cols):
            trees += 1
            yield tree

    windows = bucket(counted(), args.window)
    t2 = time.perf_counter()
    metric_paths = metric_files(args.root / "metric") if (args.root / "metric").is_dir() else []
    join_metrics(windows, metric_paths, args.window)
    t3 = time.perf_counter()

    spans, total = len(cols), t2 - t0
    print(f"files     {len(files)} (pandas engine: {ENGINE})")
    print(f"spans     {spans}")
    print(f"traces    {trees}")
    print(f"windows   {len(windows)} ({sum(1 for w in windows if w.metrics)} with metrics)")
    print(f"read      {t1 - t0:.2f} s")
    print(f"assemble  {t2 - t1:.2f} s")
    print(
        f"seconds   {total:.2f} (traces only), {t3 - t0:.2f} with {len(metric_paths)} metric files"
    )
    print(f"spans/s   {spans / total:,.0f}")
    if not args.no_write:
        write_section(
            "import",
            "## Importing Train-Ticket spans\n\n"
            f"`python bench/bench_import.py` on {platform.machine()}, pandas engine {ENGINE}: "
            f"{len(files)} span files, {spans:,} spans, {trees:,} call trees, "
            f"{len(windows)} one-minute windows.\n\n"
            "| stage | seconds |\n|---|---|\n"
            f"| read CSV | {t1 - t0:.2f} |\n| assemble trees and count paths | {t2 - t1:.2f} |\n"
            f"| total, traces (target <= 60 s) | {total:.2f} ({spans / total:,.0f} spans/s) |\n"
            f"| total, with {len(metric_paths)} metric files | {t3 - t0:.2f} |",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time the span-CSV importer on the Train-Ticket recording (all 741 minute files by default).

    python bench/bench_import.py [--root DIR] [--files N] [--window 60]

Prints spans read, traces (call trees), windows, seconds and spans per second, per stage, and the
peak memory of the importer as `deeprest import` runs it (files assembled as they are read) beside
that of reading every span first. Skips (exit 0) when the data folder is absent.
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import SHARED_DATA, write_section  # noqa: E402
from estimator.errors import DataWarning
from estimator.importers.spancsv import ENGINE, import_span_files, read_span_csv
from estimator.importers.trainticket import join_metrics, metric_files
from estimator.spans import TracePaths, assemble_columns, bucket
from estimator.windows import Window

DEFAULT_ROOT = SHARED_DATA / "trainticket-2023-01-30"


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

    # The product's path first, as the process's peak memory only ever grows.
    s0 = time.perf_counter()
    streamed = _import(files, args.window)
    streamed_s = time.perf_counter() - s0
    streamed_mb = _peak_mb()

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

    batch_mb = _peak_mb()
    kept = {w.start for w in streamed}
    dropped = len(windows) - len(kept)
    assert [w.calls for w in streamed] == [w.calls for w in windows if w.start in kept], (
        "file by file != all at once"
    )

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
    print(f"file by file (deeprest import): {streamed_s:.2f} s, peak {streamed_mb:.0f} MiB")
    print(f"all spans first:                {total:.2f} s, peak {batch_mb:.0f} MiB")
    if not args.no_write:
        write_section(
            "import",
            "## Importing Train-Ticket spans\n\n"
            f"`python bench/bench_import.py` on {platform.machine()}, pandas engine {ENGINE}: "
            f"{len(files)} span files, {spans:,} spans, {trees:,} call trees, "
            f"{len(windows)} one-minute windows ({dropped} of them, which no minute file covers, "
            "dropped by `deeprest import`).\n\n"
            "| stage | seconds |\n|---|---|\n"
            f"| read CSV | {t1 - t0:.2f} |\n| assemble trees and count paths | {t2 - t1:.2f} |\n"
            f"| total, traces (target <= 60 s) | {total:.2f} ({spans / total:,.0f} spans/s) |\n"
            f"| total, with {len(metric_paths)} metric files | {t3 - t0:.2f} |\n\n"
            "Peak memory of the process (resident set). `deeprest import` assembles the files as it "
            "reads them, holding a few files' spans at a time; the stages above read every span "
            "first. Both give the same windows, but for those dropped (checked in the run).\n\n"
            "| path | seconds | peak MiB |\n|---|---|---|\n"
            f"| file by file (`deeprest import`) | {streamed_s:.2f} | {streamed_mb:.0f} |\n"
            f"| every span first | {total:.2f} | {batch_mb:.0f} |",
        )
    return 0


def _import(files: list[Path], window: int) -> list[Window]:
    """Windows as `deeprest import` builds them from these files (assembled file by file)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # the edge windows it drops
        return import_span_files(files, window)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


if __name__ == "__main__":
    sys.exit(main())

"""`deeprest import`: convert traces (and Train-Ticket style metrics) into a window dataset."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

from estimator.errors import InputError
from estimator.importers import FORMATS, import_windows
from estimator.importers.common import check_window_seconds
from estimator.windows import write_windows
from exporter.commands.outputs import output_file, prepare_parent
from exporter.progress import Phases

PROGRESS_SECONDS = 5.0
"""Without a terminal for the bar, a line of progress this often."""


def configure(parser: argparse.ArgumentParser) -> None:
    """Flags of `deeprest import`."""
    parser.add_argument("--format", required=True, choices=sorted(FORMATS), dest="fmt")
    parser.add_argument(
        "--input",
        required=True,
        help="a file, a directory or a quoted glob (trainticket: the folder holding trace/)",
    )
    parser.add_argument(
        "--metrics", help="folder of <pod>_metric.csv[.gz] files to join (Train-Ticket layout)"
    )
    parser.add_argument(
        "--window", type=int, default=60, help="window width in seconds (default 60)"
    )
    parser.add_argument(
        "--keep-gateway-spans",
        action="store_true",
        help="keep the spans of a catch-all gateway root in the call paths (folded by default)",
    )
    parser.add_argument("--out", required=True, help="window dataset to write (JSON Lines)")


def run(args: argparse.Namespace) -> int:
    """Import, then write the windows; progress per file goes to stderr."""
    window = check_window_seconds(args.window)
    out = output_file(args.out, "--out")
    say = Phases("import")
    with tqdm(desc="import", unit="file", file=sys.stderr, disable=None) as bar:
        files, last = [0], [time.monotonic()]

        def done(_path: Path) -> None:
            bar.update(1)
            files[0] += 1
            if bar.disable and time.monotonic() - last[0] >= PROGRESS_SECONDS:  # no terminal
                last[0] = time.monotonic()
                say(f"{files[0]} files read")

        windows = import_windows(
            args.fmt,
            args.input,
            metrics=args.metrics,
            window_seconds=window,
            on_file=done,
            fold_gateway=not args.keep_gateway_spans,
        )
    if not windows:
        raise InputError("holds no spans or traces", source=str(args.input))
    n = write_windows(prepare_parent(out), windows)
    calls = sum(sum(w.calls.values()) for w in windows)
    with_metrics = sum(1 for w in windows if w.metrics)
    with_latency = sum(1 for w in windows if w.latency)
    print(
        f"wrote {n} windows ({int(calls)} path counts, {with_metrics} with metrics, "
        f"{with_latency} with API latency) to {out}",
        file=sys.stderr,
    )
    return 0

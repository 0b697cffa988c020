"""`deeprest predict`: expected usage and 90% band per window, component and resource, as CSV."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from estimator.bundle import Bundle, load_bundle
from estimator.windows import Window, load_windows
from exporter.commands.outputs import output_file, prepare_parent
from exporter.commands.ranges import add_range_arguments, predict_range, span
from exporter.progress import Phases

PRED_COLUMNS = ("start", "component", "resource", "lower", "median", "upper")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="model bundle directory")
    parser.add_argument("--data", type=Path, required=True, help="window dataset (JSON Lines)")
    add_range_arguments(parser, "estimate")
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write")


def write_predictions(path: Path, bundle: Bundle, windows: list[Window], pred: np.ndarray) -> int:
    """Write PRED.csv (contract 2); returns rows written."""
    rows = 0
    with open(prepare_parent(path), "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(PRED_COLUMNS)
        for i, window in enumerate(windows):
            for j, (component, resource) in enumerate(bundle.series):
                lower, median, upper = pred[i, j]
                writer.writerow(
                    [
                        _num(window.start),
                        component,
                        resource,
                        f"{lower:.10g}",
                        f"{median:.10g}",
                        f"{upper:.10g}",
                    ]
                )
                rows += 1
    return rows


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def run(args: argparse.Namespace) -> int:
    say = Phases("predict")
    output_file(args.out, "--out", [("--data", args.data)])
    bundle = load_bundle(args.model)
    windows = load_windows(args.data)
    part = span(windows, args.start, args.end, str(args.data))
    say(f"estimating {part.stop - part.start} windows x {len(bundle.series)} series")
    windows, pred = predict_range(bundle, windows, part, str(args.data))
    rows = write_predictions(args.out, bundle, windows, pred)
    say(f"wrote {rows} rows to {args.out}")
    return 0

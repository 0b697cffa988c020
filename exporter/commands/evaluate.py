"""`deeprest evaluate`: accuracy and band coverage per series and scenario, plots, HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from estimator.bundle import load_bundle
from estimator.errors import InputError
from estimator.evaluation import Evaluation, build_evaluation
from estimator.windows import load_windows
from exporter.commands.outputs import output_dir
from exporter.commands.ranges import add_range_arguments, predict_range, span
from exporter.progress import Phases
from exporter.report import format_table, write_report


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="model bundle directory")
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        action="append",
        help="test dataset (JSON Lines); repeat for several scenarios, named by file stem",
    )
    add_range_arguments(parser, "evaluate")
    parser.add_argument("--report", type=Path, help="directory for the HTML report and PNG plots")


def run(args: argparse.Namespace) -> int:
    say = Phases("evaluate")
    if args.report is not None:
        output_dir(args.report, "--report")
    bundle = load_bundle(args.model)
    evaluations: dict[str, Evaluation] = {}
    for path in args.data:
        windows = load_windows(path)
        windows, pred = predict_range(
            bundle, windows, span(windows, args.start, args.end, str(path)), str(path), say
        )
        measured = {key for w in windows for key in w.metrics}
        if not measured & set(bundle.series):
            raise InputError(
                "no window in the range carries usage of the model's series to compare with "
                "(a dataset of traffic only? import with --metrics)",
                source=str(path),
            )
        evaluation = build_evaluation(windows, bundle.series, pred)
        name = path.stem
        while name in evaluations:  # two files of one stem: the report keeps both
            name = f"{path.parent.name or '.'}/{name}" if "/" not in name else f"{name}'"
        evaluations[name] = evaluation
        columns = ["component", "resource", "accuracy", "coverage", "mae"]
        if evaluation.oracle is not None:
            columns.append("oracle_accuracy")
        print(f"\n== {name} ({len(windows)} windows, model {bundle.model.kind})")
        print(format_table(evaluation.rows(), columns))
        summary = evaluation.summary()
        print("summary: " + ", ".join(f"{k} {v:.3f}" for k, v in summary.items()))
    if args.report is not None:
        say(f"writing the report to {args.report}")
        about = f"model {bundle.model.kind}, version {bundle.version}"
        drifting = int(np.count_nonzero(bundle.drift()))
        if drifting:
            about += (
                f"; the bands of {drifting} series whose usage drifted in validation widen with "
                "the time since the training end"
            )
        index = write_report(args.report, evaluations, about, say)
        say(f"report: {index}")
    return 0

"""`deeprest evaluate`: accuracy and band coverage per series and scenario, plots, HTML report."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from estimator.bundle import Bundle, load_bundle
from estimator.errors import InputError, count_of, first_few
from estimator.evaluation import Evaluation, build_evaluation
from estimator.windows import SeriesKey, Window, load_windows
from exporter.commands.outputs import output_dir
from exporter.commands.ranges import add_range_arguments, predict_range, span
from exporter.progress import Phases
from exporter.report import format_table, quantity, write_report


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


UNIT_SUSPECT = 100.0
"""Actual usage this many times the model's estimate, or its share, is likely another unit."""


def _check_series(
    series: list[SeriesKey],
    measured: set[SeriesKey],
    evaluation: Evaluation,
    source: str,
    say: Callable[[str], None],
) -> None:
    """Warn of what the scores leave out or get wrong: the model's series without usage in the
    data (not scored), the data's series the model does not estimate, and series whose actual
    usage is a hundred times the estimate or less than a hundredth of it (another unit?)."""
    missing = [f"{c}/{r}" for c, r in series if (c, r) not in measured]
    if missing:
        say(
            f"warning: {source}: {count_of(len(missing), 'series')} of the model's "
            f"{len(series)} {'has' if len(missing) == 1 else 'have'} no usage in the range, so "
            f"no score: {first_few(missing)} (renamed, or a resource spelled otherwise?)"
        )
    unknown = sorted(f"{c}/{r}" for c, r in measured - set(series))
    if unknown:
        say(
            f"warning: {source}: {count_of(len(unknown), 'series')} in the data the model does "
            f"not estimate: {first_few(unknown)}"
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        level = np.nanmedian(evaluation.actual, axis=0) / np.nanmedian(
            evaluation.pred[..., 1], axis=0
        )
    odd = [
        f"{c}/{r} ({ratio:.3g}x)"
        for (c, r), ratio in zip(series, level, strict=True)
        if np.isfinite(ratio) and ratio > 0 and not 1 / UNIT_SUSPECT <= ratio <= UNIT_SUSPECT
    ]
    if odd:
        say(
            f"warning: {source}: actual usage is over {UNIT_SUSPECT:g} times the estimate, or "
            f"under 1/{UNIT_SUSPECT:g} of it, in {count_of(len(odd), 'series')}: {first_few(odd)}; "
            "another unit than the model was trained on? (base units: cores, bytes)"
        )


def _starts_cold(bundle: Bundle, windows: Sequence[Window]) -> bool:
    """Whether the windows start where the model's training ended (one window either way): a
    recording's test part cut off as a file of its own."""
    end = bundle.training.get("end")
    if not windows or not isinstance(end, (int, float)):
        return False
    return abs(windows[0].start - float(end)) <= bundle.window_seconds


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
        _check_series(bundle.series, measured, evaluation, str(path), say)
        if args.start is None and _starts_cold(bundle, windows):
            say(
                f"warning: {path} starts where the model's training ended, with none of the "
                "windows before it: the estimates of its first hours lack their traffic history "
                "(and the RNN its look-back), as an exporter's first hours after a start would; "
                "to score them as they run live, evaluate the whole recording with --from"
            )
        name = path.stem
        while name in evaluations:  # two files of one stem: the report keeps both
            name = f"{path.parent.name or '.'}/{name}" if "/" not in name else f"{name}'"
        evaluations[name] = evaluation
        columns = ["component", "resource", "accuracy", "coverage", "mae"]
        if evaluation.oracle is not None:
            columns.append("oracle_accuracy")
        print(f"\n== {name} ({len(windows)} windows, model {bundle.model.kind})")
        maes = [
            quantity(float(v), r)
            for v, (_, r) in zip(evaluation.mae, evaluation.series, strict=True)
        ]
        rows = [{**row, "mae": m} for row, m in zip(evaluation.rows(), maes, strict=True)]
        print(format_table(rows, columns))
        summary = evaluation.summary()
        print("summary: " + ", ".join(f"{k} {v:.3f}" for k, v in summary.items()))
        for resource, figures in evaluation.by_resource().items():
            scores = ", ".join(f"{k} {v:.3f}" for k, v in figures.items() if k != "series")
            print(f"  {resource} ({figures['series']:.0f} series): {scores}")
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

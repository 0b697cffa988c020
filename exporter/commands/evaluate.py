"""`deeprest evaluate`: accuracy and band coverage per series and scenario, plots, HTML report."""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from estimator.bundle import Bundle, load_bundle
from estimator.errors import (
    DataWarning,
    InputError,
    count_of,
    data_warning,
    first_few,
    utc_time,
)
from estimator.evaluation import Evaluation, build_evaluation
from estimator.models.history import HistoryForecaster
from estimator.training import TrainConfig, check_trainable, train_bundle
from estimator.windows import SeriesKey, Window, load_windows, targets
from exporter.commands.outputs import output_dir
from exporter.commands.ranges import add_range_arguments, predict_range, span
from exporter.progress import Phases
from exporter.report import (
    Baseline,
    ModelAbout,
    Scored,
    baselines_heading,
    figures,
    format_table,
    resource_lines,
    series_table,
    worst_named,
    write_report,
)


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
    parser.add_argument(
        "--baselines",
        action="store_true",
        help="also score, on the same windows, the baselines trained on the data's windows "
        "before --from: linear (per-component call counts), ols-api (per-API counts, no "
        "traces) and history (exponential smoothing of the usage before each window); so "
        "--data is the whole recording, split by --from, not a split-off test file",
    )
    parser.add_argument("--report", type=Path, help="directory for the HTML report and PNG plots")


UNIT_SUSPECT = 100.0
"""Actual usage this many times the model's estimate, or its share, is likely another unit."""


def _check_series(
    series: list[SeriesKey],
    measured: set[SeriesKey],
    evaluation: Evaluation,
    source: str,
    warn: Callable[[str], None],
) -> None:
    """Warn of what the scores leave out or get wrong: the model's series without usage in the
    data (not scored) or with usage 0 throughout (no accuracy: WAPE divides by it), the data's
    series the model does not estimate, and series whose actual
    usage is a hundred times the estimate or less than a hundredth of it (another unit?)."""
    missing = [f"{c}/{r}" for c, r in series if (c, r) not in measured]
    if missing:
        warn(
            f"{source}: {count_of(len(missing), 'series')} of the model's "
            f"{len(series)} {'has' if len(missing) == 1 else 'have'} no usage in the range, so "
            f"no score: {first_few(missing)} (renamed, or a resource spelled otherwise?)"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a series without usage: all NaN
        peak = np.nanmax(np.abs(evaluation.actual), axis=0) if len(evaluation.actual) else []
    idle = [f"{c}/{r}" for (c, r), top in zip(series, peak, strict=False) if top == 0]
    if idle:
        warn(
            f"{source}: {count_of(len(idle), 'series')} used nothing in the range (0 "
            f"throughout: a component not running, or its usage not measured?), so no accuracy: {first_few(idle)}"
        )
    unknown = sorted(f"{c}/{r}" for c, r in measured - set(series))
    if unknown:
        warn(
            f"{source}: {count_of(len(unknown), 'series')} in the data the model does "
            f"not estimate: {first_few(unknown)}"
        )
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a series without usage: NaN
        level = np.nanmedian(evaluation.actual, axis=0) / np.nanmedian(
            evaluation.pred[..., 1], axis=0
        )
    odd = [
        f"{c}/{r} ({ratio:.3g}x{_unit_guess(ratio)})"
        for (c, r), ratio in zip(series, level, strict=True)
        if np.isfinite(ratio) and ratio > 0 and not 1 / UNIT_SUSPECT <= ratio <= UNIT_SUSPECT
    ]
    if odd:
        warn(
            f"{source}: actual usage is over {UNIT_SUSPECT:g} times the estimate, or "
            f"under 1/{UNIT_SUSPECT:g} of it, in {count_of(len(odd), 'series')}: {first_few(odd)}; "
            "another unit than the model was trained on? (base units: cores, bytes)"
        )


UNIT_FACTORS = {
    2.0**-10: "KiB", 2.0**-20: "MiB", 2.0**-30: "GiB", 1e-3: "thousands (KB)",
    1e-6: "millions (MB)", 1e3: "thousandths (millicores where cores belong)",
}  # fmt: skip
"""Actual over estimated usage -> the unit the actual values are likely in."""


def _unit_guess(ratio: float) -> str:
    """', in MiB?' where `ratio` is within 10% of a unit's factor (`UNIT_FACTORS`), else ''."""
    unit = next((u for f, u in UNIT_FACTORS.items() if abs(ratio / f - 1) < 0.1), None)
    return f", in {unit}?" if unit else ""


def _starts_cold(bundle: Bundle, windows: Sequence[Window]) -> bool:
    """Whether the windows start where the model's training ended (one window either way): a
    recording's test part cut off as a file of its own."""
    end = bundle.training.get("end")
    if not windows or not isinstance(end, (int, float)):
        return False
    return abs(windows[0].start - float(end)) <= bundle.window_seconds


def _in_training(bundle: Bundle, recording: Sequence[Window], windows: Sequence[Window]) -> int:
    """How many of the scored `windows` lie in the bundle's training range, where the recording
    looks like the one it was trained on: others of it lie after that range (a recording scored
    whole), or it holds as many windows from the training start as training had (the training
    file, scored from a --from inside it). A test file of other traffic on the training dates,
    shorter than them, as simulated scenarios are, says nothing."""
    start, end = bundle.training.get("start"), bundle.training.get("end")
    trained = bundle.training.get("windows")
    if not isinstance(start, (int, float)) or not isinstance(end, (int, float)):
        return 0
    inside = sum(start <= w.start and w.end <= end for w in windows)
    if not inside or any(w.start >= end for w in windows):
        return inside
    held = sum(start <= w.start and w.end <= end for w in recording)
    same = recording[0].start == start and isinstance(trained, int) and held >= trained
    return inside if same else 0


def _print_by_resource(evaluation: Evaluation, indent: str) -> None:
    for line in resource_lines(evaluation):
        print(f"{indent}  {line}")


def _print_scores(scored: Scored) -> None:
    """The per-series table, the summaries of the model and of each baseline."""
    print(format_table(*series_table(scored)))
    print("summary: " + figures(scored.evaluation.summary()) + worst_named(scored.evaluation))
    _print_by_resource(scored.evaluation, "")
    if scored.baselines:
        print(baselines_heading(scored))
        for kind, baseline in scored.baselines.items():
            print(
                f"  {kind}: "
                + figures(baseline.evaluation.summary())
                + worst_named(baseline.evaluation)
            )
            _print_by_resource(baseline.evaluation, "  ")


def _about(bundle: Bundle) -> ModelAbout:
    """What the report says of the bundle's model, with its training time where it was kept."""
    about = f"model {bundle.model.kind}, version {bundle.version}"
    drifting = int(np.count_nonzero(bundle.drift()))
    if drifting:
        about += (
            f"; the bands of {drifting} series whose usage drifted in validation widen with "
            "the time since the training end"
        )
    seconds = bundle.training.get("seconds")  # where `train` timed it
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        seconds = math.nan
    return ModelAbout(bundle.model.kind, about, float(seconds))


BASELINES = ("linear", "ols-api")
"""Model kinds trained as baselines by `--baselines`, beside the history forecaster."""
HISTORY_LOOKBACK = 60
"""Windows of usage the history baseline starts each range from (an hour of 1-minute windows)."""


def _baselines(
    recording: Sequence[Window],
    part: slice,
    series: list[SeriesKey],
    source: str,
    say: Callable[[str], None],
) -> dict[str, tuple[np.ndarray, float]]:
    """Estimates [windows, series, 3] of the range `part` by each baseline, trained on the
    windows before it (NaN for a series a baseline has no estimate of), and the seconds its
    training took."""
    before = list(recording[: part.start])
    check_trainable(before, f"{source} (the windows before --from, to train the baselines on)")
    out = {}
    for kind in BASELINES:
        say(f"training the {kind} baseline on the {len(before)} windows before the range")
        started = time.monotonic()
        baseline = train_bundle(before, TrainConfig(model=kind))
        seconds = time.monotonic() - started
        with warnings.catch_warnings():  # the model's own estimates said what the data lacks
            warnings.simplefilter("ignore", DataWarning)
            _, pred = predict_range(baseline, recording, part, source)
        index = {key: j for j, key in enumerate(baseline.series)}
        aligned = np.full((pred.shape[0], len(series), 3), np.nan)
        for j, key in enumerate(series):
            if key in index:
                aligned[:, j] = pred[:, index[key]]
        out[kind] = (aligned, seconds)
    say("fitting the history baseline on the usage before the range")
    started = time.monotonic()
    history = HistoryForecaster(lookback=HISTORY_LOOKBACK).fit(targets(before, series))
    seconds = time.monotonic() - started
    forecast = history.forecast(
        targets(before[-HISTORY_LOOKBACK:], series), targets(recording[part], series)
    )
    out["history"] = (forecast, seconds)
    return out


REPEATS = 0.4
"""Share of windows whose usage repeats the window before it (the median over the series that
vary) from which the history baseline is said to read what it forecasts."""


def _repeats(usage: np.ndarray) -> float:
    """The median, over the series whose usage [windows, series] varies, of the share of windows
    whose usage equals the window before it: about a half where each metric row is given to two
    windows (rows a minute apart, windows of 30 s), near 0 for usage measured per window."""
    shares = []
    for column in usage.T:
        pairs = ~np.isnan(column[1:]) & ~np.isnan(column[:-1])
        if pairs.sum() >= 10 and np.nanmax(column) > np.nanmin(column):
            shares.append(float(np.mean(column[1:][pairs] == column[:-1][pairs])))
    return float(np.median(shares)) if shares else 0.0


def _score(args: argparse.Namespace, bundle: Bundle, path: Path, say: Phases) -> Scored:
    """One --data file's scores in the range, with the baselines' where asked; warns of what
    they leave out or may get wrong."""
    recording = load_windows(path)
    part = span(recording, args.start, args.end, str(path))
    windows, pred = predict_range(bundle, recording, part, str(path))
    measured = {key for w in windows for key in w.metrics}
    if not measured & set(bundle.series):
        raise InputError(
            "no window in the range carries usage of the model's series to compare with "
            "(a dataset of traffic only? import with --metrics)",
            source=str(path),
        )
    evaluation = build_evaluation(windows, bundle.series, pred)
    _check_series(bundle.series, measured, evaluation, str(path), data_warning)
    baselines = _baselines(recording, part, bundle.series, str(path), say) if args.baselines else {}
    repeats = _repeats(evaluation.actual) if baselines else 0.0
    if repeats >= REPEATS:
        data_warning(
            f"{path}: usage repeats the window before it in {repeats:.0%} of the windows "
            "(the median over the series: metric rows further apart than the windows, each "
            "given to several?): there the history baseline forecasts a value it has already "
            "read, so its scores flatter it"
        )
    seen = _in_training(bundle, recording, windows)
    if seen:
        data_warning(
            f"{path}: {seen} of the {count_of(len(windows), 'window')} scored lie in the "
            f"model's training range ({utc_time(bundle.training['start'])} to "
            f"{utc_time(bundle.training['end'])}): if they are the windows it learned from, "
            "their scores flatter it; score the windows after it with --from "
            f"{utc_time(bundle.training['end'])}"
        )
    if args.start is None and _starts_cold(bundle, windows):
        data_warning(
            f"{path} starts where the model's training ended, with none of the "
            "windows before it: the estimates of its first hours lack their traffic history "
            "(and the RNN its look-back), as an exporter's first hours after a start would; "
            "to score them as they run live, evaluate the whole recording with --from"
        )
    return Scored(
        evaluation,
        {
            kind: Baseline(build_evaluation(windows, bundle.series, p), seconds)
            for kind, (p, seconds) in baselines.items()
        },
        part.start,
        bundle.model.series_kinds(),
        end=windows[-1].end,
    )


@contextmanager
def _recorded(notes: list[str]) -> Iterator[None]:
    """Keep the text of each DataWarning shown meanwhile in `notes`, once, as it is shown."""
    shown = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], *rest: Any, **more: Any) -> None:
        if issubclass(category, DataWarning) and str(message) not in notes:
            notes.append(str(message))
        shown(message, category, *rest, **more)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


def run(args: argparse.Namespace) -> int:
    say = Phases("evaluate")
    if args.report is not None:
        output_dir(args.report, "--report")
    bundle = load_bundle(args.model)
    datasets: dict[str, Scored] = {}
    if args.baselines and args.start is None:
        raise InputError(
            "--baselines trains them on the data's windows before --from: give --from, such "
            "as 60% for the windows after the first 60%",
            field="--baselines",
        )
    for path in args.data:
        notes: list[str] = []  # what it warns of, for the report too
        with _recorded(notes):
            scored = _score(args, bundle, path, say)
        name = path.stem
        while name in datasets:  # two files of one stem: the report keeps both
            name = f"{path.parent.name or '.'}/{name}" if "/" not in name else f"{name}'"
        datasets[name] = replace(scored, notes=tuple(notes))
        windows = count_of(len(scored.evaluation.starts), "window")
        print(f"\n== {name} ({windows}, model {bundle.model.kind})")
        _print_scores(scored)
    if args.report is not None:
        say(f"writing the report to {args.report}")
        index = write_report(args.report, datasets, _about(bundle), say)
        say(f"report: {index}")
    return 0

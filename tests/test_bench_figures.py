"""The benchmarks' figures read as `deeprest evaluate` reports them."""

from __future__ import annotations

import numpy as np

from bench.bench_estimator import band_coverages
from bench.common import train_cut
from estimator.evaluation import Evaluation
from estimator.windows import Window
from exporter.commands.ranges import select


def test_benchmark_band_coverage_leaves_out_a_series_that_used_nothing() -> None:
    """A service whose CPU reads 0 in every test window has no accuracy, and its band at 0
    covers it whatever the model learned: the benchmark's mean coverage, like evaluate's, is
    that of the scored series, not raised by it."""
    series = [("a", "cpu"), ("idle", "cpu"), ("a", "memory")]
    actual = np.array([[0.5, 0.0, 100.0], [1.0, 0.0, 120.0]])
    pred = np.stack([actual * 0.9, actual, actual * 1.1], axis=-1)
    pred[1, 0] = [0.1, 0.2, 0.3]  # the band misses a/cpu in the second window
    pred[:, 1] = [0.0, 0.001, 0.01]
    figures = band_coverages(pred, pred, actual, [0, 1], [2])
    evaluation = Evaluation(series, np.arange(2.0), actual, pred, None)
    assert figures["cpu_coverage"] == figures["cpu_coverage_unaged"] == 0.5
    assert figures["cpu_coverage"] == np.nanmean(evaluation.coverage[:2])
    assert figures["memory_coverage"] == 1.0


def test_benchmarks_split_a_recording_where_train_to_60_percent_does() -> None:
    """The real day's 741 windows: `deeprest train --to 60%` trains on 445 of them (60% rounds
    to the nearest window), and the benchmarks' figures, to be reproducible with the README's
    commands, train on the same ones, not on 444."""
    windows = [Window(start=60.0 * i, end=60.0 * (i + 1)) for i in range(741)]
    assert train_cut(windows) == len(select(windows, None, "60%", "recording")) == 445

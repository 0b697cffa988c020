"""From windows to a fitted bundle: vocabulary, model, validation on the tail, synthesizer."""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from estimator.bundle import Bundle
from estimator.drift import drift_rates
from estimator.errors import DataWarning, InputError, count_of, first_few
from estimator.features import Layout, Vocabulary
from estimator.metrics import accuracy, coverage
from estimator.models import make_model
from estimator.models.auto import AutoModel
from estimator.models.base import held_out
from estimator.synthesizer import Synthesizer, folded_api_counts, traffic_of
from estimator.windows import Pair, SeriesKey, Window, check_windows, series_of, targets

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainConfig:
    """How to train: model kind and its hyperparameters, vocabulary size, validation tail."""

    model: str = "auto"
    model_params: dict[str, Any] = field(default_factory=dict)
    max_paths: int = 512
    min_windows: int = 2
    halflives: tuple[float, ...] = (4.0, 16.0, 64.0)
    validation_fraction: float = 0.2

    def __post_init__(self) -> None:
        if not 0.0 < self.validation_fraction < 1.0:
            raise InputError(
                f"must be between 0 and 1, got {self.validation_fraction!r}",
                field="validation_fraction",
            )
        if self.max_paths < 1 or self.min_windows < 1:
            raise InputError(
                f"max_paths and min_windows must be at least 1, got {self.max_paths} and "
                f"{self.min_windows}",
                field="max_paths" if self.max_paths < 1 else "min_windows",
            )
        if not self.halflives or not all(0 < h < math.inf for h in self.halflives):
            raise InputError(
                f"must be one or more positive numbers, got {list(self.halflives)}",
                field="halflives",
            )


def window_seconds_of(windows: Sequence[Window]) -> float:
    """The dataset's window length: its most common (to the millisecond), so an odd window does
    not decide; `predict` and `evaluate` read a dataset's length the same way."""
    lengths = Counter(round(w.end - w.start, 3) for w in windows)
    return float(max(lengths, key=lambda n: (lengths[n], n)))


ODD_WINDOWS = 0.01
"""Share of a training set's windows that may have another length than the most common."""


def check_window_lengths(windows: Sequence[Window], source: str) -> None:
    """One window length, or a clear error: counts per window of two lengths mean two things."""
    width = window_seconds_of(windows)
    odd = [w for w in windows if abs((w.end - w.start) - width) > 0.01 * width]
    if len(odd) > ODD_WINDOWS * len(windows):
        others = Counter(round(w.end - w.start, 3) for w in odd).most_common(2)
        shown = ", ".join(f"{n} of {length:g} s" for length, n in others)
        raise InputError(
            f"windows of several lengths: {len(windows) - len(odd)} of {width:g} s, {shown}; "
            "a model reads calls per window of one length (train on a range of one length with "
            "--from and --to, or import or simulate with one window)",
            source=source,
        )


MIN_FIT_WINDOWS = 10
"""Windows a model is fitted on before its validation tail."""
MIN_TRAIN_WINDOWS = MIN_FIT_WINDOWS + 1
"""Windows with usage that training needs at the least: those to fit on and one to validate on
(as many as the validation tail holds out: `min_train_windows`)."""


def min_train_windows(validation_fraction: float) -> int:
    """Windows with usage that training needs at this validation fraction: MIN_FIT_WINDOWS to
    fit on before the tail the fraction holds out of them all (12 at 0.2, which holds out 2)."""
    windows = MIN_TRAIN_WINDOWS
    while windows - held_out(windows, validation_fraction) < MIN_FIT_WINDOWS:
        windows += 1
    return windows


def check_trainable(
    windows: Sequence[Window],
    source: str,
    validation_fraction: float = TrainConfig.validation_fraction,
    fraction_name: str | None = None,
) -> None:
    """Enough windows of one length with both traffic and usage to learn from, counting the
    validation tail held out of them, or a clear error; `fraction_name` is the setting of the
    fraction that the error may advise lowering."""
    check_window_lengths(windows, source)
    with_metrics = sum(1 for w in windows if w.metrics)
    need = min_train_windows(validation_fraction)
    if with_metrics < need:
        fewer, field = "", None
        if fraction_name and with_metrics >= MIN_TRAIN_WINDOWS:  # the fraction is the cause
            highest = (with_metrics - MIN_FIT_WINDOWS) / with_metrics
            fewer, field = (
                f", or hold out fewer: {fraction_name} {highest:.2g} at most",
                fraction_name,
            )
        raise InputError(
            f"only {count_of(with_metrics, 'window')} "
            f"{'carries' if with_metrics == 1 else 'carry'} metrics; training needs at least "
            f"{need}: {MIN_FIT_WINDOWS} to fit on, and {need - MIN_FIT_WINDOWS} to validate on "
            f"(the newest {validation_fraction:g} of them, held out){fewer}",
            source=source,
            field=field,
        )
    if not any(w.calls for w in windows):
        raise InputError("no window carries call paths (calls or traces)", source=source)


def validate_tail(
    config: TrainConfig,
    X: np.ndarray,
    Y: np.ndarray,
    layout: Layout,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Fit on the head, measure accuracy and band coverage on the tail of the training windows."""
    n_tail = held_out(len(X), config.validation_fraction)
    head, tail = slice(0, len(X) - n_tail), slice(len(X) - n_tail, len(X))
    model = make_model(config.model, **config.model_params)
    model.progress = progress
    model.fit(X[head], Y[head], layout)
    pred = model.predict(X)[tail]  # predict through the head so recurrent state is warm
    return {
        "windows": n_tail,
        "accuracy": _floats(accuracy(pred[..., 1], Y[tail])),
        "coverage": _floats(coverage(pred, Y[tail])),
        "drift": drift_rates(Y[tail], pred[..., 1]).tolist(),
    }


def _learnable(
    series: list[SeriesKey], Y: np.ndarray, validation_fraction: float
) -> tuple[list[SeriesKey], np.ndarray]:
    """The series with usage in MIN_FIT_WINDOWS or more of the windows fitted on (those before
    the validation tail), and their targets; the others are left out with a warning (a model
    of a few points, or of none before the tail, would be published live as a guess), and
    none left is an error."""
    head = len(Y) - held_out(len(Y), validation_fraction)
    measured = (~np.isnan(Y[:head])).sum(axis=0)
    scarce = measured < MIN_FIT_WINDOWS
    if not scarce.any():
        return series, Y
    if scarce.all():
        raise InputError(
            f"no series has usage in {MIN_FIT_WINDOWS} or more of the {head} windows fitted on "
            "(those before the validation tail): give windows where usage was measured"
        )
    left = [
        f"{c}/{r} ({int(n)})" for (c, r), n, s in zip(series, measured, scarce, strict=True) if s
    ]
    warnings.warn(
        DataWarning(
            f"{count_of(len(left), 'series')} left out, with usage in fewer than "
            f"{MIN_FIT_WINDOWS} of the {head} windows fitted on (before the validation tail), "
            f"too few to learn from: {first_few(left)}"
        ),
        stacklevel=3,
    )
    return [key for key, s in zip(series, scarce, strict=True) if not s], Y[:, ~scarce]


ALWAYS_USED = ("cpu", "memory")
"""Resources a process that serves calls cannot read 0 for: a series of them that does in every
window its component served calls in is not being measured."""


def _unmeasured(
    series: list[SeriesKey], X: np.ndarray, Y: np.ndarray, layout: Layout
) -> tuple[list[SeriesKey], np.ndarray]:
    """The series left after those of CPU or memory that read exactly 0 in every measured window
    while their component served calls (a metrics collector that reports 0 for a pod it does not
    see), and those of memory that do so at all (no running process holds none, calls or not): a
    model of them would publish 0 as expected usage, and what-if answers of 0 cores. They are
    left out with a warning; none left is an error."""
    silent, spans = [], []
    for j, (component, resource) in enumerate(series):
        column = layout.component_column(component)
        if resource not in ALWAYS_USED:
            continue
        measured = ~np.isnan(Y[:, j])
        served = 0.0 if column is None else float(X[measured, column].sum())
        if (served > 0 or resource == "memory") and not Y[measured, j].any():
            silent.append(j)
            spans.append(f"{component}/{resource} ({served:,.0f} spans)")
    if not silent:
        return series, Y
    if len(silent) == len(series):
        raise InputError(
            "every series reads 0 in every window (memory, or while its component served "
            "calls): usage is not being measured (check the metrics' pod or container names)"
        )
    warnings.warn(
        DataWarning(
            f"{count_of(len(silent), 'series')} left out, reading 0 in every window (memory, "
            "which no running process lacks, or while their component served calls): their "
            f"usage is not being measured (a metric of another pod or container name?): "
            f"{first_few(spans)}"
        ),
        stacklevel=3,
    )
    keep = np.ones(len(series), dtype=bool)
    keep[silent] = False
    return [key for key, k in zip(series, keep, strict=True) if k], Y[:, keep]


def _peaks(Y: np.ndarray) -> np.ndarray:
    """Each series' highest usage in training (NaN where it has none)."""
    out = np.full(Y.shape[1], np.nan)
    seen = ~np.isnan(Y).all(axis=0)
    out[seen] = np.nanmax(Y[:, seen], axis=0)
    return out


def _lows(Y: np.ndarray) -> np.ndarray:
    """Each series' lowest usage in training (NaN where it has none)."""
    return -_peaks(-Y)


def _floats(values: np.ndarray) -> list[float | None]:
    """JSON numbers of 7 significant digits (not decimals: usage of nanocores keeps its peak)."""
    return [None if np.isnan(v) else float(f"{float(v):.7g}") for v in values]


def train_bundle(
    windows: Sequence[Window], config: TrainConfig, progress: Progress | None = None
) -> Bundle:
    """Fit a bundle on time-ordered windows; validation comes from the model or a tail split.

    Windows out of time order, overlapping, or with counts or usage that are no finite
    non-negative numbers are an InputError naming the window (`check_windows`), as are an empty
    sequence and windows of several lengths (`check_window_lengths`)."""
    if not windows:
        raise InputError("no windows to train on", field="windows")
    check_windows(windows)
    check_window_lengths(windows, "windows")
    say = progress or (lambda _: None)
    vocabulary = Vocabulary.build(
        windows,
        max_paths=config.max_paths,
        min_windows=config.min_windows,
        halflives=config.halflives,
    )
    series = series_of(windows)
    X, _ = vocabulary.transform(windows)
    Y = targets(windows, series)
    series, Y = _learnable(series, Y, config.validation_fraction)
    series, Y = _unmeasured(series, X, Y, vocabulary.layout)
    say(f"{len(windows)} windows, {X.shape[1]} features, {len(series)} series")
    params = dict(config.model_params)
    if config.model == "auto":
        # auto holds out its own tail: the one asked for, unless a param says otherwise
        params.setdefault("validation_fraction", config.validation_fraction)
    model = make_model(config.model, **params)
    if isinstance(model, AutoModel):
        say("fitting every candidate and choosing per series on the tail of the windows")
        model.progress = say
        model.fit(X, Y, vocabulary.layout.for_series(series))
        validation = dict(getattr(model, "validation_", {}))
    else:
        say(f"validating {config.model} on the last {config.validation_fraction:.0%} of windows")
        validation = validate_tail(config, X, Y, vocabulary.layout.for_series(series), progress)
        say(f"fitting {config.model} on all windows")
        model.progress = progress
        model.fit(X, Y, vocabulary.layout.for_series(series))
    return Bundle(
        vocabulary=vocabulary,
        series=series,
        model=model,
        window_seconds=window_seconds_of(windows),
        training={
            "start": windows[0].start,
            "end": windows[-1].end,
            "windows": len(windows),
            "reference_traffic": reference_traffic(windows, vocabulary.apis),
            "calls_range": calls_range(windows),
            "usage_peaks": _floats(_peaks(Y)),
            "usage_lows": _floats(_lows(Y)),
        },
        validation=validation,
        synthesizer=Synthesizer.fit(windows, vocabulary.apis).to_json(),
    )


REFERENCE_WINDOWS = 1440
"""Training windows whose per-API traffic a bundle keeps as the base of what-if questions."""


def calls_range(windows: Sequence[Window]) -> list[float]:
    """[quietest, busiest] API calls of one training window: the traffic the model has seen."""
    totals = [sum(counts.values()) for counts in traffic_of(windows)]
    return [min(totals), max(totals)]


def reference_traffic(
    windows: Sequence[Window], keep: Collection[Pair] | None = None
) -> dict[str, Any]:
    """Per-API calls of the last training windows (one day of one-minute windows at most), those
    of APIs not in `keep` pooled per component as the synthesizer pools them."""
    recent = windows[-REFERENCE_WINDOWS:]
    per_window = [folded_api_counts(w.calls, keep) for w in recent]
    apis = sorted({api for counts in per_window for api in counts})
    return {
        "apis": [list(api) for api in apis],
        "starts": [w.start for w in recent],
        "counts": [[round(counts.get(api, 0.0), 6) for api in apis] for counts in per_window],
    }

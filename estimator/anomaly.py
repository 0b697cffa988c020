"""Anomaly score: 0 inside the band, relative distance above or below it, smoothed."""

from __future__ import annotations

import numpy as np

from estimator.errors import InputError


def excess(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Relative distance outside [lower, upper]: (actual - upper) / upper above, (lower - actual) / lower below.

    Positive either way, 0 inside the band; NaN where actual is unknown. A tiny floor keeps an
    empty band (upper == 0) from dividing by zero.
    """
    floor = 1e-9
    with np.errstate(over="ignore"):  # an absurd actual value: capped below
        above = np.maximum(actual - upper, 0.0) / np.maximum(upper, floor)
        below = np.maximum(lower - actual, 0.0) / np.maximum(lower, floor)
        return np.asarray(np.minimum(above + below, MAX_SCORE), dtype=float)


MAX_SCORE = 1e9
"""The highest score: a billion times the band's edge. A usage value past any sense (1e308) must
not make the score infinite, which Prometheus rules cannot compare or average."""


def _check_span(windows: int) -> None:
    """A smoothing span of 1 or more windows: below 1 the current score weighs more than 1 and
    the smoothed score swings below 0."""
    if isinstance(windows, bool) or not isinstance(windows, int | np.integer) or windows < 1:
        raise InputError(f"must be a whole number >= 1, got {windows!r}", field="windows")


def smooth(previous: np.ndarray | None, current: np.ndarray, windows: int = 3) -> np.ndarray:
    """Exponential smoothing with a span of `windows` (1 or more; 1 keeps the current score);
    unknown values keep the previous score."""
    _check_span(windows)
    alpha = 2.0 / (windows + 1.0)
    if previous is None:
        return np.asarray(current, dtype=float)
    blended = alpha * current + (1.0 - alpha) * previous
    out = np.where(np.isnan(current), previous, np.where(np.isnan(previous), current, blended))
    return np.asarray(out, dtype=float)


def anomaly_scores(actual: np.ndarray, pred: np.ndarray, windows: int = 3) -> np.ndarray:
    """Smoothed scores [windows, series] for a time-ordered [windows, series] actual (NaN:
    unknown) and [windows, series, 3] estimates (lower, median, upper)."""
    actual, pred = np.asarray(actual, dtype=float), np.asarray(pred, dtype=float)
    if actual.ndim != 2 or pred.shape != (*actual.shape, 3):
        raise InputError(
            f"expected actual [windows, series] and estimates [windows, series, 3], got "
            f"{actual.shape} and {pred.shape}"
        )
    _check_span(windows)
    raw = excess(actual, pred[..., 0], pred[..., 2])
    out = np.empty_like(raw)
    state: np.ndarray | None = None
    for i, row in enumerate(raw):
        state = smooth(state, row, windows)
        out[i] = state
    return out

"""Anomaly score: 0 inside the band, relative distance above or below it, smoothed."""

from __future__ import annotations

import numpy as np


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


def smooth(previous: np.ndarray | None, current: np.ndarray, windows: int = 3) -> np.ndarray:
    """Exponential smoothing with a span of `windows`; unknown values keep the previous score."""
    alpha = 2.0 / (windows + 1.0)
    if previous is None:
        return np.asarray(current, dtype=float)
    blended = alpha * current + (1.0 - alpha) * previous
    out = np.where(np.isnan(current), previous, np.where(np.isnan(previous), current, blended))
    return np.asarray(out, dtype=float)


def anomaly_scores(actual: np.ndarray, pred: np.ndarray, windows: int = 3) -> np.ndarray:
    """Smoothed scores for a time-ordered [windows, series] actual and [windows, series, 3] band."""
    raw = excess(actual, pred[..., 0], pred[..., 2])
    out = np.empty_like(raw)
    state: np.ndarray | None = None
    for i, row in enumerate(raw):
        state = smooth(state, row, windows)
        out[i] = state
    return out

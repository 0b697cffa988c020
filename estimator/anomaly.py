"""Anomaly score: 0 inside the band, relative distance above or below it, smoothed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from estimator.errors import InputError

TINY = 1e-9
"""The floor of a resource this module knows no amount of: it keeps an empty band (an edge at 0)
from dividing by zero."""

FLOORS: dict[str, float] = {
    "cpu": 0.01,  # cores: 10 millicores
    "memory": 16.0 * 2**20,  # bytes
    "write_iops": 1.0,  # writes/s
    "write_throughput": 65536.0,  # bytes/s
}
"""The least amount of each resource a distance is measured against: the band's edge where it is
larger. A band at 0 (a component that never writes) would make a log line's few bytes a
distance of a billion times its edge; against these it is what it is, a few percent. The
anomaly alerts ask for the same amounts above the band (grafana-dashboards/rules)."""


def floors(series: Sequence[tuple[str, str]]) -> np.ndarray:
    """Per (component, resource) series, the least amount its distance is measured against
    (`FLOORS`; TINY for another resource)."""
    return np.array([FLOORS.get(resource, TINY) for _, resource in series], dtype=float)


def excess(
    actual: np.ndarray, lower: np.ndarray, upper: np.ndarray, floor: np.ndarray | float = TINY
) -> np.ndarray:
    """Relative distance outside [lower, upper]: (actual - upper) / upper above, (lower - actual) / lower below.

    Positive either way, 0 inside the band; NaN where actual is unknown. The edge divided by is
    at least `floor` (per series, `floors`; by default TINY, which only keeps an empty band
    from dividing by zero).
    """
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


def anomaly_scores(
    actual: np.ndarray, pred: np.ndarray, windows: int = 3, floor: np.ndarray | float = TINY
) -> np.ndarray:
    """Smoothed scores [windows, series] for a time-ordered [windows, series] actual (NaN:
    unknown) and [windows, series, 3] estimates (lower, median, upper); `floor` as `excess`."""
    actual, pred = np.asarray(actual, dtype=float), np.asarray(pred, dtype=float)
    if actual.ndim != 2 or pred.shape != (*actual.shape, 3):
        raise InputError(
            f"expected actual [windows, series] and estimates [windows, series, 3], got "
            f"{actual.shape} and {pred.shape}"
        )
    _check_span(windows)
    raw = excess(actual, pred[..., 0], pred[..., 2], floor)
    out = np.empty_like(raw)
    state: np.ndarray | None = None
    for i, row in enumerate(raw):
        state = smooth(state, row, windows)
        out[i] = state
    return out

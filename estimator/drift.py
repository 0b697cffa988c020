"""Drift: usage that moves away from what traffic explains as a model ages, and a band that allows
for it.

Some usage creeps for reasons traffic does not show: a JVM heap that grows all day, a cache that
keeps filling. A band calibrated on the newest training windows covers the error of a model about
half a validation tail old; further from the training end it is too narrow on the side the usage
drifts to. The rate comes from the validation tail (a model fitted on the head, its errors on the
tail): the slope of the error's block means over time, kept only where it stands out from their
scatter by `Z` standard errors, so a stationary series keeps its band. Estimates for a window
`age` windows after the training end then widen on that side by
`|rate| * clip(age - tail / 2, 0, training windows)`: the band grows for as long again as the
training ran, then stays (retrain to narrow it).

Other usage wanders with no trend to speak of: a heap a few MiB up one hour and down the next. Its
error after a model's training end spreads like a random walk's, with a variance that grows with
every window, and a band of the spread seen at the training end covers less and less of it. The
rate comes from the training windows' own residuals (the fitted model's median against the
usage), less their linear trend (a creep, which drift covers): their variogram, the mean squared
change of the residual over a lag, rises with the lag for a random walk and stays flat for usage
that only scatters, so its rise between two lags (`WANDER_LAGS`) per window of lag is the
variance the walk adds in one window. Only stateful
resources wander so: the usage of a rate (CPU, disk writes) in a window is that window's work.
Both sides of the band then widen, added in quadrature: `sqrt(side^2 + (z * wander)^2 * span)`
with `span` the age as above and `z` that of the band's 95% quantile.
"""

from __future__ import annotations

import numpy as np

BLOCKS = 8
"""Contiguous blocks of the validation tail whose mean errors the trend is fitted to (block means
tame the windows' autocorrelation, which would make a per-window slope look certain)."""
MIN_WINDOWS = 4 * BLOCKS
"""Shortest tail that gets a drift rate; a shorter one gets none."""
Z = 2.5
"""Standard errors by which a slope must stand out to count as drift."""
WANDER_LAGS = (1 / 16, 1 / 4)
"""Lags, as shares of the training windows, between which the residuals' variogram gives the
wander: long enough that a window's own scatter and short-lived swings have levelled off, short
enough that each is averaged over most of the windows. (On a real recording's split inside its
training part, lags of 1/32 to 1/8 and 1/8 to 1/2 covered about as well.)"""
MIN_WANDER_WINDOWS = 64
"""Fewest training windows that get a wander (lags of 4 and 16 windows); fewer get none."""
BAND_Z = 1.6448536
"""Standard normal quantile of the band's upper end (95%): a spread of `s` adds `BAND_Z * s`."""


def drift_rates(actual: np.ndarray, median: np.ndarray) -> np.ndarray:
    """Per series: the drift of actual away from the median over a time-ordered validation tail,
    in usage units per window (0 where there is none to speak of). Both are [windows, series]."""
    error = np.asarray(actual, dtype=float) - np.asarray(median, dtype=float)
    n, n_series = error.shape
    rates = np.zeros(n_series)
    if n < MIN_WINDOWS:
        return rates
    edges = np.linspace(0, n, BLOCKS + 1).astype(int)
    centres = (edges[:-1] + edges[1:] - 1) / 2.0
    known = ~np.isnan(error)
    sums = np.add.reduceat(np.where(known, error, 0.0), edges[:-1], axis=0)
    counts = np.add.reduceat(known, edges[:-1], axis=0)
    means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)  # NaN: a block all unknown
    magnitude = np.abs(np.asarray(actual, dtype=float))
    seen = np.isfinite(magnitude).sum(axis=0)
    level = np.where(np.isfinite(magnitude), magnitude, 0.0).sum(axis=0) / np.maximum(seen, 1)
    for j in range(n_series):
        rate = _trend(centres, means[:, j])
        # a trend of rounding error (a constant series fitted to the last bit) is no drift
        rates[j] = rate if abs(rate) * n > NEGLIGIBLE * level[j] else 0.0
    return rates


NEGLIGIBLE = 1e-6
"""A drift over the whole tail smaller than this share of the series' mean level is none."""


def _trend(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of y on x where it stands out by `Z` standard errors, else 0."""
    known = np.isfinite(y)
    if known.sum() < BLOCKS // 2:
        return 0.0
    x, y = x[known], y[known]
    dx = x - x.mean()
    slope = float(dx @ (y - y.mean()) / (dx @ dx))
    residual = y - y.mean() - slope * dx
    se = float(np.sqrt(residual @ residual / (len(y) - 2) / (dx @ dx)))
    return slope if abs(slope) > Z * se else 0.0


def wander_rates(actual: np.ndarray, median: np.ndarray, stateful: np.ndarray) -> np.ndarray:
    """Per series: the spread a random walk of the error adds in one window (usage units; after
    `n` windows, `sqrt(n)` times as much), from the residuals of time-ordered training windows
    ([windows, series] both); 0 for series not `stateful` [series], with no rise, or too few
    windows."""
    error = np.asarray(actual, dtype=float) - np.asarray(median, dtype=float)
    n, n_series = error.shape
    out = np.zeros(n_series)
    if n < MIN_WANDER_WINDOWS:
        return out
    short, long = (max(1, int(n * share)) for share in WANDER_LAGS)
    for j in np.flatnonzero(np.asarray(stateful, dtype=bool)):
        residual = _detrended(error[:, j])
        rise = _variogram(residual, long) - _variogram(residual, short)
        if np.isfinite(rise) and rise > 0:
            out[j] = float(np.sqrt(rise / (long - short)))
    return out


def _detrended(x: np.ndarray) -> np.ndarray:
    """x less its least-squares line over time (NaN stays NaN): a creep is drift, whose
    variogram rises with the square of the lag, not a walk's."""
    known = np.isfinite(x)
    if known.sum() < 2:
        return x
    t = np.arange(len(x), dtype=float)
    slope, intercept = np.polyfit(t[known], x[known], 1)
    return x - (slope * t + intercept)


def _variogram(x: np.ndarray, lag: int) -> float:
    """Mean squared change of x over `lag` windows, where both ends are known (NaN: none)."""
    change = x[lag:] - x[:-lag]
    change = change[np.isfinite(change)]
    return float(np.mean(change**2)) if change.size else float("nan")


def aged(
    pred: np.ndarray,
    ages: np.ndarray,
    rates: np.ndarray,
    since: float,
    cap: float,
    wander: np.ndarray | None = None,
) -> np.ndarray:
    """Quantiles [windows, series, 3] with each band widened for its age: on both sides by the
    `wander` [series] of `wander_rates` (none given: 0), then on its drift side.

    `ages` [windows] counts windows since the training end (1 for the window right after it, 0 or
    less inside the training range, which are left as they are); `rates` [series] come from
    `drift_rates`; widening starts `since` windows after the end and stops growing after `cap`.
    """
    pred = np.asarray(pred, dtype=float)
    rates = np.asarray(rates, dtype=float)
    wander = np.zeros_like(rates) if wander is None else np.asarray(wander, dtype=float)
    if not rates.any() and not wander.any():
        return pred
    span = np.clip(np.asarray(ages, dtype=float) - since, 0.0, max(cap, 0.0))[:, None]
    if not span.any():
        return pred
    out = pred.copy()
    if wander.any():
        spread = (BAND_Z * wander) ** 2 * span
        middle = out[..., 1]
        out[..., 2] = middle + np.sqrt((out[..., 2] - middle) ** 2 + spread)
        out[..., 0] = np.maximum(middle - np.sqrt((middle - out[..., 0]) ** 2 + spread), 0.0)
    out[..., 2] += np.maximum(rates, 0.0) * span
    out[..., 0] = np.maximum(out[..., 0] + np.minimum(rates, 0.0) * span, 0.0)
    return out

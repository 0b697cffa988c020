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


def aged(
    pred: np.ndarray, ages: np.ndarray, rates: np.ndarray, since: float, cap: float
) -> np.ndarray:
    """Quantiles [windows, series, 3] with each band widened on its drift side.

    `ages` [windows] counts windows since the training end (1 for the window right after it, 0 or
    less inside the training range, which are left as they are); `rates` [series] come from
    `drift_rates`; widening starts `since` windows after the end and stops growing after `cap`.
    """
    pred = np.asarray(pred, dtype=float)
    rates = np.asarray(rates, dtype=float)
    if not rates.any():
        return pred
    span = np.clip(np.asarray(ages, dtype=float) - since, 0.0, max(cap, 0.0))[:, None]
    if not span.any():
        return pred
    out = pred.copy()
    out[..., 2] += np.maximum(rates, 0.0) * span
    out[..., 0] = np.maximum(out[..., 0] + np.minimum(rates, 0.0) * span, 0.0)
    return out

"""History-only baseline: exponential smoothing of past actual usage, as history-only tools do.

It sees no traffic, only the usage of earlier windows, so it has its own small API rather than the
X -> Y contract: fit smoothing parameters on training series, then forecast each test window one
step ahead from the actual values up to the window before it.
"""

from __future__ import annotations

import warnings
from typing import Self

import numpy as np
import pandas as pd
from statsmodels.tsa.holtwinters import Holt, SimpleExpSmoothing

from estimator.errors import ModelError
from estimator.models.base import QUANTILES, finalize


def _filled(y: np.ndarray) -> np.ndarray:
    """Unknown values carried forward (then backward at the start), as smoothing needs no gaps."""
    return pd.Series(y).ffill().bfill().to_numpy(dtype=float)


class HistoryForecaster:
    """Per series simple or damped-trend (Holt) exponential smoothing, chosen by AIC."""

    def __init__(self, lookback: int = 60, trend: bool = True, max_fit_rows: int = 2000) -> None:
        self.lookback = lookback
        self.trend = trend
        self.max_fit_rows = max_fit_rows

    def _fit_series(self, y: np.ndarray) -> tuple[float, float, float, float, float, np.ndarray]:
        """alpha, beta, phi, final level, final trend, and one-step in-sample residuals."""
        if len(y) < 4 or np.ptp(y) == 0:
            return 1.0, 0.0, 0.0, float(y[-1]), 0.0, np.zeros(1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            best = SimpleExpSmoothing(y, initialization_method="estimated").fit()
            beta, phi = 0.0, 0.0
            if self.trend and len(y) >= 10:
                holt = Holt(y, damped_trend=True, initialization_method="estimated").fit()
                if np.isfinite(holt.aic) and holt.aic < best.aic:
                    best = holt
                    beta = float(holt.params["smoothing_trend"])
                    phi = float(holt.params["damping_trend"])
        trend_end = float(best.trend[-1]) if beta or phi else 0.0
        return (
            float(best.params["smoothing_level"]),
            beta,
            phi,
            float(best.level[-1]),
            trend_end,
            y - np.asarray(best.fittedvalues),
        )

    def fit(self, Y_train: np.ndarray) -> Self:
        """Fit smoothing parameters and residual bands per series of [windows, series]."""
        Y = np.asarray(Y_train, dtype=float)
        if Y.ndim != 2 or len(Y) == 0:
            raise ModelError(f"history: expected training usage [windows, series], got {Y.shape}")
        Y = Y[-self.max_fit_rows :]
        params, bands = [], []
        for j in range(Y.shape[1]):
            known = ~np.isnan(Y[:, j])
            if not known.any():
                params.append((1.0, 0.0, 0.0, 0.0, 0.0))
                bands.append((0.0, 0.0))
                continue
            alpha, beta, phi, level, trend, resid = self._fit_series(_filled(Y[:, j]))
            params.append((alpha, beta, phi, level, trend))
            low, high = np.quantile(resid[known[-len(resid) :]], [QUANTILES[0], QUANTILES[2]])
            bands.append((float(low), float(high)))
        table = np.asarray(params, dtype=float)  # [series, 5]
        self.alpha_, self.beta_, self.phi_ = table[:, 0], table[:, 1], table[:, 2]
        self.level_, self.trend_ = table[:, 3], table[:, 4]
        self.band_ = np.asarray(bands)
        self.n_series_ = Y.shape[1]
        return self

    def _initial(self, history: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Level and trend before the history: the median of its known values, else the training
        end. Not its first value: a series whose fitted level barely moves (smoothing near 0)
        forecast that one value throughout, a noisy one at 5 times the usage after it."""
        level, trend = self.level_.copy(), self.trend_.copy()
        for j in range(history.shape[1]):
            known = history[~np.isnan(history[:, j]), j]
            if known.size:
                level[j], trend[j] = float(np.median(known)), 0.0
        return level, trend

    def forecast(self, Y_history: np.ndarray, Y_test: np.ndarray) -> np.ndarray:
        """[n_test, series, 3]: each test window forecast from actual values before it only."""
        if not hasattr(self, "alpha_"):
            raise ModelError("history forecaster used before fit")
        history = np.asarray(Y_history, dtype=float).reshape(-1, self.n_series_)
        test = np.asarray(Y_test, dtype=float)
        if test.ndim != 2 or test.shape[1] != self.n_series_:
            raise ModelError(
                f"history: expected [n, {self.n_series_}] test usage, got {test.shape}"
            )
        history = history[len(history) - min(self.lookback, len(history)) :]
        level, trend = self._initial(history)
        sequence = np.vstack([history, test])
        out = np.empty((len(test), self.n_series_))
        alpha, beta, phi = self.alpha_, self.beta_, self.phi_
        for t, actual in enumerate(sequence):
            expected = level + phi * trend
            if t >= len(history):
                out[t - len(history)] = expected
            new_level = np.where(
                np.isnan(actual), expected, alpha * actual + (1 - alpha) * expected
            )
            trend = beta * (new_level - level) + (1 - beta) * phi * trend
            level = new_level
        band = self.band_
        return finalize(np.stack([out + band[:, 0], out, out + band[:, 1]], axis=-1))


__all__ = ["HistoryForecaster"]

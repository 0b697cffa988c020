"""The one estimator contract every model and baseline honours (style.md item 2)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from estimator.errors import ModelError
from estimator.features import Layout

QUANTILES: tuple[float, float, float] = (0.05, 0.5, 0.95)
"""Lower, median and upper of the 90% band."""

BAND = QUANTILES[2] - QUANTILES[0]
"""Share of usage the band should hold."""


class QuantileModel(ABC):
    """Maps time-ordered feature rows [windows, features] to usage quantiles [windows, series, 3].

    `__init__` stores hyperparameters only; `fit` learns state into attributes ending in `_`.
    Rows are consecutive windows: a model may look back `context` rows (never forward), so a live
    caller passes the last `context + 1` rows and keeps the last prediction. Targets may hold NaN
    (unknown), which fitting skips.
    """

    kind: ClassVar[str]
    context: int = 0
    progress: Callable[[str], None] | None = None
    """Told a line as each long stage of fitting starts, where the model has such stages (set by
    `deeprest train`); never required."""

    def say(self, line: str) -> None:
        """Tell `progress` a line, if anyone listens."""
        if self.progress is not None:
            self.progress(line)

    @abstractmethod
    def fit(self, X: np.ndarray, Y: np.ndarray, layout: Layout) -> Self:
        """Learn from features X [n, f] and targets Y [n, s] (NaN = unknown)."""

    @abstractmethod
    def predict(self, X: np.ndarray) -> np.ndarray:
        """[n, s, 3] lower, median, upper; non-negative and ordered."""

    def predict_last(self, X: np.ndarray) -> np.ndarray:
        """[s, 3] for the last row only, what a live caller needs; models may do it cheaper."""
        return np.asarray(self.predict(X)[-1])

    @abstractmethod
    def save(self, directory: Path) -> dict[str, Any]:
        """Write fitted state into `directory` (safe formats only); return JSON-able metadata."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path, meta: dict[str, Any]) -> Self:
        """Rebuild a fitted model from `save`'s files and metadata."""

    def series_kinds(self) -> list[str]:
        """Model kind serving each series (a per-series chooser overrides this)."""
        return [self.kind] * self.n_series_

    n_series_: int

    def _check_fitted(self, X: np.ndarray) -> None:
        if not hasattr(self, "n_features_"):
            raise ModelError(f"{self.kind} model used before fit")
        shape = np.shape(X)  # a nested list as well as an array
        if len(shape) != 2 or shape[1] != self.n_features_:
            raise ModelError(
                f"{self.kind}: expected features of shape [n, {self.n_features_}], got {shape}"
            )

    n_features_: int


def finalize(pred: np.ndarray) -> np.ndarray:
    """Clip quantiles at zero (usage is non-negative) and sort them so lower <= median <= upper."""
    return np.sort(np.clip(pred, 0.0, None), axis=-1)


def conformal_margin(z: np.ndarray, q: np.ndarray) -> float:
    """Amount to widen a quantile band so held-out coverage is 90% (0 where it already is).

    z [n] are held-out targets, q [n, 3] the band's quantiles for them, in the same units (split
    conformalized quantile regression: the band becomes `[q0 - m, q2 + m]`).

    The held-out windows are the newest training windows, one stretch of time: often one phase
    of the day, at one load. They may widen the band, never narrow it. A calm stretch is no
    evidence that the band the quantiles learned over every load is too wide elsewhere: where
    noise grows with load, a margin narrowed on a quiet tail leaves the busy hours uncovered.
    """
    if len(z) == 0:
        return 0.0
    excess = np.sort(np.maximum(q[:, 0] - z, z - q[:, 2]))
    rank = min(len(z), int(np.ceil((len(z) + 1) * BAND)))  # the ceil((n + 1) * 0.9)-th smallest
    return max(0.0, float(excess[rank - 1]))


def widen(q: np.ndarray, margin: np.ndarray) -> np.ndarray:
    """Quantiles [..., s, 3] with each series' `conformal_margin` applied: a new array whose
    band is `[q0 - m, q2 + m]`."""
    q = np.array(q, dtype=float)
    q[..., 0] -= margin
    q[..., 2] += margin
    return q


def held_out(windows: int, validation_fraction: float) -> int:
    """Windows the validation tail holds out of `windows`: the newest fraction, one at least
    (`deeprest train`'s validation and `auto`'s choice hold out the same)."""
    return max(1, int(round(windows * validation_fraction)))


def clearly_lower(errors: np.ndarray, reference: np.ndarray, z: float) -> np.ndarray:
    """Per series: are `errors` [n, s] (absolute, NaN where unknown) lower than `reference`'s
    by more than z standard errors of their mean paired difference over the known windows?"""
    with np.errstate(invalid="ignore"):  # inf - inf: a series neither can take
        diff = reference - errors
    n = (~np.isnan(diff)).sum(axis=0)
    out = np.zeros(diff.shape[1], dtype=bool)
    enough = (n >= 2) & np.isfinite(np.where(np.isnan(diff), 0.0, diff)).all(axis=0)
    if enough.any():
        d = diff[:, enough]
        mean = np.nanmean(d, axis=0)
        se = np.nanstd(d, axis=0, ddof=1) / np.sqrt(n[enough])
        out[enough] = mean > z * se
    return out


def observed(Y: np.ndarray, j: int) -> np.ndarray:
    """Row mask of the known values of series j."""
    return ~np.isnan(Y[:, j])


def check_saved_arrays(
    n_features: int,
    n_series: int,
    *,
    weights: np.ndarray | None = None,
    per_series: dict[str, np.ndarray] | None = None,
    columns: dict[str, np.ndarray] | None = None,
) -> None:
    """Parameters read back from a bundle fit the model's sizes: a real float weight matrix of
    [features, series], one value per series, feature columns within range. A consistent but
    edited bundle would otherwise broadcast or index its way to wrong numbers."""
    if weights is not None:
        if not np.issubdtype(weights.dtype, np.floating):
            raise ModelError(f"weights are of type {weights.dtype}, not real numbers")
        if weights.shape != (n_features, n_series):
            raise ModelError(
                f"weights have shape {weights.shape}, not [{n_features} features, "
                f"{n_series} series]"
            )
    for name, values in (per_series or {}).items():
        if np.shape(values) != (n_series,):
            raise ModelError(f"{name} has shape {np.shape(values)}, not one value per series")
    for name, values in (columns or {}).items():
        values = np.asarray(values)
        if values.ndim != 1 or ((values < 0) | (values >= n_features)).any():
            raise ModelError(f"{name} reads feature columns outside 0..{n_features - 1}")

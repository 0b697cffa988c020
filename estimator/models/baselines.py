"""Linear baselines: the paper's component-aware scaling, and OLS on per-API call counts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from estimator.errors import ModelError
from estimator.features import Layout
from estimator.models.base import QUANTILES, QuantileModel, finalize


def residual_band(residuals: np.ndarray) -> tuple[float, float]:
    """Lower and upper residual quantiles of the 90% band (0, 0 when there are none)."""
    if len(residuals) == 0:
        return 0.0, 0.0
    low, high = np.quantile(residuals, [QUANTILES[0], QUANTILES[2]])
    return float(low), float(high)


def _check_xy(kind: str, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X, Y = np.asarray(X, dtype=float), np.asarray(Y, dtype=float)
    if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y) or len(X) == 0:
        raise ModelError(f"{kind}: X {X.shape} and Y {Y.shape} do not match")
    return X, Y


class _LinearBand(QuantileModel):
    """Shared state of the linear baselines: per series coefficients on chosen columns and a band."""

    def _fit_series(self, A: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
        """Least-squares coefficients of y on [A, 1] over known rows, and the residual band."""
        known = ~np.isnan(y)
        design = np.hstack([A, np.ones((len(A), 1))])[known]
        if not known.any():
            return np.zeros(A.shape[1] + 1), (0.0, 0.0)
        coef = np.linalg.lstsq(design, y[known], rcond=None)[0]
        return coef, residual_band(y[known] - design @ coef)

    def _median(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted(X)
        median = self._median(np.asarray(X, dtype=float))
        pred = np.stack([median + self.band_[:, 0], median, median + self.band_[:, 1]], axis=-1)
        return finalize(pred)

    def _state(self) -> dict[str, Any]:
        return {
            "n_features": self.n_features_,
            "n_series": self.n_series_,
            "band": self.band_.tolist(),
        }

    def _restore(self, meta: dict[str, Any]) -> None:
        self.n_features_, self.n_series_ = int(meta["n_features"]), int(meta["n_series"])
        self.band_ = np.asarray(meta["band"], dtype=float).reshape(self.n_series_, 2)


class ComponentLinear(_LinearBand):
    """Each series of component c is a + b * (span count of c): the paper's linear scaling.

    `components` names the component of each series; without it a series is matched to the
    component whose span count explains it best (least residual error).
    """

    kind = "linear"

    def __init__(self, components: Sequence[str] | None = None) -> None:
        self.components = None if components is None else list(components)

    def _column_for(self, X: np.ndarray, y: np.ndarray, layout: Layout, j: int) -> int:
        components = self.components or [c for c, _ in layout.series] or None
        if components is not None:
            column = layout.component_column(components[j])
            if column is not None:
                return column
        candidates = layout.columns("component")
        if candidates.size == 0:
            raise ModelError("linear: the feature layout has no component span counts")
        x = X[:, candidates] - X[:, candidates].mean(axis=0)
        cov = x.T @ (y - y.mean())
        var = (x**2).sum(axis=0)
        explained = np.where((var > 0) & (cov > 0), cov**2 / np.where(var > 0, var, 1.0), 0.0)
        return int(candidates[int(np.argmax(explained))])

    def fit(self, X: np.ndarray, Y: np.ndarray, layout: Layout) -> Self:
        X, Y = _check_xy(self.kind, X, Y)
        if self.components is not None and len(self.components) != Y.shape[1]:
            raise ModelError(f"linear: {len(self.components)} components for {Y.shape[1]} series")
        columns, coefs, bands = [], [], []
        for j in range(Y.shape[1]):
            known = ~np.isnan(Y[:, j])
            column = self._column_for(X[known], Y[known, j], layout, j) if known.any() else 0
            coef, band = self._fit_series(X[:, [column]], Y[:, j])
            columns.append(column)
            coefs.append(coef)
            bands.append(band)
        self.columns_ = np.asarray(columns, dtype=int)
        self.coef_ = np.asarray(coefs)  # [s, 2]: slope, intercept
        self.band_ = np.asarray(bands)
        self.n_features_, self.n_series_ = X.shape[1], Y.shape[1]
        return self

    def _median(self, X: np.ndarray) -> np.ndarray:
        return X[:, self.columns_] * self.coef_[:, 0] + self.coef_[:, 1]

    def save(self, directory: Path) -> dict[str, Any]:
        return {
            **self._state(),
            "components": self.components,
            "columns": self.columns_.tolist(),
            "coef": self.coef_.tolist(),
        }

    @classmethod
    def load(cls, directory: Path, meta: dict[str, Any]) -> Self:
        model = cls(meta.get("components"))
        model._restore(meta)
        model.columns_ = np.asarray(meta["columns"], dtype=int)
        model.coef_ = np.asarray(meta["coef"], dtype=float).reshape(model.n_series_, 2)
        return model


class ApiOLS(_LinearBand):
    """Ordinary least squares of each series on per-API call counts (no traces needed)."""

    kind = "ols-api"

    def fit(self, X: np.ndarray, Y: np.ndarray, layout: Layout) -> Self:
        X, Y = _check_xy(self.kind, X, Y)
        self.columns_ = layout.columns("api")
        fits = [self._fit_series(X[:, self.columns_], Y[:, j]) for j in range(Y.shape[1])]
        self.coef_ = np.asarray([coef for coef, _ in fits]).T  # [apis + 1, s]
        self.band_ = np.asarray([band for _, band in fits])
        self.n_features_, self.n_series_ = X.shape[1], Y.shape[1]
        return self

    def _median(self, X: np.ndarray) -> np.ndarray:
        return X[:, self.columns_] @ self.coef_[:-1] + self.coef_[-1]

    def save(self, directory: Path) -> dict[str, Any]:
        return {**self._state(), "columns": self.columns_.tolist(), "coef": self.coef_.tolist()}

    @classmethod
    def load(cls, directory: Path, meta: dict[str, Any]) -> Self:
        model = cls()
        model._restore(meta)
        model.columns_ = np.asarray(meta["columns"], dtype=int)
        model.coef_ = np.asarray(meta["coef"], dtype=float).reshape(-1, model.n_series_)
        return model


__all__ = ["ApiOLS", "ComponentLinear", "residual_band"]

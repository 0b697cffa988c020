"""Evaluation of estimates against actual usage: per-series tables, as every benchmark reports."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from estimator.anomaly import anomaly_scores, floors
from estimator.metrics import accuracy, mae, scored_coverage
from estimator.windows import SeriesKey, Window, targets


@dataclass(frozen=True)
class Evaluation:
    """Per-series figures of one model on one test set (arrays are indexed by series)."""

    series: list[SeriesKey]
    starts: np.ndarray
    actual: np.ndarray  # [windows, series]
    pred: np.ndarray  # [windows, series, 3]
    oracle: np.ndarray | None  # [windows, series] noise-free truth, where simulated

    @property
    def accuracy(self) -> np.ndarray:
        return accuracy(self.pred[..., 1], self.actual)

    @property
    def coverage(self) -> np.ndarray:
        """Band coverage per series; NaN where it is not scored (`scored_coverage`)."""
        return scored_coverage(self.pred, self.actual)

    @property
    def mae(self) -> np.ndarray:
        return mae(self.pred[..., 1], self.actual)

    @property
    def oracle_accuracy(self) -> np.ndarray | None:
        return None if self.oracle is None else accuracy(self.oracle, self.actual)

    @property
    def oracle_mae(self) -> np.ndarray | None:
        return None if self.oracle is None else mae(self.oracle, self.actual)

    @property
    def anomaly(self) -> np.ndarray:
        return anomaly_scores(self.actual, self.pred, floor=floors(self.series))

    def rows(self) -> list[dict[str, object]]:
        """One dict per series: component, resource and its figures."""
        acc, cover, err, oracle_acc = self.accuracy, self.coverage, self.mae, self.oracle_accuracy
        out = []
        for j, (component, resource) in enumerate(self.series):
            row: dict[str, object] = {
                "component": component,
                "resource": resource,
                "accuracy": float(acc[j]),
                "coverage": float(cover[j]),
                "mae": float(err[j]),
            }
            if oracle_acc is not None:
                row["oracle_accuracy"] = float(oracle_acc[j])
            out.append(row)
        return out

    def summary(self) -> dict[str, float]:
        """Mean and worst-series accuracy, mean coverage, and the oracle's where known."""
        acc = self.accuracy
        with warnings.catch_warnings():  # every series without usage: NaN, not a numpy warning
            warnings.simplefilter("ignore", RuntimeWarning)
            out = {
                "mean_accuracy": float(np.nanmean(acc)),
                "worst_accuracy": float(np.nanmin(acc)),
                "coverage": float(np.nanmean(self.coverage)),
            }
            if self.oracle is not None:
                out["oracle_accuracy"] = float(np.nanmean(accuracy(self.oracle, self.actual)))
                mae_ratio = self.mae / self.oracle_mae  # type: ignore[operator]
                out["worst_mae_ratio"] = float(np.nanmax(mae_ratio))
        return out

    def worst_series(self) -> SeriesKey | None:
        """The series of the worst accuracy (`summary`'s worst_accuracy), None where none has one."""
        acc = self.accuracy
        if np.isnan(acc).all():
            return None
        return self.series[int(np.nanargmin(acc))]

    def by_resource(self) -> dict[str, dict[str, float]]:
        """Per resource with more than one kind in the table: mean, median and worst accuracy and
        mean coverage of its scored series (those with usage), and how many there are: CPU and
        memory scores differ in kind, and one mean over both hides either."""
        resources = sorted({r for _, r in self.series})
        if len(resources) < 2:
            return {}
        acc, cover = self.accuracy, self.coverage
        out = {}
        for resource in resources:
            mine = np.array([r == resource for _, r in self.series]) & ~np.isnan(acc)
            if mine.any():
                out[resource] = {
                    "mean_accuracy": float(np.mean(acc[mine])),
                    "median_accuracy": float(np.median(acc[mine])),
                    "worst_accuracy": float(np.min(acc[mine])),
                    "coverage": float(np.mean(cover[mine])),
                    "series": float(np.count_nonzero(mine)),
                }
        return out


def build_evaluation(
    windows: Sequence[Window], series: list[SeriesKey], pred: np.ndarray
) -> Evaluation:
    """Pair predictions with the windows' actual (and oracle) values."""
    oracle = targets(windows, series, oracle=True)
    return Evaluation(
        series=series,
        starts=np.array([w.start for w in windows]),
        actual=targets(windows, series),
        pred=pred,
        oracle=None if np.isnan(oracle).all() else oracle,
    )

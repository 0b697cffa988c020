"""Accuracy as every benchmark reports it: 1 - WAPE per series, and band coverage."""

from __future__ import annotations

import numpy as np


def accuracy(median: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Per-series 1 - sum|median - actual| / sum|actual| over windows where actual is known.

    median and actual are [windows, series]; a series with no known values, or whose known values
    are all zero, gets NaN (its relative error is undefined).
    """
    known = ~np.isnan(actual)
    err = np.where(known, np.abs(median - np.nan_to_num(actual)), 0.0).sum(axis=0)
    scale = np.where(known, np.abs(np.nan_to_num(actual)), 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = 1.0 - err / scale
    out[(known.sum(axis=0) == 0) | (scale == 0)] = np.nan  # undefined where all actual is zero
    return out


def wape(median: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Per-series weighted absolute percentage error (1 - accuracy)."""
    return 1.0 - accuracy(median, actual)


def mae(median: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Per-series mean absolute error over known values."""
    known = ~np.isnan(actual)
    err = np.where(known, np.abs(median - np.nan_to_num(actual)), 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return err / known.sum(axis=0)


def coverage(pred: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Per-series share of known actual values inside [lower, upper]; pred is [windows, series, 3]."""
    known = ~np.isnan(actual)
    inside = (actual >= pred[..., 0]) & (actual <= pred[..., 2]) & known
    with np.errstate(invalid="ignore", divide="ignore"):
        return inside.sum(axis=0) / known.sum(axis=0)


def scored_coverage(pred: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Band coverage per series as evaluations report it: NaN for a series without a band (a
    baseline that never saw it), which a share of 0 would count as a band that misses, and for
    one without an accuracy (no usage known, or 0 throughout), whose band of [0, 0] or so would
    cover it trivially and raise a mean coverage with nothing of interest."""
    out = coverage(pred, actual)
    out[np.isnan(pred[..., [0, 2]]).all(axis=(0, 2))] = np.nan
    out[np.isnan(accuracy(pred[..., 1], actual))] = np.nan
    return out

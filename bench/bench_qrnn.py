"""Fit time and single-window latency of the quantile RNN on a synthetic problem of real size.

python bench/bench_qrnn.py [--rows 20000] [--series 40] [--features 300]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from estimator.features import Layout
from estimator.metrics import accuracy, coverage
from estimator.models.qrnn import QRNN


def problem(
    rows: int, series: int, features: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, Layout]:
    """Counts driven by a few API rates, EMA history columns, sparse linear costs plus noise."""
    rng = np.random.default_rng(seed)
    n_apis, n_hist = 12, features // 6
    n_counts = features - n_hist
    t = np.arange(rows)[:, None]
    level = 50 * (1.2 + np.sin(2 * np.pi * t / 1440 + rng.uniform(0, 6, n_apis)))
    rates = rng.poisson(level * rng.uniform(0.5, 2.0, n_apis)).astype(float)
    mix = rng.uniform(0, 1, (n_apis, n_counts)) * (rng.uniform(size=(n_apis, n_counts)) < 0.2)
    counts = rates @ mix
    hist = np.empty((rows, n_hist))
    decay, acc = 0.9, counts[0, :n_hist].copy()
    for i in range(rows):
        acc = decay * acc + (1 - decay) * counts[i, :n_hist]
        hist[i] = acc
    X = np.hstack([counts, hist])
    cost = rng.uniform(0, 1, (n_counts, series)) * (rng.uniform(size=(n_counts, series)) < 0.05)
    clean = 1.0 + counts @ cost / counts.mean() * 0.1
    Y = clean * (1 + 0.03 * rng.standard_normal(clean.shape))
    names = tuple(f"f{i}" for i in range(features))
    groups = {"counts": tuple(range(n_counts)), "history": tuple(range(n_counts, features))}
    return X, Y, Layout(names, groups, (), ())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20000, help="training rows")
    parser.add_argument("--series", type=int, default=40)
    parser.add_argument("--features", type=int, default=300)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    split = args.rows
    X, Y, layout = problem(split + split // 5, args.series, args.features)
    model = QRNN(seed=0, progress=args.progress, threads=args.threads)
    started = time.perf_counter()
    model.fit(X[:split], Y[:split], layout)
    fit_s = time.perf_counter() - started
    pred = model.predict(X[split:])
    acc = accuracy(pred[:, :, 1], Y[split:])
    cov = coverage(pred, Y[split:])
    window = X[split : split + model.context + 1]
    model.predict_last(window)  # what the exporter calls: the newest row's estimate
    runs = 200
    started = time.perf_counter()
    for _ in range(runs):
        model.predict_last(window)
    latency_ms = (time.perf_counter() - started) / runs * 1000
    print(f"problem: {split} training rows x {args.series} series x {args.features} features")
    print(f"fit: {fit_s:.1f} s ({model.training_['epochs']:.0f} epochs)")
    print(f"accuracy: mean {np.nanmean(acc):.3f}, worst {np.nanmin(acc):.3f}")
    print(f"coverage: mean {np.nanmean(cov):.3f}")
    print(f"single-window predict ({model.context + 1} rows): {latency_ms:.2f} ms")


if __name__ == "__main__":
    main()

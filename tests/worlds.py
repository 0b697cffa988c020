"""Small seeded worlds of windows for unit tests (independent of the simulator)."""

from __future__ import annotations

import numpy as np

from estimator.windows import CallPath, Window

FRONT = ("front", "/compose")
READ = ("front", "/read")
COMPOSE_PATHS: tuple[CallPath, ...] = (
    (FRONT,),
    (FRONT, ("compose", "compose")),
    (FRONT, ("compose", "compose"), ("store", "write")),
)
READ_PATHS: tuple[CallPath, ...] = ((READ,), (READ, ("timeline", "read")))


def tiny_world(
    n: int = 200, seed: int = 0, scale: float = 1.0, noise: float = 0.02
) -> list[Window]:
    """Two APIs over four components; cpu linear in calls, memory follows a traffic-driven state."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    composes = rng.poisson(scale * (20 + 15 * np.sin(t / 12.0) ** 2))
    reads = rng.poisson(scale * (40 + 30 * np.cos(t / 17.0) ** 2))
    cache = 0.0
    windows = []
    for i in range(n):
        w = Window(start=60.0 * i, end=60.0 * (i + 1))
        for path in COMPOSE_PATHS:
            w.add_path(path, float(composes[i]))
        for path in READ_PATHS:
            w.add_path(path, float(reads[i]))
        cache = 0.9 * cache + 2e5 * composes[i]
        truth = {
            ("front", "cpu"): 0.05 + 0.002 * (composes[i] + reads[i]),
            ("compose", "cpu"): 0.02 + 0.004 * composes[i],
            ("store", "cpu"): 0.03 + 0.003 * composes[i],
            ("timeline", "cpu"): 0.01 + 0.001 * reads[i],
            ("store", "memory"): 5e7 + cache,
        }
        for key, value in truth.items():
            w.oracle[key] = value
            w.metrics[key] = value * (1 + noise * rng.standard_normal())
        windows.append(w)
    return windows

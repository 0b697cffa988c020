"""Scenario traffic, after the DeepRest load generator: calls per API per window."""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from estimator.simulator.app import APIS
from estimator.simulator.config import SimulationConfig

NORMAL_MIX: dict[str, float] = {
    "/compose-post": 0.15,
    "/read-home-timeline": 0.45,
    "/read-user-timeline": 0.25,
    "/register": 0.03,
    "/follow": 0.07,
    "/upload-media": 0.05,
}
"""Share of each API in the requests of the normal scenario."""

SKEWED_MIXES: tuple[dict[str, float], ...] = (
    {"/compose-post": 0.55, "/read-home-timeline": 0.15, "/read-user-timeline": 0.1,
     "/register": 0.03, "/follow": 0.07, "/upload-media": 0.1},
    {"/compose-post": 0.04, "/read-home-timeline": 0.6, "/read-user-timeline": 0.32,
     "/register": 0.01, "/follow": 0.02, "/upload-media": 0.01},
    {"/compose-post": 0.2, "/read-home-timeline": 0.2, "/read-user-timeline": 0.15,
     "/register": 0.02, "/follow": 0.03, "/upload-media": 0.4},
    {"/compose-post": 0.08, "/read-home-timeline": 0.3, "/read-user-timeline": 0.2,
     "/register": 0.12, "/follow": 0.3, "/upload-media": 0.0},
)  # fmt: skip
"""API mixes of the composition scenario: write-heavy, read-heavy, media-heavy, social-heavy."""

PEAKS: tuple[tuple[float, float], ...] = ((0.42, 0.08), (0.83, 0.07))
"""(time of day as a fraction, width) of the two daily peaks."""

FLOOR = 0.15
"""Night-time traffic as a share of the peak."""

RATE_NOISE = (0.06, 0.85)
"""Sigma and lag-1 correlation of the multiplicative AR(1) log-noise on the request rate."""

MIX_DRIFT = (0.25, 0.98)
"""Sigma and lag-1 correlation of each API's own AR(1) log-drift of its share: users do not do the
same thing all day, so the mix wanders around its nominal value (independently per API)."""

SEGMENTS_PER_DAY = 4
"""How often per day the composition scenario switches its API mix."""


def _mix_vector(mix: dict[str, float]) -> np.ndarray:
    v = np.array([mix.get(a, 0.0) for a in APIS], dtype=float)
    return v / v.sum()


def diurnal(n: int, day: int, rng: np.random.Generator) -> np.ndarray:
    """[n] load in [FLOOR, 1]: two peaks a day with heights drawn per day."""
    days = n // day + 2
    heights = rng.uniform(0.6, 1.0, size=(days, len(PEAKS)))
    t = np.arange(n) / day
    d = np.floor(t).astype(int)
    x = t - d
    load = np.zeros(n)
    for k, (center, width) in enumerate(PEAKS):
        dist = np.abs(x - center)
        dist = np.minimum(dist, 1.0 - dist)
        load += heights[d, k] * np.exp(-0.5 * (dist / width) ** 2)
    return FLOOR + (1.0 - FLOOR) * np.minimum(load, 1.0)


def rate_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """[n] smooth multiplicative noise with mean about 1."""
    sigma, phi = RATE_NOISE
    shocks = rng.normal(0.0, sigma * np.sqrt(1.0 - phi**2), size=n)
    log = lfilter([1.0], [1.0, -phi], shocks)
    return np.asarray(np.exp(log - sigma**2 / 2.0))


def mix_drift(n: int, rng: np.random.Generator) -> np.ndarray:
    """[n, APIS] multiplicative drift of each API's share, mean about 1, independent per API."""
    sigma, phi = MIX_DRIFT
    shocks = rng.normal(0.0, sigma * np.sqrt(1.0 - phi**2), size=(n, len(APIS)))
    log = lfilter([1.0], [1.0, -phi], shocks, axis=0)
    return np.asarray(np.exp(log - sigma**2 / 2.0))


def composition_mix(n: int, warmup: int, day: int, rng: np.random.Generator) -> np.ndarray:
    """[n, APIS] mix per window: a skewed mix per segment, in a random order each day."""
    mixes = np.array([_mix_vector(m) for m in SKEWED_MIXES])
    segment = max(1, day // SEGMENTS_PER_DAY)
    index = np.maximum(np.arange(n) - warmup, 0) // segment
    order = np.concatenate(
        [rng.permutation(len(mixes)) for _ in range(int(index.max()) // len(mixes) + 1)]
    )
    return np.asarray(mixes[order[index]])


def expected_calls(config: SimulationConfig, rng: np.random.Generator) -> np.ndarray:
    """[warmup + windows, APIS] mean calls per window of the config's scenario."""
    n = config.warmup + config.windows
    shape_rng, mix_rng = rng.spawn(2)
    load = diurnal(n, config.day, shape_rng)
    noise = rate_noise(n, shape_rng)
    users = config.users * (config.scale if config.scenario == "scale" else 1.0)
    if config.scenario == "shape":
        load = np.ones(n)
    per_window = users * config.user_rate * config.window_seconds * load * noise
    if config.scenario == "composition":
        mix = composition_mix(n, config.warmup, config.day, mix_rng)
    else:
        mix = np.broadcast_to(_mix_vector(NORMAL_MIX), (n, len(APIS)))
    drifted = mix * mix_drift(n, mix_rng)
    mix = drifted / drifted.sum(axis=1, keepdims=True)
    return np.asarray(per_window[:, None] * mix)


def scenario_calls(config: SimulationConfig, rng: np.random.Generator) -> np.ndarray:
    """[warmup + windows, APIS] sampled calls per window (Poisson around the expected rate)."""
    mean_rng, draw_rng = rng.spawn(2)
    return draw_rng.poisson(expected_calls(config, mean_rng)).astype(np.int64)

"""Call-path counts and resource usage of the simulated application, window by window."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from estimator.errors import InputError
from estimator.simulator.app import APIS, DRAWS, App, CallTree, build_app
from estimator.simulator.config import SimulationConfig
from estimator.simulator.traffic import scenario_calls
from estimator.windows import CallPath, SeriesKey, Window

MEMORY_EXPONENT = 0.9
"""Working set grows as (concurrent requests) ** MEMORY_EXPONENT: mildly sublinear."""

_ROOT, _ALWAYS, _BERNOULLI, _POISSON = (DRAWS.index(d) for d in ("root", "always", "p", "fan"))


@dataclass(frozen=True)
class Simulation:
    """A recorded run: traffic, call-path counts, usage with and without noise, attack marks."""

    config: SimulationConfig
    paths: tuple[CallPath, ...]
    series: tuple[SeriesKey, ...]
    api_calls: np.ndarray  # [windows, APIS]
    path_counts: np.ndarray  # [windows, paths]
    oracle: np.ndarray  # [windows, series] noise-free usage
    values: np.ndarray  # [windows, series] measured usage
    cache_bytes: np.ndarray  # [windows, components] cache state (0 where none)
    cache_capacity: np.ndarray  # [components]
    attacked: np.ndarray  # [windows] bool

    @property
    def windows(self) -> list[Window]:
        return to_windows(self)


def sample_paths(tree: CallTree, api_calls: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[windows, paths] span counts: branch choices drawn per window, binomial or Poisson."""
    columns: list[np.ndarray] = []
    for j in range(len(tree.paths)):
        draw = tree.draw[j]
        if draw == _ROOT:
            columns.append(api_calls[:, tree.api[j]])
            continue
        n = columns[tree.driver[j]]
        if draw == _ALWAYS:
            columns.append(n)
        elif draw == _BERNOULLI:
            columns.append(rng.binomial(n, tree.param[j]))
        else:
            columns.append(rng.poisson(n * tree.param[j]))
    return np.stack(columns, axis=1).astype(np.int64)


def _cache_states(app: App, fill: np.ndarray, window_seconds: float) -> np.ndarray:
    """Cache sizes: size_t = min(capacity, size_{t-1} * (1 - evict) + fill_t), from empty."""
    cap = app.cache_capacity
    has = cap > 0
    keep = np.where(has, np.exp(-window_seconds / np.where(has, app.cache_tau, 1.0)), 0.0)
    out = np.zeros_like(fill)
    size = np.zeros(len(cap))
    for t in range(len(fill)):
        size = np.minimum(cap, size * keep + fill[t])
        out[t] = size
    return out


def usage(app: App, counts: np.ndarray, window_seconds: float) -> dict[str, np.ndarray]:
    """Noise-free usage per component: cpu, memory, write_iops, write_throughput, cache."""
    n_ops, n_comp = len(app.operations), len(app.components)
    per_op = np.zeros((counts.shape[0], n_ops))
    np.add.at(per_op.T, app.tree.op, counts.T.astype(float))
    on = np.zeros((n_ops, n_comp))
    on[np.arange(n_ops), app.op_component] = 1.0
    rates = per_op / window_seconds
    cost = app.op_cost
    concurrency = rates @ (on * cost[:, 1:2])
    cache = _cache_states(app, per_op @ (on * cost[:, 4:5]), window_seconds)
    working_set = app.memory_per_request * concurrency**MEMORY_EXPONENT
    return {
        "cpu": app.idle_cpu + rates @ (on * cost[:, 0:1]),
        "memory": app.base_memory + working_set + cache,
        "write_iops": app.idle_iops + rates @ (on * cost[:, 2:3]),
        "write_throughput": app.idle_write_bytes + rates @ (on * cost[:, 3:4]),
        "cache": cache,
    }


def series_keys(app: App) -> tuple[SeriesKey, ...]:
    """cpu and memory of every component; write_iops and write_throughput of every store."""
    keys = [(c, r) for c in app.components for r in ("cpu", "memory")]
    keys += [(s, r) for s in app.stores for r in ("write_iops", "write_throughput")]
    return tuple(sorted(keys))


def _attack(config: SimulationConfig, app: App, use: dict[str, np.ndarray]) -> np.ndarray:
    """Add the scenario's attack to the usage in place; returns the [warmup+windows] mask."""
    mask = np.zeros(config.warmup + config.windows, dtype=bool)
    interval = config.attack_interval()
    if interval is None or config.target is None:
        return mask
    if config.target not in app.components:
        raise InputError(
            f"unknown component {config.target!r}; choose one of {', '.join(app.components)}",
            field="attack_component",
        )
    c = app.components.index(config.target)
    mask[config.warmup + interval[0] : config.warmup + interval[1]] = True
    use["cpu"][mask, c] += config.attack_cpu
    if config.scenario == "ransomware":
        if config.target not in app.stores:
            raise InputError("ransomware needs a store (a mongodb)", field="attack_component")
        use["write_iops"][mask, c] += config.attack_iops
        use["write_throughput"][mask, c] += config.attack_iops * config.attack_io_bytes
    return mask


def _streams(config: SimulationConfig) -> list[np.random.Generator]:
    """Independent generators for traffic, branch choices and measurement noise."""
    seq = np.random.SeedSequence([config.seed, 0xDEE9])
    return [np.random.default_rng(s) for s in seq.spawn(3)]


def run_calls(
    config: SimulationConfig, api_calls: np.ndarray, capacity: np.ndarray | None = None
) -> Simulation:
    """Simulate the application under [warmup + windows, APIS] calls; record after warm-up.

    `capacity` [components] replaces the caches' capacities in bytes (inf: a cache that never
    fills; 0 where a component has none): the same traffic, call paths and noise otherwise.
    """
    app = build_app(config.app_seed)
    if capacity is not None:
        capacity = np.asarray(capacity, dtype=float)
        if (
            capacity.shape != app.cache_capacity.shape
            or ((capacity > 0) != (app.cache_capacity > 0)).any()
        ):
            raise InputError(
                f"needs {len(app.components)} capacities, positive where a component has a cache",
                field="capacity",
            )
        app = replace(app, cache_capacity=capacity)
    _, branch_rng, noise_rng = _streams(config)
    counts = sample_paths(app.tree, api_calls, branch_rng)
    use = usage(app, counts, config.window_seconds)
    attacked = _attack(config, app, use)
    keys = series_keys(app)
    comp = {c: i for i, c in enumerate(app.components)}
    oracle = np.stack([use[r][:, comp[c]] for c, r in keys], axis=1)
    noise = 1.0 + config.noise * noise_rng.standard_normal(oracle.shape)
    keep = slice(config.warmup, None)
    return Simulation(
        config=config,
        paths=app.tree.paths,
        series=keys,
        api_calls=api_calls[keep],
        path_counts=counts[keep],
        oracle=oracle[keep],
        values=np.maximum(oracle * noise, 0.0)[keep],
        cache_bytes=use["cache"][keep],
        cache_capacity=app.cache_capacity,
        attacked=attacked[keep],
    )


def run_simulation(
    config: SimulationConfig, traffic_scale: float = 1.0, capacity: np.ndarray | None = None
) -> Simulation:
    """Simulate the config's scenario, its traffic drawn from `config.seed`; `traffic_scale`
    multiplies those calls (rounded), so runs at 1x and at k times the same traffic compare;
    `capacity` as in `run_calls`."""
    if not np.isfinite(traffic_scale) or traffic_scale < 0:
        raise InputError(f"must be finite and non-negative, got {traffic_scale}", field="scale")
    traffic_rng = _streams(config)[0]
    calls = scenario_calls(config, traffic_rng)
    if traffic_scale != 1.0:
        calls = np.rint(calls * traffic_scale).astype(np.int64)
    return run_calls(config, calls, capacity)


def scenario_traffic(config: SimulationConfig) -> np.ndarray:
    """[windows, APIS] calls per API of the config's scenario, as recorded (no warm-up)."""
    traffic_rng = _streams(config)[0]
    return scenario_calls(config, traffic_rng)[config.warmup :]


def simulate(config: SimulationConfig) -> list[Window]:
    """The recorded windows of a scenario, with measured values and their oracle."""
    return to_windows(run_simulation(config))


def traffic_table(
    traffic: Mapping[str, Sequence[float]] | np.ndarray, config: SimulationConfig
) -> np.ndarray:
    """[windows, APIS] integer calls from a table keyed by API name (or already an array)."""
    if isinstance(traffic, np.ndarray):
        table = np.asarray(traffic, dtype=float)
        if table.ndim != 2 or table.shape[1] != len(APIS):
            raise InputError(f"expected shape [windows, {len(APIS)}], got {table.shape}")
    else:
        unknown = sorted(set(traffic) - set(APIS))
        if unknown:
            raise InputError(f"unknown API {unknown[0]!r}; known: {', '.join(APIS)}")
        lengths = {len(v) for v in traffic.values()}
        if len(lengths) != 1:
            raise InputError("every API needs the same number of windows")
        n = lengths.pop()
        table = np.stack([np.asarray(traffic.get(a, np.zeros(n)), dtype=float) for a in APIS], 1)
    if len(table) != config.windows:
        raise InputError(f"{len(table)} windows of traffic, config asks for {config.windows}")
    if not np.all(np.isfinite(table)) or np.any(table < 0):
        raise InputError("call counts must be finite and non-negative")
    return np.rint(table).astype(np.int64)


def simulate_traffic(
    traffic: Mapping[str, Sequence[float]] | np.ndarray, config: SimulationConfig
) -> Simulation:
    """Simulate given calls per API per window (APIS order); warm-up cycles their first day."""
    table = traffic_table(traffic, config)
    warm = np.resize(table[: config.day], (config.warmup, len(APIS)))
    return run_calls(config, np.concatenate([warm, table]))


def to_windows(sim: Simulation) -> list[Window]:
    """Windows of a run: nonzero path counts, measured values and oracle per series."""
    config = sim.config
    out: list[Window] = []
    for i in range(len(sim.path_counts)):
        start = config.start + i * config.window_seconds
        row = sim.path_counts[i]
        nonzero = np.flatnonzero(row)
        window = Window(start=start, end=start + config.window_seconds)
        window.calls = dict(
            zip([sim.paths[j] for j in nonzero], row[nonzero].tolist(), strict=True)
        )
        window.metrics = dict(zip(sim.series, sim.values[i].tolist(), strict=True))
        window.oracle = dict(zip(sim.series, sim.oracle[i].tolist(), strict=True))
        out.append(window)
    return out

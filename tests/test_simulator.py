"""The seeded application simulator and `deeprest simulate`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from estimator.errors import InputError
from estimator.simulator import (
    APIS,
    NOISE_SIGMA,
    SCENARIOS,
    Simulation,
    SimulationConfig,
    build_app,
    run_simulation,
    scenario_traffic,
    simulate,
    simulate_traffic,
)
from estimator.windows import api_counts, load_windows
from exporter.cli import main

SMALL = SimulationConfig(windows=192, day_windows=96, seed=3)


def _run(scenario: str, **kw: object) -> Simulation:
    return run_simulation(replace(SMALL, scenario=scenario, **kw))  # type: ignore[arg-type]


def _column(sim: Simulation, component: str, resource: str) -> int:
    return sim.series.index((component, resource))


def test_same_seed_same_run_other_seed_other_traffic() -> None:
    a, b = _run("normal"), _run("normal")
    assert np.array_equal(a.values, b.values) and np.array_equal(a.path_counts, b.path_counts)
    c = _run("normal", seed=4)
    assert not np.array_equal(a.api_calls, c.api_calls)
    assert build_app(0) is build_app(0)  # one application for every traffic seed


def test_size_of_the_application() -> None:
    sim = _run("normal")
    components = {c for c, _ in sim.series}
    assert len(components) >= 10 and len(sim.series) >= 40 and len(APIS) >= 5
    window = simulate(SMALL)[0]
    apis = {op for (_, op) in api_counts(window.calls)}
    assert apis == set(APIS)
    assert set(window.metrics) == set(window.oracle) == set(sim.series)
    assert min(len(p) for p in window.calls) == 1 and max(len(p) for p in window.calls) >= 4


def test_windows_carry_the_path_counts_and_values() -> None:
    sim = _run("normal")
    windows = sim.windows
    assert len(windows) == SMALL.windows
    assert windows[1].start - windows[0].start == SMALL.window_seconds
    for i in (0, 50, 191):
        calls = api_counts(windows[i].calls)
        assert [calls.get(("nginx", a), 0) for a in APIS] == sim.api_calls[i].tolist()
        j = _column(sim, "nginx", "cpu")
        assert windows[i].metrics[sim.series[j]] == sim.values[i, j]


def test_scale_triples_the_calls() -> None:
    ratio = _run("scale").api_calls.sum() / _run("normal").api_calls.sum()
    assert abs(ratio - SMALL.scale) < 0.05 * SMALL.scale


def test_traffic_scale_multiplies_the_same_draw_of_calls() -> None:
    """k times the very same traffic (not a new draw), so runs at 1x and kx compare."""
    one, two = run_simulation(SMALL), run_simulation(SMALL, traffic_scale=2.0)
    assert np.array_equal(two.api_calls, 2 * one.api_calls)
    j = _column(one, "nginx", "cpu")
    assert np.all(two.oracle[:, j] > one.oracle[:, j])
    with pytest.raises(InputError, match="non-negative"):
        run_simulation(SMALL, traffic_scale=-1.0)


def test_shape_is_flat_at_the_peak() -> None:
    normal = _run("normal").api_calls.sum(axis=1)
    flat = _run("shape").api_calls.sum(axis=1)
    assert flat.std() / flat.mean() < 0.2 < normal.std() / normal.mean()
    assert flat.mean() > np.quantile(normal, 0.9)


def test_composition_changes_the_mix() -> None:
    def shares(sim: Simulation) -> np.ndarray:
        return sim.api_calls / sim.api_calls.sum(axis=1, keepdims=True)

    normal, skewed = shares(_run("normal")), shares(_run("composition"))
    compose = APIS.index("/compose-post")
    assert np.ptp(normal[:, compose]) < 0.2  # the nominal mix with its slow drift
    assert np.ptp(skewed[:, compose]) > 0.3
    assert np.abs(skewed.mean(axis=0) - normal.mean(axis=0)).max() > 0.05


def test_crypto_adds_cpu_only_to_the_target_while_attacked() -> None:
    normal, crypto = _run("normal"), _run("crypto", attack_start=100, attack_length=30)
    assert crypto.attacked.sum() == 30 and crypto.attacked[100:130].all()
    diff = crypto.oracle - normal.oracle
    j = _column(crypto, "user-timeline", "cpu")
    assert np.allclose(diff[crypto.attacked, j], SMALL.attack_cpu)
    diff[crypto.attacked, j] = 0.0
    assert np.abs(diff).max() == 0.0


def test_ransomware_adds_writes_and_cpu_to_the_store() -> None:
    normal, attack = _run("normal"), _run("ransomware")
    store = "post-storage-mongodb"
    hit = np.array([_column(attack, store, r) for r in ("write_iops", "write_throughput", "cpu")])
    diff = attack.oracle - normal.oracle
    assert attack.attacked.any()
    assert (diff[np.ix_(attack.attacked, hit)] > 0).all()
    iops = hit[0]
    assert np.allclose(diff[attack.attacked, iops], SMALL.attack_iops)
    diff[np.ix_(attack.attacked, hit)] = 0.0
    assert np.abs(diff).max() == 0.0
    with pytest.raises(InputError, match="store"):
        _run("ransomware", attack_component="nginx")


def test_noise_is_five_percent_multiplicative() -> None:
    sim = _run("normal")
    ratio = sim.values / sim.oracle
    assert abs(ratio.std() - NOISE_SIGMA) < 0.005 and abs(ratio.mean() - 1.0) < 0.005
    quiet = run_simulation(replace(SMALL, noise=0.0))
    assert np.array_equal(quiet.values, quiet.oracle)


def test_caches_fill_up_to_their_capacity() -> None:
    sim = _run("scale")
    cap = sim.cache_capacity
    assert (cap > 0).sum() >= 4
    assert (sim.cache_bytes <= cap + 1e-6).all()
    assert (sim.cache_bytes[:, cap > 0] > 0).all()  # warm from the first window
    assert np.isclose(sim.cache_bytes, cap).any(axis=0)[cap > 0].any()


def test_capacity_override_changes_only_the_caches() -> None:
    config = replace(SMALL, scenario="scale")
    sim = run_simulation(config)
    cap = sim.cache_capacity
    full = np.isclose(sim.cache_bytes, cap).any(axis=0) & (cap > 0)
    assert full.any()
    same = run_simulation(config, capacity=cap)
    assert np.array_equal(same.oracle, sim.oracle) and np.array_equal(same.values, sim.values)
    endless = run_simulation(config, capacity=np.where(cap > 0, np.inf, 0.0))
    assert np.array_equal(endless.path_counts, sim.path_counts)
    assert (endless.cache_bytes >= sim.cache_bytes - 1e-6).all()
    assert (endless.cache_bytes.max(axis=0)[full] > cap[full]).all()  # what the cap held back
    memory = [i for i, (c, r) in enumerate(sim.series) if r == "memory"]
    cpu = [i for i, (c, r) in enumerate(sim.series) if r == "cpu"]
    assert np.array_equal(endless.oracle[:, cpu], sim.oracle[:, cpu])
    assert (endless.oracle[:, memory] >= sim.oracle[:, memory] - 1e-6).all()
    with pytest.raises(InputError, match="capacities"):
        run_simulation(config, capacity=cap[:-1])
    with pytest.raises(InputError, match="positive where a component has a cache"):
        run_simulation(config, capacity=np.where(cap > 0, 0.0, 1.0))


def test_every_series_has_a_meaningful_level() -> None:
    sim = _run("normal")
    assert (sim.oracle.min(axis=0) > 0.0).all()
    assert (sim.oracle.min(axis=0) > 0.05 * sim.oracle.max(axis=0)).all()


def test_cpu_is_linear_in_the_path_counts() -> None:
    sim = _run("composition")
    design = np.hstack([sim.path_counts, np.ones((len(sim.path_counts), 1))])
    for j, (_, resource) in enumerate(sim.series):
        if resource != "cpu":
            continue
        y = sim.oracle[:, j]
        fit = design @ np.linalg.lstsq(design, y, rcond=None)[0]
        assert np.abs(fit - y).sum() / y.sum() < 1e-6, sim.series[j]


def test_traffic_table_becomes_windows() -> None:
    config = replace(SMALL, windows=20)
    table = {api: [float(10 * (i + 1))] * 20 for i, api in enumerate(APIS)}
    sim = simulate_traffic(table, config)
    assert sim.api_calls.tolist() == [[10 * (i + 1) for i in range(len(APIS))]] * 20
    scaled = replace(SMALL, scenario="scale")
    again = simulate_traffic(scenario_traffic(scaled), scaled)
    assert np.array_equal(again.api_calls, run_simulation(scaled).api_calls)
    with pytest.raises(InputError, match="unknown API"):
        simulate_traffic({"/nope": [1.0] * 20}, config)
    with pytest.raises(InputError, match="non-negative"):
        simulate_traffic({APIS[0]: [-1.0] * 20}, config)


def test_config_is_validated() -> None:
    with pytest.raises(InputError, match="scenario"):
        SimulationConfig(scenario="flood")
    with pytest.raises(InputError, match="windows"):
        SimulationConfig(windows=0)
    assert set(SCENARIOS) >= {"normal", "scale", "shape", "composition", "crypto", "ransomware"}


def test_cli_writes_a_dataset(tmp_path: Path) -> None:
    out = tmp_path / "crypto.jsonl"
    argv = ["simulate", "--scenario", "crypto", "--windows", "48", "--day-windows", "48"]
    assert main([*argv, "--seed", "5", "--out", str(out)]) == 0
    windows = load_windows(out)
    assert len(windows) == 48
    assert windows[0].oracle and set(windows[0].oracle) == set(windows[0].metrics)
    attack = json.loads(out.with_suffix(".attack.json").read_text())
    assert attack["component"] == "user-timeline" and 0 <= attack["first_window"] < 48


def test_cli_rejects_bad_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "x.jsonl")
    with pytest.raises(SystemExit) as stop:
        main(["simulate", "--scenario", "flood", "--out", out])
    assert stop.value.code == 2
    assert main(["simulate", "--scenario", "normal", "--days", "-1", "--out", out]) == 2
    assert "--days" in capsys.readouterr().err
    argv = ["simulate", "--scenario", "normal", "--windows", "3", "--out", out]
    assert main([*argv, "--start", "yesterday"]) == 2
    assert "field '--start'" in capsys.readouterr().err


def test_cli_starts_the_run_where_asked(tmp_path: Path) -> None:
    """A test day after the training days (as serve sees it), not on top of them."""
    out = tmp_path / "later.jsonl"
    argv = ["simulate", "--scenario", "normal", "--windows", "3", "--out", str(out)]
    assert main([*argv, "--start", "2023-01-03T00:00:00Z"]) == 0
    assert [w.start for w in load_windows(out)] == [1_672_704_000.0 + 60 * i for i in range(3)]

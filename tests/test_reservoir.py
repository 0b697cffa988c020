"""Reservoirs: traffic-driven state that fills, drains and stops at a capacity."""

from __future__ import annotations

import numpy as np
import pytest

from estimator.errors import ModelError
from estimator.features import Layout
from estimator.models.reservoir import (
    CONTEXT,
    MAX_OPERATIONS,
    Reservoir,
    _busiest,
    load_reservoirs,
    search,
    states,
)


def _layout() -> Layout:
    """Two operations of one cache (get, set) and its span count."""
    groups = {"path": (0, 1), "component": (2,)}
    return Layout(
        names=("path[get]", "path[set]", "component[cache]"),
        groups=groups,
        components=("cache",),
        apis=(),
        series=(("cache", "memory"),),
        path_ends=(("cache", "get"), ("cache", "set")),
    )


def _world(n: int, halflife: float, cap: float | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts [n, 3] of gets, sets and their sum, and a memory series filled by the sets only."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    load = 1.0 + 0.8 * np.sin(2 * np.pi * t / 300) + 0.3 * rng.standard_normal(n).cumsum() / 30
    sets = rng.poisson(50 * np.clip(load, 0.1, None) * (1 + 0.5 * np.sin(t / 70.0)))
    gets = rng.poisson(400 * np.clip(load, 0.1, None))
    d = 0.5 ** (1 / halflife)
    size, sizes = 0.0, []
    for s in sets:
        size = d * size + (1 - d) * s
        size = size if cap is None else min(cap, size)
        sizes.append(size)
    y = 1e8 + 1e6 * np.asarray(sizes)
    y *= 1 + 0.01 * rng.standard_normal(n)
    X = np.stack([gets, sets, gets + sets], axis=1).astype(float)
    return X, y[:, None]


def test_search_finds_the_filling_operation_its_halflife_and_its_capacity() -> None:
    X, Y = _world(3000, halflife=16.0, cap=60.0, seed=1)
    (found,) = search(X, Y, _layout(), np.ones(len(X), dtype=bool))
    assert found is not None
    assert found.columns == (1,)  # the sets fill it, not the gets
    assert 0.5 ** (1 / 11) <= found.decay <= 0.5 ** (1 / 23)
    assert 45 <= found.cap <= 75


def test_a_cache_that_never_filled_gets_no_capacity() -> None:
    X, Y = _world(3000, halflife=16.0, cap=None, seed=2)
    (found,) = search(X, Y, _layout(), np.ones(len(X), dtype=bool))
    assert found is not None and np.isinf(found.cap)


def test_states_of_the_last_context_rows_match_the_whole_run() -> None:
    X, _ = _world(CONTEXT * 3, halflife=8.0, cap=None, seed=3)
    reservoirs = [Reservoir((1,), 0.9, 40.0), None]
    whole = states(X, reservoirs, CONTEXT)
    assert whole.shape == (len(X), 2) and not whole[:, 1].any()
    assert np.all(whole[:, 0] <= 40.0)
    for end in (CONTEXT // 2, CONTEXT + 1, len(X)):
        live = states(X[max(0, end - CONTEXT - 1) : end], reservoirs, CONTEXT)
        np.testing.assert_allclose(live[-1], whole[end - 1])
    z = min(40.0, X[0, 1])  # the first context rows are one recursion from row 0
    for t in range(1, CONTEXT):
        z = min(40.0, 0.9 * z + 0.1 * X[t, 1])
    assert np.isclose(whole[CONTEXT - 1, 0], z)


def test_reservoir_round_trips_through_json() -> None:
    for r in (Reservoir((1, 2), 0.95, 12.5), Reservoir((0,), 0.8, float("inf"))):
        assert Reservoir.from_json(r.to_json()) == r


def test_too_few_known_windows_give_no_reservoir() -> None:
    X, Y = _world(3, halflife=8.0, cap=None, seed=4)
    assert search(X, Y, _layout(), np.ones(len(X), dtype=bool)) == [None]
    X, Y = _world(50, halflife=8.0, cap=None, seed=4)
    Y[3:] = np.nan
    assert search(X, Y, _layout(), np.ones(len(X), dtype=bool)) == [None]


def test_only_the_busiest_operations_are_inputs_of_their_own() -> None:
    n_ops = MAX_OPERATIONS + 3
    X = np.tile(np.arange(1.0, n_ops + 2), (5, 1))  # column k is called k + 1 times a window
    inputs = [(0,), *((k,) for k in range(1, n_ops + 1))]
    kept = _busiest(X, inputs)
    assert kept[0] == (0,) and len(kept) == MAX_OPERATIONS + 1
    assert kept[1:] == [(k,) for k in range(n_ops + 1 - MAX_OPERATIONS, n_ops + 1)]


def test_saved_reservoirs_are_checked_against_the_model() -> None:
    good = Reservoir((1, 2), 0.9, 5.0, (1.0, 0.5)).to_json()
    assert load_reservoirs([good, None], n_features=3, n_series=2)[1] is None
    with pytest.raises(ModelError, match="columns"):
        load_reservoirs([good], n_features=2, n_series=1)
    with pytest.raises(ModelError, match="series"):
        load_reservoirs([good], n_features=3, n_series=2)
    with pytest.raises(ModelError, match="malformed"):
        load_reservoirs([good | {"decay": 1.5}], n_features=3, n_series=1)

"""One contract test over every registered model kind, plus behaviour of xgboost and baselines."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb

from estimator.bundle import Bundle, load_bundle, save_bundle
from estimator.errors import InputError, ModelError
from estimator.features import Layout, Vocabulary
from estimator.metrics import accuracy, coverage
from estimator.models import MODEL_KINDS, QuantileModel, make_model, model_class
from estimator.models.base import conformal_margin
from estimator.models.history import HistoryForecaster
from estimator.models.xgb import fit_nonnegative_costs
from estimator.windows import CallPath, SeriesKey, Window

# A tiny application: three APIs through a gateway, two services, a database.
APIS: dict[str, tuple[CallPath, ...]] = {
    "read": (
        (("gateway", "/read"), ("svc-a", "read"), ("db", "get")),
        (("gateway", "/read"), ("svc-a", "render")),
    ),
    "write": ((("gateway", "/write"), ("svc-b", "write"), ("db", "put")),),
    "login": ((("gateway", "/login"), ("svc-a", "auth")),),
}
SERIES: list[SeriesKey] = [
    ("gateway", "cpu"),
    ("svc-a", "cpu"),
    ("svc-b", "cpu"),
    ("db", "cpu"),
    ("db", "memory"),
]
FAST: dict[str, dict[str, Any]] = {
    "xgboost": {"n_estimators": 10},
    "qrnn": {"epochs": 2, "hidden": 4, "context": 2, "progress": False},
}
MEMBERS = dict(FAST)  # auto's params: those of the kinds it fits
FAST["auto"] = {"params": MEMBERS}


def _usage(rates: dict[str, float], memory: float) -> dict[SeriesKey, float]:
    """Noise-free usage of one window for per-API call counts."""
    read, write, login = rates["read"], rates["write"], rates["login"]
    return {
        ("gateway", "cpu"): 0.02 + 0.001 * (read + write + login),
        ("svc-a", "cpu"): 0.01 + 0.002 * read + 0.004 * login,
        ("svc-b", "cpu"): 0.003 + 0.005 * write,
        ("db", "cpu"): 0.001 * read + 0.002 * write,
        ("db", "memory"): memory,
    }


def make_windows(n: int, low: float, high: float, seed: int) -> list[Window]:
    """Seeded windows whose load sweeps from `low` to `high` times the base traffic."""
    rng = np.random.default_rng(seed)
    scale = np.linspace(low, high, n) * (1 + 0.2 * np.sin(np.arange(n) / 7.0))
    memory = 2e8
    windows = []
    for t in range(n):
        mix = {"read": 60.0, "write": 15.0, "login": 10.0}
        rates = {api: float(rng.poisson(base * scale[t])) for api, base in mix.items()}
        memory = 0.9 * memory + 0.1 * (2e8 + 2e6 * rates["write"])  # state: a write cache
        window = Window(start=60.0 * t, end=60.0 * (t + 1))
        for api, paths in APIS.items():
            for path in paths:
                for depth in range(1, len(path) + 1):
                    window.add_path(path[:depth], rates[api])
        for key, value in _usage(rates, memory).items():
            window.metrics[key] = value * (1 + 0.03 * rng.standard_normal())
        windows.append(window)
    return windows


def to_arrays(vocabulary: Vocabulary, windows: list[Window]) -> tuple[np.ndarray, np.ndarray]:
    X, _ = vocabulary.transform(windows)
    Y = np.array([[w.metrics.get(k, np.nan) for k in SERIES] for w in windows])
    return X, Y


@pytest.fixture(scope="module")
def world() -> tuple[Vocabulary, np.ndarray, np.ndarray]:
    windows = make_windows(240, 1.0, 2.0, seed=1)
    vocabulary = Vocabulary.build(windows)
    X, Y = to_arrays(vocabulary, windows)
    return vocabulary, X, Y


def _make(kind: str) -> QuantileModel:
    """A fast instance of a kind; skip only when the kind's own module does not exist yet."""
    try:
        model_class(kind)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("estimator.models."):
            pytest.skip(f"{kind}: module {exc.name} not written yet")
        raise
    return make_model(kind, **FAST.get(kind, {}))


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_model_contract(
    kind: str, world: tuple[Vocabulary, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    vocabulary, X, Y = world
    layout: Layout = vocabulary.layout.for_series(SERIES)
    with pytest.raises(ModelError):
        _make(kind).predict(X)
    Y_gaps = Y.copy()
    Y_gaps[::9, 0] = np.nan  # unknown values are skipped, never zero
    Y_gaps[5:40, 3] = np.nan
    model = _make(kind).fit(X, Y_gaps, layout)
    pred = model.predict(X)
    assert pred.shape == (len(X), len(SERIES), 3)
    assert np.isfinite(pred).all()
    assert (pred >= 0).all()
    assert (pred[..., 0] <= pred[..., 1]).all() and (pred[..., 1] <= pred[..., 2]).all()
    assert model.n_features_ == X.shape[1] and model.n_series_ == len(SERIES)
    assert len(model.series_kinds()) == len(SERIES)
    assert np.array_equal(pred, _make(kind).fit(X, Y_gaps, layout).predict(X)), "not seeded"
    assert np.nanmean(accuracy(pred[..., 1], Y)) > 0.5, "does not learn the linear world"
    with pytest.raises(ModelError):
        model.predict(X[:, :-1])
    assert np.array_equal(model.predict(X.tolist()), pred)  # rows as nested lists alike
    live = model.predict_last(X[max(0, len(X) - model.context - 1) :])  # what live callers hold
    np.testing.assert_allclose(live, pred[-1], rtol=1e-6)

    meta = model.save(tmp_path / "m")
    loaded = type(model).load(tmp_path / "m", meta)
    assert np.array_equal(loaded.predict(X), pred)
    assert loaded.series_kinds() == model.series_kinds()

    bundle = Bundle(vocabulary=vocabulary, series=SERIES, model=model, window_seconds=60.0)
    save_bundle(bundle, tmp_path / "bundle")
    again = load_bundle(tmp_path / "bundle")
    assert np.array_equal(again.model.predict(X), pred)


@pytest.mark.parametrize("kind", ["qrnn", "xgboost"])
def test_bundle_predicts_batches_as_one_call(kind: str) -> None:
    """Windows estimated in two calls, the second given the first's state, get the estimates of
    one call over them all: the state carries the model's look-back, not only the history."""
    if kind == "xgboost":  # a cache that fills and drains: a reservoir, read over 256 rows
        windows = _cache_world(300, 1.0, 2.0, seed=8)[0]
        model = make_model("xgboost", n_estimators=10, saturation="reservoir")
    else:
        windows, model = make_windows(300, 1.0, 2.0, seed=8), _make(kind)
    vocabulary = Vocabulary.build(windows[:200])
    series = sorted({key for w in windows for key in w.metrics})
    X, _ = vocabulary.transform(windows[:200])
    Y = np.array([[w.metrics.get(k, np.nan) for k in series] for w in windows[:200]])
    model.fit(X, Y, vocabulary.layout.for_series(series))
    assert model.context > 0
    bundle = Bundle(vocabulary=vocabulary, series=series, model=model, window_seconds=60.0)
    whole, _ = bundle.predict(windows)
    for cut in (1, 150, 230):
        first, state = bundle.predict(windows[:cut])
        second, _ = bundle.predict(windows[cut:], state)
        np.testing.assert_allclose(np.concatenate([first, second]), whole, rtol=1e-6)


def test_xgboost_extrapolates_beyond_training_traffic() -> None:
    train = make_windows(400, 1.0, 2.0, seed=2)
    test = make_windows(120, 3.0, 3.0, seed=3)
    vocabulary = Vocabulary.build(train)
    X, Y = to_arrays(vocabulary, train)
    X_test, Y_test = to_arrays(vocabulary, test)
    model = make_model("xgboost", n_estimators=20).fit(X, Y, vocabulary.layout)
    ours = accuracy(model.predict(X_test)[..., 1], Y_test)

    params = {"max_depth": 4, "nthread": 1, "seed": 0, "objective": "reg:absoluteerror"}
    trees = np.column_stack(
        [
            xgb.train(params, xgb.DMatrix(X, label=Y[:, j]), num_boost_round=20).predict(
                xgb.DMatrix(X_test)
            )
            for j in range(Y.shape[1])
        ]
    )
    flat = accuracy(trees, Y_test)
    assert ours.mean() >= 0.9, ours
    assert ours.min() >= 0.8, ours
    assert ours.mean() > flat.mean() + 0.1, (ours, flat)


def test_saturating_trees_never_make_more_traffic_cost_less() -> None:
    # Load falls through the recording while memory creeps up (a heap): usage and traffic are
    # anti-correlated, though no call lowers usage.
    windows = make_windows(300, 2.0, 1.0, seed=4)
    for t, window in enumerate(windows):
        window.metrics[("db", "memory")] = 2e8 * (1 + t / 300)
    vocabulary = Vocabulary.build(windows)
    X, Y = to_arrays(vocabulary, windows)
    doubled = X.copy()
    for group in ("counts", "history"):  # every count twice, and the traffic history with them
        doubled[:, vocabulary.layout.columns(group)] *= 2
    j = SERIES.index(("db", "memory"))
    lower = {}
    for monotone in (True, False):
        model = make_model("xgboost", saturation="saturate", monotone=monotone)
        model.fit(X, Y, vocabulary.layout)
        lower[monotone] = model.predict(doubled)[:, j, 1].mean() < model.predict(X)[:, j, 1].mean()
    assert lower == {True: False, False: True}, lower


def test_xgboost_trains_the_same_boosters_on_any_number_of_threads(
    world: tuple[Vocabulary, np.ndarray, np.ndarray],
) -> None:
    """Series' costs and boosters are fitted side by side on worker threads; how many must not
    matter."""
    vocabulary, X, Y = world
    layout = vocabulary.layout.for_series(SERIES)
    fits = [
        make_model("xgboost", n_estimators=8, workers=w, saturation=form).fit(X, Y, layout)
        for form in ("auto", "saturate")
        for w in (1, 3)
    ]
    for one, three in (fits[:2], fits[2:]):
        assert np.array_equal(one.predict(X), three.predict(X))
    with pytest.raises(InputError, match="workers"):  # a caller's mistake, named
        make_model("xgboost", workers=-1)


def test_xgboost_band_covers_held_out_windows() -> None:
    windows = make_windows(600, 1.0, 2.0, seed=4)
    vocabulary = Vocabulary.build(windows[:480])
    X, Y = to_arrays(vocabulary, windows)
    model = make_model("xgboost", n_estimators=20).fit(X[:480], Y[:480], vocabulary.layout)
    covered = coverage(model.predict(X)[480:], Y[480:])
    assert 0.7 <= covered.mean() <= 1.0, covered


def test_conformal_margin_widens_a_band_that_misses_and_never_narrows_one() -> None:
    """Split conformal: the margin is the ceil((n + 1) * 0.9)-th smallest excess of the held-out
    targets over the band. A band that already holds them gets no margin, not a negative one:
    a quiet held-out stretch is no evidence the band is too wide at other loads."""
    q = np.tile([-1.0, 0.0, 1.0], (19, 1))
    inside = np.linspace(-0.5, 0.5, 19)
    assert conformal_margin(inside, q) == 0.0
    outside = np.linspace(1.1, 2.9, 19)  # excess 0.1 ... 1.9 above the upper quantile
    margin = conformal_margin(outside, q)
    assert margin == pytest.approx(1.8)  # the 18th of 19 smallest excesses
    assert np.mean((outside >= q[:, 0] - margin) & (outside <= q[:, 2] + margin)) >= 0.9
    assert conformal_margin(np.zeros(0), q[:0]) == 0.0


def test_nonnegative_costs_recover_per_call_weights() -> None:
    rng = np.random.default_rng(5)
    A = rng.poisson(20, size=(300, 4)).astype(float)
    truth = np.array([[0.5, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 0.0]])
    Y = A @ truth + np.array([3.0, 0.0])
    Y[::7, 1] = np.nan
    weights, intercept, _ = fit_nonnegative_costs(A, Y)
    assert (weights >= 0).all() and (intercept >= 0).all()
    assert np.allclose(weights, truth, atol=1e-3)
    assert np.allclose(intercept, [3.0, 0.0], atol=0.05)


def test_a_count_column_with_calls_in_too_few_windows_gets_no_cost() -> None:
    """A feature with calls in one window of 300 would fit that window's noise with any cost,
    and multiply its later traffic by it; from MIN_SUPPORT windows (and 1% of them) on it is
    fitted."""
    rng = np.random.default_rng(5)
    A = rng.poisson(20, size=(300, 3)).astype(float)
    A[:, 2] = 0.0
    A[100, 2] = 1.0
    Y = (A[:, :2] @ np.array([0.5, 2.0]) + 3.0)[:, None]
    Y[100, 0] += 50.0  # a spike in the one window the rare feature has calls in
    weights, _, _ = fit_nonnegative_costs(A, Y)
    assert weights[2, 0] == 0.0 and np.allclose(weights[:2, 0], [0.5, 2.0], atol=0.02)
    A[[100, 150, 200], 2] = 1.0
    Y[:, 0] = A @ np.array([0.5, 2.0, 7.0]) + 3.0
    weights, _, _ = fit_nonnegative_costs(A, Y)
    assert np.isclose(weights[2, 0], 7.0, atol=0.1)


def test_nonnegative_costs_are_not_pulled_by_faulty_windows() -> None:
    """A few windows with usage no traffic explains (a fault, an attack) barely move the robust
    costs, where least squares raises the idle cost and the per-call costs to pay for them."""
    rng = np.random.default_rng(8)
    A = rng.poisson(20, size=(400, 3)).astype(float)
    truth = np.array([[0.5, 0.2], [0.0, 1.0], [1.0, 0.0]])
    clean = A @ truth + np.array([3.0, 5.0])
    Y = clean * (1 + 0.05 * rng.standard_normal(clean.shape))
    faulty = rng.choice(len(A), size=20, replace=False)
    Y[faulty] += 10.0 * A[faulty, :1]  # usage growing with calls: it biases costs, not just idle
    state = np.cumsum(A[:, 1:2] * 0.01, axis=0) * np.ones((1, 2))  # an extra column per series
    for extra in (None, state):
        robust = fit_nonnegative_costs(A, Y, extra=extra)
        plain = fit_nonnegative_costs(A, Y, extra=extra, robust=False)
        assert (robust[0] >= 0).all() and (robust[1] >= 0).all()
        error = [np.abs(fit[0] - truth).sum() for fit in (robust, plain)]
        assert error[0] < 0.25 * error[1], error
        assert np.allclose(robust[0], truth, atol=0.1), robust[0]


def test_reweighting_steps_solve_the_same_nnls_as_from_scratch() -> None:
    """The active set returns the NNLS optimum (scipy's, from scratch) whichever start it is
    given, or none."""
    from estimator.models.costbase import _nonnegative, _solve, _upper_factor

    rng = np.random.default_rng(9)
    for n, f in [(60, 12)] * 20 + [(40, 80)] * 5:  # also wider than the data: the ridge decides
        D = rng.poisson(2.0, size=(n, f)) * rng.random(f) if f > n else rng.standard_normal((n, f))
        gram, c = D.T @ D / n, D.T @ rng.standard_normal(n) / n
        penalty = np.full(f, 1e-6)
        exact = _solve(_upper_factor(gram, penalty), c)
        for near in (None, exact, rng.random(f) - 0.5, np.zeros(f), np.ones(f)):
            assert np.allclose(_nonnegative(gram, c, penalty, near), exact, atol=1e-8)


def test_cost_shrinkage_is_chosen_where_later_windows_show_overfitting() -> None:
    """Many call paths and few windows: unshrunk costs fit the training windows' noise, the
    windows after them show it, and a shrinkage is chosen, which estimates those windows better.
    With windows enough to pin the costs down, none is: the costs stay as fitted."""
    from estimator.models.costbase import SHRINKAGE, choose_shrinkage

    rng = np.random.default_rng(11)
    n, f = 90, 60
    A = rng.poisson(rng.gamma(1.0, 4.0, size=(n, f))).astype(float)
    y = 5.0 + rng.standard_normal(n)  # idle only: no path's calls cost anything
    head = np.arange(n) < 60
    chosen = choose_shrinkage(A, y[:, None], head, SHRINKAGE)
    assert chosen[0] > 0, chosen

    def tail_error(shrink: float) -> float:
        weights, intercept, _ = fit_nonnegative_costs(A[head], y[head, None], shrink=shrink)
        return float(np.abs(A[~head] @ weights[:, 0] + intercept[0] - y[~head]).mean())

    assert tail_error(chosen[0]) < 0.8 * tail_error(0.0)

    A = rng.poisson(20, size=(2000, 4)).astype(float)
    truth = np.array([[0.5, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 0.3]])
    clean = A @ truth + np.array([3.0, 1.0])
    Y = clean * (1 + 0.05 * rng.standard_normal(clean.shape))
    chosen = choose_shrinkage(A, Y, np.arange(2000) < 1600, SHRINKAGE)
    assert (chosen == 0).all(), chosen


def test_component_linear_uses_the_named_component(
    world: tuple[Vocabulary, np.ndarray, np.ndarray],
) -> None:
    vocabulary, X, Y = world
    layout = vocabulary.layout
    components = [c for c, _ in SERIES]
    model = make_model("linear", components=components).fit(X, Y, layout)
    assert [layout.names[c] for c in model.columns_] == [f"component[{c}]" for c in components]
    with pytest.raises(ModelError):
        make_model("linear", components=components[:2]).fit(X, Y, layout)


def test_auto_chooses_the_best_candidate_per_series(
    world: tuple[Vocabulary, np.ndarray, np.ndarray],
) -> None:
    vocabulary, X, Y = world
    model = make_model("auto", candidates=("xgboost", "linear", "ols-api"), params=MEMBERS)
    model.fit(X, Y, vocabulary.layout)
    validation = model.validation_
    table = validation["candidates"]
    assert set(table) == {"xgboost", "linear", "ols-api"}
    for j, kind in enumerate(model.series_kinds()):
        best = max(scores[j] for scores in table.values())
        if kind == "xgboost":  # the first candidate keeps a series unless beaten by the margin
            assert table[kind][j] + model.margin >= best
        else:
            assert table[kind][j] == best > table["xgboost"][j] + model.margin
        assert validation["accuracy"][j] == pytest.approx(table[kind][j])
    assert len(validation["coverage"]) == len(SERIES)


def test_auto_blend_is_the_mean_of_its_members(
    world: tuple[Vocabulary, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    vocabulary, X, Y = world
    layout = vocabulary.layout
    model = make_model("auto", candidates=("xgboost+linear", "ols-api"), params=MEMBERS, z=1e9)
    model.fit(X, Y, layout)
    assert model.series_kinds() == ["xgboost+linear"] * len(SERIES)
    assert set(model.validation_["candidates"]) == {"xgboost+linear", "ols-api"}
    alone = [make_model(k, **FAST.get(k, {})).fit(X, Y, layout) for k in ("xgboost", "linear")]
    expected = (alone[0].predict(X) + alone[1].predict(X)) / 2
    np.testing.assert_allclose(model.predict(X), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.predict_last(X), expected[-1], rtol=1e-9, atol=1e-12)
    bundle = Bundle(vocabulary=vocabulary, series=SERIES, model=model, window_seconds=60.0)
    save_bundle(bundle, tmp_path / "bundle")
    np.testing.assert_array_equal(
        load_bundle(tmp_path / "bundle").model.predict(X), model.predict(X)
    )


@pytest.mark.parametrize("candidate", ["xgboost+", "+qrnn", "xgboost+xgboost"])
def test_auto_rejects_a_malformed_blend(candidate: str) -> None:
    with pytest.raises(InputError, match="candidate"):
        make_model("auto", candidates=("xgboost", candidate))


def test_history_forecast_is_one_step_ahead_and_causal() -> None:
    windows = make_windows(300, 1.0, 2.0, seed=6)
    Y = np.array([[w.metrics[k] for k in SERIES] for w in windows])
    forecaster = HistoryForecaster(lookback=60).fit(Y[:200])
    pred = forecaster.forecast(Y[140:200], Y[200:])
    assert pred.shape == (100, len(SERIES), 3)
    assert (pred[..., 0] <= pred[..., 1]).all() and (pred[..., 1] <= pred[..., 2]).all()
    changed = Y[200:].copy()
    changed[50] *= 10.0
    again = forecaster.forecast(Y[140:200], changed)
    assert np.array_equal(again[:51], pred[:51]), "a future value changed an earlier forecast"
    assert not np.array_equal(again[51], pred[51]), "the forecast ignores the previous window"
    assert np.nanmean(accuracy(pred[..., 1], Y[200:])) > 0.8
    gaps = Y[200:].copy()
    gaps[10:20] = np.nan
    assert np.isfinite(forecaster.forecast(Y[140:200], gaps)).all()
    with pytest.raises(ModelError):
        HistoryForecaster(lookback=5).forecast(Y[:5], Y[5:10])


def test_history_forecast_starts_from_its_lookback_not_from_its_first_value() -> None:
    """A steady series fits a level that barely moves: a spike at the start of the lookback
    must not be forecast for every window after it."""
    rng = np.random.default_rng(2)
    Y = (0.002 * (1 + 0.05 * rng.standard_normal(400)))[:, None]
    forecaster = HistoryForecaster(lookback=60).fit(Y[:300])
    assert forecaster.alpha_[0] < 0.2
    history = Y[240:300].copy()
    history[0] = 0.010
    pred = forecaster.forecast(history, Y[300:])
    assert np.nanmean(accuracy(pred[..., 1], Y[300:])) > 0.9


def _cache_world(n: int, low: float, high: float, seed: int) -> tuple[list[Window], np.ndarray]:
    """Windows of one write API and the size of a cache that fills with writes, up to a cap."""
    rng = np.random.default_rng(seed)
    load = np.linspace(low, high, n) * (1 + 0.3 * np.sin(np.arange(n) / 9.0))
    size, cap, windows, sizes = 0.0, 1.4e9, [], []
    for t in range(n):
        writes = float(rng.poisson(40 * load[t]))
        size = min(cap, 0.9 * size + 2e6 * writes)
        window = Window(start=60.0 * t, end=60.0 * (t + 1))
        for path in APIS["write"]:
            for depth in range(1, len(path) + 1):
                window.add_path(path[:depth], writes)
        window.metrics[("db", "memory")] = (1e8 + size) * (1 + 0.02 * rng.standard_normal())
        windows.append(window)
        sizes.append(1e8 + size)
    return windows, np.asarray(sizes)


def test_xgboost_caches_stop_at_their_capacity_under_more_traffic() -> None:
    train, _ = _cache_world(600, 1.0, 2.5, seed=11)  # the cache reaches its cap at the peaks
    test, truth = _cache_world(200, 3.0, 3.0, seed=12)  # always full at 3x traffic
    vocabulary = Vocabulary.build(train)
    X, _ = vocabulary.transform(train)
    Y = np.array([[w.metrics[("db", "memory")]] for w in train])
    Xt, _ = vocabulary.transform(test)
    scores = {}
    for form in ("scale", "reservoir", "auto"):
        # costs unshrunk, so "scale" shows what scaling alone does; shrinking them happens to
        # damp the overshoot here, which is not the point of this world
        model = make_model("xgboost", n_estimators=10, saturation=form, shrinkage=0)
        model.fit(X, Y, vocabulary.layout)
        scores[form] = float(accuracy(model.predict(Xt)[..., 1], truth[:, None])[0])
    assert scores["reservoir"] >= 0.9 > scores["scale"]
    assert scores["auto"] >= 0.9


def test_xgboost_keeps_only_the_boosting_rounds_that_help_on_held_out_windows(
    world: tuple[Vocabulary, np.ndarray, np.ndarray],
) -> None:
    """The world's usage is linear in calls plus noise: the base explains it, so later rounds of
    the residual trees fit noise and early stopping on the calibration tail drops them."""
    vocabulary, X, Y = world
    layout = vocabulary.layout.for_series(SERIES)
    chosen = make_model("xgboost", n_estimators=20).fit(X, Y, layout)
    every = make_model("xgboost", n_estimators=20, choose_rounds=False).fit(X, Y, layout)
    kept = [b.num_boosted_rounds() for b in chosen.boosters_ if b is not None]
    assert all(1 <= k <= 20 for k in kept)
    assert min(kept) < 20
    assert all(b.num_boosted_rounds() == 20 for b in every.boosters_ if b is not None)


def test_auto_does_not_trade_the_band_for_a_better_median(
    world: tuple[Vocabulary, np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A candidate whose median is clearly better on the tail, but whose band misses it, does not
    take the series; where its band covers as well, it does."""
    from estimator.models.auto import AutoModel

    vocabulary, X, Y = world
    model = AutoModel(candidates=("linear", "ols-api"), z=2.0)
    tail = len(X) - (len(X) - int(round(len(X) * model.validation_fraction)))
    truth = Y[-tail:]
    rng = np.random.default_rng(0)
    spread = np.nanstd(truth, axis=0) + 1e-9
    rough = truth + spread * rng.normal(size=truth.shape)  # the first: a loose median
    sharp = truth + 0.05 * spread * rng.normal(size=truth.shape)  # the other: a close one

    def banded(median: np.ndarray, width: np.ndarray) -> np.ndarray:
        return np.stack([median - width, median, median + width], axis=-1)

    narrow = np.full(truth.shape[1], 0.001) * spread  # misses nearly every window
    narrow[1:] = 3.0 * spread[1:]  # ... but for series 0 only
    scores = {
        "linear": banded(rough, 3.0 * spread),
        "ols-api": banded(sharp, narrow),
    }
    monkeypatch.setattr(
        AutoModel,
        "_score",
        lambda self, X, Y, layout, cut: {
            k: (v, accuracy(v[..., 1], Y[cut:])) for k, v in scores.items()
        },
    )
    model.fit(X, Y, vocabulary.layout)
    kinds = model.series_kinds()
    assert kinds[0] == "linear"
    assert set(kinds[1:]) == {"ols-api"}


def test_auto_switches_only_on_a_clear_paired_difference() -> None:
    from estimator.models.base import clearly_lower

    rng = np.random.default_rng(3)
    Y = 10 + rng.normal(size=(80, 3))
    reference = Y + rng.normal(scale=1.0, size=Y.shape)
    pred = Y + rng.normal(scale=1.0, size=Y.shape)  # as good, other noise
    pred[:, 1] = Y[:, 1] + 0.1 * rng.normal(size=80)  # clearly better on series 1
    Y[:, 2] = np.nan  # unknown actual: no evidence
    errors, baseline = np.abs(pred - Y), np.abs(reference - Y)
    assert clearly_lower(errors, baseline, z=2.0).tolist() == [False, True, False]
    baseline[:, 1] = np.inf  # a candidate that cannot serve a series is never beaten by chance
    assert clearly_lower(errors, baseline, z=2.0).tolist() == [False, False, False]


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("qrnn", {"lr": math.nan}, "lr takes a number"),
        ("qrnn", {"lr": -1.0}, "lr > 0"),
        ("qrnn", {"context": "x"}, "context takes a whole number"),
        ("qrnn", {"batch_size": 0}, "batch_size"),
        ("qrnn", {"anchor": "maybe"}, "anchor takes true or false"),
        ("qrnn", {"foo": 1}, "no hyperparameter foo"),
        ("ols-api", {"foo": 1}, "ols-api has no hyperparameter foo; it takes: none"),
        ("auto", {"validation_fraction": 2.0}, "validation_fraction in"),
        ("auto", {"params": {"qrnn": {"lr": -1.0}}}, "lr > 0"),
        ("auto", {"params": {"qrn": {}}}, "'qrn', which is no model kind"),
        ("qrnn", {"seed": -1}, "seed in \\[0, 2\\*\\*32\\)"),
        ("qrnn", {"seed": 2**40}, "seed in"),
        ("qrnn", {"lr": 1e308}, "lr <= 10"),
        ("qrnn", {"context": 5000}, "context <= 1440"),
        ("auto", {"params": {"qrnn": 5}}, "params must map model kinds"),
        ("auto", {"params": {"auto": {}}}, "'auto', which is no model kind auto fits"),
        ("auto", {"candidates": []}, "candidates must be a non-empty list"),
        ("auto", {"candidates": ["auto"]}, "candidate 'auto' is no kind auto can fit"),
        ("auto", {"candidates": ["xgboost+auto"]}, "'xgboost\\+auto' names 'auto', no kind"),
        ("auto", {"candidates": ["foo"]}, "candidate 'foo' is no kind auto can fit"),
        ("auto", {"candidates": [5]}, "candidates takes a list of a string"),
        ("xgboost", {"tree_groups": ["api", "apis"]}, "tree_groups must name groups of path"),
    ],
)
def test_every_kinds_hyperparameters_are_checked_when_made(
    kind: str, params: dict[str, object], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        make_model(kind, **params)


def test_manifest_numbers_keep_significant_digits_not_decimals() -> None:
    """Peaks of usage in nanocores were written 0.0, and every ratio to them was NaN."""
    from estimator.training import _floats

    assert _floats(np.array([1.2345678e-9, np.nan, 12345.678901])) == [1.234568e-9, None, 12345.68]


def test_long_cost_fits_say_how_far_they_are(monkeypatch: pytest.MonkeyPatch) -> None:
    from estimator.models import costbase

    monkeypatch.setattr(costbase, "SAY_EVERY", 0.0)
    rng = np.random.default_rng(1)
    A = rng.poisson(5, size=(60, 3)).astype(float)
    Y = A @ rng.uniform(0, 1, size=(3, 4))
    lines: list[str] = []
    costbase.choose_shrinkage(A, Y, np.arange(60) < 45, (0.0, 1.0), progress=lines.append)
    assert lines[0] == "shrinkage 0 (1 of 2), per-call costs: 1 of 4 series"
    assert lines[-1] == "shrinkage 1 (2 of 2), per-call costs: 4 of 4 series"


def test_an_evaluation_without_oracle_summarizes_and_one_of_unused_series_says_nan() -> None:
    """Real recordings carry no oracle; a series without usage has no accuracy (NaN, said
    without numpy's warnings on stderr)."""
    from estimator.evaluation import Evaluation

    series = [("a", "cpu"), ("b", "cpu")]
    actual = np.array([[1.0, 0.0], [2.0, 0.0]])
    pred = np.stack([actual * 0.9, actual, actual * 1.1], axis=-1)
    summary = Evaluation(series, np.arange(2.0), actual, pred, None).summary()
    assert summary["mean_accuracy"] == 1.0 and "oracle_accuracy" not in summary
    idle = Evaluation(series[1:], np.arange(2.0), actual[:, 1:], pred[:, 1:], None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(idle.summary()["mean_accuracy"])
    assert np.isnan(idle.coverage[0])  # not scored: its band of [0, 0] covers nothing of note


def test_an_evaluation_gives_no_coverage_to_a_series_without_a_band() -> None:
    """A baseline that never saw a series (NaN estimates) has no band there to miss: its
    coverage is unknown, not 0, and the mean coverage is that of the series with a band."""
    from estimator.evaluation import Evaluation

    series = [("a", "cpu"), ("b", "cpu")]
    actual = np.array([[1.0, 2.0], [2.0, 3.0]])
    pred = np.stack([actual * 0.9, actual, actual * 1.1], axis=-1)
    pred[:, 1] = np.nan
    evaluation = Evaluation(series, np.arange(2.0), actual, pred, None)
    assert evaluation.coverage[0] == 1.0 and np.isnan(evaluation.coverage[1])
    assert evaluation.summary()["coverage"] == 1.0


def test_xgboost_keeps_memory_of_a_component_without_calls_at_twice_the_traffic() -> None:
    """A component with no spans (a cron job) whose memory creeps all day while traffic rises:
    by default its costs may not use other components' traffic history, so twice the traffic
    leaves its memory where it is; with every component's history it nearly doubles."""
    from estimator.synthesizer import scale_windows

    windows = make_windows(480, 1.0, 2.0, seed=3)
    for t, window in enumerate(windows):
        window.metrics[("cron", "memory")] = (3e8 + 4e5 * t) * (1 + 0.02 * math.sin(t))
    series = [*SERIES, ("cron", "memory")]
    vocabulary = Vocabulary.build(windows)
    X, _ = vocabulary.transform(windows)
    Y = np.array([[w.metrics.get(k, np.nan) for k in series] for w in windows])
    doubled, _ = vocabulary.transform(scale_windows(windows, 2.0))
    layout = vocabulary.layout.for_series(series)

    def at_twice(**params: Any) -> float:
        model = make_model("xgboost", **params).fit(X, Y, layout)
        return float(
            model.predict(doubled)[-60:, -1, 1].mean() / model.predict(X)[-60:, -1, 1].mean()
        )

    assert at_twice() < 1.1
    assert at_twice(history_costs="all") > 1.3
    with pytest.raises(InputError, match="min_child_weight must be >= 0"):
        make_model("xgboost", min_child_weight=-1)


@pytest.mark.parametrize("mode", ["all", "own", "none"])
def test_xgboost_history_costs_limit_which_history_a_series_costs_may_use(
    world: tuple[Vocabulary, np.ndarray, np.ndarray], mode: str
) -> None:
    """'own' keeps each series' per-call costs off other components' history averages (a JVM
    heap creeping with one of them would double at 2x traffic), 'none' off all of them. A rate
    (CPU) never uses any: a history average would stand in for its idle cost."""
    vocabulary, X, Y = world
    layout = vocabulary.layout.for_series(SERIES)
    model = make_model("xgboost", saturation="never", history_costs=mode, **FAST["xgboost"])
    model.fit(X, Y, layout)
    history = layout.columns("history")
    owners = dict(zip(history, layout.history_owners, strict=True))
    assert any(":" in layout.names[c] for c in history)  # operations' history among them
    for j, (component, resource) in enumerate(SERIES):
        others = [c for c in history if owners[c] != component]
        own = [c for c in history if owners[c] == component]
        if mode != "all" or resource == "cpu":
            assert (model.weights_[others, j] == 0).all()
        if mode == "none" or resource == "cpu":
            assert (model.weights_[own, j] == 0).all()
    memory = SERIES.index(("db", "memory"))
    assert mode != "all" or (model.weights_[history, memory] > 0).any()
    with pytest.raises(InputError, match="history_costs must be one of all, own, none"):
        make_model("xgboost", history_costs="some")


@pytest.mark.parametrize("mode", ["reach", "all"])
def test_xgboost_path_costs_keep_each_series_on_the_paths_through_its_component(
    world: tuple[Vocabulary, np.ndarray, np.ndarray], mode: str
) -> None:
    """'reach' (the default) gives a series no per-call cost on a path that never passes
    through its component: svc-b's CPU none on the read and login paths, whose calls do no work
    there. A component no path passes through (spans not traced: a cron job) keeps them all."""
    vocabulary, X, Y = world
    series = [*SERIES, ("cron", "memory")]
    Y = np.hstack([Y, (3e8 + 1e6 * X[:, [0]]).reshape(-1, 1)])
    layout = vocabulary.layout.for_series(series)
    model = make_model("xgboost", saturation="never", path_costs=mode, **FAST["xgboost"])
    model.fit(X, Y, layout)
    paths = layout.columns("path")
    away = {
        component: [
            c for c, on in zip(paths, layout.path_components, strict=True) if component not in on
        ]
        for component, _ in series
    }
    assert away["svc-b"] and away["db"] and away["cron"] == list(paths)
    off = [
        (model.weights_[away[component], j] != 0).any() for j, (component, _) in enumerate(series)
    ]
    if mode == "reach":
        assert not any(off[:-1])
        assert (model.weights_[paths, -1] != 0).any()  # cron's memory rides on every path
    else:
        assert any(off[:-1])
    with pytest.raises(InputError, match="path_costs must be one of reach, all"):
        make_model("xgboost", path_costs="own")


def test_cost_shrinkage_does_not_weaken_with_empty_columns() -> None:
    """The ridge and shrinkage are relative to the mean diagonal of the columns in use: columns
    left at zero (history a series may not use, a path too rare to cost) change no cost."""
    rng = np.random.default_rng(3)
    A = rng.poisson(20.0, size=(300, 4)).astype(float)
    Y = A @ np.array([[0.5], [0.2], [0.0], [1.0]]) + 3.0 + rng.normal(0.0, 2.0, size=(300, 1))
    alone = fit_nonnegative_costs(A, Y, shrink=0.5, robust=False, workers=1)
    padded = fit_nonnegative_costs(
        np.hstack([A, np.zeros((300, 6))]), Y, shrink=0.5, robust=False, workers=1
    )
    assert np.allclose(padded[0][:4], alone[0]) and np.allclose(padded[1], alone[1])
    assert not padded[0][4:].any()
    unshrunk = fit_nonnegative_costs(A, Y, robust=False, workers=1)
    assert not np.allclose(unshrunk[0], alone[0])  # the shrinkage is felt at all


def test_cost_fits_solve_without_columns_that_have_no_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each series' solve is cubic in its width: columns without calls (history a reservoir fit
    zeroes, paths too rare to cost) are left out of it, and get no cost, as before."""
    from estimator.models import costbase

    widths: list[int] = []
    solve = costbase._nonnegative

    def recording(gram: np.ndarray, *args: Any, **kwargs: Any) -> np.ndarray:
        widths.append(len(gram))
        return solve(gram, *args, **kwargs)

    monkeypatch.setattr(costbase, "_nonnegative", recording)
    rng = np.random.default_rng(4)
    A = rng.poisson(20.0, size=(200, 3)).astype(float)
    Y = A @ np.array([[0.5, 0.1], [0.2, 0.0], [1.0, 0.3]]) + 3.0
    Y += rng.normal(0.0, 1.0, size=Y.shape)
    padded = np.hstack([A, np.zeros((200, 300))])
    weights, intercept, _ = fit_nonnegative_costs(padded, Y, workers=1)
    assert widths and max(widths) == 3 + 1
    assert weights.shape == (303, 2) and not weights[3:].any()
    alone = fit_nonnegative_costs(A, Y, workers=1)
    assert np.allclose(weights[:3], alone[0]) and np.allclose(intercept, alone[1])


def test_reservoir_cost_fits_say_how_far_they_are(monkeypatch: pytest.MonkeyPatch) -> None:
    from estimator.models import costbase

    monkeypatch.setattr(costbase, "SAY_EVERY", 0.0)
    rng = np.random.default_rng(2)
    X = rng.poisson(5, size=(60, 4)).astype(float)
    S = rng.uniform(0, 1, size=(60, 3))
    Y = X[:, :3] @ rng.uniform(0, 1, size=(3, 3)) + S
    lines: list[str] = []
    costbase.fit_state_costs(X, Y, np.array([3]), S, 1e-6, progress=lines.append)
    assert lines[-1] == "per-call costs: 3 of 3 series"


def test_booster_training_says_how_far_it_is(
    world: tuple[Vocabulary, np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big system's boosters train for minutes: a line every SAY_EVERY seconds."""
    from estimator.models import xgb as xgb_module

    monkeypatch.setattr(xgb_module, "SAY_EVERY", 0.0)
    vocabulary, X, Y = world
    model = make_model("xgboost", n_estimators=3, workers=1)
    lines: list[str] = []
    model.progress = lines.append
    model.fit(X, Y, vocabulary.layout.for_series(SERIES))
    told = [line for line in lines if line.startswith("xgboost: boosters: ")]
    assert told and told[-1] == f"xgboost: boosters: {len(SERIES)} of {len(SERIES)} series"

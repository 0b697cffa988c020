"""Drift rates from the validation tail and bands that widen with the time since training."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from estimator.bundle import LAYOUT, MANIFEST, _manifest_digest, load_bundle, save_bundle
from estimator.drift import MIN_WINDOWS, aged, drift_rates
from estimator.errors import BundleError
from estimator.training import TrainConfig, train_bundle
from estimator.windows import Window
from tests.worlds import tiny_world

LEAKY = ("store", "memory")


def test_rates_find_a_trend_and_leave_stationary_noise_alone() -> None:
    rng = np.random.default_rng(3)
    n, stationary = 200, 40
    error = rng.standard_normal((n, stationary + 2))
    error[:, -2] += 0.03 * np.arange(n)  # creeps up
    error[:, -1] -= 0.03 * np.arange(n)  # creeps down
    rates = drift_rates(error, np.zeros_like(error))
    assert rates[-2] == pytest.approx(0.03, rel=0.3)
    assert rates[-1] == pytest.approx(-0.03, rel=0.3)
    assert np.count_nonzero(rates[:stationary]) <= 3, rates[:stationary]


def test_rates_need_a_long_enough_tail_and_known_values() -> None:
    trend = np.arange(MIN_WINDOWS - 1, dtype=float)[:, None]
    assert not drift_rates(trend, np.zeros_like(trend)).any()
    unknown = np.full((100, 1), np.nan)
    assert not drift_rates(unknown, np.zeros_like(unknown)).any()
    gaps = np.arange(100, dtype=float)[:, None] * np.where(np.arange(100) % 3, 1.0, np.nan)[:, None]
    assert drift_rates(gaps, np.zeros_like(gaps))[0] == pytest.approx(1.0, rel=0.01)


def test_aged_widens_the_drift_side_from_since_up_to_cap() -> None:
    pred = np.tile([1.0, 2.0, 3.0], (5, 3, 1))
    ages = np.array([-10.0, 5.0, 15.0, 105.0, 1000.0])
    out = aged(pred, ages, np.array([0.0, 0.1, -0.01]), since=5.0, cap=100.0)
    np.testing.assert_array_equal(out[:, 0], pred[:, 0])  # no drift: untouched
    np.testing.assert_allclose(out[:, 1, 2], [3.0, 3.0, 4.0, 13.0, 13.0])  # capped after 100
    np.testing.assert_array_equal(out[:, 1, :2], pred[:, 1, :2])
    np.testing.assert_allclose(out[:, 2, 0], [1.0, 1.0, 0.9, 0.0, 0.0])  # never below zero
    np.testing.assert_array_equal(out[:, :, 1], pred[:, :, 1])  # medians stay
    assert (out[..., 0] <= out[..., 1]).all() and (out[..., 1] <= out[..., 2]).all()


def _leaky_world(n: int = 400) -> list[Window]:
    """The tiny world with the store's memory creeping up, as a heap that grows all day."""
    windows = tiny_world(n=n, seed=4)
    for i, w in enumerate(windows):
        w.metrics[LEAKY] += 1e6 * i
    return windows


def _later(windows: list[Window], offset: float) -> list[Window]:
    """The same traffic, `offset` seconds later."""
    out = copy.deepcopy(windows)
    for w in out:
        w.start, w.end = w.start + offset, w.end + offset
    return out


def test_bundle_bands_widen_after_the_training_end_only(tmp_path: Path) -> None:
    windows = _leaky_world()
    bundle = train_bundle(windows, TrainConfig(model="linear"))
    rates = bundle.drift()
    j = bundle.series.index(LEAKY)
    assert rates[j] > 0
    assert len(bundle.validation["drift"]) == len(bundle.series)

    X, _ = bundle.vocabulary.transform(windows)
    inside, _ = bundle.predict(windows)
    np.testing.assert_array_equal(inside, bundle.model.predict(X))  # training range: as is

    span = windows[-1].end - windows[0].start
    soon, _ = bundle.predict(_later(windows, span))
    later, _ = bundle.predict(_later(windows, 3 * span))
    np.testing.assert_array_equal(soon[..., 1], inside[..., 1])
    growth = soon[:, j, 2] - inside[:, j, 2]
    assert (np.diff(growth) >= 0).all() and growth[0] == 0 < growth[-1]  # from half a tail on
    cap = rates[j] * len(windows)  # after as long again as the training ran, it stays
    np.testing.assert_allclose(later[:, j, 2] - inside[:, j, 2], cap, rtol=1e-9)
    assert growth[-1] < cap
    still = rates == 0
    np.testing.assert_array_equal(soon[:, still], inside[:, still])

    save_bundle(bundle, tmp_path / "b")
    again, _ = load_bundle(tmp_path / "b").predict(_later(windows, span))
    np.testing.assert_array_equal(again, soon)


def test_whatif_answers_keep_the_models_band_whatever_their_dates() -> None:
    from estimator.whatif import estimate

    windows = _leaky_world()
    bundle = train_bundle(windows, TrainConfig(model="linear"))
    j = bundle.series.index(LEAKY)
    span = windows[-1].end - windows[0].start
    assert bundle.drift()[j] > 0
    inside = estimate(bundle, windows, windows)
    after = estimate(bundle, windows, _later(windows, 3 * span))
    np.testing.assert_array_equal(after.hypothetical, inside.hypothetical)  # dated later: same band


def _saved_with(directory: Path, manifest: dict[str, Any]) -> None:
    """Rewrite a bundle as if saved with this manifest (a release's fields, or a forged one)."""
    digest = _manifest_digest(manifest) + "\n"
    (directory / LAYOUT).write_text(digest)
    manifest["files"][LAYOUT] = hashlib.sha256(digest.encode()).hexdigest()
    (directory / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["validation"].__setitem__("drift", m["validation"]["drift"][:-1]),
        lambda m: m["validation"]["drift"].__setitem__(0, "fast"),
        lambda m: m["validation"]["drift"].__setitem__(0, True),
        lambda m: m["training"].__setitem__("end", "tomorrow"),
    ],
)
def test_mangled_drift_fields_are_a_clear_bundle_error(tmp_path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    save_bundle(train_bundle(_leaky_world(), TrainConfig(model="linear")), tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / MANIFEST).read_text())
    edit(manifest)
    _saved_with(tmp_path / "b", manifest)
    with pytest.raises(BundleError, match="must"):
        load_bundle(tmp_path / "b")


def test_bundle_without_drift_rates_keeps_its_bands(tmp_path: Path) -> None:
    windows = _leaky_world()
    save_bundle(train_bundle(windows, TrainConfig(model="linear")), tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / MANIFEST).read_text())
    del manifest["validation"]["drift"]  # bundles trained before drift was measured
    _saved_with(tmp_path / "b", manifest)
    bundle = load_bundle(tmp_path / "b")
    assert not bundle.drift().any()
    later = _later(windows, 1e6)
    X, _ = bundle.vocabulary.transform(later)
    np.testing.assert_array_equal(bundle.predict(later)[0], bundle.model.predict(X))


def test_live_estimates_widen_as_offline_ones_do() -> None:
    from exporter.live import Estimator

    windows = _leaky_world()
    bundle = train_bundle(windows, TrainConfig(model="linear"))
    after = _later(windows, windows[-1].end - windows[0].start)[:120]
    live = Estimator(bundle, bundle.window_seconds, warm=windows)
    served = np.stack([live.step(w) for w in after])
    offline, _ = bundle.predict([*windows, *after])
    np.testing.assert_allclose(served, offline[len(windows) :], rtol=1e-9)
    j = bundle.series.index(LEAKY)
    assert (
        served[-1, j, 2] - served[-1, j, 1]
        > offline[len(windows) - 1, j, 2] - offline[len(windows) - 1, j, 1]
    )


def test_live_estimates_after_a_restart_are_those_of_an_exporter_that_never_stopped() -> None:
    """A start replays enough stored windows that the slowest traffic average forgets the
    windows it cannot see: the estimates match one pass over the whole history."""
    from exporter.live import WARM_WINDOWS, Estimator, warm_windows

    windows = _leaky_world(n=900)
    config = TrainConfig(model="xgboost", model_params={"n_estimators": 5})
    bundle = train_bundle(windows[:400], config)  # its trees read the traffic history
    warm = warm_windows(bundle)
    assert warm > WARM_WINDOWS  # a 64-window half-life needs more than 256 windows
    offline, _ = bundle.predict(windows)
    served = {}
    for replayed in (WARM_WINDOWS, warm):
        live = Estimator(bundle, bundle.window_seconds, warm=windows[800 - replayed : 800])
        served[replayed] = np.stack([live.step(w) for w in windows[800:]])
    scale = np.nanmax(np.abs(offline[800:]), axis=(0, 2))  # per series
    error = {n: np.nanmax(np.abs(s - offline[800:]) / scale[:, None]) for n, s in served.items()}
    assert error[warm] < 2e-3 < error[WARM_WINDOWS], error


def test_train_names_the_drifting_series(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from estimator.windows import write_windows
    from exporter.cli import main

    write_windows(tmp_path / "leaky.jsonl", _leaky_world())
    args = ["train", "--data", str(tmp_path / "leaky.jsonl"), "--out", str(tmp_path / "m")]
    assert main([*args, "--model", "linear"]) == 0
    said = capsys.readouterr()
    line = next(x for x in (said.out + said.err).splitlines() if "drifted" in x)
    assert "store/memory" in line and "bands widen" in line

    windows = _leaky_world()
    write_windows(tmp_path / "later.jsonl", _later(windows, windows[-1].end - windows[0].start))
    args = ["evaluate", "--model", str(tmp_path / "m"), "--data", str(tmp_path / "later.jsonl")]
    assert main([*args, "--report", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert "widen with the time since the training end" in page


def test_edited_bundle_file_lists_are_refused(tmp_path: Path) -> None:
    bundle = train_bundle(tiny_world(60), TrainConfig(model="xgboost"))
    save_bundle(bundle, tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / MANIFEST).read_text())
    for edit, message in (
        (lambda m: m["files"].pop(sorted(m["files"])[0]), "is not listed in the manifest"),
        (lambda m: m["files"].__setitem__("../../outside", "0" * 64), "lies outside the bundle"),
        (lambda m: m.__setitem__("window_seconds", float("nan")), "is not a window length"),
        (lambda m: m["series"].reverse(), "an edited manifest would change or relabel the"),
        (lambda m: m.__setitem__("window_seconds", 30.0), "differs from the manifest the model"),
        # the model's own parameters: each series' trees, its cost base, the training range
        (lambda m: m["model"]["meta"]["boosters"].reverse(), "differs from the manifest"),
        (lambda m: m["model"]["meta"]["intercept"].__setitem__(0, 1e9), "differs from the"),
        (lambda m: m["training"].__setitem__("end", 0), "differs from the manifest"),
    ):
        edited = copy.deepcopy(manifest)
        edit(edited)
        (tmp_path / "b" / MANIFEST).write_text(json.dumps(edited))
        with pytest.raises(BundleError, match=message):
            load_bundle(tmp_path / "b")


def test_bundles_saved_with_a_digest_of_their_layout_only_still_check_it(tmp_path: Path) -> None:
    bundle = train_bundle(tiny_world(60), TrainConfig(model="linear"))
    save_bundle(bundle, tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / MANIFEST).read_text())
    layout = {k: manifest[k] for k in ("series", "vocabulary", "window_seconds")}
    digest = hashlib.sha256(json.dumps(layout, sort_keys=True).encode()).hexdigest()
    (tmp_path / "b" / LAYOUT).write_text(digest + "\n")
    manifest["files"][LAYOUT] = hashlib.sha256((digest + "\n").encode()).hexdigest()
    manifest["validation"]["note"] = "edited"  # outside the layout: older bundles allowed it
    (tmp_path / "b" / MANIFEST).write_text(json.dumps(manifest))
    assert load_bundle(tmp_path / "b").series == bundle.series
    manifest["series"].reverse()
    (tmp_path / "b" / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="series, vocabulary or window length differ"):
        load_bundle(tmp_path / "b")


def test_a_constant_series_fitted_to_its_last_bit_does_not_drift() -> None:
    n = 200
    actual = np.full((n, 1), 42.0)
    median = actual - np.linspace(0.0, 1e-12, n)[:, None]  # rounding error with a trend
    assert not drift_rates(actual, median).any()


def test_a_forged_manifest_cannot_reach_outside_the_bundle_and_errors_stay_short(
    tmp_path: Path,
) -> None:
    save_bundle(train_bundle(tiny_world(60), TrainConfig(model="xgboost")), tmp_path / "b")
    save_bundle(train_bundle(tiny_world(60), TrainConfig(model="xgboost")), tmp_path / "other")
    manifest = json.loads((tmp_path / "b" / MANIFEST).read_text())
    boosters = manifest["model"]["meta"]["boosters"]
    j = next(j for j, name in enumerate(boosters) if name is not None)
    for name, message in (
        (str((tmp_path / "other" / "model" / boosters[j]).resolve()), "lies outside the bundle"),
        (f"../../other/model/{boosters[j]}", "lies outside the bundle"),
        ("weights.npy", "model files do not load"),  # not a booster: XGBoost's long report
    ):
        forged = copy.deepcopy(manifest)
        forged["model"]["meta"]["boosters"][j] = name
        _saved_with(tmp_path / "b", forged)
        with pytest.raises(BundleError, match=message) as info:
            load_bundle(tmp_path / "b")
        said = str(info.value)
        assert said.startswith(str(tmp_path / "b")) and "\n" not in said


def test_a_model_parameter_that_is_not_a_number_is_refused(tmp_path: Path) -> None:
    save_bundle(train_bundle(tiny_world(60), TrainConfig(model="xgboost")), tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / MANIFEST).read_text())
    manifest["model"]["meta"]["floor"][0] = float("nan")  # as a bundle's own digest allows
    _saved_with(tmp_path / "b", manifest)
    with pytest.raises(BundleError, match="the model gives no number for idle traffic"):
        load_bundle(tmp_path / "b")


def test_a_bundle_with_a_setting_of_a_newer_release_says_so(tmp_path: Path) -> None:
    windows = _leaky_world()
    save_bundle(train_bundle(windows, TrainConfig(model="xgboost")), tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / MANIFEST).read_text())
    manifest["model"]["meta"]["params"]["future_knob"] = 3
    _saved_with(tmp_path / "b", manifest)
    with pytest.raises(BundleError, match=r"setting this release does not know \('future_knob'\)"):
        load_bundle(tmp_path / "b")

"""Trace synthesizer for what-if, and the anomaly score."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from estimator.anomaly import anomaly_scores, excess, floors, smooth
from estimator.errors import InputError
from estimator.synthesizer import Synthesizer, scale_windows, traffic_of
from tests.worlds import COMPOSE_PATHS, FRONT, READ, tiny_world


def test_expected_windows_reproduce_observed_path_counts() -> None:
    windows = tiny_world(60)
    synth = Synthesizer.fit(windows)
    again = synth.windows(traffic_of(windows), [w.start for w in windows], 60.0)
    for w, s in zip(windows, again, strict=True):
        assert s.calls.keys() == w.calls.keys()
        for path, count in w.calls.items():
            assert s.calls[path] == pytest.approx(count)


def test_per_api_rates_expand_to_the_api_call_paths() -> None:
    synth = Synthesizer.fit(tiny_world(60))
    [window] = synth.windows([{FRONT: 100.0}], [0.0], 60.0)
    assert set(window.calls) == set(COMPOSE_PATHS)
    assert all(c == pytest.approx(100.0) for c in window.calls.values())


def test_sampling_is_seeded_and_near_expectation() -> None:
    synth = Synthesizer.fit(tiny_world(60))
    traffic = [{FRONT: 50.0, READ: 80.0}] * 200
    a = synth.windows(traffic, range(200), 60.0, np.random.default_rng(1))
    b = synth.windows(traffic, range(200), 60.0, np.random.default_rng(1))
    assert [w.calls for w in a] == [w.calls for w in b]
    mean = np.mean([w.calls[COMPOSE_PATHS[1]] for w in a])
    assert mean == pytest.approx(50.0, rel=0.05)


def test_json_round_trip_and_api_names() -> None:
    synth = Synthesizer.fit(tiny_world(30))
    again = Synthesizer.from_json(synth.to_json())
    assert again.apis == synth.apis
    assert again.resolve_api("/read") == READ
    assert again.resolve_api("front:/compose") == FRONT
    with pytest.raises(InputError, match="unknown or ambiguous"):
        again.resolve_api("/nope")
    with pytest.raises(InputError, match="never seen"):
        again.windows([{("x", "/y"): 1.0}], [0.0], 60.0)


def test_scale_multiplies_every_path() -> None:
    windows = tiny_world(5)
    scaled = scale_windows(windows, 3.0)
    assert scaled[2].calls == {p: 3 * c for p, c in windows[2].calls.items()}
    assert scaled[2].metrics == {}
    with pytest.raises(InputError):
        scale_windows(windows, -1.0)


def test_excess_is_zero_inside_and_relative_outside() -> None:
    lower, upper = np.array([1.0, 1.0, 1.0]), np.array([2.0, 2.0, 2.0])
    assert np.allclose(excess(np.array([1.5, 3.0, 0.5]), lower, upper), [0.0, 0.5, 0.5])
    assert np.isnan(excess(np.array([np.nan]), lower[:1], upper[:1]))[0]
    # a value past any sense gives the highest score, not infinity, and no overflow warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        huge = excess(np.array([1e308, 1e308]), np.array([0.0, 1.0]), np.array([1e-12, 2.0]))
    assert np.isfinite(huge).all() and (huge == huge.max()).all() and huge.max() >= 1e8


def test_smoothing_rises_over_windows_and_keeps_score_through_unknowns() -> None:
    s1 = smooth(None, np.array([0.0]))
    s2 = smooth(s1, np.array([1.0]))
    s3 = smooth(s2, np.array([1.0]))
    assert 0 < s2[0] < s3[0] < 1
    assert smooth(s3, np.array([np.nan]))[0] == s3[0]


def test_anomaly_scores_over_a_series() -> None:
    pred = np.tile(np.array([0.9, 1.0, 1.1]), (6, 1, 1))
    actual = np.array([[1.0], [1.0], [2.2], [2.2], [2.2], [1.0]])
    scores = anomaly_scores(actual, pred)[:, 0]
    assert scores[0] == scores[1] == 0
    assert scores[2] > 0 and scores[4] > scores[2] and scores[5] < scores[4]


def test_a_band_at_zero_measures_a_distance_against_the_resources_floor() -> None:
    """A component that never writes: a log line's 139 bytes/s is a small distance, not a
    billion times the band's edge; bands above the floors are measured against their edges."""
    series = [("front", "write_throughput"), ("front", "cpu"), ("front", "queue_depth")]
    zero = np.zeros(3)
    actual = np.array([139.0, 0.005, 2.0])
    assert excess(actual, zero, zero) == pytest.approx([1e9, 5e6, 1e9])  # unfloored: absurd
    scores = excess(actual, zero, zero, floors(series))
    assert scores == pytest.approx([139 / 65536, 0.5, 1e9])  # no floor known: as before
    upper = np.array([1e6, 2.0, 1.0])
    assert excess(2 * upper, zero, upper, floors(series)) == pytest.approx([1.0, 1.0, 1.0])
    pred = np.stack([zero, zero, zero], axis=-1)[None].repeat(2, axis=0)
    assert anomaly_scores(actual[None].repeat(2, 0), pred, floor=floors(series))[1, 0] < 0.01


@pytest.mark.parametrize("windows", [0, -3, 2.5, True])
def test_a_smoothing_span_under_one_window_is_refused(windows: int) -> None:
    pred = np.tile(np.array([1.0, 2.0, 3.0]), (4, 1, 1))
    actual = np.array([[2.0], [6.0], [6.0], [0.5]])
    with pytest.raises(InputError, match="whole number >= 1") as info:
        anomaly_scores(actual, pred, windows)  # at 0 or below, scores went negative
    assert info.value.field == "windows"
    with pytest.raises(InputError, match="whole number >= 1"):
        smooth(np.array([0.0]), np.array([1.0]), windows)
    assert (anomaly_scores(actual, pred, np.int64(1)) >= 0).all()


def test_anomaly_scores_refuse_mismatched_shapes() -> None:
    pred = np.tile(np.array([1.0, 2.0, 3.0]), (4, 1, 1))
    actual = np.array([[2.0], [6.0], [6.0], [0.5]])
    for wrong_actual, wrong_pred in (
        (actual[:, 0], pred),  # one series as a flat list: it was broadcast to [4, 4]
        (actual[:2], pred),
        (actual, pred[..., 0]),
    ):
        with pytest.raises(InputError, match=r"expected actual \[windows, series\]"):
            anomaly_scores(wrong_actual, wrong_pred)


def test_limit_scales_start_from_todays_traffic() -> None:
    from estimator.whatif import LOWEST, limit_scales

    def levels(k: float) -> np.ndarray:
        # usage rising with traffic, and a band that blows up far below any traffic seen
        rising = 0.01 + 0.004 * k + (0.05 if k < 0.1 else 0.0)
        return np.array([rising, rising, rising, 0.1 / k])

    found = limit_scales(levels, np.array([0.05, 0.001, 10.0, 1.0]))
    assert found[0] == pytest.approx(10.0, rel=0.01)  # not 0 for the band at 1/64
    assert found[1] == 0.0  # over at every scale
    assert found[2] == np.inf  # the ceiling does not reach it
    assert found[3] == np.inf and levels(LOWEST)[3] > 1.0  # over only below today: never above


def test_estimates_are_made_monotone_in_the_scale() -> None:
    from estimator.whatif import LOWEST, monotone_in_scale

    asked: list[float] = []

    def estimates(k: float) -> np.ndarray:
        asked.append(k)
        # a series that rises with traffic, and one the model says falls (a crept-up heap)
        return np.array([1.0 + k, 2.0 - 0.5 * min(k, 2.0)])

    ordered = monotone_in_scale(estimates)
    assert ordered(1.0).tolist() == [2.0, 1.5]
    assert ordered(3.0).tolist() == [4.0, 1.5]  # more traffic: never less than today
    assert ordered(0.5).tolist() == [1.5, 1.5]  # less traffic: never more than today
    assert ordered(0.0)[0] == 1.0 and ordered(0.0)[1] == 1.5
    assert LOWEST in asked or min(k for k in asked if k > 0) < 2 * LOWEST
    before = len(asked)
    ordered(3.0)
    assert len(asked) == before  # each scale is asked once
    huge = monotone_in_scale(estimates)
    assert huge(1e6).tolist() == [1e6 + 1, 1.5] and len(asked) - before <= 34


@pytest.mark.parametrize("factor", [-1.0, float("nan"), float("inf"), 1e308])
def test_a_scale_factor_out_of_range_is_refused(factor: float) -> None:
    from estimator.whatif import scaled_traffic

    with pytest.raises(InputError, match="scale factor must be between 0 and 1e\\+06"):
        scaled_traffic([{FRONT: 1.0}], factor)
    assert scaled_traffic([{FRONT: 2.0}], 0.0) == [{FRONT: 0.0}]  # 0: the idle cost


def test_apis_left_out_of_the_vocabulary_are_pooled_per_component_with_the_same_features() -> None:
    """An API per request (an id in the operation) pools into one per component: the
    synthesizer and the reference traffic do not grow with the requests, and the pooled traffic
    gives the features the original gives."""
    from estimator.features import Vocabulary
    from estimator.synthesizer import OTHER_APIS
    from estimator.training import reference_traffic

    windows = tiny_world(40)
    for i, window in enumerate(windows):
        window.add_path((("front", f"/orders/{i:06x}"),), 2)
        window.add_path((("front", f"/orders/{i:06x}"), ("db", "find")), 2)
    vocab = Vocabulary.build(windows)
    synth = Synthesizer.fit(windows, vocab.apis)
    pooled = ("front", OTHER_APIS)
    assert set(synth.apis) == {*vocab.apis, pooled}
    ref = reference_traffic(windows, vocab.apis)
    assert sorted(map(tuple, ref["apis"])) == sorted([*vocab.apis, pooled])
    traffic = [
        {(str(c), str(o)): n for (c, o), n in zip(ref["apis"], row, strict=True) if n}
        for row in ref["counts"]
    ]
    again = synth.windows(traffic, [w.start for w in windows], 60.0)
    X, _ = vocab.transform(windows)
    Y, _ = vocab.transform(again)
    assert np.allclose(X.sum(axis=0), Y.sum(axis=0))  # in expectation, over the windows


def test_an_api_pooled_by_the_vocabulary_is_named_with_its_pool_in_the_error() -> None:
    from estimator.features import Vocabulary

    windows = tiny_world(40)
    for i, window in enumerate(windows):
        window.add_path((("front", f"/orders/{i:06x}"),), 2)
    synth = Synthesizer.fit(windows, Vocabulary.build(windows).apis)
    with pytest.raises(InputError, match=r"for them give 'front:\(other APIs\)'"):
        synth.resolve_api("front:/orders/000003")

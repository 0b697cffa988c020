"""Windows and settings given to the library in code are checked where they enter, as a
dataset's lines are: training and predicting name the window or setting that is wrong."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest

from estimator.errors import InputError
from estimator.training import TrainConfig, train_bundle
from tests.worlds import tiny_world

LINEAR = TrainConfig(model="linear")


def test_training_refuses_windows_out_of_order_or_overlapping() -> None:
    windows = tiny_world(40)
    with pytest.raises(InputError, match="time order") as info:
        train_bundle(list(reversed(windows)), LINEAR)  # was trained, its range ending first
    assert info.value.field == "windows[1].start"
    overlapping = [replace(w, end=w.end + 30) for w in windows]
    with pytest.raises(InputError, match="not overlap"):
        train_bundle(overlapping, LINEAR)


def test_training_refuses_no_windows_and_counts_or_usage_that_are_no_numbers() -> None:
    with pytest.raises(InputError, match="no windows to train on"):
        train_bundle([], LINEAR)
    windows = tiny_world(40)
    path = next(iter(windows[3].calls))
    for bad in (float("nan"), float("inf"), -5.0):
        broken = copy.deepcopy(windows)
        broken[3].calls[path] = bad  # NaN reached LAPACK, which printed to stdout and failed
        with pytest.raises(InputError, match="call count") as info:
            train_bundle(broken, LINEAR)
        assert info.value.field == "windows[3].calls"
    key = next(iter(windows[3].metrics))
    broken = copy.deepcopy(windows)
    broken[3].metrics[key] = float("inf")
    with pytest.raises(InputError, match="usage inf"):
        train_bundle(broken, LINEAR)
    unknown = copy.deepcopy(windows)
    unknown[3].metrics[key] = float("nan")  # unknown usage is allowed
    train_bundle(unknown, LINEAR)


def test_training_refuses_windows_of_several_lengths() -> None:
    windows = [
        replace(w, end=w.start + (60 if i % 2 else 30)) for i, w in enumerate(tiny_world(40))
    ]
    with pytest.raises(InputError, match="windows of several lengths"):
        train_bundle(windows, LINEAR)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("validation_fraction", 1.5),
        ("validation_fraction", 0.0),
        ("validation_fraction", -1.0),
        ("max_paths", -1),
        ("min_windows", 0),
        ("halflives", (0.0,)),
        ("halflives", (-4.0, 16.0)),
        ("halflives", ()),
    ],
)
def test_a_train_config_out_of_range_is_refused(setting: str, value: object) -> None:
    with pytest.raises(InputError) as info:
        TrainConfig(**{setting: value})  # type: ignore[arg-type]
    assert info.value.field in (setting, "max_paths", "min_windows")


def test_predict_refuses_windows_out_of_order_bad_counts_and_a_foreign_state() -> None:
    windows = tiny_world(60)
    bundle = train_bundle(windows[:40], LINEAR)
    with pytest.raises(InputError, match="time order"):
        bundle.predict(list(reversed(windows[40:])))
    broken = copy.deepcopy(windows[40:])
    broken[2].calls[next(iter(broken[2].calls))] = float("nan")  # made every later window NaN
    with pytest.raises(InputError, match="call count nan"):
        bundle.predict(broken)
    other = train_bundle(windows[:40], replace(LINEAR, halflives=(4.0,)))
    _, state = other.predict(windows[40:50])
    with pytest.raises(InputError, match="a state of another bundle") as info:
        bundle.predict(windows[50:], state)
    assert info.value.field == "state"
    with pytest.raises(InputError, match="expected the PredictState") as info:
        bundle.predict(windows[50:], state.history)  # a traffic history, as releases gave
    assert info.value.field == "state"
    first, state = bundle.predict(windows[40:50])
    second, _ = bundle.predict(windows[50:], state)
    whole, _ = bundle.predict(windows[40:])
    np.testing.assert_allclose(np.concatenate([first, second]), whole, rtol=1e-9)


def test_a_limit_that_is_no_positive_number_is_refused_not_answered_never_reached() -> None:
    from estimator.synthesizer import Synthesizer, traffic_of
    from estimator.whatif import max_scales

    windows = tiny_world(40)
    bundle = train_bundle(windows, LINEAR)
    synthesizer = Synthesizer.from_json(bundle.synthesizer)
    starts = np.array([w.start for w in windows])
    key = bundle.series[0]
    for bad in (float("nan"), float("inf"), 0.0, -1.0):
        with pytest.raises(InputError, match="expected a positive number") as info:
            max_scales(bundle, synthesizer, traffic_of(windows), starts, {key: bad})
        assert info.value.field == f"limits.{key[0]}.{key[1]}"


def test_the_synthesizer_refuses_calls_and_window_lengths_that_are_no_numbers() -> None:
    from estimator.synthesizer import Synthesizer

    windows = tiny_world(40)
    synthesizer = Synthesizer.from_json(train_bundle(windows, LINEAR).synthesizer)
    api = next(iter(synthesizer.mean))
    for bad in (float("nan"), float("inf"), -1.0):  # NaN calls made an empty window, silently
        with pytest.raises(InputError, match="no finite non-negative number") as info:
            synthesizer.windows([{api: 5.0}, {api: bad}], [0.0, 60.0], 60.0)
        assert info.value.field == "traffic[1]"
    for seconds in (0.0, -60.0, float("nan")):
        with pytest.raises(InputError, match="must be a positive number"):
            synthesizer.windows([{api: 5.0}], [0.0], seconds)
    assert synthesizer.windows([{api: 0.0}], [0.0], 60.0)[0].calls == {}


@pytest.mark.parametrize(
    ("setting", "value"),
    [("max_paths", -1), ("min_windows", 0), ("max_operations", 1.5), ("halflives", (4.0, 0.0))],
)
def test_a_vocabulary_of_sizes_or_half_lives_out_of_range_is_refused(
    setting: str, value: object
) -> None:
    from estimator.features import Vocabulary

    with pytest.raises(InputError) as info:  # max_paths=-1 dropped the last path, silently
        Vocabulary.build(tiny_world(20), **{setting: value})  # type: ignore[arg-type]
    assert info.value.field == setting


def test_a_what_if_of_no_windows_or_starts_of_another_length_is_refused() -> None:
    from estimator.synthesizer import Synthesizer
    from estimator.whatif import estimate

    windows = tiny_world(40)
    bundle = train_bundle(windows, LINEAR)
    synthesizer = Synthesizer.from_json(bundle.synthesizer)
    api = next(iter(synthesizer.mean))
    with pytest.raises(InputError, match="2 windows of traffic but 1 start times"):
        synthesizer.windows([{api: 1.0}, {api: 2.0}], [0.0], 60.0)
    with pytest.raises(InputError, match="no windows to estimate") as info:
        estimate(bundle, windows, [])
    assert info.value.field == "hypothetical"

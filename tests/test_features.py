"""Call-path features: vocabulary cap, the per-API 'other' fold, history state."""

from __future__ import annotations

import numpy as np
import pytest

from estimator.errors import BundleError
from estimator.features import Vocabulary
from estimator.windows import Window
from tests.worlds import COMPOSE_PATHS, READ, READ_PATHS, tiny_world


def test_vocabulary_cap_keeps_most_called_paths() -> None:
    windows = tiny_world(50)
    vocab = Vocabulary.build(windows, max_paths=2)
    assert len(vocab.paths) == 2
    totals = {p: sum(w.calls.get(p, 0) for w in windows) for p in (*COMPOSE_PATHS, *READ_PATHS)}
    assert set(vocab.paths) == set(sorted(totals, key=lambda p: -totals[p])[:2])


def test_rare_and_new_paths_fold_into_other_of_their_api() -> None:
    windows = tiny_world(50)
    vocab = Vocabulary.build(windows, max_paths=3)
    layout = vocab.layout
    new = Window(0, 60)
    new.add_path((("front", "/compose"), ("compose", "compose"), ("brand-new", "op")), 7)
    new.add_path((("never", "/seen"),), 2)
    x = vocab.counts([new])[0]
    names = [layout.names[j] for j in np.flatnonzero(x)]
    assert x[layout.names.index("other[front:/compose]")] == 7
    assert x[layout.names.index("other[*:*]")] == 2
    assert x[layout.names.index("api[*:*]")] == 2
    assert "component[brand-new]" not in names  # unknown components are not features


def test_apis_are_capped_and_those_of_one_window_count_as_unknown() -> None:
    windows = tiny_world(50)
    for i, window in enumerate(windows):  # an id in the operation: an API per request
        window.add_path((("front", f"/orders/{i:08x}"),), 1)
    vocab = Vocabulary.build(windows)
    assert vocab.apis == (("front", "/compose"), ("front", "/read"))
    x = vocab.counts(windows[:1])[0]
    assert x[vocab.layout.names.index("api[*:*]")] == 1
    assert Vocabulary.build(windows, max_apis=1).apis == (("front", "/read"),)  # the most called


def test_counts_are_exact_for_known_paths() -> None:
    windows = tiny_world(30)
    vocab = Vocabulary.build(windows)
    X, _ = vocab.transform(windows)
    layout = vocab.layout
    for path in COMPOSE_PATHS:
        j = vocab.paths.index(path)
        assert np.array_equal(X[:, j], [w.calls[path] for w in windows])
    comp = layout.component_column("store")
    assert comp is not None
    assert np.array_equal(X[:, comp], [w.calls[COMPOSE_PATHS[2]] for w in windows])


def test_history_state_continues_across_calls() -> None:
    windows = tiny_world(80)
    vocab = Vocabulary.build(windows)
    whole, _ = vocab.transform(windows)
    first, state = vocab.transform(windows[:50])
    rest, _ = vocab.transform(windows[50:], state)
    assert np.allclose(np.vstack([first, rest]), whole)


def test_vocabulary_round_trips_through_json() -> None:
    vocab = Vocabulary.build(tiny_world(20), max_paths=4)
    again = Vocabulary.from_json(vocab.to_json())
    assert again == vocab and again.layout.names == vocab.layout.names


def test_a_component_of_one_window_is_no_feature() -> None:
    """One window's spans of a component are no evidence of what it costs (see
    Vocabulary.build); from two windows on it is a feature, as paths and APIs are."""
    windows = tiny_world(50)
    windows[10].add_path((("front", "/compose"), ("once", "op")), 9)
    assert "once" not in Vocabulary.build(windows).components
    windows[20].add_path((("front", "/compose"), ("once", "op")), 9)
    assert "once" in Vocabulary.build(windows).components


def test_operations_of_a_component_keep_their_own_traffic_history() -> None:
    """A component with two or more operations keeps each one's moving averages beside its own
    (the busiest `max_operations`); one with a single operation keeps none (its history is the
    component's). Each history column is owned by the component whose spans it averages."""
    windows = tiny_world(60)
    vocab = Vocabulary.build(windows)
    assert vocab.operations == (("front", "/compose"), ("front", "/read"))
    assert Vocabulary.build(windows, max_operations=1).operations == (("front", "/read"),)
    assert Vocabulary.build(windows, max_operations=0).operations == ()
    layout = vocab.layout
    X, _ = vocab.transform(windows)
    history = layout.columns("history")
    assert len(history) == len(vocab.halflives) * (len(vocab.components) + 2)
    assert X.shape[1] == len(layout.names) == history[-1] + 1
    reads = layout.names.index("ema4[front:/read]")
    assert dict(zip(history, layout.history_owners, strict=True))[reads] == "front"
    decay, total, weight = 0.5 ** (1 / 4), 0.0, 0.0
    for i, window in enumerate(windows):  # bias-corrected average of that operation's spans
        total, weight = decay * total + window.calls[(READ,)], decay * weight + 1.0
        assert np.isclose(X[i, reads], total / weight)


def test_a_vocabulary_of_an_earlier_release_keeps_its_layout() -> None:
    """Bundles of releases before per-operation history hold no "operations": their vocabulary
    gives the features their models were trained on."""
    windows = tiny_world(40)
    vocab = Vocabulary.build(windows)
    earlier = {k: v for k, v in vocab.to_json().items() if k != "operations"}
    old = Vocabulary.from_json(earlier)
    assert old.operations == ()
    assert old.layout.names == Vocabulary.build(windows, max_operations=0).layout.names
    X, _ = old.transform(windows)
    assert X.shape[1] == len(old.layout.names)
    assert np.array_equal(X, Vocabulary.build(windows, max_operations=0).transform(windows)[0])


def test_a_vocabulary_with_keys_this_release_does_not_know_is_refused() -> None:
    """A newer release's vocabulary may give features this one cannot compute: refused, saying so."""
    obj = Vocabulary.build(tiny_world(20)).to_json()
    obj["features_of_tomorrow"] = []
    with pytest.raises(BundleError, match="'features_of_tomorrow'.*newer release"):
        Vocabulary.from_json(obj)


def test_no_windows_give_no_rows_of_every_feature() -> None:
    vocab = Vocabulary.build(tiny_world(20))
    X, state = vocab.transform([])
    assert X.shape == (0, len(vocab.layout.names))
    assert np.array_equal(
        vocab.transform(tiny_world(5), state)[0], vocab.transform(tiny_world(5))[0]
    )

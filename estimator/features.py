"""Call-path count features (the paper's), per-API and per-component counts, traffic history."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from estimator.errors import BundleError, InputError
from estimator.windows import CallPath, Pair, Window, api_counts, api_of

UNKNOWN_API: Pair = ("*", "*")
"""Stands for every API first seen at predict time, and for those too rare to keep."""

MAX_APIS = 256
"""APIs a vocabulary keeps at most, the most called (each is two feature columns)."""

MAX_OPERATIONS = 6
"""Operations per component whose own traffic history a vocabulary keeps, the most called (each
is one history column per half-life; a component with a single operation keeps none: its own
history is the component's)."""


FEATURE_GROUPS = ("path", "other", "api", "component", "history", "operation_history", "counts")
"""The groups of a layout's columns, by which models pick what they read."""

VOCABULARY_KEYS = frozenset({"paths", "apis", "components", "halflives", "operations"})
"""The keys of a vocabulary in a bundle's manifest."""


def _path_key(path: CallPath) -> str:
    return " > ".join(f"{c}:{o}" for c, o in path)


@dataclass(frozen=True)
class Layout:
    """Names and groups of the feature columns, so models and baselines can pick what they use."""

    names: tuple[str, ...]
    groups: Mapping[str, tuple[int, ...]]
    components: tuple[str, ...]
    apis: tuple[Pair, ...]
    series: tuple[tuple[str, str], ...] = ()
    """The (component, resource) of each target column, where the caller knows them."""
    path_ends: tuple[Pair, ...] = ()
    """The last (component, operation) of each "path" column, in column order."""
    path_components: tuple[frozenset[str], ...] = ()
    """The components each "path" column passes through, in column order."""
    history_owners: tuple[str, ...] = ()
    """The component whose spans each "history" column averages, in column order (none given:
    no column is any component's own)."""

    def for_series(self, series: Sequence[tuple[str, str]]) -> Layout:
        """The same layout, naming the target series (models may use their components)."""
        return replace(self, series=tuple(series))

    def columns(self, group: str) -> np.ndarray:
        return np.asarray(self.groups.get(group, ()), dtype=int)

    def component_column(self, component: str) -> int | None:
        """Column of the span count of one component, if it was seen in training."""
        try:
            return int(self.groups["component"][self.components.index(component)])
        except ValueError:
            return None


@dataclass(frozen=True)
class Vocabulary:
    """Call paths, APIs and components kept from training windows (paths capped in number), and
    the operations whose traffic history is kept beside their component's."""

    paths: tuple[CallPath, ...]
    apis: tuple[Pair, ...]
    components: tuple[str, ...]
    halflives: tuple[float, ...] = (4.0, 16.0, 64.0)
    operations: tuple[Pair, ...] = ()
    _index: dict[CallPath, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._index.update({p: i for i, p in enumerate(self.paths)})

    @classmethod
    def build(
        cls,
        windows: Sequence[Window],
        max_paths: int = 512,
        min_windows: int = 2,
        halflives: Sequence[float] = (4.0, 16.0, 64.0),
        max_apis: int = MAX_APIS,
        max_operations: int = MAX_OPERATIONS,
    ) -> Vocabulary:
        """Keep the most called paths seen in at least `min_windows` windows, at most `max_paths`,
        and likewise the APIs, at most `max_apis`, and the components (their span counts and
        traffic history): one window's calls of a component are no evidence of what it costs,
        and a cost fitted to them multiplies its later traffic into every series. The calls of APIs left out count as those of an
        API first seen at predict time (UNKNOWN_API): operation names that carry ids (`/orders/
        8f3a...`) make an API of every request, which no model can learn from one by one.

        Beside each component's, the traffic history of its `max_operations` most called
        operations is kept (where it has two or more): a store's cache fills with what its reads
        bring in, some KB a call, and with a fraction of that a write, so under a new API mix
        the component's calls in all no longer tell how full it is (on a development seed of the
        simulator's composition scenario, the accuracy of the worst store's memory rose from
        0.818 to 0.865; on a real recording's split inside its training part, nothing changed).

        Sizes under 0 (or `min_windows` under 1) and half-lives that are no positive numbers are
        an InputError."""
        for name, value, least in (
            ("max_paths", max_paths, 0),
            ("min_windows", min_windows, 1),
            ("max_apis", max_apis, 0),
            ("max_operations", max_operations, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise InputError(f"must be a whole number >= {least}, got {value!r}", field=name)
        if not halflives or not all(0 < h < float("inf") for h in halflives):
            raise InputError(
                f"must be one or more positive numbers, got {list(halflives)}", field="halflives"
            )
        totals: dict[CallPath, float] = {}
        seen_in: Counter[CallPath] = Counter()
        api_totals: dict[Pair, float] = {}
        api_seen_in: Counter[Pair] = Counter()
        component_seen_in: Counter[str] = Counter()
        op_totals: dict[Pair, float] = {}
        op_seen_in: Counter[Pair] = Counter()
        for window in windows:
            for path, count in window.calls.items():
                totals[path] = totals.get(path, 0.0) + count
                seen_in[path] += 1
                op_totals[path[-1]] = op_totals.get(path[-1], 0.0) + count
            component_seen_in.update({path[-1][0] for path in window.calls})
            op_seen_in.update({path[-1] for path in window.calls})
            for api, count in api_counts(window.calls).items():
                api_totals[api] = api_totals.get(api, 0.0) + count
                api_seen_in[api] += 1
        ranked = sorted(totals, key=lambda p: (-totals[p], p))
        kept = [p for p in ranked if seen_in[p] >= min_windows][:max_paths]
        by_calls = sorted(api_totals, key=lambda a: (-api_totals[a], a))
        apis = [a for a in by_calls if api_seen_in[a] >= min_windows][:max_apis]
        components = sorted(c for c, n in component_seen_in.items() if n >= min_windows)
        by_component: dict[str, list[Pair]] = {}
        for op in sorted(op_totals, key=lambda o: (-op_totals[o], o)):
            if op_seen_in[op] >= min_windows:
                by_component.setdefault(op[0], []).append(op)
        operations = [
            op
            for c in components
            if len(by_component.get(c, ())) > 1
            for op in by_component[c][:max_operations]
        ]
        return cls(
            paths=tuple(sorted(kept)),
            apis=tuple(sorted(apis)),
            components=tuple(components),
            halflives=tuple(float(h) for h in halflives),
            operations=tuple(sorted(operations)),
        )

    # ------------------------------------------------------------------ layout

    @property
    def layout(self) -> Layout:
        names: list[str] = [f"path[{_path_key(p)}]" for p in self.paths]
        groups: dict[str, tuple[int, ...]] = {"path": tuple(range(len(names)))}
        all_apis = (*self.apis, UNKNOWN_API)
        start = len(names)
        names += [f"other[{a[0]}:{a[1]}]" for a in all_apis]
        groups["other"] = tuple(range(start, len(names)))
        start = len(names)
        names += [f"api[{a[0]}:{a[1]}]" for a in all_apis]
        groups["api"] = tuple(range(start, len(names)))
        start = len(names)
        names += [f"component[{c}]" for c in self.components]
        groups["component"] = tuple(range(start, len(names)))
        counted = len(names)
        averaged = [*self.components, *(f"{c}:{o}" for c, o in self.operations)]
        names += [f"ema{h:g}[{a}]" for h in self.halflives for a in averaged]
        groups["history"] = tuple(range(counted, len(names)))
        groups["operation_history"] = tuple(
            c for c in groups["history"] if (c - counted) % len(averaged) >= len(self.components)
        )
        groups["counts"] = tuple(range(counted))
        ends = tuple(p[-1] for p in self.paths)
        owners = (*self.components, *(c for c, _ in self.operations)) * len(self.halflives)
        return Layout(
            tuple(names),
            groups,
            self.components,
            all_apis,
            path_ends=ends,
            path_components=tuple(frozenset(c for c, _ in p) for p in self.paths),
            history_owners=owners,
        )

    @property
    def n_features(self) -> int:
        return len(self.layout.names)

    # ------------------------------------------------------------------ transform

    def counts(self, windows: Sequence[Window]) -> np.ndarray:
        """[windows, count features + operations]: paths, per-API other fold, per-API calls,
        per-component spans, then the kept operations' spans (these feed the traffic history
        only: `transform_counts`)."""
        n_paths, n_apis = len(self.paths), len(self.apis) + 1
        api_index = {a: i for i, a in enumerate(self.apis)}
        comp_index = {c: i for i, c in enumerate(self.components)}
        op_index = {o: i for i, o in enumerate(self.operations)}
        width = n_paths + 2 * n_apis + len(self.components) + len(self.operations)
        out = np.zeros((len(windows), width))
        other0, api0, comp0 = n_paths, n_paths + n_apis, n_paths + 2 * n_apis
        op0 = comp0 + len(self.components)
        unknown = n_apis - 1
        for i, window in enumerate(windows):
            row = out[i]
            for path, count in window.calls.items():
                j = self._index.get(path)
                if j is not None:
                    row[j] += count
                else:
                    api = api_of(path)
                    row[other0 + api_index.get(api, unknown) if api else other0 + unknown] += count
                c = comp_index.get(path[-1][0])
                if c is not None:
                    row[comp0 + c] += count
                o = op_index.get(path[-1])
                if o is not None:
                    row[op0 + o] += count
            for api, count in api_counts(window.calls).items():
                row[api0 + api_index.get(api, unknown)] += count
        return out

    def transform(
        self, windows: Sequence[Window], state: HistoryState | None = None
    ) -> tuple[np.ndarray, HistoryState]:
        """[windows, features] for time-ordered windows, continuing the traffic history `state`."""
        counts = self.counts(windows)
        return self.transform_counts(counts, state)

    def transform_counts(
        self, counts: np.ndarray, state: HistoryState | None = None
    ) -> tuple[np.ndarray, HistoryState]:
        """`transform` of `counts` rows: the count features, then the traffic history of the
        components' and kept operations' spans (the last columns of `counts`)."""
        averaged = len(self.components) + len(self.operations)
        counts = np.asarray(counts, dtype=float)
        counted = counts.shape[1] - len(self.operations)
        state = state or HistoryState.empty(len(self.halflives), averaged)
        if state.sums.shape[1] != averaged:
            raise ValueError(f"a traffic history of {state.sums.shape[1]} columns, not {averaged}")
        history, state = state.advance(counts[:, counted - len(self.components) :], self.halflives)
        return np.hstack([counts[:, :counted], history]), state

    # ------------------------------------------------------------------ persistence

    def to_json(self) -> dict[str, Any]:
        return {
            "paths": [[list(s) for s in p] for p in self.paths],
            "apis": [list(a) for a in self.apis],
            "components": list(self.components),
            "halflives": list(self.halflives),
            "operations": [list(o) for o in self.operations],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Vocabulary:
        """The vocabulary of a manifest; one without "operations" (written before operations had
        a traffic history of their own) keeps none. A key this release does not know is refused:
        its features would not be the ones the model was trained on."""
        unknown = sorted(set(obj) - VOCABULARY_KEYS) if isinstance(obj, Mapping) else []
        if unknown:
            raise BundleError(
                f"vocabulary in manifest has {', '.join(map(repr, unknown))}, which this release "
                "does not know: a bundle of a newer release? retrain with this one"
            )
        try:
            vocabulary = cls(
                paths=tuple(tuple((str(c), str(o)) for c, o in p) for p in obj["paths"]),
                apis=tuple((str(c), str(o)) for c, o in obj["apis"]),
                components=tuple(str(c) for c in obj["components"]),
                halflives=tuple(float(h) for h in obj["halflives"]),
                operations=tuple((str(c), str(o)) for c, o in obj.get("operations", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"vocabulary in manifest is malformed: {exc!r}") from exc
        if not all(0 < h < math.inf for h in vocabulary.halflives):
            raise BundleError(
                f"vocabulary in manifest is malformed: halflives {list(vocabulary.halflives)} "
                "are not all positive finite numbers"
            )
        for name, items in (
            ("paths", vocabulary.paths),
            ("apis", vocabulary.apis),
            ("components", vocabulary.components),
            ("operations", vocabulary.operations),
        ):
            if len(set(items)) != len(items):
                raise BundleError(f"vocabulary in manifest is malformed: {name} are repeated")
        return vocabulary


@dataclass(frozen=True)
class HistoryState:
    """Bias-corrected exponential moving averages of per-component (and per-operation) span
    counts."""

    sums: np.ndarray  # [halflives, components and operations]
    weights: np.ndarray  # [halflives]

    @classmethod
    def empty(cls, n_halflives: int, n_components: int) -> HistoryState:
        return cls(np.zeros((n_halflives, n_components)), np.zeros(n_halflives))

    def advance(
        self, comp: np.ndarray, halflives: Sequence[float]
    ) -> tuple[np.ndarray, HistoryState]:
        """EMA features for each row (including it), and the state after the last row."""
        decay = np.power(0.5, 1.0 / np.asarray(halflives, dtype=float))
        sums, weights = self.sums.copy(), self.weights.copy()
        out = np.empty((len(comp), sums.size))
        for i, row in enumerate(comp):
            sums = decay[:, None] * sums + row[None, :]
            weights = decay * weights + 1.0
            out[i] = (sums / weights[:, None]).ravel()
        return out, HistoryState(sums, weights)

"""Reservoirs: traffic-driven state that fills, drains and stops at a capacity (caches, buffers).

A cache's memory is not a function of the current window's calls: every fill adds to it, entries
expire at some rate, and it stops growing at its capacity. Per series this module finds such a
state from traffic alone,

    z_t = min(cap, decay * z_{t-1} + (1 - decay) * x_t),

where `x_t` is the call count of one input (the series' component, or one of its operations),
`decay` comes from a half-life in windows and `cap` (possibly none) bounds it. The input, half-life
and cap are chosen by least squares on the training windows, with usage explained as
`a * z + b + c * (the component's calls)`. A cap is kept only where it lowers the squared error by
more than CAP_GAIN: a cache that never filled up in training is not given a guessed capacity.

Each row's state is the recursion over at most `context` rows before it, started at the first of
them, so a live caller holding the last `context + 1` rows gets exactly the offline value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.signal import lfilter

from estimator.errors import ModelError
from estimator.features import Layout

HALFLIVES: tuple[float, ...] = tuple(4.0 * 2.0 ** (k / 2) for k in range(9))
"""Candidate half-lives of a reservoir, in windows: 4 to 64, a factor sqrt(2) apart."""

CAP_LEVELS: tuple[float, ...] = (
    0.02, 0.05, *(round(0.1 + 0.05 * k, 2) for k in range(18)), 0.97, 0.98, 0.99, 0.995, 1.0
)  # fmt: skip
"""Candidate capacities, as quantiles of the uncapped state over the fitting windows (dense near
the top: a cache that is full in only a few peak windows has its capacity there)."""

CAP_GAIN = 0.02
"""A capped reservoir must cut the squared error of the best uncapped one by more than this, and
an input mixed from several operations that of the best single input."""

CONTEXT = 256
"""Rows of look-back; beyond 4 half-lives of the slowest candidate, the start hardly matters."""

CHUNK = 1024
"""Rows of candidate states held at once while scoring (fewer where candidates are many)."""

BLOCK_CELLS = 1 << 19
"""At most this many candidate states (8 bytes each) are held at once, and as many squared: the
moments are summed while the block is still in the processor's cache. With 14 k candidates,
blocks of 1,024 rows (113 MB) made scoring 3 to 4 times slower than blocks of about 40."""

MAX_OPERATIONS = 6
"""A component's busiest operations that are candidate inputs of their own: large applications
keep the search's cost in proportion to their components, not their operations."""

ANY = "*"
"""Owner of a series whose component is unknown: every component's inputs are its candidates."""


Input = tuple[tuple[int, ...], tuple[float, ...]]
"""A reservoir's input: feature columns and their weights (the calls that fill it)."""


@dataclass(frozen=True)
class Reservoir:
    """One series' state: its input, the decay per window and the cap."""

    columns: tuple[int, ...]
    decay: float
    cap: float  # inf: no capacity seen in training
    weights: tuple[float, ...] = ()  # per column; empty: each 1

    def signal(self, X: np.ndarray) -> np.ndarray:
        """[n] the input's calls per row."""
        return _signal(X, (self.columns, self.weights))

    def to_json(self) -> dict[str, Any]:
        cap = None if np.isinf(self.cap) else self.cap
        out = {"columns": list(self.columns), "decay": self.decay, "cap": cap}
        return out | ({"weights": list(self.weights)} if self.weights else {})

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Reservoir:
        cap = float("inf") if obj["cap"] is None else float(obj["cap"])
        weights = tuple(float(w) for w in obj.get("weights", ()))
        return cls(tuple(int(c) for c in obj["columns"]), float(obj["decay"]), cap, weights)


def load_reservoirs(
    items: Sequence[dict[str, Any] | None], n_features: int, n_series: int
) -> list[Reservoir | None]:
    """Reservoirs from saved JSON, checked against the model's features and series."""
    out = [None if r is None else Reservoir.from_json(r) for r in items]
    if len(out) != n_series:
        raise ModelError(f"{len(out)} reservoirs for {n_series} series")
    for r in out:
        if r is None:
            continue
        if not r.columns or not all(0 <= c < n_features for c in r.columns):
            raise ModelError(f"a reservoir reads feature columns {r.columns} of {n_features}")
        if not 0.0 < r.decay < 1.0 or r.cap < 0 or len(r.weights) not in (0, len(r.columns)):
            raise ModelError(f"a reservoir is malformed: {r.to_json()}")
    return out


def _signal(X: np.ndarray, source: Input) -> np.ndarray:
    columns, weights = source
    if not weights:
        return np.asarray(X[:, list(columns)].sum(axis=1), dtype=float)
    return np.asarray(X[:, list(columns)] @ np.asarray(weights), dtype=float)


def candidate_inputs(layout: Layout) -> dict[str, list[tuple[int, ...]]]:
    """Per component: its span-count column, then each of its operations' path columns."""
    out: dict[str, list[tuple[int, ...]]] = {}
    paths = layout.columns("path")
    for component in layout.components:
        column = layout.component_column(component)
        if column is None:
            continue
        by_op: dict[str, list[int]] = {}
        for j, end in zip(paths, layout.path_ends, strict=False):
            if end[0] == component:
                by_op.setdefault(end[1], []).append(int(j))
        inputs: list[tuple[int, ...]] = [(column,)]
        if len(by_op) > 1:
            inputs += [tuple(cols) for _, cols in sorted(by_op.items())]
        out[component] = inputs
    return out


def _busiest(X: np.ndarray, inputs: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """The component's total and its MAX_OPERATIONS busiest operations, in their order."""
    if len(inputs) <= MAX_OPERATIONS + 1:
        return inputs
    calls = [float(X[:, list(cols)].sum()) for cols in inputs[1:]]
    keep = sorted(np.argsort(calls)[::-1][:MAX_OPERATIONS])
    return [inputs[0], *(inputs[1 + i] for i in keep)]


def states(X: np.ndarray, reservoirs: Sequence[Reservoir | None], context: int) -> np.ndarray:
    """[n, s] state of every series' reservoir (0 where none) for consecutive rows X."""
    n = len(X)
    out = np.zeros((n, len(reservoirs)))
    active = [j for j, r in enumerate(reservoirs) if r is not None]
    if not active or n == 0:
        return out
    chosen = [r for r in reservoirs if r is not None]
    x = np.stack([r.signal(X) for r in chosen], axis=1)
    decay = np.array([r.decay for r in chosen])
    cap = np.array([r.cap for r in chosen])
    head = min(n, context + 1)  # rows whose window starts at row 0: one sequential pass
    z = np.minimum(cap, x[0])
    out[0, active] = z
    for t in range(1, head):
        z = np.minimum(cap, decay * z + (1 - decay) * x[t])
        out[t, active] = z
    if n > head:  # row t starts at row t - context; all such windows advance together
        z = np.minimum(cap, x[1 : n - context])
        for m in range(1, context + 1):
            z = np.minimum(cap, decay * z + (1 - decay) * x[1 + m : n - context + m])
        out[head:, active] = z
    return out


MIXES: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
"""Refinement: another operation's calls added to the input at these shares of its volume."""

REFINE_STEPS: tuple[float, ...] = (2**-0.25, 1.0, 2**0.25)
"""Refinement: half-lives around the one found, a quarter octave apart."""


@dataclass
class _Candidates:
    """Every (input, half-life, cap) searched, those of one group (of series) contiguous."""

    signals: np.ndarray  # [n, inputs] calls of each input
    inputs: list[Input]
    source: np.ndarray  # [k] input index of each candidate
    decay: np.ndarray  # [k]
    cap: np.ndarray  # [k]
    span: dict[str, slice]  # candidates of each group


def _candidates(
    X: np.ndarray, rows: np.ndarray, groups: dict[str, list[tuple[Input, tuple[float, ...]]]]
) -> _Candidates:
    """Per group, each input at each of its half-lives, uncapped and at each CAP_LEVELS cap."""
    inputs = list(dict.fromkeys(source for specs in groups.values() for source, _ in specs))
    signals = np.stack([_signal(X, source) for source in inputs], axis=1)
    index = {source: i for i, source in enumerate(inputs)}
    needed: dict[float, set[int]] = {}
    for specs in groups.values():
        for source, halflives in specs:
            for h in halflives:
                needed.setdefault(h, set()).add(index[source])
    caps: dict[tuple[int, float], np.ndarray] = {}
    for h, members in needed.items():  # one filter per half-life over all inputs needing it
        cols = sorted(members)
        d = 0.5 ** (1.0 / h)
        x = signals[:, cols]
        uncapped = lfilter([1 - d], [1, -d], x, axis=0, zi=d * x[:1])[0]
        levels = np.quantile(uncapped[rows], CAP_LEVELS, axis=0)
        for n, i in enumerate(cols):
            caps[i, h] = np.append(levels[:, n], np.inf)
    source_of: list[int] = []
    decay: list[np.ndarray] = []
    cap: list[np.ndarray] = []
    span: dict[str, slice] = {}
    for key, specs in groups.items():
        first = sum(len(c) for c in cap)
        for source, halflives in specs:
            i = index[source]
            for h in halflives:
                source_of += [i] * len(caps[i, h])
                decay.append(np.full(len(caps[i, h]), 0.5 ** (1.0 / h)))
                cap.append(caps[i, h])
        span[key] = slice(first, sum(len(c) for c in cap))
    return _Candidates(
        signals, inputs, np.array(source_of), np.concatenate(decay), np.concatenate(cap), span
    )


def _errors(
    table: _Candidates,
    weights: np.ndarray,
    own: np.ndarray,
    Y: np.ndarray,
    groups: dict[str, list[int]],
) -> dict[int, np.ndarray]:
    """Per series of a group, the least squared error of y ~ a z + b + c own per candidate."""
    n, k = len(table.signals), len(table.decay)
    sums = {
        key: np.zeros((4, len(js), table.span[key].stop - table.span[key].start))
        for key, js in groups.items()
    }
    # per group, the weights of the moments of z: w, w * own and w * y side by side
    weighted_own, weighted_y = weights * own, weights * Y
    stacked = {
        key: np.concatenate([weights[:, js], weighted_own[:, js], weighted_y[:, js]], axis=1)
        for key, js in groups.items()
    }
    d, cap, source = table.decay, table.cap, table.source
    gain = 1 - d
    chunk = max(1, min(CHUNK, BLOCK_CELLS // max(k, 1)))
    block = np.empty((min(chunk, n), k))
    square = np.empty_like(block)
    z = np.minimum(cap, table.signals[0, source])
    step = np.empty(k)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        for t in range(start, stop):
            if t > 0:
                np.multiply(gain, table.signals[t, source], out=step)
                z *= d
                z += step
                np.minimum(z, cap, out=z)
            block[t - start] = z
        rows = block[: stop - start]
        squares = np.square(rows, out=square[: stop - start])
        for key, js in groups.items():  # series of one group share its candidates
            part = table.span[key]
            q = len(js)
            moments = stacked[key][start:stop].T @ rows[:, part]
            total = sums[key]
            total[0] += moments[:q]
            total[1] += weights[start:stop, js].T @ squares[:, part]
            total[2] += moments[q : 2 * q]
            total[3] += moments[2 * q :]
    out = {}
    for key, js in groups.items():
        for i, j in enumerate(js):
            out[j] = _least_squares(sums[key][:, i], weights[:, j], own[:, j], Y[:, j])
    return out


def _least_squares(moments: np.ndarray, w: np.ndarray, o: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Residual sum of squares of y ~ a z + b + c o per candidate z, from its weighted moments."""
    sz, szz, szo, szy = moments
    const = np.ones_like(sz)
    gram = np.stack(
        [
            np.stack([szz, sz, szo], -1),
            np.stack([sz, w.sum() * const, (w @ o) * const], -1),
            np.stack([szo, (w @ o) * const, (w @ o**2) * const], -1),
        ],
        -2,
    )
    rhs = np.stack([szy, (w @ y) * const, (w * o) @ y * const], -1)
    scale = np.sqrt(np.abs(np.diagonal(gram, axis1=-2, axis2=-1))) + 1e-12
    g = gram / scale[:, :, None] / scale[:, None, :] + 1e-9 * np.eye(3)
    coef = np.linalg.solve(g, (rhs / scale)[..., None])[..., 0]
    return np.asarray((w * y) @ y - (coef * rhs / scale).sum(-1))


def _pick(table: _Candidates, key: str, sse: np.ndarray, plain: np.ndarray) -> Reservoir:
    """The candidate of least error, unless the best `plain` one is within CAP_GAIN of it."""
    best = int(np.argmin(sse))
    simple = np.where(plain, sse, np.inf)
    if not sse[best] < (1 - CAP_GAIN) * simple.min():
        best = int(np.argmin(simple))
    k = table.span[key].start + best
    columns, weights = table.inputs[int(table.source[k])]
    return Reservoir(columns, float(table.decay[k]), float(table.cap[k]), weights)


def _refinements(
    X: np.ndarray, found: Reservoir, inputs: list[tuple[int, ...]]
) -> list[tuple[Input, tuple[float, ...]]]:
    """Finer half-lives around a capped reservoir, and its input mixed with other operations."""
    h = np.log(0.5) / np.log(found.decay)
    halflives = tuple(h * f for f in REFINE_STEPS)
    own: Input = (found.columns, found.weights)
    specs: list[tuple[Input, tuple[float, ...]]] = [(own, halflives)]
    volume = max(float(found.signal(X).mean()), 1e-12)
    base = found.weights or (1.0,) * len(found.columns)
    for other in inputs[1:]:  # each operation (the first input is the component's total)
        if set(other) <= set(found.columns):
            continue
        ratio = volume / max(float(X[:, list(other)].sum(axis=1).mean()), 1e-12)
        for share in MIXES:
            mix = (tuple(found.columns) + other, base + (share * ratio,) * len(other))
            specs.append((mix, halflives))
    return specs


def search(
    X: np.ndarray, Y: np.ndarray, layout: Layout, rows: np.ndarray
) -> list[Reservoir | None]:
    """Per series, the reservoir of least squared error over `rows` (a mask over consecutive X).

    A coarse pass over every input, half-life and cap, then, for series whose reservoir has a
    capacity (where its details decide extrapolation), a finer pass around it.
    """
    found = {c: _busiest(X, group) for c, group in candidate_inputs(layout).items()}
    if not found:
        return [None] * Y.shape[1]
    if len(layout.series) == Y.shape[1]:
        owner = [c if c in found else "" for c, _ in layout.series]
        inputs = {c: found[c] for c in sorted(set(owner) - {""})}
        if not inputs:
            return [None] * Y.shape[1]
        own = np.stack([X[:, inputs[c][0][0]] if c else np.zeros(len(X)) for c in owner], 1)
    else:  # unnamed series: every component's inputs are candidates of every series
        owner, inputs = [ANY] * Y.shape[1], {ANY: [i for group in found.values() for i in group]}
        own = np.repeat(X[:, layout.columns("component")].sum(1, keepdims=True), Y.shape[1], 1)
    known = ~np.isnan(Y)
    weights = (known & rows[:, None]).astype(float)
    Yz = np.where(known, Y, 0.0)
    groups: dict[str, list[int]] = {}
    for j, c in enumerate(owner):
        if c and weights[:, j].sum() >= 4:
            groups.setdefault(c, []).append(j)
    if not groups:
        return [None] * Y.shape[1]
    none: tuple[float, ...] = ()
    specs = {c: [((cols, none), HALFLIVES) for cols in inputs[c]] for c in groups}
    table = _candidates(X, rows, specs)
    errors = _errors(table, weights, own, Yz, groups)
    out: list[Reservoir | None] = [None] * Y.shape[1]
    for c, js in groups.items():
        uncapped = np.isinf(table.cap[table.span[c]])
        for j in js:
            out[j] = _pick(table, c, errors[j], uncapped)
    capped = {j: r for j, r in enumerate(out) if r is not None and np.isfinite(r.cap)}
    if capped:
        keys = {j: f"series {j}" for j in capped}
        fine = {keys[j]: _refinements(X, r, inputs[owner[j]]) for j, r in capped.items()}
        table = _candidates(X, rows, fine)
        errors = _errors(table, weights, own, Yz, {keys[j]: [j] for j in capped})
        for j, r in capped.items():  # a mixed input, too, must earn its place
            part = table.span[keys[j]]
            unmixed = [table.inputs[i] == (r.columns, r.weights) for i in table.source[part]]
            out[j] = _pick(table, keys[j], errors[j], np.array(unmixed))
    return out


__all__ = ["CONTEXT", "Reservoir", "candidate_inputs", "load_reservoirs", "search", "states"]

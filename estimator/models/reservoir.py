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

from estimator.features import Layout

HALFLIVES: tuple[float, ...] = tuple(4.0 * 2.0 ** (k / 2) for k in range(9))
"""Candidate half-lives of a reservoir, in windows: 4 to 64, a factor sqrt(2) apart."""

CAP_LEVELS: tuple[float, ...] = (
    0.02, 0.05, *(round(0.1 + 0.05 * k, 2) for k in range(18)), 0.97, 0.98, 0.99, 0.995, 1.0
)  # fmt: skip
"""Candidate capacities, as quantiles of the uncapped state over the fitting windows (dense near
the top: a cache that is full in only a few peak windows has its capacity there)."""

CAP_GAIN = 0.02
"""A capped reservoir must cut the squared error of the best uncapped one by more than this."""

CONTEXT = 256
"""Rows of look-back; beyond 4 half-lives of the slowest candidate, the start hardly matters."""

CHUNK = 1024
"""Rows of candidate states held at once while scoring."""

ANY = "*"
"""Owner of a series whose component is unknown: every component's inputs are its candidates."""


@dataclass(frozen=True)
class Reservoir:
    """One series' state: the summed input columns, the decay per window and the cap."""

    columns: tuple[int, ...]
    decay: float
    cap: float  # inf: no capacity seen in training

    def to_json(self) -> dict[str, Any]:
        cap = None if np.isinf(self.cap) else self.cap
        return {"columns": list(self.columns), "decay": self.decay, "cap": cap}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Reservoir:
        cap = float("inf") if obj["cap"] is None else float(obj["cap"])
        return cls(tuple(int(c) for c in obj["columns"]), float(obj["decay"]), cap)


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


def states(X: np.ndarray, reservoirs: Sequence[Reservoir | None], context: int) -> np.ndarray:
    """[n, s] state of every series' reservoir (0 where none) for consecutive rows X."""
    n = len(X)
    out = np.zeros((n, len(reservoirs)))
    active = [j for j, r in enumerate(reservoirs) if r is not None]
    if not active or n == 0:
        return out
    chosen = [r for r in reservoirs if r is not None]
    x = np.stack([X[:, list(r.columns)].sum(axis=1) for r in chosen], axis=1)
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


@dataclass
class _Candidates:
    """Every (input, half-life, cap) of the components being searched, a component's contiguous."""

    inputs: np.ndarray  # [n, inputs] call counts
    columns: list[tuple[int, ...]]  # X columns of each input
    source: np.ndarray  # [k] input index of each candidate
    decay: np.ndarray  # [k]
    cap: np.ndarray  # [k]
    span: dict[str, slice]  # candidates of each component


def _candidates(
    X: np.ndarray, rows: np.ndarray, inputs: dict[str, list[tuple[int, ...]]]
) -> _Candidates:
    columns = [cols for group in inputs.values() for cols in group]
    x = np.stack([X[:, list(cols)].sum(axis=1) for cols in columns], axis=1)
    levels = np.asarray(CAP_LEVELS)
    caps = {}
    for h in HALFLIVES:
        d = 0.5 ** (1.0 / h)
        uncapped = lfilter([1 - d], [1, -d], x, axis=0, zi=d * x[:1])[0]
        caps[d] = np.quantile(uncapped[rows], levels, axis=0)  # [levels, inputs]
    source: list[int] = []
    decay: list[float] = []
    cap: list[float] = []
    span: dict[str, slice] = {}
    i = 0
    for component, group in inputs.items():
        first = len(source)
        for _ in group:
            for d, table in caps.items():
                for c in (*table[:, i], np.inf):
                    source.append(i)
                    decay.append(d)
                    cap.append(float(c))
            i += 1
        span[component] = slice(first, len(source))
    span[ANY] = slice(0, len(source))
    return _Candidates(x, columns, np.array(source), np.array(decay), np.array(cap), span)


def _errors(
    table: _Candidates, weights: np.ndarray, own: np.ndarray, Y: np.ndarray, owner: list[str]
) -> list[np.ndarray]:
    """Per series, the least squared error of y ~ a z + b + c own for each of its candidates."""
    n, k = len(table.inputs), len(table.decay)
    groups: dict[str, list[int]] = {}
    for j, c in enumerate(owner):
        if c:
            groups.setdefault(c, []).append(j)
    sums = {
        c: np.zeros((4, len(js), table.span[c].stop - table.span[c].start))
        for c, js in groups.items()
    }
    d, cap, source = table.decay, table.cap, table.source
    gain = 1 - d
    block = np.empty((min(CHUNK, n), k))
    z = np.minimum(cap, table.inputs[0, source])
    step = np.empty(k)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        for t in range(start, stop):
            if t > 0:
                np.multiply(gain, table.inputs[t, source], out=step)
                z *= d
                z += step
                np.minimum(z, cap, out=z)
            block[t - start] = z
        rows = block[: stop - start]
        for c, js in groups.items():  # series of one component share its candidates
            part = rows[:, table.span[c]]
            w = weights[start:stop, js]
            total = sums[c]
            total[0] += w.T @ part
            total[1] += w.T @ part**2
            total[2] += (w * own[start:stop, js]).T @ part
            total[3] += (w * Y[start:stop, js]).T @ part
    moments: list[np.ndarray | None] = [None] * len(owner)
    for c, js in groups.items():
        for i, j in enumerate(js):
            moments[j] = sums[c][:, i]
    out = []
    for j, m in enumerate(moments):
        if m is None:
            out.append(np.full(0, np.inf))
            continue
        w, o, y = weights[:, j], own[:, j], Y[:, j]
        sz, szz, szo, szy = m
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
        out.append((w * y) @ y - (coef * rhs / scale).sum(-1))
    return out


def search(
    X: np.ndarray, Y: np.ndarray, layout: Layout, rows: np.ndarray
) -> list[Reservoir | None]:
    """Per series, the reservoir of least squared error over `rows` (a mask over consecutive X)."""
    found = candidate_inputs(layout)
    if not found:
        return [None] * Y.shape[1]
    if len(layout.series) == Y.shape[1]:
        owner = [c if c in found else "" for c, _ in layout.series]
        inputs = {c: found[c] for c in sorted(set(owner) - {""})}
        if not inputs:
            return [None] * Y.shape[1]
        own = np.stack([X[:, inputs[c][0][0]] if c else np.zeros(len(X)) for c in owner], 1)
    else:  # unnamed series: every component's inputs are candidates of every series
        owner, inputs = [ANY] * Y.shape[1], found
        own = np.repeat(X[:, layout.columns("component")].sum(1, keepdims=True), Y.shape[1], 1)
    table = _candidates(X, rows, inputs)
    known = ~np.isnan(Y)
    weights = (known & rows[:, None]).astype(float)
    errors = _errors(table, weights, own, np.where(known, Y, 0.0), owner)
    out: list[Reservoir | None] = []
    for j, c in enumerate(owner):
        sse = errors[j]
        if not c or not np.isfinite(sse).any() or weights[:, j].sum() < 4:
            out.append(None)
            continue
        part = table.span[c]
        capped = np.isfinite(table.cap[part])
        uncapped = np.where(capped, np.inf, sse)
        best = int(np.argmin(sse))
        if not sse[best] < (1 - CAP_GAIN) * uncapped.min():
            best = int(np.argmin(uncapped))
        k = part.start + best
        columns = table.columns[int(table.source[k])]
        out.append(Reservoir(columns, float(table.decay[k]), float(table.cap[k])))
    return out


__all__ = ["CONTEXT", "Reservoir", "candidate_inputs", "search", "states"]

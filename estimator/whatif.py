"""What-if answers: expected usage and band for hypothetical traffic, beside the base traffic."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from estimator.bundle import Bundle
from estimator.errors import InputError
from estimator.synthesizer import Synthesizer
from estimator.windows import CallPath, Pair, Window, api_counts, api_of


@dataclass(frozen=True)
class WhatIf:
    """Estimates for base and hypothetical traffic, [windows, series, 3] each."""

    series: list[tuple[str, str]]
    starts: np.ndarray
    base: np.ndarray
    hypothetical: np.ndarray

    def rows(self) -> list[dict[str, object]]:
        """Per series: mean and peak of the median, and the peak of the upper band, base vs what-if."""
        out = []
        for j, (component, resource) in enumerate(self.series):
            out.append(
                {
                    "component": component,
                    "resource": resource,
                    "base_mean": float(self.base[:, j, 1].mean()),
                    "whatif_mean": float(self.hypothetical[:, j, 1].mean()),
                    "base_peak": float(self.base[:, j, 1].max()),
                    "whatif_peak": float(self.hypothetical[:, j, 1].max()),
                    "whatif_peak_upper": float(self.hypothetical[:, j, 2].max()),
                    "ratio": _ratio(self.hypothetical[:, j, 1].mean(), self.base[:, j, 1].mean()),
                }
            )
        return out


def _ratio(whatif: float, base: float) -> float:
    """What-if over base; nan where the base is nothing (0/0 is no ratio, 'needs none' a lie)."""
    return float(whatif / base) if base > 1e-12 else math.nan


def reference_windows(
    bundle: Bundle, synthesizer: Synthesizer
) -> tuple[list[dict[Pair, float]], np.ndarray]:
    """Per-API traffic of the bundle's last training windows, the default base of what-if."""
    ref: Mapping[str, Any] = bundle.training.get("reference_traffic") or {}
    if not ref.get("counts"):
        raise InputError("this bundle keeps no reference traffic; give base traffic with --data")
    apis = [(str(c), str(o)) for c, o in ref["apis"]]
    traffic = [
        {api: float(n) for api, n in zip(apis, row, strict=True) if n > 0} for row in ref["counts"]
    ]
    return traffic, np.asarray(ref["starts"], dtype=float)


WARM_WINDOWS = 256
"""Windows of looped traffic a what-if runs before its first window: four half-lives of the
slowest traffic history (`Vocabulary.halflives`) and the reservoirs' look-back (`CONTEXT`)."""


def steady_estimates(bundle: Bundle, counts: np.ndarray) -> np.ndarray:
    """[windows, series, 3] the model's estimates (its own band) of count rows [windows,
    features] (`Vocabulary.counts`) of traffic that has been running: before the first window,
    WARM_WINDOWS windows of the same traffic looped (the last ones first) give every window a
    traffic history. From no history, the first windows' history would be their own traffic
    alone (a recording's busy first hour read as a whole day of it), and a what-if's peaks and
    limits would come from them."""
    counts = np.asarray(counts, dtype=float)
    if not len(counts):
        X, _ = bundle.vocabulary.transform_counts(counts, None)
        return np.asarray(bundle.model.predict(X))
    loop = np.arange(-WARM_WINDOWS, 0) % len(counts)
    X, _ = bundle.vocabulary.transform_counts(np.vstack([counts[loop], counts]), None)
    return np.asarray(bundle.model.predict(X))[WARM_WINDOWS:]


def estimate(
    bundle: Bundle,
    base: Sequence[Window],
    hypothetical: Sequence[Window],
    shortfall: np.ndarray | None = None,
) -> WhatIf:
    """Estimates for both traffic sets, each as traffic that has been running
    (`steady_estimates`); `shortfall` (see `scale_shortfall`) is added to the what-if estimates
    of scaled traffic. What-if answers keep the model's band (no widening for age). Either set
    without windows is an InputError."""
    for name, windows in (("base", base), ("hypothetical", hypothetical)):
        if not windows:
            raise InputError("no windows to estimate", field=name)
    base_pred = steady_estimates(bundle, bundle.vocabulary.counts(base))
    new_pred = steady_estimates(bundle, bundle.vocabulary.counts(hypothetical))
    if shortfall is not None:
        new_pred = new_pred + shortfall
    return WhatIf(
        series=bundle.series,
        starts=np.array([w.start for w in hypothetical]),
        base=base_pred,
        hypothetical=new_pred,
    )


MAX_SCALE = 1e6
"""The largest scale factor a what-if takes (beyond, estimates overflow to no number)."""


def scaled_traffic(
    traffic: Sequence[Mapping[Pair, float]], factor: float
) -> list[dict[Pair, float]]:
    """Every API's calls multiplied by `factor` (3x users)."""
    if not np.isfinite(factor) or factor < 0 or factor > MAX_SCALE:
        raise InputError(
            f"scale factor must be between 0 and {MAX_SCALE:g}, got {factor:g}", field="scale"
        )
    return [{api: n * factor for api, n in counts.items()} for counts in traffic]


GROWTH = 1.25
"""Ratio between the traffic scales tried first, from today's traffic (1) up or down; bisection
then narrows the scale at which each limited series reaches its limit."""
MAX_RATE = 1e9
"""The largest what-if rate of one API, calls per second (far past any application; a larger
number is a typo, and would overflow the models' arithmetic)."""
LOWEST = 1 / 64
GRID_POINTS = 32
"""The most scales `monotone_in_scale` looks at between today's traffic and a far scale."""


def monotone_in_scale(estimates: Callable[[float], np.ndarray]) -> Callable[[float], np.ndarray]:
    """`estimates(k)` (of today's traffic times k, any array shape) made monotone in k: more of
    the same traffic never needs less, and less of it never needs more.

    Above 1, the answer at k is the highest estimate, element by element, of k and of the scales
    between 1 and k, by factors of GROWTH (fewer, at most GRID_POINTS, for very large k); below 1,
    the lowest of k and the scales from 1 down to k. A model can answer less at 2x than today
    where training read a trend that traffic does not explain (a heap that crept up all day
    while load fell) as traffic costing less; the answer is then today's. Estimates are cached
    per scale, so a search over scales asks the model once per scale.
    """
    cache: dict[float, np.ndarray] = {}

    def at(k: float) -> np.ndarray:
        if k not in cache:
            cache[k] = np.asarray(estimates(k), dtype=float)
        return cache[k]

    def ordered(k: float) -> np.ndarray:
        out = at(k)
        if k == 1.0:
            return out
        up = k > 1.0
        # the scales of limit_scales' walk, so a search reuses them
        step = GROWTH if not up or k <= GROWTH**GRID_POINTS else k ** (1 / GRID_POINTS)
        pick = np.maximum if up else np.minimum
        scale = 1.0
        while (scale < k) if up else (scale > max(k, LOWEST)):
            out = pick(out, at(scale))
            scale = scale * step if up else scale / step
        return out

    return ordered


def scale_shortfall(
    bundle: Bundle,
    synthesizer: Synthesizer,
    traffic: Sequence[Mapping[Pair, float]],
    starts: np.ndarray,
    factor: float,
    extra: Sequence[Mapping[CallPath, float]] | None = None,
) -> np.ndarray:
    """[windows, series, 3] what the model's estimate of `traffic` times `factor` (call trees in
    expectation, with `extra` recorded path counts per window scaled alike) lacks to be monotone
    in the scale (see `monotone_in_scale`): zero where more traffic already needs at least as
    much."""
    expected = functools.cache(_estimates_of(bundle, synthesizer, traffic, starts, extra))
    return monotone_in_scale(expected)(factor) - expected(factor)


def split_unseen(
    windows: Sequence[Window], synthesizer: Synthesizer
) -> tuple[list[dict[Pair, float]], list[dict[CallPath, float]]]:
    """Per window, the calls of each API the bundle saw (for the synthesizer to expand), and the
    recorded call paths of the APIs it never saw (kept as they are). Paths of no API (orphans)
    are in neither: the expanded calls hold their work."""
    known = [
        {api: n for api, n in api_counts(w.calls).items() if api in synthesizer.mean}
        for w in windows
    ]
    unseen = [
        {
            p: n
            for p, n in w.calls.items()
            if (api := api_of(p)) is not None and api not in synthesizer.mean
        }
        for w in windows
    ]
    return known, unseen


def recorded_at_scale(
    windows: Sequence[Window], synthesizer: Synthesizer, factor: float
) -> list[Window]:
    """Recorded windows at `factor` times their traffic, read as every what-if reads recorded
    traffic (`split_unseen`): the calls of each API the bundle saw expanded by the synthesizer
    into the call paths training showed (a recording of sampled traces, or of gateway spans
    only, reads as the whole traces behind its API calls), and the recorded paths of APIs it
    never saw kept, times `factor`."""
    known, unseen = split_unseen(windows, synthesizer)
    out = []
    for window, counts in zip(windows, scaled_traffic(known, factor), strict=True):
        [expanded] = synthesizer.windows([counts], [window.start], window.end - window.start)
        out.append(expanded)
    add_paths(out, unseen, factor)
    return out


def add_paths(
    windows: Sequence[Window], paths: Sequence[Mapping[CallPath, float]], k: float
) -> None:
    """Add `k` times each window's extra path counts to it."""
    if k <= 0:
        return
    for window, more in zip(windows, paths, strict=True):
        for path, n in more.items():
            window.calls[path] = window.calls.get(path, 0.0) + k * n


def _estimates_of(
    bundle: Bundle,
    synthesizer: Synthesizer,
    traffic: Sequence[Mapping[Pair, float]],
    starts: np.ndarray,
    extra: Sequence[Mapping[CallPath, float]] | None = None,
) -> Callable[[float], np.ndarray]:
    """k -> [windows, series, 3] the model's estimates (its own band) of `traffic` times k, as
    call trees in expectation, plus k times the `extra` path counts of each window (the recorded
    paths of APIs the synthesizer never saw)."""

    def estimates(k: float) -> np.ndarray:
        windows = synthesizer.windows(scaled_traffic(traffic, k), starts, bundle.window_seconds)
        if extra is not None:
            add_paths(windows, extra, k)
        return steady_estimates(bundle, bundle.vocabulary.counts(windows))

    return estimates


REFINE = 7
"""Bisection steps inside a GROWTH bracket: the answer is within GROWTH ** (1 / 2**7), 0.2%."""
CEILING = 100.0
"""Largest traffic scale searched; a limit not reached by then is reported as not reached."""


def search_ceiling(scale: float | None) -> float:
    """How far a limit search goes: CEILING times the traffic, or 1.25 times the scale asked
    where that is more, so that a limit the asked traffic breaks has its answer."""
    return CEILING if scale is None else max(CEILING, scale * GROWTH)


class Allowed(NamedTuple):
    """How many times the traffic a limit allows: until the upper band's peak reaches it (the
    safe answer) and until the median's peak does (the expected one)."""

    upper: float
    median: float


def peaks(pred: np.ndarray) -> np.ndarray:
    """[series, 2] the highest upper band and the highest median of [windows, series, 3]."""
    return np.asarray(pred.max(axis=0)[:, [2, 1]], dtype=float)


def limit_scales(
    levels: Callable[[float], np.ndarray], bound: np.ndarray, ceiling: float = CEILING
) -> np.ndarray:
    """Per limit: the largest traffic scale at which `levels(scale)` (a peak estimate of each
    limited series, [limits]) stays at or under `bound`, on the stretch of scales that holds
    today's traffic (scale 1); 0 where it is over even at LOWEST, inf where `ceiling` does not
    reach it.

    A series under its limit at scale 1 is searched upward from there by GROWTH until it is over
    (or the ceiling); one over it at scale 1, downward until it is under (or LOWEST). Each
    series' bracket is then bisected; series that share a bracket share the estimates. Starting
    from today's traffic, a band that only widens far below any traffic seen in training (where
    the model extrapolates) cannot hide the answer above it.
    """
    bound = np.asarray(bound, dtype=float)
    over = levels(1.0) > bound
    below = np.where(over, 0.0, 1.0)  # the largest scale tried under the limit
    above = np.where(over, 1.0, np.inf)  # the smallest scale tried over it
    factor = 1.0
    while factor < ceiling and (~over & np.isinf(above)).any():
        previous, factor = factor, min(factor * GROWTH, ceiling)
        crossed = (levels(factor) > bound) & ~over & np.isinf(above)
        above[crossed], below[crossed] = factor, previous
    factor, pending = 1.0, over.copy()
    while factor > LOWEST and pending.any():
        previous, factor = factor, max(factor / GROWTH, LOWEST)
        under = (levels(factor) <= bound) & pending
        below[under], above[under] = factor, previous
        pending &= ~under
    todo = np.flatnonzero(np.isfinite(above) & (below > 0))
    for _ in range(REFINE):
        middle = np.sqrt(below[todo] * above[todo])
        for m in np.unique(middle):
            at = todo[middle == m]
            crossed = levels(float(m))[at] > bound[at]
            above[at[crossed]] = m
            below[at[~crossed]] = m
    return np.where(np.isfinite(above), below, np.inf)


def allowed_scales(
    levels: Callable[[float], np.ndarray], bound: np.ndarray, ceiling: float = CEILING
) -> list[Allowed]:
    """Per limit, both answers of one search: `levels(scale)` gives [limits, 2] peaks (upper
    band, median; see `peaks`) and `bound` the limits."""
    bound = np.asarray(bound, dtype=float)
    found = limit_scales(
        lambda k: levels(k).T.ravel(), np.concatenate([bound, bound]), ceiling
    ).reshape(2, len(bound))
    return [Allowed(float(upper), float(median)) for upper, median in found.T]


def max_scales(
    bundle: Bundle,
    synthesizer: Synthesizer,
    traffic: Sequence[Mapping[Pair, float]],
    starts: np.ndarray,
    limits: Mapping[tuple[str, str], float],
    ceiling: float = CEILING,
    extra: Sequence[Mapping[CallPath, float]] | None = None,
    progress: Callable[[float], None] | None = None,
) -> dict[tuple[str, str], Allowed]:
    """Per limited series: the largest multiple of `traffic` (all APIs scaled together, the
    `extra` recorded path counts of each window too) at which its upper band, and its median,
    stay at or under its limit in every window (one search for both, see `limit_scales`).
    Traffic becomes call paths in expectation (the synthesizer's mean call trees), so the answer
    is deterministic. `progress`, where given, is called with each scale as it is estimated.
    """
    index = {key: j for j, key in enumerate(bundle.series)}
    unknown = [key for key in limits if key not in index]
    if unknown:
        component, resource = unknown[0]
        resources = sorted(r for c, r in bundle.series if c == component)
        known = (  # the component's resources where it has some, else the components
            f"of {component}, it estimates {', '.join(resources)}"
            if resources
            else "it has " + ", ".join(sorted({c for c, _ in bundle.series}))
        )
        raise InputError(
            f"the model estimates no series {component}/{resource}; {known}",
            field=f"limits.{component}.{resource}",
        )
    keys = list(limits)
    columns = np.array([index[k] for k in keys], dtype=int)
    bound = np.array([limits[k] for k in keys], dtype=float)
    bad = [k for k, b in zip(keys, bound, strict=True) if not (np.isfinite(b) and b > 0)]
    if bad:
        component, resource = bad[0]
        raise InputError(
            f"expected a positive number, got {limits[bad[0]]!r}",
            field=f"limits.{component}.{resource}",
        )

    estimates = _estimates_of(bundle, synthesizer, traffic, starts, extra)

    def limited(k: float) -> np.ndarray:
        if progress is not None:
            progress(k)
        return estimates(k)[:, columns]

    ordered = monotone_in_scale(limited)
    return dict(zip(keys, allowed_scales(lambda k: peaks(ordered(k)), bound, ceiling), strict=True))

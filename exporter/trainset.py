"""Training windows from the exporter's store joined with actual usage from Prometheus."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping

import numpy as np

from estimator.errors import DataWarning, InputError, count_of, first_few
from estimator.windows import SeriesKey, Window
from exporter.config import Config
from exporter.prom import PrometheusClient, UsageQueries
from exporter.store import existing_store

SHORT_BY = 2
"""Samples a series may lack in a window's range, against its usual count, before its usage
there is unknown: Prometheus extrapolates a rate across one missed scrape at the range's edge,
not across two (the range then reads part of the usage, too low)."""
CONTEXT_RANGES = 30
"""Ranges before the first window and after the last whose sample counts are read too: a series
with samples on both sides of a window had a gap in it, not its start or end."""


def _resources(config: Config, windows: Iterable[Window]) -> list[str]:
    seen = {r for w in windows for _, r in w.metrics}
    return sorted(seen | set(config.prometheus.queries))


def collect_training_windows(config: Config, start: float, end: float) -> list[Window]:
    """Stored windows starting in [start, end), with usage per resource from query_range.

    Usage is evaluated at each window's end; values Prometheus lacks stay as the store has them
    (unknown, never zero). A window whose range lacks samples of a series that has samples
    before and after it (a scrape outage began or ended in it) reads part of the usage: that
    component's usage there is unknown, with a warning.
    """
    store = existing_store(config.data_dir, "data_dir")
    try:
        windows = store.range(start, end)
    finally:
        store.close()
    if not windows:
        raise InputError(
            f"no stored windows between {start:.0f} and {end:.0f} in {config.data_dir}",
            field="--from",
        )
    if not config.prometheus.url:
        return windows
    step = windows[0].end - windows[0].start
    queries = UsageQueries(config.prometheus, step)
    client = PrometheusClient(config.prometheus)
    by_end = {round(w.end / step): w for w in windows}
    left: dict[SeriesKey, int] = {}  # windows whose usage of a series is left out
    emptied: set[int] = set()
    for resource in _resources(config, windows):
        expr = queries.usage(resource)
        if expr is None:
            continue
        for (index, component), value in _usage(client, queries, expr, by_end).items():
            by_end[index].metrics[(component, resource)] = value
        for index, component in _short_reads(client, queries, resource, by_end):
            if by_end[index].metrics.pop((component, resource), None) is not None:
                left[(component, resource)] = left.get((component, resource), 0) + 1
                emptied.add(index)
    if left:
        _warn_left_out(left, len(emptied), queries)
    return windows


def _usage(
    client: PrometheusClient, queries: UsageQueries, expr: str, by_end: Mapping[int, Window]
) -> dict[tuple[int, str], float]:
    """Usage per (window index, component) of the windows `by_end` indexes."""
    step = queries.window
    first, last = min(by_end) * step, max(by_end) * step
    # Several series can name one component (pods mapped by `component_regex`, containers
    # renamed to one name): its usage is their sum, as the live exporter reads it.
    sums: dict[tuple[int, str], float] = {}
    for labels, values in client.query_range(expr, first, last, step):
        component = queries.component(labels)
        if not component:
            continue
        for t, value in values:
            key = (round(t / step), component)
            if key[0] in by_end and math.isfinite(value):
                sums[key] = sums.get(key, 0.0) + value
    return sums


def _short_reads(
    client: PrometheusClient, queries: UsageQueries, resource: str, by_end: Mapping[int, Window]
) -> set[tuple[int, str]]:
    """(window index, component) of the windows `by_end` indexes whose usage of `resource` was
    read from too few samples of one of the component's series (`short_windows`)."""
    step = queries.window
    apart = max(1, math.ceil(queries.range_seconds / step - 1e-9))
    pad = CONTEXT_RANGES * apart * step
    first, last = min(by_end) * step, max(by_end) * step
    short: set[tuple[int, str]] = set()
    for expr in queries.sample_counts(resource):
        for labels, values in client.query_range(expr, first - pad, last + pad, step):
            component = queries.component(labels)
            if component:
                counts = {round(t / step): n for t, n in values}
                short.update((k, component) for k in short_windows(counts, apart) if k in by_end)
    return short


def short_windows(counts: Mapping[int, float], apart: int) -> set[int]:
    """Windows (indexes) where one series has SHORT_BY or more samples fewer in the range than
    it usually has, while it has samples in windows `apart` or more before and after (whose
    ranges do not overlap this one's): a gap in its scrapes, not its start or end (a pod
    created, replaced or removed, whose rates add up with its replacement's).

    Its usual count is its median over those windows, and a window short of it is a gap only
    where some later window is back above that: a scrape interval changed for good (15 s to
    30 s) halves the count from then on, and is no gap."""
    present = sorted(k for k, n in counts.items() if n > 0)
    if not present:
        return set()
    first, last = present[0], present[-1]
    inside = np.arange(first + apart, last - apart + 1)
    known = np.array([counts.get(k, 0.0) for k in range(first, last + 1)], dtype=float)
    whole = known[inside - first]
    if not (whole > 0).any():
        return set()
    usual = float(np.median(whole[whole > 0]))  # not its start or end
    later = np.append(np.maximum.accumulate(known[::-1])[::-1][1:], 0.0)  # most samples after
    short = (whole <= usual - SHORT_BY) & (later[inside - first] > usual - SHORT_BY)
    return {int(k) for k in inside[short]}


def _warn_left_out(left: Mapping[SeriesKey, int], windows: int, queries: UsageQueries) -> None:
    """One warning: in how many windows usage is left out, of which series, and why."""
    named = [f"{c}/{r} in {count_of(n, 'window')}" for (c, r), n in sorted(left.items())]
    warnings.warn(
        DataWarning(
            f"usage of {count_of(windows, 'window')} left out as unknown ({first_few(named)}): "
            f"Prometheus lacks {SHORT_BY} or more scrapes of these series in those windows' "
            f"{queries.range_seconds:g}s ranges, at the edges of a scrape outage (a target or "
            "Prometheus down), so a rate or average over them read part of the usage, too low; "
            "training takes it as unknown, not as low usage"
        ),
        stacklevel=2,
    )

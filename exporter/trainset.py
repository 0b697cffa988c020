"""Training windows from the exporter's store joined with actual usage from Prometheus."""

from __future__ import annotations

import math
from collections.abc import Iterable

from estimator.errors import InputError
from estimator.windows import Window
from exporter.config import Config
from exporter.prom import PrometheusClient, UsageQueries
from exporter.store import existing_store


def _resources(config: Config, windows: Iterable[Window]) -> list[str]:
    seen = {r for w in windows for _, r in w.metrics}
    return sorted(seen | set(config.prometheus.queries))


def collect_training_windows(config: Config, start: float, end: float) -> list[Window]:
    """Stored windows starting in [start, end), with usage per resource from query_range.

    Usage is evaluated at each window's end; values Prometheus lacks stay as the store has them
    (unknown, never zero).
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
    first, last = windows[0].end, windows[-1].end
    for resource in _resources(config, windows):
        expr = queries.usage(resource)
        if expr is None:
            continue
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
        for (index, component), value in sums.items():
            by_end[index].metrics[(component, resource)] = value
    return windows

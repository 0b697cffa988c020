"""prometheus_client custom collector: the series of contract 3 from the latest snapshot only."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from estimator.windows import Pair, SeriesKey
from exporter.live import Snapshot
from exporter.receiver import REASONS, REQUEST_REASONS, ReceiverStats

_SERIES = ["component", "resource"]


def _per_series(name: str, help_text: str, values: Mapping[SeriesKey, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text, labels=_SERIES)
    for (component, resource), value in sorted(values.items()):
        family.add_metric([component, resource], value)
    return family


def _single(name: str, help_text: str, value: float | None) -> GaugeMetricFamily:
    """A gauge without labels, and without a sample where `value` is None (not known yet)."""
    family = GaugeMetricFamily(name, help_text)
    if value is not None:
        family.add_metric([], value)
    return family


def _by_reason(
    name: str, help_text: str, known: Sequence[str], counts: Mapping[str, int]
) -> CounterMetricFamily:
    """A counter per reason: every known one (0 until it happens) and any other counted."""
    family = CounterMetricFamily(name, help_text, labels=["reason"])
    for reason in sorted(set(known) | set(counts)):
        family.add_metric([reason], counts.get(reason, 0))
    return family


class DeepRestCollector(Collector):
    """Yields gauges and counters from the latest Snapshot; never trains, queries or blocks."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        stats: ReceiverStats,
        api_calls: Callable[[], Mapping[Pair, float]],
        assembled: Callable[[], Mapping[str, int]] = dict,
        split_traces: Callable[[], int] = lambda: 0,
    ) -> None:
        self._snapshot = snapshot
        self._stats = stats
        self._api_calls = api_calls
        self._assembled = assembled
        self._split_traces = split_traces

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        yield from self._estimates(snap)
        yield from self._model(snap)
        calls = CounterMetricFamily(
            "deeprest_api_calls", "Root API calls seen in traces.", labels=["api"]
        )
        for (component, operation), n in sorted(self._api_calls().items()):
            calls.add_metric([f"{component}:{operation}"], n)
        yield calls
        received, rejected = self._stats.read()
        for reason, n in self._assembled().items():
            rejected[reason] = rejected.get(reason, 0) + n
        yield CounterMetricFamily(
            "deeprest_otlp_spans_received", "Spans received on the OTLP receiver.", value=received
        )
        yield _by_reason(
            "deeprest_otlp_spans_rejected",
            "Spans the OTLP receiver could not use, by reason.",
            REASONS,
            rejected,
        )
        yield CounterMetricFamily(
            "deeprest_otlp_traces_split",
            "Traces whose spans kept arriving after the trace closed (a request longer than "
            "trace_grace, or an export later than it): counted as two trees.",
            value=self._split_traces(),
        )
        yield _by_reason(
            "deeprest_otlp_requests_rejected",
            "OTLP requests refused as a whole (4xx or 503), by reason.",
            REQUEST_REASONS,
            self._stats.read_refused(),
        )
        yield CounterMetricFamily(
            "deeprest_http_connections_refused",
            "Connections answered 503 at once because receiver.max_connections were open.",
            value=self._stats.connections_refused,
        )

    def _estimates(self, snap: Snapshot) -> Iterator[Metric]:
        expected = snap.expected
        yield from (
            _per_series(name, text, {k: v[i] for k, v in expected.items()})
            for name, text, i in (
                ("deeprest_expected_usage", "Median expected usage for the last window's traffic, base units.", 1),
                ("deeprest_expected_usage_lower", "Lower end (5% quantile) of the expected usage band, base units.", 0),
                ("deeprest_expected_usage_upper", "Upper end (95% quantile) of the expected usage band, base units.", 2),
            )
        )  # fmt: skip
        if snap.observed is not None:
            yield _per_series(
                "deeprest_observed_usage",
                "Actual usage of the same window from Prometheus, base units.",
                snap.observed,
            )
        if snap.anomaly is not None:
            yield _per_series(
                "deeprest_anomaly_score",
                "0 inside the expected band; smoothed relative distance outside it, above or below.",
                snap.anomaly,
            )
        headroom = {
            key: 1.0 - expected[key][2] / limit
            for key, limit in snap.limits.items()
            if key in expected and limit > 0
        }
        yield _per_series(
            "deeprest_capacity_headroom_ratio",
            "1 - upper expected usage / limit, where a limit is known.",
            headroom,
        )
        yield _single(
            "deeprest_last_estimate_timestamp_seconds",
            "End of the newest window estimated, Unix seconds.",
            snap.window_end,
        )
        yield _single(
            "deeprest_unknown_api_calls_ratio",
            "Share of the last window's API calls of APIs the model never saw (a guess for them).",
            snap.unknown_share,
        )
        yield _single(  # absent until the upstream was first asked
            "deeprest_up",
            "1 when the upstream Prometheus answered the last query, else 0.",
            None if snap.up is None else float(snap.up),
        )

    def _model(self, snap: Snapshot) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "deeprest_model_info", "1; which model bundle is serving.", labels=["model", "version"]
        )
        accuracy: Mapping[SeriesKey, float] = {}
        if snap.model is not None:
            info.add_metric([snap.model.kind, snap.model.version], 1.0)
            accuracy = snap.model.accuracy
        yield info
        yield _per_series(
            "deeprest_model_accuracy_ratio",
            "Accuracy (1 - WAPE) on the bundle's validation windows.",
            accuracy,
        )


def make_registry(collector: DeepRestCollector) -> CollectorRegistry:
    """A fresh registry holding this collector and the process metrics (nothing on the default
    REGISTRY)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    # process_start_time_seconds and the rest: DeepRestModelStale counts from the start where
    # nothing was estimated yet
    ProcessCollector(registry=registry)
    return registry

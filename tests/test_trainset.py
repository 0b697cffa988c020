"""Training windows joined with usage from Prometheus: several series of one component."""

from __future__ import annotations

from pathlib import Path

import pytest

from estimator.windows import Window
from exporter import trainset
from exporter.config import Config, PrometheusConfig
from exporter.store import WindowStore

PODS = {
    # three replicas of one deployment, mapped to one component by component_regex
    "user-service-7d9f8c5b4-abcde": 0.1,
    "user-service-7d9f8c5b4-fghij": 0.1,
    "user-service-7d9f8c5b4-klmno": 0.1,
    "order-service-5c6d7f8b9-aaaaa": 0.2,
}


class _Prometheus:
    """query_range as Prometheus answers `sum by (pod) (...)`: one series per pod."""

    def __init__(self, config: PrometheusConfig) -> None:
        self.config = config

    def query_range(self, expr: str, start: float, end: float, step: float) -> list:
        if "cpu" not in expr:
            return []
        times = []
        t = start
        while t <= end:
            times.append((t, 0.0))
            t += step
        return [({"pod": pod}, [(t, value) for t, _ in times]) for pod, value in PODS.items()]


def test_replicas_of_a_component_are_summed(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    store = WindowStore(tmp_path)
    store.put(
        [
            Window(start=s, end=s + 10.0, calls={(("user-service", "getUser"),): 5.0})
            for s in (1000.0, 1010.0, 1020.0)
        ]
    )
    store.close()
    monkeypatch.setattr(trainset, "PrometheusClient", _Prometheus)
    config = Config(
        data_dir=tmp_path,
        prometheus=PrometheusConfig(
            url="http://127.0.0.1:1",
            component_label="pod",
            component_regex=r"(.+)-[0-9a-f]{8,10}-[a-z0-9]{5}",
        ),
    )
    windows = trainset.collect_training_windows(config, 1000.0, 1030.0)
    assert len(windows) == 3
    for window in windows:
        assert window.metrics[("user-service", "cpu")] == pytest.approx(0.3)
        assert window.metrics[("order-service", "cpu")] == pytest.approx(0.2)


def test_short_windows_are_gaps_in_a_series_not_its_start_or_end() -> None:
    """Sample counts per window of one series (4 a window when whole): windows 5 and 6 lost
    scrapes to an outage; window 0 is the series' start (a new pod), window 11 its end (a pod
    replaced), window 2 lost one scrape, across which a rate extrapolates."""
    counts = {k: 4.0 for k in range(12)}
    counts.update({0: 1.0, 2: 3.0, 5: 2.0, 6: 0.0, 11: 1.0})
    assert trainset.short_windows(counts, apart=1) == {5, 6}
    # ranges of 3 windows (rate_range): an outage in window 9 shows in the ranges of 9 to 11
    counts = {k: 12.0 for k in range(20)} | {9: 8.0, 10: 8.0, 11: 8.0}
    assert trainset.short_windows(counts, apart=3) == {9, 10, 11}
    assert trainset.short_windows({}, apart=1) == set()


def test_a_scrape_interval_changed_for_good_is_no_gap() -> None:
    """15 s scrapes (4 a window), then 30 s ones (2 a window): every window after the change
    reads whole usage; an outage's edge still shows against the count of most windows, and the
    edge before an outage that lasts longer than the windows around it too."""
    counts = {k: 4.0 if k < 60 else 2.0 for k in range(100)}
    assert trainset.short_windows(counts, apart=1) == set()
    counts = {k: 4.0 if k < 40 else 2.0 for k in range(100)} | {80: 0.0}
    assert trainset.short_windows(counts, apart=1) == {80}
    long_outage = {k: 4.0 for k in range(40)} | {40: 2.0} | {k: 4.0 for k in range(120, 160)}
    short = trainset.short_windows(long_outage, apart=1)
    assert {k for k in short if long_outage.get(k, 0) > 0} == {40}  # the rest read nothing

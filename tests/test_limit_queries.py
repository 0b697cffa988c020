"""The default limit queries against a real Prometheus: a component's replicas add up."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from exporter.config import PrometheusConfig
from exporter.prom import PrometheusClient, UsageQueries, fetch_usage
from infra.local.exposition import ExpositionServer
from tests.servers import (
    NEEDS_PROMETHEUS,
    PrometheusHandle,
    scrape_config,
    start_prometheus,
    wait_until,
)

pytestmark = [
    pytest.mark.integration,
    NEEDS_PROMETHEUS,
]

# (pod, container, cpu quota, memory limit): three replicas of "api" at 0.5 core and 256 MiB
# each, one of "db" at 2 cores, with the pause container and pod-level cgroup cAdvisor exposes.
CONTAINERS = [
    ("api-7d9f8c5b4-abcde", "api", 50000, 256 << 20),
    ("api-7d9f8c5b4-fghij", "api", 50000, 256 << 20),
    ("api-7d9f8c5b4-klmno", "api", 50000, 256 << 20),
    ("db-5c6d7f8b9-aaaaa", "db", 200000, 1 << 30),
]


def _exposition() -> str:
    lines = []
    for pod, container, quota, memory in CONTAINERS:
        for name, q, m in ((container, quota, memory), ("", quota, memory + (1 << 20))):
            labels = f'namespace="shop",pod="{pod}",container="{name}"'
            lines.append(f"container_spec_cpu_quota{{{labels}}} {q}")
            lines.append(f"container_spec_cpu_period{{{labels}}} 100000")
            lines.append(f"container_spec_memory_limit_bytes{{{labels}}} {m}")
        pause = f'namespace="shop",pod="{pod}",container="POD"'
        lines.append(f"container_spec_cpu_period{{{pause}}} 100000")
        lines.append(f"container_spec_memory_limit_bytes{{{pause}}} 0")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def prometheus() -> Iterator[PrometheusHandle]:
    target = ExpositionServer(_exposition)
    handle = start_prometheus(scrape_config({"cadvisor": target.address}))
    try:
        wait_until(lambda: handle.query("container_spec_cpu_quota"), 15, what="a scrape")
        yield handle
    finally:
        handle.stop()
        target.stop()


@pytest.mark.parametrize(
    ("label", "regex"), [("container", None), ("pod", r"(.+)-[0-9a-f]{8,10}-[a-z0-9]{5}")]
)
def test_limits_of_replicas_add_up(prometheus: PrometheusHandle, label: str, regex: str) -> None:
    config = PrometheusConfig(url=prometheus.url, component_label=label, component_regex=regex)
    queries = UsageQueries(config, 10.0)
    series = [(c, r) for c in ("api", "db") for r in ("cpu", "memory")]
    limits = fetch_usage(PrometheusClient(config), queries, series, time.time(), limits=True)
    assert limits[("api", "cpu")] == pytest.approx(1.5)  # 3 x 0.5 core, not one replica's
    assert limits[("db", "cpu")] == pytest.approx(2.0)
    assert limits[("api", "memory")] == pytest.approx(3 * (256 << 20))
    assert limits[("db", "memory")] == pytest.approx(1 << 30)

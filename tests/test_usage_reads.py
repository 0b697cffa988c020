"""What the default usage queries read from a real Prometheus while pods come and go: a pod
replaced within a window counts once, replicas running side by side add up."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter.config import PrometheusConfig
from exporter.prom import PrometheusClient, UsageQueries, fetch_usage
from tests.servers import (
    PROMETHEUS,
    CadvisorTarget,
    PrometheusHandle,
    scrape_config,
    start_prometheus,
    wait_until,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path(PROMETHEUS).exists(), reason="prometheus binary not installed"),
]

MEMORY = "container_memory_working_set_bytes"
MIB = 1 << 20
WINDOW = 4.0
SCRAPE = 0.5
DEPLOYMENT_PODS = r"(.+)-[0-9a-f]{8,10}-[a-z0-9]{5}"
OLD, NEW = "api-7d9f8c5b4-aaaaa", "api-7d9f8c5b4-ccccc"
REPLICAS = ("web-5c6d7f8b9-aaaaa", "web-5c6d7f8b9-bbbbb")


@dataclass
class World:
    prometheus: PrometheusHandle
    pods: CadvisorTarget  # pods named as Deployments name them, with their container's name


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    pods = CadvisorTarget(label="pod")
    pods.set_gauge(MEMORY, OLD, 100 * MIB, {"container": "api"})
    for pod in REPLICAS:
        pods.set_gauge(MEMORY, pod, 50 * MIB, {"container": "web"})
    prometheus = start_prometheus(
        scrape_config({"pods": pods.address}, interval=f"{SCRAPE * 1000:g}ms")
    )
    try:
        yield World(prometheus, pods)
    finally:
        prometheus.stop()
        pods.stop()


def test_a_replaced_pod_counts_once_and_replicas_side_by_side_add_up(world: World) -> None:
    """A rolling update within the window: the old pod's samples and its replacement's both lie
    in the window's range, but the component held one pod's memory, not two."""
    prometheus = world.prometheus
    wait_until(
        lambda: prometheus.query(f'count_over_time({MEMORY}{{pod="{OLD}"}}[{WINDOW:g}s]) > 2'),
        20,
        what="the old pod's samples",
    )
    world.pods.remove(MEMORY, OLD, {"container": "api"})
    world.pods.set_gauge(MEMORY, NEW, 100 * MIB, {"container": "api"})
    wait_until(
        lambda: (
            not prometheus.query(f'{MEMORY}{{pod="{OLD}"}}')
            and prometheus.query(f'count_over_time({MEMORY}{{pod="{NEW}"}}[{WINDOW:g}s]) > 1')
        ),
        10,
        what="the replacement's samples",
    )
    at = time.time()
    both = f'count(count_over_time({MEMORY}{{pod=~"api-.*"}}[{WINDOW:g}s] @ {at:.3f}))'
    assert [r["value"][1] for r in prometheus.query(both)] == ["2"]  # both pods in the range
    series = [("api", "memory"), ("web", "memory")]
    for label, regex in (("pod", DEPLOYMENT_PODS), ("container", None)):
        config = PrometheusConfig(url=prometheus.url, component_label=label, component_regex=regex)
        found = fetch_usage(PrometheusClient(config), UsageQueries(config, WINDOW), series, at)
        assert found == {
            ("api", "memory"): pytest.approx(100 * MIB),
            ("web", "memory"): pytest.approx(100 * MIB),
        }, label

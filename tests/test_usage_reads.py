"""What the default usage queries read from a real Prometheus while pods come and go and scrapes
fail: a pod replaced within a window counts once, replicas running side by side add up, and a
window whose range lost scrapes to an outage trains as unknown usage, not as a low reading."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from estimator.errors import DataWarning
from estimator.windows import Window
from exporter.config import Config, PrometheusConfig
from exporter.prom import PrometheusClient, UsageQueries, fetch_usage
from exporter.store import WindowStore
from exporter.trainset import collect_training_windows
from tests.servers import (
    NEEDS_PROMETHEUS,
    CadvisorTarget,
    PrometheusHandle,
    scrape_config,
    start_prometheus,
    wait_until,
)

pytestmark = [
    pytest.mark.integration,
    NEEDS_PROMETHEUS,
]

MEMORY = "container_memory_working_set_bytes"
CPU = "container_cpu_usage_seconds_total"
MIB = 1 << 20
WINDOW = 4.0
SCRAPE = 0.25
DEPLOYMENT_PODS = r"(.+)-[0-9a-f]{8,10}-[a-z0-9]{5}"
OLD, NEW = "api-7d9f8c5b4-aaaaa", "api-7d9f8c5b4-ccccc"
REPLICAS = ("web-5c6d7f8b9-aaaaa", "web-5c6d7f8b9-bbbbb")
DB = "db-6b7c8d9e0-aaaaa"


@dataclass
class World:
    prometheus: PrometheusHandle
    pods: CadvisorTarget  # pods named as Deployments name them, with their container's name
    flaky: CadvisorTarget  # another node's: its scrapes fail while `down`


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    pods = CadvisorTarget(label="pod")
    pods.set_gauge(MEMORY, OLD, 100 * MIB, {"container": "api"})
    for pod in REPLICAS:
        pods.set_gauge(MEMORY, pod, 50 * MIB, {"container": "web"})
        pods.set_rate(CPU, pod, 0.25, {"container": "web"})
    flaky = CadvisorTarget(label="pod")
    flaky.set_gauge(MEMORY, DB, 64 * MIB, {"container": "db"})
    flaky.set_rate(CPU, DB, 0.5, {"container": "db"})
    prometheus = start_prometheus(
        scrape_config(
            {"pods": pods.address, "flaky": flaky.address}, interval=f"{SCRAPE * 1000:g}ms"
        )
    )
    try:
        yield World(prometheus, pods, flaky)
    finally:
        prometheus.stop()
        pods.stop()
        flaky.stop()


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


def test_windows_at_the_edges_of_a_scrape_outage_train_as_unknown(
    world: World, tmp_path: Path
) -> None:
    """A target's scrapes fail from the middle of one window to the middle of the next: each of
    the two has samples for part of its range only, and a rate over it reads too low. They are
    stored as unknown usage of that target's component, with a warning; the other components,
    and the windows around, keep theirs."""
    width = 1.0
    wait_until(
        lambda: world.prometheus.query(f'count_over_time({CPU}{{pod="{DB}"}}[2s]) > 4'),
        20,
        what="samples of the flaky target",
    )
    edge = math.ceil(time.time() / width) * width  # windows: [edge - 1, edge], ... [edge + 3, ...]
    time.sleep(edge + 0.5 * width - time.time())
    world.flaky.down = True
    time.sleep(edge + 1.75 * width - time.time())
    world.flaky.down = False
    starts = [edge + k * width for k in range(-1, 4)]
    time.sleep(starts[-1] + width + 2 * SCRAPE - time.time())
    store = WindowStore(tmp_path)
    store.put([Window(s, s + width, calls={(("db", "query"),): 5.0}) for s in starts])
    store.close()
    config = Config(
        data_dir=tmp_path,
        prometheus=PrometheusConfig(
            url=world.prometheus.url, component_label="pod", component_regex=DEPLOYMENT_PODS
        ),
    )
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always", DataWarning)
        windows = collect_training_windows(config, starts[0], starts[-1] + width)
    usage = [{k: v for k, v in w.metrics.items() if k[0] in ("db", "web")} for w in windows]
    for read in (usage[0], usage[-1]):  # before and after the outage: whole
        assert read[("db", "cpu")] == pytest.approx(0.5, rel=0.05)
        assert read[("db", "memory")] == pytest.approx(64 * MIB)
    for read in usage[1:3]:  # the outage's edges: unknown, the other target's usage kept
        assert ("db", "cpu") not in read and ("db", "memory") not in read, read
        assert read[("web", "cpu")] == pytest.approx(0.5, rel=0.05)
        assert read[("web", "memory")] == pytest.approx(100 * MIB)
    messages = [str(w.message) for w in said if issubclass(w.category, DataWarning)]
    assert len(messages) == 1, messages
    assert "usage of 2 windows left out" in messages[0], messages[0]
    assert "db/cpu" in messages[0] and "scrape" in messages[0], messages[0]

"""The example Alertmanager configuration, run by a real Alertmanager, with two exporters.

One Prometheus may scrape the exporters of two applications, as two jobs or as one job with two
targets, each application with components of the same names. Alerts are posted straight to
Alertmanager's API, as Prometheus sends them, and the test reads back what it inhibits.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.servers import wait_until
from tests.test_alerting_e2e import ALERTMANAGER, _start_alertmanager, _stop

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(ALERTMANAGER is None, reason="prometheus-alertmanager not installed"),
]

CPU = "DeepRestCPUNotExplainedByTraffic"


@pytest.fixture()
def alertmanager() -> Iterator[str]:
    """URL of a real Alertmanager running the shipped example configuration."""
    directory = Path(tempfile.mkdtemp(prefix="deeprest-am-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        process, url = _start_alertmanager(directory)
        yield url
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(directory, ignore_errors=True)


def _post(url: str, *alerts: dict[str, str]) -> None:
    body = [{"labels": labels, "annotations": {}} for labels in alerts]
    requests.post(f"{url}/api/v2/alerts", json=body, timeout=5).raise_for_status()


def _states(url: str) -> dict[tuple[str, str], str]:
    """(alertname, instance) -> active or suppressed, of every alert Alertmanager holds."""
    alerts = requests.get(f"{url}/api/v2/alerts", timeout=5).json()
    return {
        (a["labels"]["alertname"], a["labels"].get("instance", "")): a["status"]["state"]
        for a in alerts
    }


def _settle(url: str, expected: dict[tuple[str, str], str]) -> None:
    """Wait up to 15 s for Alertmanager to hold `expected`, then compare, showing the difference."""
    with contextlib.suppress(AssertionError):
        wait_until(lambda: _states(url) == expected, 15, 0.2, "alert states")
    assert _states(url) == expected


def test_traces_stopped_holds_back_only_the_anomaly_alerts_of_its_own_exporter(
    alertmanager: str,
) -> None:
    # Exporters "a" and "b" of one job, for two applications that both have a redis: a's
    # traces stopped; b reads its traffic, and its CPU alert is a real one.
    redis = {"job": "deeprest", "component": "redis", "resource": "cpu", "severity": "critical"}
    _post(
        alertmanager,
        {"alertname": "DeepRestTracesStopped", "job": "deeprest", "instance": "a"},
        {"alertname": CPU, "instance": "a", **redis},
        {"alertname": CPU, "instance": "b", **redis},
    )
    expected = {
        ("DeepRestTracesStopped", "a"): "active",
        (CPU, "a"): "suppressed",
        (CPU, "b"): "active",
    }
    _settle(alertmanager, expected)


def _groups(url: str) -> list[tuple[dict[str, str], list[str]]]:
    """(group labels, instances of its alerts) of every notification group."""
    groups = requests.get(f"{url}/api/v2/alerts/groups", timeout=5).json()
    return [(g["labels"], sorted(a["labels"]["instance"] for a in g["alerts"])) for g in groups]


def test_the_same_component_of_two_exporters_of_one_job_is_notified_apart(
    alertmanager: str,
) -> None:
    # Both applications have a redis, and a miner in each: two incidents, two notifications.
    redis = {"job": "deeprest", "component": "redis", "resource": "cpu", "severity": "critical"}
    _post(
        alertmanager,
        {"alertname": CPU, "instance": "a", "namespace": "shop", **redis},
        {"alertname": CPU, "instance": "b", "namespace": "blog", **redis},
    )
    wait_until(lambda: sum(len(i) for _, i in _groups(alertmanager)) == 2, 15, 0.2, "2 alerts")
    assert sorted(instances for _, instances in _groups(alertmanager)) == [["a"], ["b"]]


DISK = "DeepRestDiskWritesNotExplainedByTraffic"
MEMORY = "DeepRestMemoryGrowthNotExplainedByTraffic"


def test_one_ransomware_incident_is_one_notification_and_holds_back_memory_growth(
    alertmanager: str,
) -> None:
    # Encryption in one store: its write IOPS and throughput leave their bands (one disk alert
    # each), and its memory grows with it (the CPU alert is held back by its rule while the disk
    # alert fires); one incident, one notification, for the disk writes.
    store = {"job": "deeprest", "instance": "a", "component": "files", "severity": "critical"}
    _post(
        alertmanager,
        {"alertname": DISK, "resource": "write_iops", **store},
        {"alertname": DISK, "resource": "write_throughput", **store},
        {"alertname": MEMORY, "resource": "memory", **store, "severity": "warning"},
    )
    expected = {(DISK, "a"): "active", (MEMORY, "a"): "suppressed"}
    with contextlib.suppress(AssertionError):
        wait_until(lambda: _states(alertmanager) == expected, 15, 0.2, "alert states")
    assert _states(alertmanager) == expected  # both disk alerts share one (alertname, instance)
    disk = [(labels, i) for labels, i in _groups(alertmanager) if labels.get("alertname") == DISK]
    assert len(disk) == 1 and disk[0][1] == ["a", "a"], disk


NO_USAGE = "DeepRestComponentReportsNoUsage"
FAR_BELOW = "DeepRestUsageFarBelowExpected"
ACCURACY = "DeepRestModelAccuracyDegraded"


def test_a_dead_component_is_one_notification_that_says_it_does_no_work(
    alertmanager: str,
) -> None:
    # The process of "post" died while traffic flows: it uses no CPU (far below its band too),
    # and the live accuracy of its series collapses. One incident, notified as the component
    # doing no work; exporter b's post is only far below its band, and is notified so.
    post = {"job": "deeprest", "component": "post", "severity": "warning"}
    _post(
        alertmanager,
        {"alertname": NO_USAGE, "instance": "a", "resource": "cpu", **post},
        {"alertname": FAR_BELOW, "instance": "a", "resource": "cpu", **post},
        {"alertname": ACCURACY, "instance": "a", "resource": "memory", **post},
        {"alertname": FAR_BELOW, "instance": "b", "resource": "cpu", **post},
    )
    expected = {
        (NO_USAGE, "a"): "active",
        (FAR_BELOW, "a"): "suppressed",
        (ACCURACY, "a"): "suppressed",
        (FAR_BELOW, "b"): "active",
    }
    _settle(alertmanager, expected)

"""End to end: exporter -> Prometheus with the shipped rules -> Alertmanager, and every panel.

A real `deeprest serve` receives OTLP spans and reads actual usage, under cAdvisor names, from a
real Prometheus that scrapes both it and a small cAdvisor-like target, and that evaluates the
shipped rules and sends alerts to a real Alertmanager running the shipped example configuration.
After a normal phase, a miner is injected: the CPU of one component triples while its traffic does
not change. The CPU alert must stay quiet before and fire after, reach Alertmanager, and every
dashboard query must return data from the same Prometheus.

Time is compressed: the exporter closes a window every 2 s instead of every minute, so the rules
are loaded through `compress_durations`, which multiplies every `for:` and every range-selector
duration by 2/60 (10m -> 20s, [1h] -> [120s]) and leaves expressions and thresholds untouched.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests

from estimator.bundle import save_bundle
from estimator.training import TrainConfig, train_bundle
from infra.local.demo import compress_durations
from tests import exporter_world
from tests.servers import (
    CadvisorTarget,
    PrometheusHandle,
    free_port,
    start_prometheus,
    wait_until,
)
from tests.test_dashboards import DASHBOARDS, load, panel_exprs, substitute

ROOT = Path(__file__).resolve().parents[1]
RULES = sorted((ROOT / "grafana-dashboards" / "rules").glob("*.yaml"))
AM_EXAMPLE = ROOT / "grafana-dashboards" / "alertmanager" / "alertmanager.example.yml"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
WINDOW = 2.0
SCALE = WINDOW / 60.0
"""Production windows are 1 minute long; the test's are 2 s."""
TRACES_PER_WINDOW = 10
VICTIM = "compose"
CPU_ALERT = "DeepRestCPUNotExplainedByTraffic"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed"),
    pytest.mark.skipif(ALERTMANAGER is None, reason="prometheus-alertmanager not installed"),
]


def test_compress_durations_scales_only_durations() -> None:
    text = "expr: rate(x[5m]) > 0.3\nfor: 10m  # why\nexpr: avg_over_time(y[1h]) > 300\n"
    assert compress_durations(text, SCALE) == (
        "expr: rate(x[10s]) > 0.3\nfor: 20s  # why\nexpr: avg_over_time(y[120s]) > 300\n"
    )


@dataclass
class Stack:
    """The running parts of one end-to-end run."""

    prometheus: PrometheusHandle
    alertmanager_url: str
    exporter_url: str
    cadvisor: CadvisorTarget


def _start_alertmanager(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The real Alertmanager with the shipped example configuration, clustering off."""
    port = free_port()
    log = open(directory / "alertmanager.log", "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [
            str(ALERTMANAGER),
            f"--config.file={AM_EXAMPLE}",
            f"--storage.path={directory / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, (directory / "alertmanager.log").read_text()
        try:
            return requests.get(f"{url}/-/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_until(ready, 20, what="alertmanager to be ready")
    return process, url


def _prometheus_config(exporter: str, cadvisor: str, alertmanager: str) -> str:
    """Scrape the exporter (job deeprest) and the cAdvisor-like target every second."""
    rules = "".join(f"  - {path.name}\n" for path in RULES)
    return (
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n{rules}"
        "alerting:\n  alertmanagers:\n"
        f"    - static_configs:\n        - targets: ['{alertmanager.removeprefix('http://')}']\n"
        "scrape_configs:\n"
        f"  - job_name: deeprest\n    static_configs:\n      - targets: ['{exporter}']\n"
        f"  - job_name: cadvisor\n    static_configs:\n      - targets: ['{cadvisor}']\n"
    )


WRITES = {"write_iops": (2.0, 0.5), "write_throughput": (8192.0, 2048.0)}
"""Disk writes of `store`: a + b * calls per window, so that the disk panels have data too."""
CADVISOR_NAMES = {
    "cpu": "container_cpu_usage_seconds_total",
    "memory": "container_memory_working_set_bytes",
    "write_iops": "container_fs_writes_total",
    "write_throughput": "container_fs_writes_bytes_total",
}


def usage(calls: float) -> dict[tuple[str, str], float]:
    """Noise-free usage of a window of `calls` traces: the exporter world's, plus disk writes."""
    out = exporter_world.truth(calls)
    out.update({("store", r): a + b * calls for r, (a, b) in WRITES.items()})
    return out


def _train(directory: Path) -> None:
    """A linear bundle on the exporter world's windows with disk writes added (seeded)."""
    rng = np.random.default_rng(1)
    windows = exporter_world.world(window=WINDOW)
    for window in windows:
        calls = window.calls[exporter_world.PATHS[0]]
        for (component, resource), value in usage(calls).items():
            if resource in WRITES:
                window.metrics[(component, resource)] = value * (1 + 0.02 * rng.standard_normal())
    save_bundle(train_bundle(windows, TrainConfig(model="linear")), directory)


def _set_usage(cadvisor: CadvisorTarget, cpu_factor: float) -> None:
    """Actual usage of the traffic the test sends; the victim's CPU times `cpu_factor`."""
    for (component, resource), value in usage(TRACES_PER_WINDOW).items():
        if resource == "memory":
            cadvisor.set_gauge(CADVISOR_NAMES[resource], component, value)
        else:
            factor = cpu_factor if (component, resource) == (VICTIM, "cpu") else 1.0
            cadvisor.set_rate(CADVISOR_NAMES[resource], component, value * factor)


def _start_exporter(directory: Path, port: int, prometheus_url: str) -> subprocess.Popen[bytes]:
    """`deeprest serve` with a freshly trained bundle, 2 s windows and known limits."""
    model = directory / "model"
    _train(model)
    config = directory / "deeprest.yaml"
    config.write_text(
        "prometheus:\n  rate_range: 4s\n"
        "limits:\n  front: {cpu: 1}\n  compose: {cpu: 1}\n  store: {cpu: 1, memory: 400000000}\n"
    )
    log = open(directory / "exporter.log", "wb")  # noqa: SIM115 - closed with the process
    command = [sys.executable, "-m", "exporter.cli", "serve", "--config", str(config)]
    command += ["--model", str(model), "--port", str(port), "--host", "127.0.0.1"]
    command += ["--data-dir", str(directory / "data"), "--window", f"{WINDOW:g}s"]
    command += ["--prometheus-url", prometheus_url]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)

    def ready() -> bool:
        assert process.poll() is None, (directory / "exporter.log").read_text()[-3000:]
        try:
            return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    wait_until(ready, 30, what="deeprest serve to be ready")
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture()
def stack() -> Iterator[Stack]:
    """Alertmanager, cAdvisor-like target, Prometheus with compressed rules, exporter."""
    directory = Path(tempfile.mkdtemp(prefix="deeprest-e2e-"))
    for path in RULES:
        (directory / path.name).write_text(compress_durations(path.read_text(), SCALE))
    processes: list[subprocess.Popen[bytes]] = []
    cadvisor = CadvisorTarget()
    prometheus: PrometheusHandle | None = None
    try:
        am, am_url = _start_alertmanager(directory)
        processes.append(am)
        _set_usage(cadvisor, 1.0)
        port = free_port()
        config = _prometheus_config(f"127.0.0.1:{port}", cadvisor.address, am_url)
        prometheus = start_prometheus(config, [directory / p.name for p in RULES])
        processes.append(_start_exporter(directory, port, prometheus.url))
        yield Stack(prometheus, am_url, f"http://127.0.0.1:{port}", cadvisor)
    finally:
        for process in reversed(processes):
            _stop(process)
        if prometheus is not None:
            prometheus.stop()
        cadvisor.stop()
        shutil.rmtree(directory, ignore_errors=True)


class Traffic:
    """Posts OTLP/HTTP protobuf traces (front -> compose -> store) at a steady rate in a thread.

    `per_second` may be changed while it runs; the next trace follows the new rate.
    """

    def __init__(self, exporter_url: str, per_second: float) -> None:
        self.url = f"{exporter_url}/v1/traces"
        self.per_second = per_second
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        session = requests.Session()
        headers = {"Content-Type": "application/x-protobuf"}
        next_at = time.monotonic()
        while not self._stop.is_set():
            request = exporter_world.span_request(1, time.time_ns(), seed=self.sent)
            response = session.post(self.url, data=request.SerializeToString(), headers=headers)
            assert response.status_code == 200, response.text
            self.sent += 1
            next_at += 1.0 / self.per_second
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _values(result: list[dict]) -> dict[str, float]:
    """component -> value of an instant query result."""
    return {s["metric"].get("component", ""): float(s["value"][1]) for s in result}


def _normal_phase(prometheus: PrometheusHandle, seconds: float) -> dict[str, float]:
    """The CPU alert is neither pending nor firing while usage matches traffic."""
    excess_query = 'component_resource:deeprest_usage_excess:ratio{resource="cpu"}'
    wait_until(lambda: len(prometheus.query(excess_query)) == 3, 40, 0.5, "cpu excess of 3 series")
    worst: dict[str, float] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert prometheus.query(f'ALERTS{{alertname="{CPU_ALERT}"}}') == []
        for component, value in _values(prometheus.query(excess_query)).items():
            worst[component] = max(worst.get(component, 0.0), value)
        time.sleep(1.0)
    return worst


def _alertmanager_alerts(url: str) -> list[dict]:
    """Active alerts of the CPU rule as Alertmanager's API lists them."""
    response = requests.get(f"{url}/api/v2/alerts", params={"active": "true"}, timeout=5)
    response.raise_for_status()
    return [a for a in response.json() if a["labels"].get("alertname") == CPU_ALERT]


def test_crypto_anomaly_fires_reaches_alertmanager_and_every_panel_has_data(stack: Stack) -> None:
    prometheus = stack.prometheus
    with Traffic(stack.exporter_url, TRACES_PER_WINDOW / WINDOW) as traffic:
        worst = _normal_phase(prometheus, seconds=12)
        assert set(worst) == {"front", "compose", "store"}
        assert max(worst.values()) < 0.3, f"normal usage judged unexplained: {worst}"
        observed = _values(prometheus.query('deeprest_observed_usage{resource="cpu"}'))
        truth = usage(TRACES_PER_WINDOW)
        for component, value in observed.items():
            assert value == pytest.approx(truth[(component, "cpu")], rel=0.2), component

        _set_usage(stack.cadvisor, cpu_factor=3.0)
        injected = time.monotonic()
        firing_query = f'ALERTS{{alertname="{CPU_ALERT}", alertstate="firing"}}'
        firing = wait_until(lambda: prometheus.query(firing_query), 60, 0.5, "the CPU alert")
        assert time.monotonic() - injected >= 600 * SCALE, "fired before its `for:`"
        assert [a["metric"]["component"] for a in firing] == [VICTIM]
        assert firing[0]["metric"]["severity"] == "critical"

        delivered = wait_until(
            lambda: _alertmanager_alerts(stack.alertmanager_url), 20, 0.5, "Alertmanager"
        )
        assert [a["labels"]["component"] for a in delivered] == [VICTIM]
        notes = delivered[0]["annotations"]
        assert notes["runbook_url"] == (
            "https://deeprest.example.com/docs/runbooks.md#deeprestcpunotexplainedbytraffic"
        )
        assert f"CPU usage of {VICTIM} (" in notes["description"]
        assert re.search(r"has been \d+(\.\d+)?% above", notes["description"])
        assert [r["name"] for r in delivered[0]["receivers"]] == ["deeprest-security"]

        # A correlation panel has no data while its two series are still within the hour, and
        # a steady load can hold both still: the load changes, as a real one does, and each
        # panel gets a few evaluations before it counts as empty.
        traffic.per_second *= 1.5
        pending = {
            f"{path.name} / {title}: {expr}": substitute(expr, {"__rate_interval": "10s"})
            for path in DASHBOARDS
            for title, expr in panel_exprs(load(path))
        }
        deadline = time.monotonic() + 30.0
        while True:
            pending = {k: q for k, q in pending.items() if not prometheus.query(q)}
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        assert not pending, "panels without data:\n" + "\n".join(pending)

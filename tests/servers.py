"""Real servers for integration tests: Prometheus on a free loopback port, a cAdvisor-like target."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from infra.local import procs
from infra.local.exposition import ExpositionServer

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
NEEDS_PROMETHEUS = pytest.mark.skipif(
    shutil.which(PROMETHEUS) is None, reason="prometheus binary not installed"
)
"""Marks a test that starts a real Prometheus: skipped where the binary is not installed."""


def free_port() -> int:
    """A loopback port free right now, never one handed out before in this process."""
    return procs.free_port()


def wait_until(check, timeout: float, interval: float = 0.1, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll `check()` until it returns a truthy value; its value, or AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@dataclass
class PrometheusHandle:
    """A running Prometheus; `stop()` ends it and removes its storage."""

    url: str
    process: subprocess.Popen[bytes]
    directory: Path
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        shutil.rmtree(self.directory, ignore_errors=True)

    def query(self, expr: str) -> list[dict]:
        """Instant query result list (raises on an error answer)."""
        response = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=5)
        response.raise_for_status()
        return list(response.json()["data"]["result"])


def start_prometheus(
    config_yaml: str, rule_files: Sequence[str | Path] = (), timeout: float = 30.0
) -> PrometheusHandle:
    """Start the real `prometheus` binary on a free loopback port with a temporary data dir."""
    directory = Path(tempfile.mkdtemp(prefix="deeprest-prom-"))
    for rule in rule_files:
        shutil.copy(rule, directory / Path(rule).name)
    config = directory / "prometheus.yml"
    config.write_text(config_yaml, encoding="utf-8")
    port = free_port()
    log = directory / "prometheus.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=directory,
        )
    handle = PrometheusHandle(f"http://127.0.0.1:{port}", process, directory, log)

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            return requests.get(f"{handle.url}/-/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_until(ready, timeout, what="prometheus to be ready")
    except BaseException:
        handle.stop()
        raise
    return handle


def scrape_config(targets: dict[str, str], interval: str = "1s") -> str:
    """A Prometheus config scraping job name -> host:port every `interval`."""
    jobs = "".join(
        f"  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
        for job, target in targets.items()
    )
    return (
        f"global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n"
        f"scrape_configs:\n{jobs}"
    )


@dataclass
class _Counter:
    value: float = 0.0
    rate: float = 0.0
    since: float = field(default_factory=time.time)

    def read(self, now: float) -> float:
        self.value += self.rate * (now - self.since)
        self.since = now
        return self.value


_Key = tuple[str, str, tuple[tuple[str, str], ...]]


def _key(metric: str, component: str, labels: Mapping[str, str] | None) -> _Key:
    return metric, component, tuple(sorted((labels or {}).items()))


class CadvisorTarget:
    """Serves cAdvisor-named series whose rates and values the test controls; `labels` adds
    labels to a series beside the component's (a pod's container: `{"container": "api"}`)."""

    def __init__(self, label: str = "container") -> None:
        self.label = label
        self.down = False  # while set, scrapes are answered 503: a scrape outage
        self._counters: dict[_Key, _Counter] = {}
        self._gauges: dict[_Key, float] = {}
        self._lock = threading.Lock()
        self._http = ExpositionServer(self.exposition)
        self.address = self._http.address

    def set_rate(
        self, metric: str, component: str, rate: float, labels: Mapping[str, str] | None = None
    ) -> None:
        """Make a counter grow at `rate` per second from now on."""
        with self._lock:
            counter = self._counters.setdefault(_key(metric, component, labels), _Counter())
            counter.read(time.time())
            counter.rate = rate

    def set_gauge(
        self, metric: str, component: str, value: float, labels: Mapping[str, str] | None = None
    ) -> None:
        with self._lock:
            self._gauges[_key(metric, component, labels)] = value

    def remove(self, metric: str, component: str, labels: Mapping[str, str] | None = None) -> None:
        """Stop serving a series (its container is gone), as cAdvisor does."""
        with self._lock:
            self._counters.pop(_key(metric, component, labels), None)
            self._gauges.pop(_key(metric, component, labels), None)

    def exposition(self) -> str | None:
        if self.down:
            return None
        now = time.time()
        lines = []
        with self._lock:
            for (metric, component, extra), counter in sorted(self._counters.items()):
                lines.append(f"{metric}{{{self._labels(component, extra)}}} {counter.read(now)!r}")
            for (metric, component, extra), value in sorted(self._gauges.items()):
                lines.append(f"{metric}{{{self._labels(component, extra)}}} {value!r}")
        return "\n".join(lines) + "\n"

    def _labels(self, component: str, extra: tuple[tuple[str, str], ...]) -> str:
        return ",".join(f'{k}="{v}"' for k, v in ((self.label, component), *extra))

    def stop(self) -> None:
        self._http.stop()

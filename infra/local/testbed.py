"""The local testbed: Redis, seven traced services, the resource exporter, Prometheus, Alertmanager.

    with Testbed(TestbedConfig(otlp_url="http://127.0.0.1:9464/v1/traces")) as bed:
        print(bed.frontend_url, bed.resource_exporter_url)

Every process runs on 127.0.0.1 on a free port; stop() (also called on leaving the `with` block,
on Ctrl-C there, and at interpreter exit) ends every process it started, children included.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil
import requests

from infra.local.apps import SERVICES
from infra.local.monitoring import alertmanager_config, prometheus_config
from infra.local.procs import Managed, TestbedError, free_port, http_ok, start, wait_ready
from loadgen.attacks import Attack, AttackRunner

REPO_ROOT = Path(__file__).resolve().parents[2]
REDIS = "redis"


@dataclass(frozen=True)
class TestbedConfig:
    """Everything the testbed needs; built once by the caller."""

    __test__ = False  # not a pytest test class

    otlp_url: str | None = None
    workdir: Path | None = None
    prometheus: bool = False
    alertmanager: bool = False
    deeprest_target: str | None = None
    rule_files: tuple[Path, ...] = ()
    scrape_interval_s: float = 5.0
    alert_webhook_url: str | None = None
    export_delay_ms: int = 1000
    work_scale: float = 1.0
    startup_timeout_s: float = 30.0
    die_with_parent: bool = True
    python: str = sys.executable
    redis_bin: str = "/usr/bin/redis-server"
    prometheus_bin: str = "/usr/bin/prometheus"
    alertmanager_bin: str = "/usr/bin/prometheus-alertmanager"


@dataclass
class Testbed:
    """Starts and stops the testbed's processes and knows their URLs."""

    __test__ = False  # not a pytest test class

    config: TestbedConfig
    progress: Callable[[str], None] | None = None  # told the work folder as soon as it exists
    _procs: dict[str, Managed] = field(default_factory=dict)
    _ports: dict[str, int] = field(default_factory=dict)
    _workdir: Path | None = None
    _owns_workdir: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> Testbed:
        """Start everything and wait until each part answers; on failure stop what started, and
        keep the work folder, whose logs say why."""
        if self._procs:
            raise TestbedError("testbed already started")
        atexit.register(self.stop)
        try:
            self._prepare()
            if self.progress is not None:
                removed = "; removed at stop" if self._owns_workdir else ""
                self.progress(f"work folder {self.workdir} (logs/, data/, configs{removed})")
            self._start_redis()
            self._start_services()
            self._start_exporter()
            if self.config.alertmanager:
                self._start_alertmanager()
            if self.config.prometheus:
                self._start_prometheus()
        except Exception:
            self._owns_workdir = False  # its logs say why the start failed
            self.stop()
            raise
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process started (newest first) and remove a temporary workdir."""
        with self._lock:
            for proc in reversed(list(self._procs.values())):
                proc.stop()
            self._procs.clear()
            if self._owns_workdir and self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
                self._workdir, self._owns_workdir = None, False
        atexit.unregister(self.stop)

    def __enter__(self) -> Testbed:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- accessors -------------------------------------------------------------------------
    @property
    def workdir(self) -> Path:
        """Folder of data, logs and generated configs."""
        if self._workdir is None:
            raise TestbedError("testbed not started")
        return self._workdir

    def service_url(self, name: str) -> str:
        """Base URL of one service."""
        if name not in SERVICES:
            raise TestbedError(f"unknown service {name!r}; expected one of {SERVICES}")
        return self._url(name)

    @property
    def services(self) -> dict[str, str]:
        """Base URL of every service."""
        return {name: self._url(name) for name in SERVICES}

    @property
    def frontend_url(self) -> str:
        """Where load goes (the Locust --host)."""
        return self._url("frontend")

    @property
    def resource_exporter_url(self) -> str:
        """Base URL of the resource exporter (metrics under /metrics)."""
        return self._url("resource-exporter")

    @property
    def prometheus_url(self) -> str:
        """Base URL of Prometheus (config.prometheus=True)."""
        return self._url("prometheus")

    @property
    def alertmanager_url(self) -> str:
        """Base URL of Alertmanager (config.alertmanager=True)."""
        return self._url("alertmanager")

    @property
    def redis_port(self) -> int:
        """Port of Redis."""
        return self._port(REDIS)

    def pids(self) -> dict[str, int]:
        """Root pid of every measured component (services and redis)."""
        return {n: p.pid for n, p in self._procs.items() if n in SERVICES or n == REDIS}

    def all_pids(self) -> set[int]:
        """Every live pid the testbed started, children included."""
        return {proc.pid for m in self._procs.values() for proc in m.tree()}

    def log_path(self, name: str) -> Path:
        """Log file of one process."""
        return self.workdir / "logs" / f"{name}.log"

    # --- attacks and configuration ------------------------------------------------------------
    def inject(self, attack: Attack) -> list[int]:
        """Start an attack now inside its target's process tree; returns the worker pids."""
        url = self.service_url(attack.target) + "/admin/attack"
        body = {"kind": attack.kind, "duration_s": attack.duration_s, "intensity": attack.intensity}
        response = requests.post(url, json=body, timeout=10)
        if response.status_code != 200:
            raise TestbedError(f"attack on {attack.target} refused: {response.text}")
        pids: list[int] = response.json()["started"]
        return pids

    def attack_runner(self, attacks: Iterable[Attack]) -> AttackRunner:
        """A runner that fires the attacks on this testbed; call its step(elapsed) from a loop."""
        return AttackRunner(tuple(attacks), self.inject)

    def reconfigure_prometheus(
        self, deeprest_target: str | None = None, rule_files: tuple[Path, ...] | None = None
    ) -> None:
        """Rewrite prometheus.yml with a new DeepRest target or rule files and reload it."""
        self._write_prometheus_config(deeprest_target, rule_files)
        response = requests.post(self.prometheus_url + "/-/reload", timeout=10)
        if response.status_code != 200:
            raise TestbedError(f"Prometheus refused the new config: {response.text.strip()}")

    # --- internals ------------------------------------------------------------------------------
    def _url(self, name: str) -> str:
        return f"http://127.0.0.1:{self._port(name)}"

    def _port(self, name: str) -> int:
        if name not in self._ports:
            raise TestbedError(f"{name} is not part of this testbed (not started or disabled)")
        return self._ports[name]

    def _prepare(self) -> None:
        """Create the workdir layout and pick every port."""
        if self.config.workdir is None:
            self._workdir, self._owns_workdir = Path(tempfile.mkdtemp(prefix="deeprest-bed-")), True
        else:
            self._workdir = Path(self.config.workdir)
        for sub in ("logs", "data", "prometheus", "alertmanager", "redis"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        names = [REDIS, *SERVICES, "resource-exporter", "prometheus", "alertmanager"]
        self._ports = {name: free_port() for name in names}
        if not self.config.prometheus:
            del self._ports["prometheus"]
        if not self.config.alertmanager:
            del self._ports["alertmanager"]

    def _launch(self, name: str, cmd: list[str]) -> Managed:
        proc = start(name, cmd, self.workdir / "logs", REPO_ROOT, self.config.die_with_parent)
        self._procs[name] = proc
        return proc

    def _start_redis(self) -> None:
        import redis

        cmd = [self.config.redis_bin, "--port", str(self.redis_port), "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", "--dir", str(self.workdir / "redis")]  # fmt: skip
        proc = self._launch(REDIS, cmd)
        client = redis.Redis(port=self.redis_port, socket_timeout=1)

        def ping() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_ready(proc, ping, self.config.startup_timeout_s)

    def _start_services(self) -> None:
        topology = {
            "services": self.services,
            "otlp_url": self.config.otlp_url,
            "export_delay_ms": self.config.export_delay_ms,
            "data_dir": str(self.workdir / "data"),
            "redis_port": self.redis_port,
            "work_scale": self.config.work_scale,
        }
        path = self.workdir / "topology.json"
        path.write_text(json.dumps(topology, indent=2))
        started = [
            self._launch(
                name,
                [
                    self.config.python,
                    "-m",
                    "infra.local.service",
                    "--name",
                    name,
                    "--topology",
                    str(path),
                ],
            )  # fmt: skip
            for name in SERVICES
        ]
        for proc in started:
            url = self._url(proc.name) + "/healthz"
            wait_ready(proc, functools.partial(http_ok, url), self.config.startup_timeout_s)

    def _start_exporter(self) -> None:
        targets = [f"--target={name}={pid}" for name, pid in self.pids().items()]
        cmd = [self.config.python, "-m", "infra.local.resource_exporter",
               "--port", str(self._port("resource-exporter")), *targets]  # fmt: skip
        proc = self._launch("resource-exporter", cmd)
        url = self.resource_exporter_url + "/metrics"
        wait_ready(proc, lambda: http_ok(url), self.config.startup_timeout_s)

    def _start_alertmanager(self) -> None:
        config = self.workdir / "alertmanager" / "alertmanager.yml"
        config.write_text(alertmanager_config(self.config.alert_webhook_url))
        cmd = [self.config.alertmanager_bin, f"--config.file={config}",
               f"--storage.path={self.workdir / 'alertmanager'}",
               f"--web.listen-address=127.0.0.1:{self._port('alertmanager')}",
               "--cluster.listen-address="]  # fmt: skip
        proc = self._launch("alertmanager", cmd)
        url = self.alertmanager_url + "/-/ready"
        wait_ready(proc, lambda: http_ok(url), self.config.startup_timeout_s)

    def _write_prometheus_config(
        self, deeprest_target: str | None, rule_files: tuple[Path, ...] | None
    ) -> Path:
        am = f"127.0.0.1:{self._ports['alertmanager']}" if "alertmanager" in self._ports else None
        text = prometheus_config(
            f"127.0.0.1:{self._port('resource-exporter')}",
            deeprest_target or self.config.deeprest_target,
            am,
            self.config.rule_files if rule_files is None else rule_files,
            self.config.scrape_interval_s,
        )
        path = self.workdir / "prometheus" / "prometheus.yml"
        path.write_text(text)
        return path

    def _start_prometheus(self) -> None:
        config = self._write_prometheus_config(None, None)
        cmd = [self.config.prometheus_bin, f"--config.file={config}",
               f"--storage.tsdb.path={self.workdir / 'prometheus' / 'data'}",
               f"--web.listen-address=127.0.0.1:{self._port('prometheus')}",
               "--web.enable-lifecycle", "--storage.tsdb.retention.time=1d"]  # fmt: skip
        proc = self._launch("prometheus", cmd)
        url = self.prometheus_url + "/-/ready"
        wait_ready(proc, lambda: http_ok(url), self.config.startup_timeout_s)


def leftover_pids(pids: Iterable[int]) -> list[int]:
    """The pids that still run (zombies count as gone)."""
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            continue
    return alive


def main(argv: list[str] | None = None) -> int:
    """Start a testbed and keep it up until Ctrl-C: python -m infra.local.testbed [--otlp URL]."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m infra.local.testbed")
    parser.add_argument("--otlp", default=None, help="OTLP/HTTP traces URL, e.g. .../v1/traces")
    parser.add_argument("--prometheus", action="store_true",
                        help="also run a Prometheus that scrapes the services' usage (and "
                             "--deeprest-target)")  # fmt: skip
    parser.add_argument("--alertmanager", action="store_true",
                        help="also run an Alertmanager the Prometheus sends its alerts to")  # fmt: skip
    parser.add_argument("--deeprest-target", default=None, help="host:port Prometheus scrapes")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="logs, data and configs, kept (default: a temporary folder, "
                             "removed at stop)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.workdir is not None and args.workdir.exists() and not args.workdir.is_dir():
        parser.error(f"argument --workdir: {args.workdir} is not a folder")
    config = TestbedConfig(otlp_url=args.otlp, prometheus=args.prometheus,
                           alertmanager=args.alertmanager, deeprest_target=args.deeprest_target,
                           workdir=args.workdir and args.workdir.resolve())  # fmt: skip

    def say(message: str) -> None:
        print(f"testbed: {message}", file=sys.stderr, flush=True)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM stops the testbed as Ctrl-C does, cleaning up

    signal.signal(signal.SIGTERM, interrupt)
    try:
        return _serve(Testbed(config, progress=say), args)
    except TestbedError as exc:
        print(f"python -m infra.local.testbed: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # while starting: every process started is stopped
        return 130


def _serve(testbed: Testbed, args: Any) -> int:
    """Run the testbed until Ctrl-C or SIGTERM, its URLs as JSON on stdout."""
    import time

    with testbed as bed:
        try:
            urls: dict[str, Any] = {"frontend": bed.frontend_url,
                                    "resources": bed.resource_exporter_url + "/metrics"}  # fmt: skip
            if args.prometheus:
                urls["prometheus"] = bed.prometheus_url
            if args.alertmanager:
                urls["alertmanager"] = bed.alertmanager_url
            print(json.dumps(urls, indent=2), flush=True)
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Per-service process-tree usage in cAdvisor names, for Prometheus to scrape.

Each target is a container name and the pid at the root of its process tree. CPU counts the
root and all live descendants (user + system), plus the children they have already reaped, so
work done in short-lived child processes is kept. Writes come from /proc/PID/io (write syscalls
and bytes sent to storage); where io counters cannot be read (some sandboxes forbid it) the two
fs series are left out, never reported as zero. Counters are clamped so they never go down
when a child exits unreaped.

Run: python -m infra.local.resource_exporter --port P --target NAME=PID [--target ...]
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import psutil
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

NAMESPACE = "deeprest-testbed"


@dataclass(frozen=True)
class TreeUsage:
    """Usage of one process tree at one instant."""

    cpu_seconds: float
    memory_bytes: int
    write_ops: int | None
    write_bytes: int | None


def _one(proc: psutil.Process) -> tuple[float, int, int | None, int | None]:
    """CPU seconds (own and reaped children), RSS, write ops and bytes of one process."""
    with proc.oneshot():
        t = proc.cpu_times()
        cpu = t.user + t.system + t.children_user + t.children_system
        rss = proc.memory_info().rss
        ops: int | None
        written: int | None
        try:
            io = proc.io_counters()
            ops, written = int(io.write_count), int(io.write_bytes)
        except (psutil.AccessDenied, AttributeError, NotImplementedError, OSError):
            ops = written = None
    return cpu, rss, ops, written


def measure_tree(pid: int) -> TreeUsage | None:
    """Usage of pid and its live descendants, or None when pid is gone."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    cpu, rss, ops, written, io_ok = 0.0, 0, 0, 0, True
    for proc in procs:
        try:
            c, r, o, w = _one(proc)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        except psutil.AccessDenied:
            io_ok = False
            continue
        cpu, rss = cpu + c, rss + r
        if o is None or w is None:
            io_ok = False
        else:
            ops, written = ops + o, written + w
    return TreeUsage(cpu, rss, ops if io_ok else None, written if io_ok else None)


class ProcessTreeCollector(Collector):
    """A custom collector: reads the targets' process trees on each scrape."""

    def __init__(self, targets: Callable[[], Mapping[str, int]] | Mapping[str, int]) -> None:
        self._targets = targets if callable(targets) else (lambda: dict(targets))
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def _monotone(self, name: str, series: str, value: float) -> float:
        """Never report a counter lower than before."""
        key = (name, series)
        with self._lock:
            value = max(value, self._last.get(key, 0.0))
            self._last[key] = value
        return value

    def sample(self) -> dict[str, TreeUsage]:
        """Current usage of every live target."""
        out = {}
        for name, pid in self._targets().items():
            usage = measure_tree(pid)
            if usage is not None:
                out[name] = usage
        return out

    def collect(self) -> Iterator[Any]:
        """Yield the four cAdvisor families."""
        labels = ["container", "pod", "namespace"]
        cpu = CounterMetricFamily("container_cpu_usage_seconds_total",
                                  "Cumulative CPU time of the process tree.", labels=labels)  # fmt: skip
        mem = GaugeMetricFamily("container_memory_working_set_bytes",
                                "Resident memory of the process tree.", labels=labels)  # fmt: skip
        ops = CounterMetricFamily("container_fs_writes_total",
                                  "Cumulative write operations of the process tree.", labels=labels)  # fmt: skip
        wbytes = CounterMetricFamily("container_fs_writes_bytes_total",
                                     "Cumulative bytes written to storage by the process tree.",
                                     labels=labels)  # fmt: skip
        for name, usage in sorted(self.sample().items()):
            values = [name, name, NAMESPACE]
            cpu.add_metric(values, self._monotone(name, "cpu", usage.cpu_seconds))
            mem.add_metric(values, float(usage.memory_bytes))
            if usage.write_ops is not None and usage.write_bytes is not None:
                ops.add_metric(values, self._monotone(name, "ops", usage.write_ops))
                wbytes.add_metric(values, self._monotone(name, "bytes", usage.write_bytes))
        yield from (cpu, mem, ops, wbytes)


def parse_targets(items: list[str]) -> dict[str, int]:
    """NAME=PID pairs from the command line."""
    targets = {}
    for item in items:
        name, sep, pid = item.partition("=")
        if not sep or not name or not pid.isdigit():
            raise SystemExit(f"--target {item!r}: expected NAME=PID, e.g. frontend=1234")
        targets[name] = int(pid)
    return targets


def serve(port: int, targets: Mapping[str, int], host: str = "127.0.0.1") -> Any:
    """Serve /metrics for the targets on host:port in a background thread; returns the server."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProcessTreeCollector(dict(targets)))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server


def main(argv: list[str] | None = None) -> int:
    """Run until SIGTERM or SIGINT."""
    import signal

    parser = argparse.ArgumentParser(prog="python -m infra.local.resource_exporter")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--target", action="append", default=[], help="NAME=PID, repeatable")
    args = parser.parse_args(argv)
    server = serve(args.port, parse_targets(args.target), args.host)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

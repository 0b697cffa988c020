"""`deeprest demo --quick`: the demo's story on the application simulator, in about 2 minutes.

The simulator stands in for the services: its call-path counts are posted to `deeprest serve`
as OTLP/HTTP protobuf traces, and its actual usage is served under cAdvisor names by a small
in-process HTTP target that a real Prometheus scrapes. One simulated window per real window.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from estimator.bundle import save_bundle
from estimator.simulator import Simulation, SimulationConfig, run_simulation, simulate_traffic
from estimator.training import TrainConfig, train_bundle
from estimator.windows import CallPath, SeriesKey, Window
from infra.local.demo import (
    BINARIES,
    CPU_ALERT,
    DemoOptions,
    Processes,
    Progress,
    ServeSpec,
    alert_for_seconds,
    compressed_rules,
    start_serve,
)
from infra.local.demo_report import AlertLog, Phase
from infra.local.exposition import ExpositionServer
from infra.local.monitoring import alertmanager_config, prometheus_config
from infra.local.procs import free_port, http_ok, start, wait_ready

CADVISOR = {
    "cpu": "container_cpu_usage_seconds_total",
    "write_iops": "container_fs_writes_total",
    "write_throughput": "container_fs_writes_bytes_total",
}
"""Counters whose rate is the resource; memory is the gauge container_memory_working_set_bytes."""
MEMORY = "container_memory_working_set_bytes"
TARGET = "user-timeline"
TRAIN_DAYS, DAY_WINDOWS = 3, 150
NORMAL_WINDOWS, SCALED_WINDOWS = 12, 12
USERS = 300.0


class UsageTarget:
    """An HTTP target serving the simulator's usage as cAdvisor series (container label)."""

    def __init__(self) -> None:
        self._counters: dict[tuple[str, str], list[float]] = {}  # value, rate, since
        self._gauges: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._http = ExpositionServer(self.exposition)
        self.address = self._http.address

    def set_usage(self, usage: dict[SeriesKey, float]) -> None:
        """From now on, counters grow at the usage rates and gauges hold the usage values."""
        now = time.time()
        with self._lock:
            for (component, resource), value in usage.items():
                if resource == "memory":
                    self._gauges[(MEMORY, component)] = value
                elif resource in CADVISOR:
                    c = self._counters.setdefault((CADVISOR[resource], component), [0.0, 0.0, now])
                    c[0] += c[1] * (now - c[2])
                    c[1], c[2] = value, now

    def exposition(self) -> str:
        now = time.time()
        lines = []
        with self._lock:
            for (metric, component), (value, rate, since) in sorted(self._counters.items()):
                lines.append(
                    f'{metric}{{container="{component}"}} {value + rate * (now - since)!r}'
                )
            for (metric, component), gauge in sorted(self._gauges.items()):
                lines.append(f'{metric}{{container="{component}"}} {gauge!r}')
        return "\n".join(lines) + "\n"

    def stop(self) -> None:
        self._http.stop()


def span_request(
    paths: Sequence[CallPath], counts: np.ndarray, end_ns: int, rng: np.random.Generator
) -> ExportTraceServiceRequest:
    """Traces whose call-path counts are `counts`: each span hangs from a span of its parent path."""
    request = ExportTraceServiceRequest()
    scopes: dict[str, Any] = {}
    spans_of: dict[CallPath, list[tuple[bytes, bytes]]] = {}
    for path, count in sorted(zip(paths, counts.tolist(), strict=True), key=lambda p: len(p[0])):
        parents = spans_of.get(path[:-1], []) if len(path) > 1 else []
        if count <= 0 or (len(path) > 1 and not parents):
            continue
        component, operation = path[-1]
        if component not in scopes:
            resource_spans = request.resource_spans.add()
            attribute = resource_spans.resource.attributes.add()
            attribute.key, attribute.value.string_value = "service.name", component
            scopes[component] = resource_spans.scope_spans.add()
        made = spans_of.setdefault(path, [])
        for i in range(int(count)):
            trace_id, parent_id = (rng.bytes(16), b"") if not parents else parents[i % len(parents)]
            span = scopes[component].spans.add()
            span.trace_id, span.span_id, span.name = trace_id, rng.bytes(8), operation
            span.parent_span_id = parent_id
            span.end_time_unix_nano = end_ns - 1000 * len(path)
            span.start_time_unix_nano = span.end_time_unix_nano - 5_000_000
            made.append((trace_id, span.span_id))
    return request


@dataclass
class QuickWorld:
    """Training windows and the test timeline: normal, 3x, then a crypto attack."""

    train: list[Window]
    test: Simulation
    phases: dict[str, range]
    target: str = TARGET

    def usage_at(self, i: int) -> dict[SeriesKey, float]:
        """Actual usage of test window i."""
        return dict(zip(self.test.series, self.test.values[i].tolist(), strict=True))


def build_world(options: DemoOptions, attack_windows: int) -> QuickWorld:
    """Simulate training days and a test timeline continuing them (seeded)."""
    window = options.window
    n_train = TRAIN_DAYS * DAY_WINDOWS
    n_test = NORMAL_WINDOWS + SCALED_WINDOWS + attack_windows
    base = SimulationConfig(windows=n_train + n_test, window_seconds=window,
                            day_windows=DAY_WINDOWS, users=USERS, seed=options.seed)  # fmt: skip
    normal = run_simulation(base)
    calls = normal.api_calls.copy()
    scaled = slice(n_train + NORMAL_WINDOWS, n_train + NORMAL_WINDOWS + SCALED_WINDOWS)
    calls[scaled] *= 3
    cpu = normal.values[:n_train, normal.series.index((TARGET, "cpu"))]
    attack = replace(base, scenario="crypto", attack_component=TARGET,
                     attack_start=n_train + NORMAL_WINDOWS + SCALED_WINDOWS,
                     attack_length=attack_windows, attack_cpu=round(3 * float(cpu.mean()), 4))  # fmt: skip
    sim = simulate_traffic(calls, attack)
    windows = sim.windows
    keep = slice(n_train, None)
    test = replace(sim, api_calls=sim.api_calls[keep], path_counts=sim.path_counts[keep],
                   oracle=sim.oracle[keep], values=sim.values[keep],
                   cache_bytes=sim.cache_bytes[keep], attacked=sim.attacked[keep])  # fmt: skip
    phases = {
        "normal": range(0, NORMAL_WINDOWS),
        "3x": range(NORMAL_WINDOWS, NORMAL_WINDOWS + SCALED_WINDOWS),
        "crypto": range(NORMAL_WINDOWS + SCALED_WINDOWS, n_test),
    }
    return QuickWorld(windows[:n_train], test, phases)


def retime(windows: list[Window], end: float) -> list[Window]:
    """The same windows shifted so that the last one ends at `end`."""
    shift = end - windows[-1].end
    for w in windows:
        w.start, w.end = w.start + shift, w.end + shift
    return windows


def start_monitoring(
    options: DemoOptions, procs: Processes, target: str, serve: str
) -> tuple[str, str]:
    """Alertmanager and Prometheus (compressed rules, 0.5 s scrapes); returns their URLs."""
    run = options.run_dir
    am_port, prom_port = free_port(), free_port()
    (run / "alertmanager").mkdir(exist_ok=True)
    (run / "alertmanager" / "alertmanager.yml").write_text(alertmanager_config(None))
    am = procs.add(start("alertmanager", [BINARIES["alertmanager"][0],
        f"--config.file={run / 'alertmanager' / 'alertmanager.yml'}",
        f"--storage.path={run / 'alertmanager'}", f"--web.listen-address=127.0.0.1:{am_port}",
        "--cluster.listen-address="], run / "logs", run, True))  # fmt: skip
    am_url = f"http://127.0.0.1:{am_port}"
    wait_ready(am, lambda: http_ok(am_url + "/-/ready"), 30)
    rules = compressed_rules(run / "rules", options.window)
    config = prometheus_config(target, serve, f"127.0.0.1:{am_port}", rules, 0.5)
    (run / "prometheus").mkdir(exist_ok=True)
    (run / "prometheus" / "prometheus.yml").write_text(config)
    prom = procs.add(start("prometheus", [BINARIES["prometheus"][0],
        f"--config.file={run / 'prometheus' / 'prometheus.yml'}",
        f"--storage.tsdb.path={run / 'prometheus' / 'data'}",
        f"--web.listen-address=127.0.0.1:{prom_port}"], run / "logs", run, True))  # fmt: skip
    prom_url = f"http://127.0.0.1:{prom_port}"
    wait_ready(prom, lambda: http_ok(prom_url + "/-/ready"), 30)
    return prom_url, am_url


def feed_window(world: QuickWorld, i: int, target: UsageTarget, url: str, seed: int) -> None:
    """Usage and traces of test window i, now."""
    target.set_usage(world.usage_at(i))
    rng = np.random.default_rng([seed, i])
    body = span_request(world.test.paths, world.test.path_counts[i], time.time_ns(), rng)
    response = requests.post(url, data=body.SerializeToString(), timeout=10,
                             headers={"Content-Type": "application/x-protobuf"})  # fmt: skip
    response.raise_for_status()


def run_quick(options: DemoOptions, procs: Processes, say: Progress) -> dict[str, Any]:
    """The quick story; returns the summary (also written to summary.json by the caller)."""
    from infra.local.demo_story import conclude

    window = options.window
    for_s = alert_for_seconds(CPU_ALERT, window)
    attack_windows = int(math.ceil((for_s + options.attack_s / 4) / window))
    say("simulating training days and the test timeline", "train")
    world = build_world(options, attack_windows)
    target = UsageTarget()
    procs.stoppers.append(target.stop)
    serve_port = free_port()
    prom_url, am_url = start_monitoring(options, procs, target.address, f"127.0.0.1:{serve_port}")
    say(f"Prometheus {prom_url}  Alertmanager {am_url}", "start")
    model_dir = options.run_dir / "model"
    started = time.monotonic()
    # The simulated days stand for the ones just before serving: a bundle's bands widen with the
    # time since its training end, so that end is now, not the simulator's epoch.
    retime(world.train, math.floor(time.time() / window) * window)
    bundle = train_bundle(world.train, TrainConfig(model=options.model or "linear"))
    save_bundle(bundle, model_dir)
    say(f"trained {bundle.model.kind} on {len(world.train)} simulated windows "
        f"in {time.monotonic() - started:.1f}s", "train")  # fmt: skip
    first = (math.floor(time.time() / window) + 4) * window  # after serve is up
    data_dir = options.run_dir / "data"
    from exporter.store import WindowStore

    store = WindowStore(data_dir)
    store.put(retime(world.train, first))  # the traffic history the model expects
    store.close()
    # the simulator posts each window's spans at once: a trace is whole as soon as it arrives
    spec = ServeSpec(serve_port, model_dir, data_dir, window, prom_url, trace_grace_s=window / 10)
    start_serve(spec, options.run_dir, procs)
    serve_url = f"http://127.0.0.1:{serve_port}"
    say(f"deeprest serve {serve_url}/metrics  (explore: {prom_url}/alerts)", "start")
    target.set_usage(world.usage_at(0))
    alerts = AlertLog(prom_url, am_url)
    times: dict[str, Phase] = {}
    for name, indices in world.phases.items():
        say(f"{len(indices)} windows of {window:g}s", name)
        t0 = first + indices.start * window
        for i in indices:
            time.sleep(max(0.0, first + i * window + 0.05 - time.time()))
            feed_window(world, i, target, serve_url + "/v1/traces", options.seed)
            alerts.poll(name)
            if name == "crypto" and alerts.in_alertmanager(CPU_ALERT, world.target):
                break
        times[name] = Phase(name, t0, time.time())
    time.sleep(window + 1.0)  # the last window closes and is scraped
    return conclude(options, say, times, alerts, {"crypto": (world.target, times["crypto"].start)})

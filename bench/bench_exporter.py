"""Exporter benchmark: OTLP ingest on one core, /metrics scrape p99, one window's estimation.

python -m bench.bench_exporter [--bodies 200] [--scrapes 1000] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.common import write_section
from estimator.training import TrainConfig, train_bundle
from estimator.windows import Window
from exporter.assembly import TraceAssembler, WindowAggregator
from exporter.collector import DeepRestCollector, make_registry
from exporter.config import Config, ReceiverConfig
from exporter.live import LiveLoop, Snapshot, model_info
from exporter.receiver import PROTOBUF, ReceiverStats, count_spans, decode_body, extract_spans
from exporter.runtime import Runtime
from exporter.store import WindowStore

SPANS_PER_BODY = 512
COMPONENTS = 50
RESOURCES = ("cpu", "memory", "write_iops", "write_throughput")
NS = 1_000_000_000


def make_bodies(n: int, seed: int = 0, base: int = 1_800_000_000) -> list[bytes]:
    """Protobuf bodies of 512 spans: 64 traces of 8 spans over 16 services, realistic attributes;
    body b's spans start `base` + b seconds after the epoch."""
    rng = np.random.default_rng(seed)
    bodies = []
    for b in range(n):
        request = ExportTraceServiceRequest()
        scopes = []
        for s in range(16):
            rs = request.resource_spans.add()
            for key, value in (("service.name", f"svc-{s}"), ("host.name", f"node-{s % 3}")):
                attribute = rs.resource.attributes.add()
                attribute.key, attribute.value.string_value = key, value
            scope = rs.scope_spans.add()
            scope.scope.name = "bench"
            scopes.append(scope)
        for _ in range(SPANS_PER_BODY // 8):
            trace_id, parent = rng.bytes(16), b""
            for depth in range(8):
                span = scopes[int(rng.integers(16))].spans.add()
                span.trace_id, span.span_id, span.parent_span_id = trace_id, rng.bytes(8), parent
                span.name = f"op-{depth}-{int(rng.integers(4))}"
                span.kind = 2
                span.start_time_unix_nano = (base + b) * NS
                span.end_time_unix_nano = span.start_time_unix_nano + 1_000_000
                attribute = span.attributes.add()
                attribute.key, attribute.value.string_value = "http.method", "GET"
                parent = span.span_id
        bodies.append(request.SerializeToString())
    return bodies


def bench_ingest(bodies: list[bytes]) -> dict[str, float]:
    """Spans per second: plain protobuf parse vs receive (decode, validate, buffer) vs full."""
    limits = ReceiverConfig(max_pending_spans=10**8)
    spans = len(bodies) * SPANS_PER_BODY
    started = time.perf_counter()
    for body in bodies:
        ExportTraceServiceRequest.FromString(body)
    plain = spans / (time.perf_counter() - started)
    assembler = TraceAssembler(grace=1.0, max_pending=limits.max_pending_spans)
    started = time.perf_counter()
    for body in bodies:
        request, _ = decode_body(body, PROTOBUF, "", limits)
        count_spans(request)
        assembler.add(extract_spans(request).spans, 0.0)
    receive = spans / (time.perf_counter() - started)
    aggregator = WindowAggregator(60.0, 0.0, 1_700_000_000.0)
    started = time.perf_counter()
    for trees in assembler.expire(now=10.0):
        aggregator.add_trees(trees, 1_800_000_000.0)
    close = time.perf_counter() - started
    full = spans / (spans / receive + close)
    return {"plain": plain, "receive": receive, "full": full}


def bench_http_ingest(n: int, data_dir: Path) -> float:
    """Spans per second through the real HTTP server (client on the same machine), of `n` bodies
    timed now, as live spans are: the receiver refuses spans far off its clock."""
    bodies = make_bodies(n, base=int(time.time()) - n)  # the last one ends now
    config = Config(data_dir=data_dir, host="127.0.0.1", port=0, window=60.0)
    runtime = Runtime(config).start(tick=False)
    session = requests.Session()
    try:
        started = time.perf_counter()
        for body in bodies:
            response = session.post(
                f"{runtime.url}/v1/traces", data=body, headers={"Content-Type": PROTOBUF}
            )
            assert response.status_code == 200, response.text
        return len(bodies) * SPANS_PER_BODY / (time.perf_counter() - started)
    finally:
        runtime.stop()


def big_world(n: int = 300, seed: int = 0) -> list[Window]:
    """Windows over 50 components x 4 resources, 10 APIs each touching a chain of components."""
    rng = np.random.default_rng(seed)
    chains = [rng.choice(COMPONENTS, size=6, replace=False) for _ in range(10)]
    windows = []
    for i in range(n):
        w = Window(60.0 * i, 60.0 * (i + 1))
        spans = np.zeros(COMPONENTS)
        for a, chain in enumerate(chains):
            calls = float(rng.poisson(50 + 30 * np.sin(i / 9 + a) ** 2))
            path: tuple[tuple[str, str], ...] = ()
            for depth, c in enumerate(chain):
                path = (*path, (f"svc-{c}", f"op-{a}-{depth}"))
                w.add_path(path, calls)
                spans[c] += calls
        for c in range(COMPONENTS):
            base = 0.05 + 0.001 * spans[c]
            for r, resource in enumerate(RESOURCES):
                w.metrics[(f"svc-{c}", resource)] = (
                    base * 10**r * (1 + 0.05 * rng.standard_normal())
                )
        windows.append(w)
    return windows


def bench_estimation(kind: str, windows: list[Window], data_dir: Path) -> dict[str, float]:
    """Median and p99 of one window's estimation in the live loop (no Prometheus)."""
    params = {"n_estimators": 20} if kind == "xgboost" else {}
    bundle = train_bundle(windows[:100], TrainConfig(model=kind, model_params=params))
    store = WindowStore(data_dir / kind)
    loop = LiveLoop(Config(data_dir=data_dir, window=60.0), store, bundle, None, lambda: 0.0)
    times = []
    for window in windows[100:]:
        loop._close_window(Window(window.start, window.end, dict(window.calls)))
        times.append(loop.snapshot.estimate_seconds)
    store.close()
    return {"median": statistics.median(times), "p99": float(np.quantile(times, 0.99))}


def bench_scrape(windows: list[Window], scrapes: int, data_dir: Path) -> dict[str, float]:
    """p99 of /metrics: the collector alone, and over HTTP with a full snapshot of 200 series."""
    bundle = train_bundle(windows[:60], TrainConfig(model="linear"))
    series = bundle.series
    rng = np.random.default_rng(1)
    snapshot = Snapshot(
        model=model_info(bundle),
        window_end=1.8e9,
        expected={k: tuple(sorted(rng.random(3))) for k in series},  # type: ignore[misc]
        observed={k: float(rng.random()) for k in series},
        anomaly={k: float(rng.random()) for k in series},
        limits={k: 2.0 for k in series},
        up=True,
    )
    stats = ReceiverStats()
    registry = make_registry(
        DeepRestCollector(
            lambda: snapshot, stats, lambda: {(f"svc-{i}", "/x"): 1.0 for i in range(10)}
        )
    )
    from prometheus_client import generate_latest

    local = []
    for _ in range(scrapes):
        started = time.perf_counter()
        generate_latest(registry)
        local.append(time.perf_counter() - started)
    runtime = Runtime(Config(data_dir=data_dir, host="127.0.0.1", port=0, window=60.0), bundle)
    runtime.loop.snapshot = snapshot
    runtime.start(tick=False)
    session = requests.Session()
    remote = []
    try:
        for _ in range(scrapes):
            started = time.perf_counter()
            text = session.get(f"{runtime.url}/metrics").text
            remote.append(time.perf_counter() - started)
    finally:
        runtime.stop()
    assert text.count("deeprest_expected_usage{") == len(series)
    return {
        "collector_p99": float(np.quantile(local, 0.99)),
        "http_p99": float(np.quantile(remote, 0.99)),
        "bytes": float(len(text)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bodies", type=int, default=200, help="512-span bodies to ingest")
    parser.add_argument("--scrapes", type=int, default=1000, help="/metrics scrapes to time")
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    bodies = make_bodies(args.bodies)
    ingest = bench_ingest(bodies)
    windows = big_world()
    with tempfile.TemporaryDirectory() as tmp:
        http = bench_http_ingest(len(bodies), Path(tmp) / "http")
        estimation = {
            kind: bench_estimation(kind, windows, Path(tmp)) for kind in ("linear", "xgboost")
        }
        scrape = bench_scrape(windows, args.scrapes, Path(tmp) / "scrape")
    rows = [
        ("OTLP ingest, plain protobuf parse (ceiling)", f"{ingest['plain']:,.0f} spans/s", ""),
        ("OTLP ingest, decode + validate + buffer", f"{ingest['receive']:,.0f} spans/s",
         f"{ingest['receive'] / ingest['plain']:.2f} of plain; target >= 20,000"),
        ("OTLP ingest, + trace close and path counting", f"{ingest['full']:,.0f} spans/s",
         f"{ingest['full'] / ingest['plain']:.2f} of plain"),
        ("OTLP ingest over HTTP (client on the same core)", f"{http:,.0f} spans/s", "informative"),
        ("/metrics scrape p99, collector", f"{scrape['collector_p99'] * 1000:.2f} ms",
         f"{int(scrape['bytes']):,} bytes; target <= 50 ms"),
        ("/metrics scrape p99, over HTTP", f"{scrape['http_p99'] * 1000:.2f} ms", "target <= 50 ms"),
    ]  # fmt: skip
    for kind, t in estimation.items():
        rows.append(
            (f"one window's estimation, {kind}", f"{t['median'] * 1000:.2f} ms median",
             f"p99 {t['p99'] * 1000:.2f} ms; target <= 100 ms")
        )  # fmt: skip
    table = "| measure | value | note |\n|---|---|---|\n" + "\n".join(
        f"| {a} | {b} | {c} |" for a, b, c in rows
    )
    print(table)
    body = (
        "## Exporter\n\n"
        f"`python -m bench.bench_exporter --bodies {args.bodies} --scrapes {args.scrapes}` "
        f"(pinned to one core; {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}). Bodies of {SPANS_PER_BODY} spans (64 traces x 8 "
        f"spans, 16 services); {COMPONENTS} components x {len(RESOURCES)} resources.\n\n{table}\n"
    )
    if not args.no_write:
        write_section("exporter", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

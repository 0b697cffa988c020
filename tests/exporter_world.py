"""A small seeded world for exporter tests: windows, a trained linear bundle, OTLP requests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from estimator.bundle import Bundle, save_bundle
from estimator.training import TrainConfig, train_bundle
from estimator.windows import CallPath, Window

ROOT = ("front", "/compose")
PATHS: tuple[CallPath, ...] = (
    (ROOT,),
    (ROOT, ("compose", "compose")),
    (ROOT, ("compose", "compose"), ("store", "write")),
)
CPU = {"front": (0.02, 0.004), "compose": (0.01, 0.006), "store": (0.005, 0.003)}
"""Per component: cpu cores = a + b * calls per window."""


def truth(calls: float) -> dict[tuple[str, str], float]:
    """Noise-free usage of a window with `calls` compose calls."""
    out = {(c, "cpu"): a + b * calls for c, (a, b) in CPU.items()}
    out[("store", "memory")] = 1e8 + 1e6 * calls
    return out


def world(n: int = 120, window: float = 2.0, seed: int = 0) -> list[Window]:
    """Windows of compose calls (poisson, slowly varying) with cpu and memory usage."""
    rng = np.random.default_rng(seed)
    calls = rng.poisson(10 + 8 * np.sin(np.arange(n) / 7.0) ** 2)
    windows = []
    for i in range(n):
        w = Window(start=window * i, end=window * (i + 1))
        for path in PATHS:
            w.add_path(path, float(calls[i]))
        for key, value in truth(float(calls[i])).items():
            w.metrics[key] = value * (1 + 0.02 * rng.standard_normal())
        windows.append(w)
    return windows


def train(directory: Path, window: float = 2.0, seed: int = 0) -> Bundle:
    """Train and save a linear bundle on the world; returns it as saved."""
    bundle = train_bundle(world(window=window, seed=seed), TrainConfig(model="linear"))
    save_bundle(bundle, directory)
    return bundle


def span_request(
    traces: int,
    end_ns: int,
    seed: int = 0,
    services: tuple[str, ...] = ("front", "compose", "store"),
    api: str = "/compose",
    root_ns: int = 10_000,
) -> ExportTraceServiceRequest:
    """A request with `traces` compose traces (front -> compose -> store), one resource each;
    `api` names the root operation, whose spans last `root_ns` (the others 10 us)."""
    rng = np.random.default_rng(seed)
    request = ExportTraceServiceRequest()
    resources = {}
    for service in services:
        rs = request.resource_spans.add()
        attribute = rs.resource.attributes.add()
        attribute.key = "service.name"
        attribute.value.string_value = service
        resources[service] = rs.scope_spans.add()
    steps = [("front", api), ("compose", "compose"), ("store", "write")]
    for _ in range(traces):
        trace_id = rng.bytes(16)
        parent = b""
        for depth, (service, name) in enumerate(steps):
            span = resources[service].spans.add()
            span.trace_id = trace_id
            span.span_id = rng.bytes(8)
            span.parent_span_id = parent
            span.name = name
            span.end_time_unix_nano = end_ns - depth * 1000
            span.start_time_unix_nano = span.end_time_unix_nano - (
                root_ns if depth == 0 else 10_000
            )
            parent = span.span_id
    return request


def random_id(n: int) -> bytes:
    return os.urandom(n)

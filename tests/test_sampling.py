"""Sampled traces count for the requests they stand for: tracestate thresholds, sampler tags and
a configured ratio, live (the OpenTelemetry SDK posting to the exporter) and in the importers."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, TraceState, get_current_span

from estimator.errors import InputError
from estimator.importers import import_jaeger, import_otlp_json, import_raw, import_windows
from estimator.spans import adjusted_count
from exporter.cli import main
from exporter.config import ReceiverConfig, load_config
from exporter.runtime import Runtime
from tests.test_exporter_api import Clock, make_config, scrape
from tests.test_importers import HEADER, jaeger_doc, os_, otlp_request, row

T0 = 1_800_000_000.0


@pytest.mark.parametrize(
    ("tracestate", "expected"),
    [
        ("ot=th:8", 2.0),  # threshold 2**55: half the traces are kept
        ("ot=th:c", 4.0),
        ("vendor=x,ot=rv:abcdef01234567;th:C", 4.0),  # another member first; upper-case digits
        ("ot=th:0", 1.0),  # every trace kept
        ("ot=th:f", 16.0),
        ("ot=th:", None),
        ("ot=th:zz", None),
        ("ot=th:" + "8" * 15, None),  # more digits than 56 bits
        ("ot=rv:abcdef01234567", None),
        ("", None),
    ],
)
def test_adjusted_count_of_a_tracestate(tracestate: str, expected: float | None) -> None:
    assert adjusted_count(tracestate) == expected


class ThresholdSampler(Sampler):
    """Keeps every root (the test's choice) and says in its tracestate that it kept 1 in 4, as a
    consistent probability sampler does."""

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Any = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        del trace_id, name, kind, links, trace_state
        parent = get_current_span(parent_context).get_span_context()
        state = parent.trace_state if parent.is_valid else TraceState([("ot", "th:c")])
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, state)

    def get_description(self) -> str:
        return "ThresholdSampler"


@pytest.fixture()
def sampled_runtime(tmp_path: Path) -> Iterator[tuple[Runtime, Clock]]:
    clock = Clock(T0)
    config = make_config(tmp_path / "none", tmp_path / "data", model=None)
    config = replace(config, receiver=ReceiverConfig(sampling_ratio=0.5))
    rt = Runtime(config, clock=clock).start(tick=False)
    yield rt, clock
    rt.stop()


def test_live_sampled_traces_count_their_adjusted_count(
    sampled_runtime: tuple[Runtime, Clock],
) -> None:
    """One trace says it was kept with probability 1/4 (4 requests), one says nothing (the
    configured ratio 0.5: 2 requests); the SDK posts both to the running exporter."""
    rt, clock = sampled_runtime
    exporter = OTLPSpanExporter(endpoint=f"{rt.url}/v1/traces")
    tracers = {}
    for name, sampler in (("annotated", ParentBased(ThresholdSampler())), ("plain", None)):
        provider = TracerProvider(resource=Resource.create({"service.name": name}), sampler=sampler)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracers[name] = provider
    start = int(T0 * 1e9) + 100_000_000
    for provider in tracers.values():
        tracer = provider.get_tracer("test")
        with tracer.start_as_current_span("/api", start_time=start, end_on_exit=False) as root:
            child = tracer.start_span("query", start_time=start + 1000)
            child.end(end_time=start + 2000)
            root.end(end_time=start + 3000)
    for provider in tracers.values():
        provider.shutdown()
    clock.now = T0 + 4.0
    rt.loop.tick()
    (window,) = rt.store.range(T0, T0 + 2)
    assert window.calls == {
        (("annotated", "/api"),): 4.0,
        (("annotated", "/api"), ("annotated", "query")): 4.0,
        (("plain", "/api"),): 2.0,
        (("plain", "/api"), ("plain", "query")): 2.0,
    }
    metrics = scrape(rt)
    assert metrics[("deeprest_api_calls_total", (("api", "annotated:/api"),))] == 4.0
    assert metrics[("deeprest_api_calls_total", (("api", "plain:/api"),))] == 2.0
    assert metrics[("deeprest_otlp_spans_received_total", ())] == 4  # spans, not requests


@pytest.mark.parametrize("value", [0, 1.5, -0.1, "half", True])
def test_a_bad_sampling_ratio_in_the_config_names_its_key(tmp_path: Path, value: object) -> None:
    path = tmp_path / "deeprest.yaml"
    path.write_text(json.dumps({"receiver": {"sampling_ratio": value}}))
    with pytest.raises(InputError, match="receiver.sampling_ratio"):
        load_config(path)
    path.write_text("receiver:\n  sampling_ratio: 1e-3\n")  # YAML reads this as text
    assert load_config(path).receiver.sampling_ratio == 0.001


def test_otlp_json_trace_state_and_a_ratio_for_the_unannotated(tmp_path: Path) -> None:
    t0 = 1675080000
    annotated = dict(os_("00f067aa0ba902b7", "", "/cart", t0 + 10), traceState="ot=th:8")
    plain = dict(os_("00f067aa0ba902b8", "", "/cart", t0 + 20), traceId="bb" * 16)
    path = tmp_path / "otlp.json"
    path.write_text(json.dumps(otlp_request([annotated, plain], "frontend")))
    root = (("frontend", "/cart"),)
    assert sum(w.calls[root] for w in import_otlp_json(path)) == 3.0  # 2 + 1
    assert sum(w.calls[root] for w in import_otlp_json(path, sampling_ratio=0.25)) == 6.0  # 2 + 4


def test_jaeger_probabilistic_sampler_tags(tmp_path: Path) -> None:
    doc = jaeger_doc()
    unsampled = sum(sum(w.calls.values()) for w in import_jaeger(_write(tmp_path, doc)))
    for trace in doc["data"]:
        for span in trace["spans"]:
            span["tags"] = [
                {"key": "sampler.type", "type": "string", "value": "probabilistic"},
                {"key": "sampler.param", "type": "float64", "value": 0.1},
            ]
    sampled = sum(sum(w.calls.values()) for w in import_jaeger(_write(tmp_path, doc)))
    assert sampled == pytest.approx(10 * unsampled)
    doc["data"][0]["spans"][0]["tags"][1]["value"] = 0
    with pytest.raises(InputError, match=r"data\[0\]\.spans\[0\]\.tags\[1\]\.value"):
        import_jaeger(_write(tmp_path, doc))


def _write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "jaeger.json"
    path.write_text(json.dumps(doc))
    return path


def test_span_csv_and_raw_take_the_recordings_ratio(tmp_path: Path) -> None:
    gw = "ts-gateway-service-6f6cfc45b-d9pnv"
    path = tmp_path / "spans.csv"
    path.write_text("\n".join([HEADER, row("t1", "r1", "root", gw, "GET /x", 61.0)]) + "\n")
    (window,) = import_windows("span-csv", path, sampling_ratio=0.1)
    assert list(window.calls.values()) == [pytest.approx(10.0)]
    raw = tmp_path / "raw.json"
    tree = {"component": "nginx", "operation": "/home", "children": []}
    raw.write_text(json.dumps({"traces": [{"end": 61, "tree": tree}]}))
    (window,) = import_raw(raw, sampling_ratio=0.5)
    assert window.calls == {(("nginx", "/home"),): 2.0}
    with pytest.raises(InputError, match="sampling_ratio"):
        import_raw(raw, sampling_ratio=0.0)


def test_cli_import_sampling_ratio(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gw = "ts-gateway-service-6f6cfc45b-d9pnv"
    path = tmp_path / "spans.csv"
    path.write_text("\n".join([HEADER, row("t1", "r1", "root", gw, "GET /x", 61.0)]) + "\n")
    out = tmp_path / "w.jsonl"
    argv = ["import", "--format", "span-csv", "--input", str(path), "--out", str(out)]
    assert main([*argv, "--sampling-ratio", "0.5"]) == 0
    assert json.loads(out.read_text())["calls"][0]["count"] == 2
    assert main([*argv, "--sampling-ratio", "2"]) == 2
    assert "--sampling-ratio" in capsys.readouterr().err

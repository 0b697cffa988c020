"""Spans timed far from the exporter's clock: the client hears of it in the same response."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from exporter.runtime import Runtime
from tests.test_exporter_api import Clock, make_config, scrape

T0 = 1_800_000_000.0
NS = 1_000_000_000


@pytest.fixture()
def runtime(tmp_path: Path) -> Iterator[tuple[Runtime, Clock]]:
    clock = Clock(T0 + 0.1)
    config = make_config(tmp_path / "none", tmp_path / "data", model=None)
    rt = Runtime(config, clock=clock).start(tick=False)
    yield rt, clock
    rt.stop()


class Client:
    """One service's OpenTelemetry SDK exporting to the exporter, one request per flush; the
    bodies of the exporter's answers are kept (the SDK reads none of them)."""

    def __init__(self, url: str, service: str) -> None:
        self.answers: list[ExportTraceServiceResponse] = []
        session = requests.Session()
        session.hooks["response"].append(self._keep)
        exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", session=session)
        self.provider = TracerProvider(resource=Resource.create({"service.name": service}))
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("test")

    def _keep(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        answer = ExportTraceServiceResponse()
        answer.ParseFromString(response.content)
        self.answers.append(answer)

    def trace(self, end_ns: int) -> None:
        """A root span and its child, ending at `end_ns` as the client's clock reads it."""
        start = end_ns - 3000
        root = self.tracer.start_span("/api", start_time=start)
        child = self.tracer.start_span("query", context=_context_of(root), start_time=start + 1000)
        child.end(end_time=end_ns - 1000)
        root.end(end_time=end_ns)

    def send(self) -> ExportTraceServiceResponse:
        assert self.provider.force_flush()
        return self.answers[-1]


def _context_of(span: Any) -> Any:
    from opentelemetry.trace import set_span_in_context

    return set_span_in_context(span)


def _rejected(rt: Runtime) -> dict[str, float]:
    metrics = scrape(rt)
    return {
        labels[0][1]: v
        for (name, labels), v in metrics.items()
        if name == "deeprest_otlp_spans_rejected_total"
    }


def test_spans_in_no_open_window_are_refused_as_bad_time_beside_good_ones(
    runtime: tuple[Runtime, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    """An unset clock (1970) and microseconds written as nanoseconds: their traces would only
    be dropped as late once closed, so the response refuses them; the good trace of the same
    request is counted, and one log line names the skew."""
    rt, clock = runtime
    client = Client(rt.url, "front")
    good = int((T0 + 0.5) * NS)
    client.trace(good)
    client.trace(5 * NS)  # an unset clock: 5 s after 1970 began
    client.trace(int((T0 + 0.5) * 1e6))  # microseconds where nanoseconds belong
    with caplog.at_level(logging.WARNING, logger="deeprest"):
        answer = client.send()
        client.trace(6 * NS)
        again = client.send()
    assert answer.partial_success.rejected_spans == 4
    print(answer.partial_success.error_message)
    assert "4 bad_time" in answer.partial_success.error_message
    assert "before the exporter's clock" in answer.partial_success.error_message
    assert again.partial_success.rejected_spans == 2
    lines = [r.getMessage() for r in caplog.records if "exporter's clock" in r.getMessage()]
    assert len(lines) == 1, lines  # rate limited
    assert "spans from front end 1.8e9 s before the exporter's clock" in lines[0]
    clock.now = T0 + 4.0
    rt.loop.tick()
    (window,) = rt.store.range(T0, T0 + 2)
    assert window.calls == {(("front", "/api"),): 1.0, (("front", "/api"), ("front", "query")): 1.0}
    rejected = _rejected(rt)
    assert rejected["bad_time"] == 6 and rejected["late"] == 0
    assert scrape(rt)[("deeprest_otlp_spans_received_total", ())] == 8


def test_a_clock_ahead_is_warned_of_and_its_spans_kept(runtime: tuple[Runtime, Clock]) -> None:
    """Ten minutes ahead (300 windows of 2 s) the spans still land in a window, of their time:
    kept and counted, with a warning (rejected_spans 0) in the response."""
    rt, clock = runtime
    client = Client(rt.url, "ahead")
    client.trace(int((T0 + 600.0) * NS))
    answer = client.send()
    assert answer.partial_success.rejected_spans == 0
    assert "600 s after the exporter's clock" in answer.partial_success.error_message
    clock.now += 1.0  # its trace closes
    rt.loop.tick()
    assert [w.start for w, _ in rt.loop.aggregator.open_windows()] == [T0 + 600.0]
    # past the aggregator's horizon (1,000 windows ahead) they would be dropped: refused
    client.trace(int((T0 + 7200.0) * NS))
    assert client.send().partial_success.rejected_spans == 2


def test_spans_late_by_minutes_are_still_only_late(runtime: tuple[Runtime, Clock]) -> None:
    """A retry or a restart's catch-up minutes late: no warning, counted late once closed."""
    rt, clock = runtime
    client = Client(rt.url, "retry")
    client.trace(int((T0 - 180.0) * NS))
    answer = client.send()
    assert not answer.HasField("partial_success") or answer.partial_success.error_message == ""
    clock.now = T0 + 4.0
    rt.loop.tick()
    assert _rejected(rt).get("late") == 2


def test_only_spans_whose_way_to_their_root_is_timed_off_are_refused() -> None:
    """A trace counts in its root's window: a far-off span below a root sent by another client
    (whose clock is right) still counts there, so it is kept with a warning, not refused."""
    from exporter.receiver import Decoded
    from exporter.skew import Reach, check_times

    now = T0
    reach = Reach.of(now, oldest=now - 2.0, horizon=now + 2000.0, window=2.0)
    tid, other = b"t" * 16, b"u" * 16
    root, child, grandchild = b"r" * 8, b"c" * 8, b"g" * 8
    off, good = 5 * NS, int(now * NS)
    spans = [
        (tid, grandchild, child, "db", "get", off, off - 10, 1.0),  # before its parent
        (tid, child, root, "db", "query", off, off - 20, 1.0),
        (tid, root, b"", "db", "/api", off, off - 30, 1.0),
        (other, child, root, "db", "query", off, off - 20, 1.0),  # its root comes from elsewhere
        (other, grandchild, grandchild[::-1], "db", "loop", off, off - 5, 1.0),
        (other, grandchild[::-1], grandchild, "db", "loop", off, off - 5, 1.0),  # a cycle
        (other, root, b"", "front", "/api", good, good - 30, 1.0),
    ]
    decoded = Decoded(spans=list(spans))
    skew = check_times(decoded, reach)
    assert decoded.rejected == {"bad_time": 3} and skew.refused == 3
    assert [s[1] for s in decoded.spans] == [child, grandchild, grandchild[::-1], root]
    assert skew.kept == 3 and skew.offsets == {"db": pytest.approx(5 - T0)}
    assert decoded.warnings and "3 spans kept" in decoded.warnings[0]
    # spans merely late (a retry, a catch-up) or on time: nothing said
    quiet = Decoded(spans=[(tid, root, b"", "front", "/api", good - 600 * NS, good - NS, 1.0)])
    assert not check_times(quiet, reach).offsets and not quiet.warnings

"""The exporter in process on a loopback port with a driven clock: API, hostile input, restarts."""

from __future__ import annotations

import base64
import contextlib
import csv
import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import requests
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from prometheus_client.parser import text_string_to_metric_families

from estimator.bundle import load_bundle
from estimator.errors import InputError
from estimator.windows import ORPHAN_ROOT, write_windows
from exporter.config import Config, PrometheusConfig, ReceiverConfig
from exporter.runtime import Runtime
from tests.exporter_world import PATHS, span_request, train, world
from tests.servers import free_port

T0 = 1_800_000_000.0
PB = {"Content-Type": "application/x-protobuf"}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "model"
    train(path)
    return path


def make_config(bundle_dir: Path, data_dir: Path, **changes: object) -> Config:
    config = Config(
        model=bundle_dir,
        data_dir=data_dir,
        host="127.0.0.1",
        port=0,
        window=2.0,
        trace_grace=0.5,
        api_token="s3cret",
        prometheus=PrometheusConfig(url=f"http://127.0.0.1:{free_port()}", timeout=0.3, retries=0),
        receiver=ReceiverConfig(max_body_bytes=256 << 10, max_spans_per_request=1000),
    )
    return replace(config, **changes)  # type: ignore[arg-type]


@pytest.fixture()
def runtime(bundle_dir: Path, tmp_path: Path) -> Iterator[tuple[Runtime, Clock]]:
    clock = Clock(T0)
    rt = Runtime(make_config(bundle_dir, tmp_path / "data"), clock=clock).start(tick=False)
    yield rt, clock
    rt.stop()


def scrape(rt: Runtime) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(f"{rt.url}/metrics", timeout=5).text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def post(rt: Runtime, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(f"{rt.url}/v1/traces", data=body, headers=headers, timeout=10)


def send_window(rt: Runtime, clock: Clock, traces: int, seed: int, root_ns: int = 10_000) -> None:
    """Send `traces` compose traces ending mid-window (their root spans lasting `root_ns`), then
    close that window."""
    start = (clock.now // 2.0) * 2.0
    end_ns = int((start + 0.5) * 1e9)
    request = span_request(traces, end_ns, seed, root_ns=root_ns)
    assert post(rt, request.SerializeToString(), PB).status_code == 200
    clock.now = start + 2.0 + 2 * rt.config.grace  # the window is due
    rt.loop.tick()


def test_hostile_payloads_get_4xx_and_good_spans_survive(runtime) -> None:  # type: ignore[no-untyped-def]
    rt, clock = runtime
    good = span_request(4, int((T0 + 0.5) * 1e9), seed=1)
    assert post(rt, good.SerializeToString(), PB).status_code == 200
    hostile = [
        (b"\x0a\xff\xff\xff\xff\x0f", PB, 400),
        (span_request(3, 10**10).SerializeToString()[:-5], PB, 400),
        (b'{"resourceSpans": {"a": 1}}', {"Content-Type": "application/json"}, 400),
        (
            gzip.compress(bytes(64 << 20)),
            {**PB, "Content-Encoding": "gzip"},
            413,
        ),
        (span_request(400, 10**10).SerializeToString(), PB, 413),  # 1200 spans > 1000
        (bytes(300 << 10), PB, 413),  # over the body limit before decoding
        (b"hello", {"Content-Type": "text/plain"}, 415),
    ]
    for body, headers, status in hostile:
        response = post(rt, body, headers)
        assert response.status_code == status, (headers, response.text)
        if headers.get("Content-Type") == "application/json":
            assert "error" in response.json() and response.json()["code"] == 3
        elif status == 400:
            assert status_pb2.Status.FromString(response.content).message
    mixed = span_request(2, int((T0 + 0.7) * 1e9), seed=2)
    mixed.resource_spans[2].scope_spans[0].spans[0].name = ""
    response = post(rt, mixed.SerializeToString(), PB)
    partial = ExportTraceServiceResponse.FromString(response.content).partial_success
    assert response.status_code == 200 and partial.rejected_spans == 1
    assert requests.get(f"{rt.url}/healthz", timeout=5).json() == {"status": "ok"}
    clock.now += 3.0
    rt.loop.tick()
    (window,) = rt.store.range(T0, T0 + 2)
    assert window.calls[PATHS[0]] == 6 and window.calls[PATHS[2]] == 5  # store span of one lost
    metrics = scrape(rt)
    # the spans of a request refused whole are neither received nor rejected: it is retried
    assert metrics[("deeprest_otlp_spans_received_total", ())] == 18
    assert ("deeprest_otlp_spans_rejected_total", (("reason", "too_many_spans"),)) not in metrics
    assert metrics[("deeprest_otlp_spans_rejected_total", (("reason", "empty_name"),))] == 1
    assert metrics[("deeprest_api_calls_total", (("api", "front:/compose"),))] == 6
    refused = {
        k[1][0][1]: v for k, v in metrics.items() if k[0] == "deeprest_otlp_requests_rejected_total"
    }
    assert refused["undecodable"] == 3 and refused["too_large"] == 2
    assert refused["too_many_spans"] == 1 and refused["bad_content_type"] == 1


def test_the_anomaly_score_is_said_to_count_usage_below_the_band_too() -> None:
    from prometheus_client import generate_latest

    from exporter.collector import DeepRestCollector, make_registry
    from exporter.live import Snapshot
    from exporter.receiver import ReceiverStats

    snapshot = Snapshot(anomaly={("db", "cpu"): 0.5})
    registry = make_registry(DeepRestCollector(lambda: snapshot, ReceiverStats(), dict))
    text = generate_latest(registry).decode()
    (help_line,) = [line for line in text.splitlines() if "HELP deeprest_anomaly_score" in line]
    assert "outside it, above or below" in help_line, help_line


def test_late_spans_and_malformed_json_spans_are_counted_and_the_rest_kept(runtime) -> None:  # type: ignore[no-untyped-def]
    rt, clock = runtime
    send_window(rt, clock, 2, seed=1)  # closes the first window
    late = span_request(2, int((T0 + 0.5) * 1e9), seed=2)  # its root ends in that closed window
    assert post(rt, late.SerializeToString(), PB).status_code == 200
    obj = json_format.MessageToDict(span_request(1, int((clock.now + 0.2) * 1e9), seed=3))
    for rs in obj["resourceSpans"]:
        for scope in rs["scopeSpans"]:
            for span in scope["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    obj["resourceSpans"][0]["scopeSpans"][0]["spans"].append({"name": 5, "traceId": "ab"})
    response = post(rt, json.dumps(obj).encode(), {"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert int(response.json()["partialSuccess"]["rejectedSpans"]) == 1
    clock.now += 3.0
    rt.loop.tick()
    metrics = scrape(rt)
    rejected = {
        k[1][0][1]: v for k, v in metrics.items() if k[0] == "deeprest_otlp_spans_rejected_total"
    }
    assert rejected["late"] == 2 * len(PATHS) and rejected["malformed"] == 1
    newest = rt.store.recent(1)[0]
    assert newest.calls[PATHS[0]] == 1, "the good spans beside the malformed one are counted"


def test_a_deep_chain_is_cut_at_the_depth_cap_and_an_orphan_is_no_api_call(runtime) -> None:  # type: ignore[no-untyped-def]
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    from estimator.spans import MAX_PATH_DEPTH

    rt, clock = runtime
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    attribute = rs.resource.attributes.add()
    attribute.key, attribute.value.string_value = "service.name", "front"
    spans = rs.scope_spans.add().spans
    end = int((clock.now + 0.2) * 1e9)
    parent = b""
    for depth in range(MAX_PATH_DEPTH + 100):  # one request, one chain deeper than the cap
        span = spans.add()
        span.trace_id, span.parent_span_id = b"t" * 16, parent
        span.span_id = (depth + 1).to_bytes(8, "big")  # an all-zero id is no id
        span.name, span.end_time_unix_nano = f"op{depth}", end - depth
        parent = span.span_id
    orphan = spans.add()  # its parent never arrives
    orphan.trace_id, orphan.span_id, orphan.parent_span_id = b"o" * 16, b"o" * 8, b"p" * 8
    orphan.name, orphan.end_time_unix_nano = "find", end
    assert post(rt, request.SerializeToString(), PB).status_code == 200
    clock.now += 3.0
    rt.loop.tick()
    (window,) = rt.store.recent(1)
    assert max(len(path) for path in window.calls) == MAX_PATH_DEPTH
    assert sum(window.calls.values()) == MAX_PATH_DEPTH + 1  # the chain's kept spans and the orphan
    metrics = scrape(rt)
    assert metrics[("deeprest_otlp_spans_rejected_total", (("reason", "too_deep"),))] == 100
    apis = {k[1][0][1] for k in metrics if k[0] == "deeprest_api_calls_total"}
    assert apis == {"front:op0"}, "the orphan's span is load, not an API call"


def test_full_queue_answers_503_with_retry_after(bundle_dir: Path, tmp_path: Path) -> None:
    config = make_config(bundle_dir, tmp_path, receiver=ReceiverConfig(max_pending_spans=10))
    rt = Runtime(config, clock=Clock(T0)).start(tick=False)
    try:
        end = int((T0 + 0.5) * 1e9)
        assert post(rt, span_request(3, end).SerializeToString(), PB).status_code == 200
        response = post(rt, span_request(3, end, seed=1).SerializeToString(), PB)
        assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1
    finally:
        rt.stop()


def test_estimates_match_offline_and_prometheus_down_means_absent(runtime) -> None:  # type: ignore[no-untyped-def]
    rt, clock = runtime
    for i, traces in enumerate([5, 12, 20]):
        send_window(rt, clock, traces, seed=i)
    windows = rt.store.range(T0, clock.now)
    assert [sum(w.calls.get(PATHS[0], 0) for w in windows)] == [37]
    offline, _ = load_bundle(rt.config.model).predict(windows)  # type: ignore[arg-type]
    metrics = scrape(rt)
    for j, (component, resource) in enumerate(rt.loop.snapshot.model.series):  # type: ignore[union-attr]
        labels = (("component", component), ("resource", resource))
        assert metrics[("deeprest_expected_usage", labels)] == pytest.approx(offline[-1, j, 1])
        assert metrics[("deeprest_expected_usage_upper", labels)] == pytest.approx(
            offline[-1, j, 2]
        )
    assert metrics[("deeprest_up", ())] == 0
    assert not any(
        name in ("deeprest_observed_usage", "deeprest_anomaly_score") for name, _ in metrics
    )
    assert metrics[("deeprest_last_estimate_timestamp_seconds", ())] == windows[-1].end
    version = rt.loop.snapshot.model.version  # type: ignore[union-attr]
    assert metrics[("deeprest_model_info", (("model", "linear"), ("version", version)))] == 1


def test_store_survives_restart_and_history_resumes(bundle_dir: Path, tmp_path: Path) -> None:
    clock = Clock(T0)
    receiver = ReceiverConfig(max_spans_per_request=1000, restart_catchup=0.0)
    config = make_config(bundle_dir, tmp_path / "data", receiver=receiver)
    rt = Runtime(config, clock=clock).start(tick=False)
    for i, traces in enumerate([4, 9, 15, 7]):
        send_window(rt, clock, traces, seed=i)
    before = rt.store.range(0, clock.now)
    rt.stop()
    again = Runtime(config, clock=clock).start(tick=False)
    try:
        after = again.store.range(0, clock.now)
        assert [(w.start, w.calls) for w in after] == [(w.start, w.calls) for w in before]
        send_window(again, clock, 11, seed=9)
        windows = again.store.range(0, clock.now)
        assert len(windows) == len(before) + 1
        offline, _ = load_bundle(bundle_dir).predict(windows)
        live = np.array([again.loop.snapshot.expected[k] for k in load_bundle(bundle_dir).series])
        np.testing.assert_allclose(live, offline[-1])
    finally:
        again.stop()


def _roots(window) -> float:  # type: ignore[no-untyped-def]
    return sum(n for path, n in window.calls.items() if len(path) == 1)


def test_a_restart_resumes_the_windows_left_open(bundle_dir: Path, tmp_path: Path) -> None:
    """Spans of a window still open at a stop, and those retried after the start, end up in
    one stored window; a window that passed while nothing listened is not stored as empty."""
    clock = Clock(T0 + 0.1)
    config = make_config(bundle_dir, tmp_path / "data")
    catchup = config.receiver.restart_catchup
    rt = Runtime(config, clock=clock).start(tick=False)
    send_window(rt, clock, 4, seed=1)  # window [T0, T0+2) closed and stored
    start = (clock.now // 2.0) * 2.0
    end_ns = int((start + 0.5) * 1e9)
    assert post(rt, span_request(6, end_ns, seed=2).SerializeToString(), PB).status_code == 200
    across = span_request(2, end_ns, seed=7)  # traces whose root comes after the restart
    across_roots = type(across)()
    across_roots.resource_spans.append(across.resource_spans.pop(0))
    assert post(rt, across.SerializeToString(), PB).status_code == 200
    rt.stop()  # the window of `start` is open, its traces still pending
    clock.now = start + 2.0 + 4.0 + 0.1  # two windows later: [start+2, start+4) passed unheard
    again = Runtime(config, clock=clock).start(tick=False)
    restarted = clock.now
    try:
        # The clients' retries come back late, long past their windows' usual close, and the
        # parts of one trace apart: nothing closes until the catch-up is over.
        now_window = (restarted // 2.0) * 2.0
        retried = span_request(5, end_ns, seed=3)
        also = span_request(3, int((now_window + 0.5) * 1e9), seed=5)
        roots, children = type(also)(), type(also)()
        roots.resource_spans.append(also.resource_spans[0])
        children.resource_spans.extend(also.resource_spans[1:])
        assert post(again, children.SerializeToString(), PB).status_code == 200
        for step in range(1, 10):
            clock.now = restarted + step * (catchup - 1.0) / 10
            assert again.loop.tick() == []
        assert post(again, retried.SerializeToString(), PB).status_code == 200
        assert post(again, roots.SerializeToString(), PB).status_code == 200
        assert post(again, across_roots.SerializeToString(), PB).status_code == 200
        clock.now = restarted + catchup
        again.loop.tick()
        clock.now += 2 * config.grace + 2.0
        again.loop.tick()
        stored = {w.start: w for w in again.store.range(0, clock.now)}
        assert stored[start].calls == {path: 13.0 for path in PATHS}  # whole traces, none split
        assert start + 2.0 not in stored and start + 4.0 not in stored  # nothing retried there
        assert _roots(stored[now_window]) == 3
        assert stored[now_window].calls == {path: 3.0 for path in PATHS}  # whole traces
        assert again.loop.aggregator.rejected()["late"] == 0
        assert again.loop.assembler.split_traces == 0
    finally:
        again.stop()
    assert Runtime(config, clock=clock).store.take_open() == []  # taken once, kept nowhere


def _post_in_two_parts(rt: Runtime, body: bytes) -> socket.socket:
    """A connection that has sent its request's headers and the first bytes of its body."""
    sock = socket.create_connection(("127.0.0.1", rt.port), timeout=10)
    head = "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
    sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body[:10])
    return sock


def test_a_stop_keeps_the_spans_of_requests_it_acknowledged_and_refuses_later_ones(
    bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request in flight at a stop is answered before what the exporter holds is kept; one
    whose body is not in by then gets 503 (`stopping`), never a 200 for spans then lost."""
    monkeypatch.setattr("exporter.runtime.STOP_DRAIN", 1.0)
    clock = Clock(T0 + 0.1)
    config = make_config(bundle_dir, tmp_path / "data")
    end_ns = int((T0 + 0.5) * 1e9)
    served, late = (span_request(3, end_ns, seed=s).SerializeToString() for s in (1, 2))
    rt = Runtime(config, clock=clock).start(tick=False)
    sockets = [_post_in_two_parts(rt, body) for body in (served, late)]
    time.sleep(0.2)  # both requests are being served
    stopping = threading.Thread(target=rt.stop)
    stopping.start()
    time.sleep(0.3)
    sockets[0].sendall(served[10:])  # its body completes while the stop waits
    assert sockets[0].recv(64).startswith(b"HTTP/1.1 200")
    stopping.join(timeout=10)
    sockets[1].sendall(late[10:])  # its body completes once the stop has kept what it held
    reply = sockets[1].recv(4096)
    assert reply.startswith(b"HTTP/1.1 503") and b"Retry-After" in reply, reply
    for sock in sockets:
        sock.close()
    again = Runtime(config, clock=clock)
    try:
        assert len(again.loop.assembler.open_traces()) == 3  # the acknowledged ones, kept
    finally:
        again.store.close()


def test_a_span_past_2262_is_refused_on_arrival_not_kept_to_drop_its_trace_at_the_restart(
    bundle_dir: Path, tmp_path: Path
) -> None:
    """An end time past 64-bit nanoseconds (the year 2262) is no time: refused as `bad_time` in
    the reply, not buffered, so a stop keeps the trace's good spans and the next start resumes
    them (the kept trace read as corrupted whole, its good spans dropped with it)."""
    clock = Clock(T0 + 0.1)
    config = make_config(bundle_dir, tmp_path / "data")
    rt = Runtime(config, clock=clock).start(tick=False)
    request = span_request(2, int((T0 + 0.5) * 1e9), seed=4)
    request.resource_spans[2].scope_spans[0].spans[0].end_time_unix_nano = 2**63 + 5
    response = post(rt, request.SerializeToString(), PB)
    reply = ExportTraceServiceResponse.FromString(response.content)
    assert response.status_code == 200 and reply.partial_success.rejected_spans == 1
    assert "1 bad_time" in reply.partial_success.error_message
    rt.stop()
    again = Runtime(config, clock=clock)
    try:
        assert sorted(len(spans) for spans in again.loop.assembler.open_traces().values()) == [2, 3]
    finally:
        again.store.close()


def test_what_a_first_stop_kept_resumes_after_a_long_downtime(
    bundle_dir: Path, tmp_path: Path
) -> None:
    """A store without a stored window yet: the windows and traces the stop kept are still
    open at a start many windows later (they were dropped as closed, their spans late)."""
    clock = Clock(T0 + 0.1)
    config = make_config(bundle_dir, tmp_path / "data")
    rt = Runtime(config, clock=clock).start(tick=False)
    post(rt, span_request(3, int((T0 + 0.5) * 1e9), seed=1).SerializeToString(), PB)
    clock.now += config.grace + 0.1
    rt.loop.tick()  # the traces closed into their window, still open
    post(rt, span_request(2, int((T0 + 1.5) * 1e9), seed=2).SerializeToString(), PB)
    assert rt.store.count() == 0
    rt.stop()  # one open window and two open traces kept; nothing stored yet
    clock.now = T0 + 15.0  # seven windows later
    again = Runtime(config, clock=clock).start(tick=False)
    try:
        clock.now += config.receiver.restart_catchup + 2 * config.grace + 2.0
        again.loop.tick()
        [window] = [w for w in again.store.range(0, clock.now) if w.calls]
        assert (window.start, window.calls) == (T0, {path: 5.0 for path in PATHS})
        assert again.loop.aggregator.rejected()["late"] == 0
    finally:
        again.stop()


def test_traces_still_open_at_a_stop_are_kept_whatever_the_next_window(
    bundle_dir: Path, tmp_path: Path
) -> None:
    clock = Clock(T0 + 0.1)
    rt = Runtime(make_config(bundle_dir, tmp_path / "data"), clock=clock).start(tick=False)
    post(rt, span_request(3, int((T0 + 0.5) * 1e9), seed=1).SerializeToString(), PB)
    rt.stop()  # the traces were still open: kept as spans, not as a window
    config = make_config(bundle_dir, tmp_path / "data", window=4.0)
    again = Runtime(config, clock=clock).start(tick=False)
    try:
        clock.now += config.receiver.restart_catchup + 10.0
        again.loop.tick()
        [window] = [w for w in again.store.range(0, clock.now) if w.calls]
        assert (window.start, window.end) == (T0, T0 + 4.0)
        assert window.calls == {path: 3.0 for path in PATHS}
    finally:
        again.stop()


def test_a_trace_whose_root_comes_after_the_grace_is_counted_as_split(
    runtime, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    rt, clock = runtime
    request = span_request(3, int((T0 + 0.5) * 1e9), seed=4)
    roots = request.resource_spans[0]  # the front end's spans: the roots
    assert roots.resource.attributes[0].value.string_value == "front"
    children = type(request)()
    children.resource_spans.extend(request.resource_spans[1:])
    root_only = type(request)()
    root_only.resource_spans.append(roots)
    assert post(rt, children.SerializeToString(), PB).status_code == 200
    clock.now += 2 * rt.config.grace
    rt.loop.tick()
    assert post(rt, root_only.SerializeToString(), PB).status_code == 200
    with caplog.at_level("WARNING", logger="deeprest.live"):
        rt.loop.tick()
    assert scrape(rt)[("deeprest_otlp_traces_split_total", ())] == 3
    assert "3 traces got spans after they closed" in caplog.text


def test_a_start_on_windows_of_another_length_says_they_would_mix(
    bundle_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from exporter.store import WindowStore

    store = WindowStore(tmp_path / "data")
    store.put(world(window=2.0)[:3])
    store.close()
    config = make_config(bundle_dir, tmp_path / "data", window=4.0)
    with caplog.at_level("WARNING", logger="deeprest.live"):
        rt = Runtime(config, clock=Clock(T0)).start(tick=False)
    rt.stop()
    assert "the data dir holds windows of 2s, this run's are 4s" in caplog.text


def test_a_restart_with_another_window_length_drops_the_open_windows(
    bundle_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(T0 + 0.1)
    rt = Runtime(make_config(bundle_dir, tmp_path / "data"), clock=clock).start(tick=False)
    post(rt, span_request(3, int((T0 + 0.5) * 1e9), seed=1).SerializeToString(), PB)
    clock.now += rt.config.grace + 0.1
    assert rt.loop.tick() == []  # the traces closed into their window, still open
    rt.stop()
    config = make_config(bundle_dir, tmp_path / "data", window=4.0)
    with caplog.at_level("WARNING", logger="deeprest.live"):
        again = Runtime(config, clock=clock).start(tick=False)
    assert "1 window left open by the last stop dropped, with 3 API calls" in caplog.text
    try:
        clock.now += config.receiver.restart_catchup + 10.0
        again.loop.tick()
        assert all(w.end - w.start == 4.0 for w in again.store.range(0, clock.now))
    finally:
        again.stop()


def test_api_whatif_answers_capacity_where_limits_are_known(
    runtime, bundle_dir: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """With limits configured, each limited series gets its headroom and `max_scale`: at that
    multiple of the traffic its peak upper band is at or under the limit, 1% beyond it over."""
    rt, clock = runtime
    send_window(rt, clock, 10, seed=3)
    plain = requests.post(f"{rt.url}/api/v1/whatif", json={"scale": 1}, timeout=5).json()
    key = ("compose", "cpu")
    peak = {(s["component"], s["resource"]): s["peak_upper"] for s in plain["series"]}[key]
    assert all("limit" not in s for s in plain["series"])  # no limits known: no capacity
    far = ("front", "cpu")  # a limit only past 100x the traffic breaks
    far_peak = {(s["component"], s["resource"]): s["peak_upper"] for s in plain["series"]}[far]
    limits = {key: 2 * peak, far: 150 * far_peak}
    config = make_config(bundle_dir, tmp_path / "limited", limits=limits)
    limited = Runtime(config, clock=clock).start(tick=False)
    try:
        send_window(limited, clock, 10, seed=3)
        api = f"{limited.url}/api/v1/whatif"

        def entry(body: dict, which: tuple[str, str] = key) -> dict:
            answer = requests.post(api, json=body, timeout=5).json()
            return {(s["component"], s["resource"]): s for s in answer["series"]}[which]

        compose = entry({"scale": 1})
        assert compose["limit"] == 2 * peak
        assert compose["headroom"] == pytest.approx(1 - compose["peak_upper"] / (2 * peak))
        allowed = compose["max_scale"]
        assert 1.0 < allowed < 100.0  # twice the peak: more than today's traffic allows
        assert entry({"scale": allowed})["peak_upper"] <= 2 * peak
        assert entry({"scale": allowed * 1.01})["peak_upper"] > 2 * peak
        expected = compose["max_scale_median"]  # the same, read off the median's peak
        assert expected > allowed
        answer = requests.post(api, json={"scale": expected}, timeout=5).json()
        assert answer["windows"] == 1  # one stored window: its median is the peak
        assert entry({"scale": expected})["median"] <= 2 * peak
        assert entry({"scale": expected * 1.01})["median"] > 2 * peak
        assert entry({"scale": 1}, far)["max_scale"] is None  # not reached by 100x
        beyond = entry({"scale": 400}, far)  # asked past 100x: searched that far
        assert beyond["headroom"] < 0 and 100 < beyond["max_scale"] < 400
        assert "limit" not in entry({"scale": 1}, ("store", "cpu"))
        # the scale allowed is a multiple of the stored traffic whatever scale is asked, as the
        # CLI's multiple of its base traffic: 0x and 3x read the same capacity
        for asked in (0, 3):
            assert entry({"scale": asked})["max_scale"] == pytest.approx(allowed, rel=1e-9)
    finally:
        limited.stop()


def test_api_whatif_scale_answers_as_the_cli_does_on_the_same_windows(
    runtime, bundle_dir: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """The stored traffic at 3x, asked of the API, and the same windows given to `deeprest
    whatif --scale 3 --data` read the recorded API calls alike: expanded into the call paths
    training showed, so that gateway-only or sampled traces cost what their requests do."""
    from exporter.cli import main

    rt, clock = runtime
    roots_only = span_request(6, int(((clock.now // 2.0) * 2.0 + 0.5) * 1e9), seed=5)
    del roots_only.resource_spans[1:]  # only the front end's root spans: no downstream paths
    start = (clock.now // 2.0) * 2.0
    assert post(rt, roots_only.SerializeToString(), PB).status_code == 200
    clock.now = start + 2.0 + 2 * rt.config.grace
    rt.loop.tick()
    for i in range(3):
        send_window(rt, clock, 4 + i, seed=6 + i)
    stored = rt.store.recent(rt.config.whatif_windows)
    answer = requests.post(f"{rt.url}/api/v1/whatif", json={"scale": 3}, timeout=10).json()
    api = {(e["component"], e["resource"]): e["median"] for e in answer["series"]}
    data = tmp_path / "stored.jsonl"
    write_windows(data, stored)
    out = tmp_path / "cli"
    argv = ["whatif", "--model", str(bundle_dir), "--scale", "3", "--data", str(data)]
    assert main([*argv, "--out", str(out)]) == 0
    with open(out / "whatif.csv", newline="", encoding="utf-8") as handle:
        rows = {(r["component"], r["resource"]): r for r in csv.DictReader(handle)}
    cli = {key: float(r["whatif_mean"]) for key, r in rows.items()}
    assert cli.keys() == api.keys()
    for key, value in cli.items():
        assert api[key] == pytest.approx(value, rel=1e-6, abs=1e-12), key
    assert api[("store", "cpu")] > 0  # the roots' downstream work, from training's paths
    # and the same caveats: where the traffic lies, memory past its training peak
    past = {(e["component"], e["resource"]): e.get("vs_training_peak") for e in answer["series"]}
    for key, row in rows.items():
        assert past[key] == pytest.approx(float(row["vs_training_peak"]), rel=1e-6), key
    assert answer["warnings"][0].startswith("what-if traffic: its busiest window is ")


def test_api_whatif_gives_api_latency_from_stored_windows(runtime) -> None:  # type: ignore[no-untyped-def]
    """Live windows keep each API's latency (the compose traces' root spans, longer as the load
    grows); the whatif API reads it at the what-if load from the stored windows' curves."""
    rt, clock = runtime
    for i in range(12):
        send_window(rt, clock, 5 + i, seed=i, root_ns=10_000 * (5 + i))
    stored = rt.store.recent(12)
    recorded = [w.latency[("front", "/compose")].p99 for w in stored]
    assert recorded == pytest.approx([1e-5 * (5 + i) for i in range(12)])
    api = f"{rt.url}/api/v1/whatif"
    answer = requests.post(api, json={"scale": 3, "latency": "p99"}, timeout=10).json()
    [entry] = answer["latency"]
    assert entry["api"] == "front:/compose" and entry["statistic"] == "p99"
    assert entry["load"] == pytest.approx(3 * 16 / 2.0)  # 16 traces in the busiest 2 s window
    assert entry["seconds"] is None or entry["seconds"] > max(recorded)  # more load, slower
    bad = requests.post(api, json={"scale": 3, "latency": "p42"}, timeout=10)
    assert bad.status_code == 400 and "latency" in bad.json()["error"]


def test_api_whatif_reads_no_latency_curve_where_latency_does_not_rise_with_load(runtime) -> None:  # type: ignore[no-untyped-def]
    """Latency that stays as load grows shows no knee to read at another load (as `deeprest
    capacity` says of it): no latency entry, and a warning naming the API and why."""
    rt, clock = runtime
    for i in range(12):
        send_window(rt, clock, 5 + i, seed=i)  # every root span lasts 10 us
    answer = requests.post(f"{rt.url}/api/v1/whatif", json={"scale": 3}, timeout=10).json()
    assert answer["latency"] == []  # the key is there, empty, for clients that read it
    [note] = [w for w in answer["warnings"] if w.startswith("no latency curve")]
    assert "front:/compose (its latency does not rise with load in the recording" in note


def test_share_of_calls_of_apis_the_model_never_saw(runtime) -> None:  # type: ignore[no-untyped-def]
    rt, clock = runtime
    start = (clock.now // 2.0) * 2.0
    end_ns = int((start + 0.5) * 1e9)
    for traces, api, seed in ((6, "/compose", 1), (2, "GET /compose", 2)):
        request = span_request(traces, end_ns, seed, api=api)
        assert post(rt, request.SerializeToString(), PB).status_code == 200
    rootless = span_request(5, end_ns, seed=3)
    del rootless.resource_spans[0]  # the front's root spans were lost: compose's are orphans
    assert post(rt, rootless.SerializeToString(), PB).status_code == 200
    clock.now = start + 2.0 + 2 * rt.config.grace
    rt.loop.tick()
    # the orphans' work is counted, but as no API: not as traffic the model never saw
    assert scrape(rt)[("deeprest_unknown_api_calls_ratio", ())] == pytest.approx(0.25)
    [window] = rt.store.recent(1)
    assert window.calls[(ORPHAN_ROOT, ("compose", "compose"))] == 5.0


def test_api_model_lists_the_apis_the_model_knows(runtime, bundle_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """In the `api` label's form, so that calls of APIs the model never saw can be told apart."""
    rt, _ = runtime
    model = requests.get(f"{rt.url}/api/v1/model", timeout=5).json()
    known = [f"{c}:{o}" for c, o in load_bundle(bundle_dir).vocabulary.apis]
    assert known and model["apis"] == known


def test_api_whatif_of_stored_windows_without_traffic_says_so(runtime) -> None:  # type: ignore[no-untyped-def]
    """Scaled idle traffic is idle: the answer would say every limit is out of reach."""
    rt, clock = runtime
    clock.now += 2.0 + 2 * rt.config.grace
    assert len(rt.loop.tick()) == 1  # a window without traffic
    idle = requests.post(f"{rt.url}/api/v1/whatif", json={"scale": 2}, timeout=5)
    assert idle.status_code == 400
    assert "field 'scale': no traffic to scale in the last 1 stored window" in idle.json()["error"]


def test_api_model_whatif_reload_and_errors(
    runtime, bundle_dir: Path, tmp_path: Path, caplog
) -> None:  # type: ignore[no-untyped-def]
    rt, clock = runtime
    api = f"{rt.url}/api/v1"
    assert requests.get(f"{rt.url}/readyz", timeout=5).status_code == 200
    model = requests.get(f"{api}/model", timeout=5).json()
    assert model["model"] == "linear" and {s["component"] for s in model["series"]} >= {"front"}
    assert all(isinstance(s["accuracy"], float) for s in model["series"])
    drift = load_bundle(bundle_dir).drift()
    assert [s["drift_per_window"] for s in model["series"]] == drift.tolist()
    assert {s["model"] for s in model["series"]} == {"linear"}  # auto's differ per series
    assert requests.post(f"{api}/whatif", json={"scale": 2}, timeout=5).status_code == 400
    send_window(rt, clock, 10, seed=3)
    one = requests.post(f"{api}/whatif", json={"scale": 1}, timeout=5).json()
    three = requests.post(f"{api}/whatif", json={"scale": 3}, timeout=5).json()
    rates = requests.post(f"{api}/whatif", json={"rates": {"/compose": 15.0}}, timeout=5).json()
    medians = [
        {(s["component"], s["resource"]): s["median"] for s in r["series"]}
        for r in (one, three, rates)
    ]
    key = ("compose", "cpu")
    assert medians[1][key] > 2 * medians[0][key]
    assert medians[2][key] == pytest.approx(medians[1][key])  # 15/s = 30 a window = 3 x 10
    for bad, field in (
        ({"scale": "x"}, "scale"),
        ({"scale": -1}, "scale"),
        ({}, None),
        ([1], None),
        ({"rates": {"/nope": 1}}, "rates./nope"),
        ({"scale": int("1" + "0" * 400)}, "scale"),  # no float holds it
        ({"scale": 1e307}, "scale"),
        ({"rates": {"/compose": 1e308}}, "rates./compose"),
        ({"rates": {"/compose": 1, "front:/compose": 2}}, "rates.front:/compose"),  # one API
        ({"rates": {"/compose": 1}, "windows": "abc"}, "windows"),
        ({"rates": {"/compose": 1}, "windows": 0}, "windows"),
        ({"scale": 2, "windows": 3}, "windows"),
        ({"scale": 2, "bogus": 1}, "bogus"),
    ):
        response = requests.post(f"{api}/whatif", json=bad, timeout=5)
        assert response.status_code == 400, (bad, response.text)
        error = response.json()["error"]
        assert field is None or f"field '{field}'" in error, (bad, error)
    for text, said in (
        ('{"scale": 2, "scale": 3}', "field 'scale': given twice in one object"),
        ('{"rates": {"/compose": 1, "/compose": 2}}', "field 'rates./compose': given twice"),
        ('{"rates": {}}', "field 'rates': names no API"),
        (
            '{"rates": null}',
            "field 'rates': expected an object of API -> calls per second, got null",
        ),
        ('{"scale": null}', "field 'scale': expected a number, got null"),
        ('{"scale": 2', "the body is not JSON: Expecting ',' delimiter at line 1, column 12"),
        ("[1]", "the body must be a JSON object, got an array"),
        (b"\xff\xfe", "the body is not UTF-8 text"),
        ('{"scale": 1' + "0" * 5000 + "}", "the body holds a number too long"),
        ("[" * 100_000 + "]" * 100_000, "the body nests arrays or objects too deep"),
    ):
        response = requests.post(f"{api}/whatif", data=text, timeout=5)
        assert response.status_code == 400, (text, response.text)
        assert said in response.json()["error"], (text, response.json())
    untyped = requests.post(f"{api}/whatif", data='{"scale": 2}', timeout=5)  # no Content-Type
    assert untyped.status_code == 200 and untyped.json()["series"]
    assert requests.get(f"{rt.url}/nope", timeout=5).json()["error"]
    wrong_method = requests.get(f"{api}/whatif", timeout=5)
    assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["Allow"]
    reload = f"{api}/model/reload"
    assert requests.post(reload, timeout=5).status_code == 401
    for wrong in ("Bearer nope", "Basic s3cret", "Bearers3cret", "Bearer s3cret2"):
        refused = requests.post(reload, headers={"Authorization": wrong}, timeout=5)
        assert refused.status_code == 401, wrong
    for scheme in ("bearer ", "BEARER  "):  # the scheme is case-insensitive (RFC 7235)
        any_case = {"Authorization": f"{scheme}s3cret"}
        assert requests.post(reload, headers=any_case, timeout=10).status_code == 200, scheme
    token = {"Authorization": "Bearer s3cret"}
    other = tmp_path / "other"
    train(other, seed=5)
    stored = rt.store.count()
    before = {k: v for k, v in scrape(rt).items() if k[0].startswith("deeprest_expected_usage")}
    caplog.set_level("INFO", logger="deeprest.app")
    response = requests.post(reload, headers=token, json={"path": str(other)}, timeout=10)
    assert response.status_code == 200 and response.json()["version"] != model["version"]
    assert f"model reloaded from {other}: version {response.json()['version']}" in caplog.text
    assert rt.store.count() == stored
    # the last estimates stay published until the new model's first window closes
    after = scrape(rt)
    assert before and all(after.get(key) == value for key, value in before.items())
    bad = requests.post(reload, headers=token, json={"path": str(tmp_path)}, timeout=10)
    assert bad.status_code == 422 and "manifest" in bad.json()["error"]
    assert "model reload refused, the loaded model goes on serving" in caplog.text
    assert "model reload refused: missing or wrong bearer token" in caplog.text
    too_long = str(tmp_path / ("x" * 300))  # the file system refuses the name itself
    bad = requests.post(reload, headers=token, json={"path": too_long}, timeout=10)
    assert bad.status_code == 422 and "cannot be read (File name too long)" in bad.json()["error"]
    for body, field in (
        ({"pth": str(other)}, "pth"),
        ({"path": str(other), "x": 1}, "x"),
        ({"zz": 1, "b": 2}, "zz"),
        ({"path": 5}, "path"),
        ([1], None),
    ):
        typo = requests.post(reload, headers=token, json=body, timeout=10)
        assert typo.status_code == 400, body  # never the configured bundle reloaded instead
        assert field is None or f"field '{field}'" in typo.json()["error"]
    assert (
        json.loads(requests.get(f"{api}/model", timeout=5).text)["version"]
        == response.json()["version"]
    )


def test_api_bodies_past_the_limit_are_refused_413_with_or_without_a_length(
    runtime, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    from exporter.app import MAX_API_BODY

    rt, clock = runtime
    send_window(rt, clock, 4, seed=1)
    api = f"{rt.url}/api/v1"
    token = {"Authorization": "Bearer s3cret"}
    padded = b'{"scale": 2' + b" " * MAX_API_BODY + b"}"  # valid JSON, one byte too many

    def streamed() -> Iterator[bytes]:  # chunked: no Content-Length to refuse it by
        for start in range(0, len(padded), 64 << 10):
            yield padded[start : start + (64 << 10)]

    caplog.set_level("WARNING", logger="deeprest.app")
    for url, headers in ((f"{api}/whatif", {}), (f"{api}/model/reload", token)):
        for body in (padded, streamed()):
            response = requests.post(url, data=body, headers=headers, timeout=10)
            assert response.status_code == 413, (url, response.text)
            assert f"exceeds {MAX_API_BODY}" in response.json()["error"]
    assert "model reload refused: body of" in caplog.text
    fits = b'{"scale": 2' + b" " * (MAX_API_BODY - 12) + b"}"
    assert len(fits) == MAX_API_BODY
    assert requests.post(f"{api}/whatif", data=fits, timeout=10).status_code == 200


def test_a_bundle_of_another_window_length_is_warned_of_at_start_and_at_reload(
    bundle_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other = tmp_path / "four"
    train(other, window=4.0)
    said = "window 2s differs from the bundle's 4s; counts are rescaled to the bundle's window"
    caplog.set_level("WARNING", logger="deeprest.live")
    config = make_config(other, tmp_path / "start")
    Runtime(config, load_bundle(other), clock=Clock(T0)).start(tick=False).stop()
    assert caplog.text.count(said) == 1
    caplog.clear()
    rt = Runtime(make_config(bundle_dir, tmp_path / "data"), clock=Clock(T0)).start(tick=False)
    try:
        assert said not in caplog.text  # the bundle's own window
        token = {"Authorization": "Bearer s3cret"}
        reload = f"{rt.url}/api/v1/model/reload"
        response = requests.post(reload, headers=token, json={"path": str(other)}, timeout=10)
        assert response.status_code == 200 and response.json()["window_seconds"] == 4.0
        assert caplog.text.count(said) == 1
    finally:
        rt.stop()


def test_a_hung_prometheus_does_not_hold_the_estimates_back(
    bundle_dir: Path, tmp_path: Path
) -> None:
    import contextlib
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))  # accepts connections, never answers
    server.settimeout(0.1)
    accepted: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    config = make_config(
        bundle_dir, tmp_path / "data", prometheus=PrometheusConfig(url=url, timeout=0.3, retries=0)
    )
    clock = Clock(T0)
    rt = Runtime(config, clock=clock).start(tick=False)
    try:
        clock.now += 20 * config.window_seconds  # ten windows due at once, as after a stall
        closed = rt.loop.tick()
        assert len(closed) >= 10 and rt.loop.snapshot.window_end == closed[-1].end
        asked = len(accepted)
        assert 1 <= asked <= 4, "only the window due now asks Prometheus"
    finally:
        rt.stop()
        done.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


def test_no_upstream_configured_leaves_deeprest_up_absent(bundle_dir: Path, tmp_path: Path) -> None:
    """Without a Prometheus URL nothing is ever asked: `deeprest_up` stays absent, not 0 (which
    would page DeepRestUpstreamPrometheusUnreachable for good), while windows close and are
    estimated."""
    clock = Clock(T0 + 0.1)
    config = replace(make_config(bundle_dir, tmp_path / "data"), prometheus=PrometheusConfig())
    rt = Runtime(config, clock=clock).start(tick=False)
    try:
        send_window(rt, clock, 4, seed=1)
        metrics = scrape(rt)
        assert metrics[("deeprest_last_estimate_timestamp_seconds", ())] > 0
        assert ("deeprest_up", ()) not in metrics
    finally:
        rt.stop()


def test_not_ready_without_a_model(tmp_path: Path) -> None:
    config = Config(data_dir=tmp_path, host="127.0.0.1", port=0, window=2.0)
    rt = Runtime(config, clock=Clock(T0)).start(tick=False)
    try:
        assert requests.get(f"{rt.url}/readyz", timeout=5).status_code == 503
        missing = requests.get(f"{rt.url}/api/v1/model", timeout=5)
        assert missing.status_code == 404
        # reload is off without a token: the way to load one says so, not a route answering 403
        assert "configure api_token and POST /api/v1/model/reload" in missing.json()["error"]
        assert ("deeprest_up", ()) not in scrape(rt)  # nothing was asked of Prometheus yet
    finally:
        rt.stop()
    config = Config(data_dir=tmp_path, host="127.0.0.1", port=0, window=2.0, api_token="t")
    rt = Runtime(config, clock=Clock(T0)).start(tick=False)
    try:
        said = requests.get(f"{rt.url}/api/v1/model", timeout=5).json()["error"]
        assert 'or POST /api/v1/model/reload with {"path": DIR}' in said
    finally:
        rt.stop()


def test_an_ipv6_host_is_written_in_brackets_in_its_url(tmp_path: Path) -> None:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    config = Config(data_dir=tmp_path, host="::1", port=0, window=2.0)
    rt = Runtime(config, clock=Clock(T0)).start(tick=False)
    try:
        assert rt.url == f"http://[::1]:{rt.port}"
        assert requests.get(f"{rt.url}/readyz", timeout=5).status_code == 503  # a working URL
    finally:
        rt.stop()


def _cut_body(port: int, hang_up: bool) -> bytes:
    """Post 10 of a body's 100 bytes, then stall (or hang up, `hang_up`); the server's answer."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf"
            b"\r\nContent-Length: 100\r\n\r\n0123456789"
        )
        if hang_up:
            client.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := client.recv(4096):  # the server answers, then closes
            answer += chunk
    return answer


def test_a_request_whose_body_stalls_is_dropped_after_the_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from exporter import runtime as runtime_module

    monkeypatch.setattr(runtime_module._QuietHandler, "timeout", 0.5)
    rt = Runtime(Config(data_dir=tmp_path, host="127.0.0.1", port=0, window=2.0)).start(tick=False)
    try:
        started = time.monotonic()
        answer = _cut_body(rt.port, hang_up=False)  # 10 of the 100 bytes said, then nothing
        assert time.monotonic() - started < 5
        assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
        assert scrape(rt)[("deeprest_otlp_requests_rejected_total", (("reason", "body_cut"),))] == 1
        assert "Error on request" not in caplog.text  # answered, no traceback in the log
        assert requests.get(f"{rt.url}/readyz", timeout=5).status_code == 503  # still serving
    finally:
        rt.stop()


def test_the_servers_traceback_of_a_dead_body_is_not_logged_others_are(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """After a 408 for a body that stopped arriving, werkzeug fails to drain the dead socket and
    logs a traceback; that one says nothing the 408 and its counter did not."""
    import logging

    import exporter.runtime  # noqa: F401 - installs the filter

    werkzeug_log = logging.getLogger("werkzeug")
    werkzeug_log.error("Error on request:\n...\nOSError: cannot read from timed out object")
    werkzeug_log.error("Error on request:\n...\nValueError: something else")
    assert "timed out object" not in caplog.text and "ValueError: something else" in caplog.text


def test_limits_of_series_the_model_does_not_estimate_are_said_to_be_unused(
    bundle_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    limits = {("compose", "cpu"): 2.0, ("compose-post-service", "cpu"): 2.0}
    config = make_config(bundle_dir, tmp_path / "data", limits=limits)
    with caplog.at_level("WARNING", logger="deeprest.live"):
        rt = Runtime(config, clock=Clock(T0)).start(tick=False)
    rt.stop()
    assert "limits of 1 series the model does not estimate are not used: " in caplog.text
    assert "compose-post-service/cpu" in caplog.text


def test_a_client_that_hangs_up_mid_body_is_counted_as_a_body_cut(tmp_path: Path) -> None:
    rt = Runtime(Config(data_dir=tmp_path, host="127.0.0.1", port=0, window=2.0)).start(tick=False)
    try:
        answer = _cut_body(rt.port, hang_up=True)  # 10 of the 100 bytes, then gone
        assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 408")), answer[:100]
        counted = scrape(rt)
        assert counted[("deeprest_otlp_requests_rejected_total", (("reason", "body_cut"),))] == 1
        undecodable = ("deeprest_otlp_requests_rejected_total", (("reason", "undecodable"),))
        assert counted.get(undecodable, 0) == 0
    finally:
        rt.stop()


def test_connections_past_the_limit_are_answered_503_at_once_and_the_rest_keep_serving(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = ReceiverConfig(max_connections=2, retry_after=3.0)
    config = Config(data_dir=tmp_path, host="127.0.0.1", port=0, window=2.0, receiver=receiver)
    caplog.set_level("WARNING", logger="deeprest.serve")
    rt = Runtime(config).start(tick=False)
    idle = [socket.create_connection(("127.0.0.1", rt.port), timeout=10) for _ in range(2)]
    try:
        time.sleep(0.2)  # both accepted, each on its thread, sending nothing
        with socket.create_connection(("127.0.0.1", rt.port), timeout=10) as third:
            started = time.monotonic()
            answer = b""
            while chunk := third.recv(4096):
                answer += chunk
            assert time.monotonic() - started < 5  # not after any timeout
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503") and b"Retry-After: 3" in head, head
        assert "receiver.max_connections" in json.loads(body)["error"]
        assert "connections refused with 503: 2 are open" in caplog.text
    finally:
        for conn in idle:
            conn.close()
    try:
        deadline = time.monotonic() + 10
        while True:  # the idle connections' threads end and give their slots back
            try:
                if requests.get(f"{rt.url}/healthz", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.1)
        counted = scrape(rt)
        assert counted[("deeprest_http_connections_refused_total", ())] >= 1
    finally:
        rt.stop()


def test_windows_the_store_refuses_are_kept_estimated_and_stored_once_it_writes_again(
    runtime, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    """A write that fails (a full disk) neither loses the window nor stops its estimate."""
    from exporter.store import StoreError, WindowStore

    rt, clock = runtime
    real_put = WindowStore.put
    failing = {"on": True}

    def put(store: WindowStore, windows: list) -> None:  # type: ignore[type-arg]
        if failing["on"]:
            raise StoreError(f"{store.path}: cannot write windows (database or disk is full)")
        real_put(store, windows)

    monkeypatch.setattr(WindowStore, "put", put)
    caplog.set_level("INFO", logger="deeprest.live")
    send_window(rt, clock, 3, seed=1)
    send_window(rt, clock, 4, seed=2)
    assert "2 windows not stored, kept to retry with the next: " in caplog.text
    assert "disk is full" in caplog.text
    assert rt.loop.snapshot.expected  # estimated all the same
    assert rt.store.count() == 0
    failing["on"] = False
    send_window(rt, clock, 5, seed=3)
    assert "stored 3 windows the store had refused" in caplog.text
    stored = rt.store.range(T0 - 10, clock.now)
    assert [sum(n for p, n in w.calls.items() if len(p) == 1) for w in stored] == [3, 4, 5]


def test_a_prometheus_that_does_not_answer_is_warned_of_once_not_every_window(
    runtime, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    rt, clock = runtime  # its Prometheus URL is a port nobody listens on
    caplog.set_level("WARNING", logger="deeprest.live")
    for seed in range(3):
        send_window(rt, clock, 2, seed=seed)
    failed = [r for r in caplog.records if "Prometheus query failed" in r.getMessage()]
    assert len(failed) == 1
    assert scrape(rt)[("deeprest_up", ())] == 0  # said at once all the same


def test_a_prometheus_that_does_not_answer_is_warned_of_once_without_a_model_too(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(T0 + 0.1)
    nobody = PrometheusConfig(url=f"http://127.0.0.1:{free_port()}", timeout=0.3, retries=0)
    config = Config(
        data_dir=tmp_path, host="127.0.0.1", port=0, window=2.0, trace_grace=0.5, prometheus=nobody
    )
    rt = Runtime(config, clock=clock).start(tick=False)
    caplog.set_level("WARNING", logger="deeprest.live")
    try:
        for _ in range(5):
            clock.now += config.window_seconds
            rt.loop.tick()
        assert scrape(rt)[("deeprest_up", ())] == 0
    finally:
        rt.stop()
    failed = [r for r in caplog.records if "Prometheus does not answer" in r.getMessage()]
    assert len(failed) == 1


def test_stored_windows_older_than_the_retention_are_deleted(
    bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from exporter import live

    monkeypatch.setattr(live, "PRUNE_EVERY", 0.0)
    clock = Clock(T0)
    config = make_config(bundle_dir, tmp_path / "data", retention=5.0)
    rt = Runtime(config, clock=clock).start(tick=False)
    try:
        for seed in range(5):
            send_window(rt, clock, 2, seed=seed)
        ends = [w.end for w in rt.store.range(0, clock.now + 100)]
        assert ends and min(ends) >= max(ends) - 5.0 and len(ends) < 5
    finally:
        rt.stop()


def test_a_start_finding_much_past_the_retention_warns_and_waits_before_deleting(
    bundle_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A data dir of a release that kept every window: its old windows are announced at start
    and deleted only PRUNE_NOTICE later, not at the first window closed after an upgrade."""
    from estimator.windows import Window
    from exporter import live
    from exporter.store import WindowStore

    monkeypatch.setattr(live, "PRUNE_EVERY", 0.0)
    monkeypatch.setattr(live, "PRUNE_NOTICE", 100.0)
    config = make_config(bundle_dir, tmp_path / "data", retention=5.0)
    store = WindowStore(config.data_dir)
    old = [Window(T0 - 200.0 + 2 * i, T0 - 198.0 + 2 * i) for i in range(3)]
    for window in [*old, Window(T0 - 12.0, T0 - 10.0)]:
        window.calls[PATHS[0]] = 3.0
        store.put([window])
    store.close()
    caplog.set_level("WARNING", logger="deeprest.live")
    clock = Clock(T0 - 9.9)
    rt = Runtime(config, clock=clock).start(tick=False)
    try:
        assert "3 stored windows (from " in caplog.text
        assert "are older than the retention of 5s: " in caplog.text  # as the config says it
        send_window(rt, clock, 2, seed=1)  # within the notice: nothing deleted
        assert len(rt.store.range(T0 - 200.0, T0 - 190.0)) == 3
    finally:
        rt.stop()
    clock.now += 101.0  # restarted past the notice: its date holds, not put off by the restart
    again = Runtime(config, clock=clock).start(tick=False)
    try:
        clock.now += config.receiver.restart_catchup  # windows close again after the catch-up
        send_window(again, clock, 2, seed=2)
        assert again.store.range(T0 - 200.0, T0 - 190.0) == []
        assert again.store.count() >= 1
        assert again.store.note("prune_from") is None  # done: a later backlog is announced anew
    finally:
        again.stop()


@pytest.mark.parametrize(
    "notice",
    [100.0, None],
    ids=["windows spanning more than the notice", "windows all past the retention"],
)
def test_a_store_left_for_longer_than_the_retention_is_announced_before_deleting(
    bundle_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    notice: float | None,
) -> None:
    """An exporter stopped for longer than the retention (or a data dir restored from a backup):
    its windows are past the retention by the clock, though none is past it before the newest
    stored. Whether they span more than PRUNE_NOTICE, or less (all of them past the retention:
    no pruning's leftover, however little it holds), they are announced, not deleted at the
    first window."""
    from estimator.windows import Window
    from exporter import live
    from exporter.store import WindowStore

    monkeypatch.setattr(live, "PRUNE_EVERY", 0.0)
    if notice is not None:
        monkeypatch.setattr(live, "PRUNE_NOTICE", notice)
    else:
        assert live.PRUNE_NOTICE > 150.0  # the windows span less than the notice
    config = make_config(bundle_dir, tmp_path / "data", retention=200.0)
    store = WindowStore(config.data_dir)
    for i in range(76):  # 150 s of windows, the newest 850 s before the start
        window = Window(T0 - 1000.0 + 2 * i, T0 - 998.0 + 2 * i)
        window.calls[PATHS[0]] = 3.0
        store.put([window])
    store.close()
    caplog.set_level("WARNING", logger="deeprest.live")
    clock = Clock(T0)
    rt = Runtime(config, clock=clock).start(tick=False)
    try:
        assert "76 stored windows (from " in caplog.text
        assert "are older than the retention of" in caplog.text
        clock.now += config.receiver.restart_catchup
        send_window(rt, clock, 2, seed=1)  # within the notice: nothing deleted
        assert len(rt.store.range(T0 - 1000.0, T0 - 800.0)) == 76
    finally:
        rt.stop()


def test_a_retention_notice_is_void_once_a_start_keeps_everything(
    bundle_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Warned, the operator restarts with retention 0 to keep the windows: the notice is void,
    and a retention set again later announces its deletion anew instead of deleting at once."""
    from estimator.windows import Window
    from exporter import live
    from exporter.store import WindowStore

    monkeypatch.setattr(live, "PRUNE_EVERY", 0.0)
    monkeypatch.setattr(live, "PRUNE_NOTICE", 100.0)
    config = make_config(bundle_dir, tmp_path / "data", retention=5.0)
    store = WindowStore(config.data_dir)
    for start in (T0 - 200.0, T0 - 198.0, T0 - 12.0):
        window = Window(start, start + 2.0)
        window.calls[PATHS[0]] = 3.0
        store.put([window])
    store.close()
    clock = Clock(T0 - 9.9)
    Runtime(config, clock=clock).start(tick=False).stop()  # warned, the date noted
    Runtime(replace(config, retention=0.0), clock=clock).start(tick=False).stop()
    clock.now += 200.0  # long past the first notice's date
    caplog.set_level("WARNING", logger="deeprest.live")
    again = Runtime(config, clock=clock).start(tick=False)
    try:
        assert "are older than the retention of" in caplog.text  # announced anew
        clock.now += config.receiver.restart_catchup
        send_window(again, clock, 2, seed=2)
        assert len(again.store.range(T0 - 200.0, T0 - 190.0)) == 2  # not deleted at once
    finally:
        again.stop()


def test_retention_is_a_duration_and_zero_keeps_everything() -> None:
    from exporter.config import config_from_mapping

    assert config_from_mapping({"retention": "14d"}).retention == 14 * 86400
    assert config_from_mapping({"retention": 0}).retention == 0
    assert config_from_mapping({}).retention == 30 * 86400
    with pytest.raises(InputError, match=r"retention.*use e\.g\. .*30d"):
        config_from_mapping({"retention": "forever"})
    with pytest.raises(InputError, match="field 'retention': must be 0 or more, got '-1d'"):
        config_from_mapping({"retention": "-1d"})  # a sign is read, and refused as such


def _crash(rt: Runtime) -> None:
    """Stop serving as a killed process does: nothing of the open state is saved at the end."""
    assert rt._server is not None
    rt._server.shutdown()
    rt._server.server_close()
    rt.store.close()


def test_a_killed_exporter_resumes_from_its_last_checkpoint(
    bundle_dir: Path, tmp_path: Path
) -> None:
    """The open windows and traces are saved every `receiver.checkpoint`: a SIGKILL loses only
    the spans acknowledged since, where it lost the whole open window."""
    clock = Clock(T0 + 0.1)
    receiver = replace(make_config(bundle_dir, tmp_path).receiver, checkpoint=1.0)
    config = make_config(bundle_dir, tmp_path / "data", receiver=receiver)
    rt = Runtime(config, clock=clock).start(tick=False)
    send_window(rt, clock, 4, seed=1)  # [T0, T0+2) closed and stored, a checkpoint taken
    start = (clock.now // 2.0) * 2.0
    end_ns = int((start + 0.5) * 1e9)
    assert post(rt, span_request(6, end_ns, seed=2).SerializeToString(), PB).status_code == 200
    clock.now += 1.0
    rt.loop.tick()  # a checkpoint with the 6 traces open (their window too)
    _crash(rt)
    clock.now = start + 2.0 + 0.1
    again = Runtime(config, clock=clock).start(tick=False)
    try:
        clock.now += config.receiver.restart_catchup + 2 * config.grace + 2.0
        again.loop.tick()
        (window,) = again.store.range(start, start + 2.0)
        assert _roots(window) == 6
    finally:
        again.stop()


def test_checkpoint_traces_that_closed_into_a_stored_window_are_not_counted_late(
    bundle_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A checkpoint taken while traces were open, their window closed and stored after it, then
    a kill: resuming those traces must neither count them again nor call them late."""
    clock = Clock(T0 + 0.1)
    receiver = replace(make_config(bundle_dir, tmp_path).receiver, checkpoint=2.0)
    config = make_config(bundle_dir, tmp_path / "data", receiver=receiver)
    rt = Runtime(config, clock=clock).start(tick=False)
    start = (clock.now // 2.0) * 2.0
    clock.now = start + 2.45  # spans of the window [start, start + 2) arrive as it is due
    assert post(rt, span_request(5, int((start + 0.5) * 1e9), 1).SerializeToString(), PB).ok
    clock.now = start + 2.5
    rt.loop.tick()  # a checkpoint with the 5 traces open (the grace has not passed)
    clock.now = start + 2.0 + 2 * config.grace + 0.2
    rt.loop.tick()  # they close, their window is stored; no checkpoint since
    (stored,) = rt.store.range(start, start + 2.0)
    assert _roots(stored) == 5
    _crash(rt)
    caplog.set_level("INFO", logger="deeprest.live")
    again = Runtime(config, clock=clock).start(tick=False)
    try:
        assert "5 traces of the last checkpoint had closed into windows stored" in caplog.text
        clock.now += config.receiver.restart_catchup + 2 * config.grace + 2.0
        again.loop.tick()
        (window,) = again.store.range(start, start + 2.0)
        assert _roots(window) == 5
        late = ("deeprest_otlp_spans_rejected_total", (("reason", "late"),))
        assert scrape(again).get(late, 0) == 0
    finally:
        again.stop()


def test_retries_for_the_window_a_killed_exporter_held_land_in_it_not_late(
    bundle_dir: Path, tmp_path: Path
) -> None:
    """With nothing to resume (no checkpoint since the window began), the window the kill fell
    in still takes the spans clients retry during the catch-up, instead of counting them late."""
    clock = Clock(T0 + 0.1)
    receiver = replace(make_config(bundle_dir, tmp_path).receiver, checkpoint=0.0)
    config = make_config(bundle_dir, tmp_path / "data", receiver=receiver)
    rt = Runtime(config, clock=clock).start(tick=False)
    send_window(rt, clock, 4, seed=1)  # [T0, T0+2) stored
    start = (clock.now // 2.0) * 2.0
    end_ns = int((start + 0.5) * 1e9)
    _crash(rt)  # killed in the window of `start`, before its spans were acknowledged
    clock.now = start + 2.0 + 2.0 + 0.1  # back two windows later
    again = Runtime(config, clock=clock).start(tick=False)
    try:
        retried = span_request(5, end_ns, seed=3)
        assert post(again, retried.SerializeToString(), PB).status_code == 200
        clock.now += config.receiver.restart_catchup + 2 * config.grace + 2.0
        again.loop.tick()
        (window,) = again.store.range(start, start + 2.0)
        assert _roots(window) == 5
        assert again.store.range(start + 2.0, start + 4.0) == []  # passed unheard: not stored
        assert (
            scrape(again).get(("deeprest_otlp_spans_rejected_total", (("reason", "late"),)), 0) == 0
        )
    finally:
        again.stop()


def _trickle(port: int, head: bytes, pieces: list[bytes], gap: float) -> tuple[bytes, float]:
    """Send `head` then each piece `gap` seconds apart; the answer and the seconds it took (the
    server cutting the connection ends the sending early)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        started, answer = time.monotonic(), b""
        try:
            client.sendall(head)
            for piece in pieces:
                time.sleep(gap)
                client.sendall(piece)
        except OSError:
            pass  # cut
        with contextlib.suppress(OSError):
            while chunk := client.recv(4096):
                answer += chunk
        return answer, time.monotonic() - started


def _slot_frees(rt: Runtime) -> None:
    """Wait until a request that no spare thread serves (not a health check) gets a slot."""
    deadline = time.monotonic() + 10
    while "receiver.max_connections" in requests.get(f"{rt.url}/api/v1/model", timeout=5).text:
        assert time.monotonic() < deadline
        time.sleep(0.1)


@pytest.fixture
def short_allowance(monkeypatch: pytest.MonkeyPatch) -> None:
    """Headers within 1 s; a body 1 s plus a second per 100 bytes."""
    from exporter import runtime as runtime_module

    monkeypatch.setattr(runtime_module, "HEADER_DEADLINE", 1.0)
    monkeypatch.setattr(runtime_module, "BODY_GRACE", 1.0)
    monkeypatch.setattr(runtime_module, "MIN_BODY_RATE", 100.0)


def _one_slot(tmp_path: Path) -> Runtime:
    receiver = ReceiverConfig(max_connections=1)
    config = Config(data_dir=tmp_path, host="127.0.0.1", port=0, window=2.0, receiver=receiver)
    return Runtime(config).start(tick=False)


HEAD = (
    b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf"
    b"\r\nContent-Length: %d\r\n\r\n"
)


def test_a_body_that_trickles_in_is_cut_and_frees_its_slot(
    tmp_path: Path, short_allowance: None
) -> None:
    """A byte now and then keeps under the idle timeout: the body's minimum rate cuts it, so
    that such clients cannot hold every connection slot (health checks and scrapes refused)."""
    rt = _one_slot(tmp_path)
    try:
        answer, took = _trickle(rt.port, HEAD % 100, [b"x"] * 40, 0.25)
        assert took < 8  # 40 bytes at 4 a second: cut after about a second
        assert answer == b"" or answer.startswith((b"HTTP/1.1 408", b"HTTP/1.1 400")), answer[:80]
        _slot_frees(rt)
    finally:
        rt.stop()


def test_headers_that_trickle_in_are_cut_at_the_header_deadline_and_not_dispatched(
    tmp_path: Path, short_allowance: None
) -> None:
    """Headers cut short are no request: neither answered nor counted as a bad one."""
    rt = _one_slot(tmp_path)
    try:
        lines = [b"X-Pad-%d: y\r\n" % i for i in range(40)]
        answer, took = _trickle(rt.port, b"GET /healthz HTTP/1.1\r\n", lines, 0.25)
        assert took < 8
        assert b"200 OK" not in answer
        _slot_frees(rt)
        for _ in range(20):  # the slot's thread may not have let it go yet: a 503 at once
            answer, took = _trickle(rt.port, b"POST /v1/traces HTTP/1.1\r\n", lines, 0.25)
            if not answer.startswith(b"HTTP/1.1 503"):
                break
            time.sleep(0.1)
        assert took < 8 and answer == b"", answer[:80]
        _slot_frees(rt)
        counted = scrape(rt)
        rejected = {k: v for k, v in counted.items() if k[0].startswith("deeprest_otlp_requests_")}
        assert rejected and not any(rejected.values()), rejected
    finally:
        rt.stop()


def test_idle_connections_closed_are_summed_up_not_logged_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from exporter import runtime as runtime_module

    monkeypatch.setattr(runtime_module._QuietHandler, "timeout", 0.3)
    monkeypatch.setattr(runtime_module, "WARN_EVERY", 0.0)
    caplog.set_level("INFO")
    rt = _one_slot(tmp_path)
    try:
        with socket.create_connection(("127.0.0.1", rt.port), timeout=10) as idle:
            assert idle.recv(100) == b""  # closed by the server after its timeout
        _slot_frees(rt)
    finally:
        rt.stop()
    assert "Request timed out" not in caplog.text
    assert "1 connection closed after 0.3s without a byte" in caplog.text


def test_fast_headers_buy_no_time_for_a_trickled_body(
    tmp_path: Path, short_allowance: None
) -> None:
    """Only body bytes earn time: 20 KB of headers at once, then a byte now and then, is cut
    after the grace (at 100 bytes/s, the headers would have bought 200 s)."""
    rt = _one_slot(tmp_path)
    try:
        pad = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"y" * 1000) for i in range(20))
        head = (HEAD % 100).replace(b"\r\n\r\n", b"\r\n" + pad + b"\r\n", 1)
        answer, took = _trickle(rt.port, head, [b"x"] * 40, 0.25)
        assert took < 8
        assert answer == b"" or answer.startswith((b"HTTP/1.1 408", b"HTTP/1.1 400")), answer[:80]
    finally:
        rt.stop()


def test_spare_threads_cut_probes_that_trickle_their_headers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every slot held, scrapers that trickle their headers hold the spare threads for
    PROBE_HEADER_DEADLINE only, so health checks get through again."""
    from exporter import runtime as runtime_module

    monkeypatch.setattr(runtime_module, "PROBE_SLOTS", 2)
    monkeypatch.setattr(runtime_module, "PROBE_HEADER_DEADLINE", 0.5)
    rt = _one_slot(tmp_path)
    try:
        with socket.create_connection(("127.0.0.1", rt.port), timeout=10) as holder:
            holder.sendall(HEAD % 100)
            time.sleep(0.3)
            lines = [b"X-Pad-%d: y\r\n" % i for i in range(40)]
            slow = [
                threading.Thread(
                    target=_trickle, args=(rt.port, b"GET /metrics HTTP/1.1\r\n", lines, 0.25)
                )
                for _ in range(2)
            ]
            for thread in slow:
                thread.start()
            time.sleep(0.2)
            started = time.monotonic()
            while requests.get(f"{rt.url}/healthz", timeout=5).status_code != 200:
                assert time.monotonic() - started < 5  # the spares come back within seconds
                time.sleep(0.1)
            for thread in slow:
                thread.join()
    finally:
        rt.stop()


def test_a_slow_upload_that_keeps_its_rate_is_not_cut(
    bundle_dir: Path, tmp_path: Path, short_allowance: None
) -> None:
    """A slow link that keeps sending (here 4 times the minimum rate, for longer than the grace
    and the idle-free allowance of its first bytes) is taken whole: only trickles are cut."""
    config = make_config(bundle_dir, tmp_path)
    rt = Runtime(config).start(tick=False)
    try:
        body = span_request(10, int((T0 + 0.5) * 1e9), seed=1).SerializeToString()
        pieces = [body[i : i + 40] for i in range(0, len(body), 40)]
        assert len(pieces) * 0.1 > 3.0  # longer than the grace plus a fixed allowance
        answer, _ = _trickle(rt.port, HEAD % len(body), pieces, 0.1)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert scrape(rt)[("deeprest_otlp_spans_received_total", ())] > 0
    finally:
        rt.stop()


def test_scrapes_and_health_checks_are_served_while_every_slot_is_held(tmp_path: Path) -> None:
    """A client holding the one slot (its body not yet sent) leaves scrapes and health checks
    served on the spare threads, one request per connection; other requests are refused 503."""
    rt = _one_slot(tmp_path)
    try:
        with socket.create_connection(("127.0.0.1", rt.port), timeout=10) as holder:
            holder.sendall(HEAD % 100)
            time.sleep(0.3)
            assert requests.get(f"{rt.url}/healthz", timeout=5).status_code == 200
            assert requests.get(f"{rt.url}/readyz", timeout=5).status_code in (200, 503)
            metrics = requests.get(f"{rt.url}/metrics", timeout=5)
            assert (
                metrics.status_code == 200 and "deeprest_otlp_spans_received_total" in metrics.text
            )
            refused = requests.post(f"{rt.url}/v1/traces", data=b"", headers=PB, timeout=5)
            assert refused.status_code == 503
            assert "receiver.max_connections" in refused.json()["error"]
            with requests.Session() as session:  # a spare slot serves one request, then closes
                first = session.get(f"{rt.url}/healthz", timeout=5)
                assert first.status_code == 200 and first.headers.get("Connection") == "close"
        counted = scrape(rt)[("deeprest_http_connections_refused_total", ())]
        assert counted >= 1
    finally:
        rt.stop()


def test_a_kept_window_behind_others_stored_since_is_stored_then(
    bundle_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A window this release kept at a stop, then another run (an older release) stored later
    windows without it: it is stored at this start, with the calls it had, not called stored
    before and lost; one of another window length is dropped, and said to be."""
    from estimator.windows import Window
    from exporter.store import WindowStore

    config = make_config(bundle_dir, tmp_path / "data")
    kept, later = Window(T0, T0 + 2.0), Window(T0 + 4.0, T0 + 6.0)
    kept.calls[PATHS[0]] = later.calls[PATHS[0]] = 3.0
    other = Window(T0 + 2.0, T0 + 3.0)  # of another window length
    other.calls[PATHS[0]] = 2.0
    store = WindowStore(config.data_dir)
    store.put([later])
    store.save_open([(kept, {}), (other, {})], {})
    store.close()
    caplog.set_level("INFO", logger="deeprest.live")
    rt = Runtime(config, clock=Clock(T0 + 10.0)).start(tick=False)
    try:
        (stored,) = rt.store.range(T0, T0 + 1.0)
        assert stored.calls[PATHS[0]] == 3.0
    finally:
        rt.stop()
    assert "stored 1 window left open by the last stop, behind windows another run" in caplog.text
    assert "1 window left open by the last stop dropped, with 2 API calls" in caplog.text
    assert "nothing lost" not in caplog.text


def test_a_checkpoint_window_stored_before_a_kill_is_said_at_info_not_warned_of(
    bundle_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A checkpoint older than the last stored window holds that window too: nothing is lost,
    so no warning of windows dropped with their calls."""
    from estimator.windows import Window
    from exporter.store import WindowStore

    config = make_config(bundle_dir, tmp_path / "data")
    window = Window(T0, T0 + 2.0)
    window.calls[PATHS[0]] = 3.0
    store = WindowStore(config.data_dir)
    store.put([window])
    store.save_open([(window, {})], {})  # the checkpoint taken while it was still open
    store.close()
    caplog.set_level("INFO", logger="deeprest.live")
    rt = Runtime(config, clock=Clock(T0 + 10.0)).start(tick=False)
    rt.stop()
    assert (
        "1 window of the last checkpoint had been stored before the stop: nothing lost"
        in caplog.text
    )
    assert "dropped" not in caplog.text

"""OTLP decoding, span validation, trace assembly and window counting (no server)."""

from __future__ import annotations

import gzip
import io
import json
from typing import Any

import pytest
from google.protobuf import json_format

from estimator.errors import DataWarning
from estimator.windows import ORPHAN_ROOT, api_counts
from exporter.assembly import TraceAssembler, WindowAggregator, trace_paths, trace_trees
from exporter.config import ReceiverConfig
from exporter.receiver import (
    JSON,
    PROTOBUF,
    READ_PIECE,
    OtlpError,
    count_spans,
    decode_body,
    extract_spans,
    inflate,
    read_limited,
    success_body,
)
from tests.exporter_world import PATHS, span_request

LIMITS = ReceiverConfig(max_body_bytes=1 << 20, max_decompressed_bytes=1 << 20)
NS = 1_000_000_000


def _otlp_json(request) -> dict:  # type: ignore[no-untyped-def]
    """OTLP JSON as the spec writes it: hex ids, integer enums."""
    obj = json_format.MessageToDict(request, use_integers_for_enums=True)
    for rs in obj["resourceSpans"]:
        for scope in rs["scopeSpans"]:
            for span in scope["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = __import__("base64").b64decode(span[key]).hex()
                span["kind"] = 2
                span["someFutureField"] = {"x": 1}
    return obj


def test_protobuf_and_json_decode_to_the_same_spans() -> None:
    request = span_request(5, 10 * NS)
    from_proto = extract_spans(decode_body(request.SerializeToString(), PROTOBUF, "", LIMITS)[0])
    body = json.dumps(_otlp_json(request)).encode()
    from_json = extract_spans(decode_body(body, "application/json; charset=utf-8", "", LIMITS)[0])
    assert len(from_proto.spans) == 15 and not from_proto.rejected
    assert sorted(from_json.spans) == sorted(from_proto.spans)
    gz, _ = decode_body(gzip.compress(request.SerializeToString()), PROTOBUF, "gzip", LIMITS)
    assert sorted(extract_spans(gz).spans) == sorted(from_proto.spans)


def test_bad_spans_are_rejected_one_by_one_with_reasons() -> None:
    request = span_request(4, 10 * NS)
    spans = request.resource_spans[1].scope_spans[0].spans  # the compose spans
    spans[0].name = ""
    spans[1].span_id = b"\x00" * 8
    spans[2].end_time_unix_nano = 0
    del request.resource_spans[2].resource.attributes[:]  # store: no service.name
    decoded = extract_spans(request)
    assert decoded.rejected == {
        "empty_name": 1,
        "bad_id": 1,
        "bad_time": 1,
        "missing_service_name": 4,
    }
    assert len(decoded.spans) == 5
    assert sum(1 for s in decoded.spans if s[3] == "front") == 4
    assert sum(1 for s in decoded.spans if s[3] == "compose") == 1
    body, kind = success_body(decoded, JSON)
    partial = json.loads(body)["partialSuccess"]
    assert (
        kind == JSON and int(partial["rejectedSpans"]) == 7 and "bad_id" in partial["errorMessage"]
    )


def test_names_are_cut_to_a_bound_so_labels_and_stored_windows_stay_small() -> None:
    """A span named by a megabyte of text (a SQL statement, a hostile client) and such a service
    name are cut to MAX_NAME characters: they become label values and stored path names."""
    from estimator.spans import MAX_NAME

    request = span_request(2, 10 * NS)
    request.resource_spans[1].resource.attributes[0].value.string_value = "c" * (1 << 20)
    request.resource_spans[0].scope_spans[0].spans[0].name = "SELECT " + "x" * (1 << 20)
    decoded = extract_spans(request)
    assert not decoded.rejected and len(decoded.spans) == 6  # kept, not refused: traces stay whole
    names = {s[3] for s in decoded.spans} | {s[4] for s in decoded.spans}
    assert max(map(len, names)) == MAX_NAME
    assert "c" * (MAX_NAME - 1) + "…" in names and "SELECT " + "x" * (MAX_NAME - 8) + "…" in names
    assert {"front", "store", "/compose", "write"} <= names  # short names as they are


@pytest.mark.parametrize(
    ("body", "content_type", "encoding", "status"),
    [
        (b"\xff\xff\xff\xff garbage", PROTOBUF, "", 400),
        (span_request(3, NS).SerializeToString()[:-7], PROTOBUF, "", 400),
        (b'{"resourceSpans": 5}', JSON, "", 400),
        (b'{"resourceSpans": [{"resource": {}, "scopeSpans": 7}]}', JSON, "", 400),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": {}}]}]}', JSON, "", 400),
        (b'{"resourceSpans": [3]}', JSON, "", 400),
        (b"[1, 2]", JSON, "", 400),
        (b"not json", JSON, "", 400),
        (b"x", "text/plain", "", 415),
        (b"x", PROTOBUF, "br", 415),
        (b"\x1f\x8b\x08\x00garbage", PROTOBUF, "gzip", 400),
        (gzip.compress(b"x" * 1000)[:-10], PROTOBUF, "gzip", 400),
    ],
)
def test_undecodable_bodies_are_refused(
    body: bytes, content_type: str, encoding: str, status: int
) -> None:
    with pytest.raises(OtlpError) as info:
        decode_body(body, content_type, encoding, LIMITS)
    assert info.value.status == status


def test_gzip_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(bytes(64 << 20), compresslevel=9)  # 64 MiB of zeros, ~64 KiB on the wire
    assert len(bomb) < 200_000
    with pytest.raises(OtlpError) as info:
        inflate(bomb, 1 << 20)
    assert info.value.status == 413
    assert inflate(gzip.compress(b"ab") + gzip.compress(b"cd"), 10) == b"abcd"


def test_invalid_hex_id_rejects_only_that_span() -> None:
    obj = _otlp_json(span_request(2, 10 * NS))
    obj["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = "zz-not-hex"
    message, malformed = decode_body(json.dumps(obj).encode(), JSON, "", LIMITS)
    decoded = extract_spans(message)
    assert decoded.rejected == {"bad_id": 1} and len(decoded.spans) == 5 and malformed == 0


@pytest.mark.parametrize(
    "bad",
    [{"name": 5}, {"endTimeUnixNano": -5}, {"endTimeUnixNano": "abc"}, {"attributes": 3}],
)
def test_a_span_whose_fields_do_not_parse_is_malformed_and_the_rest_are_kept(
    bad: dict[str, Any],
) -> None:
    obj = _otlp_json(span_request(2, 10 * NS))
    spans = obj["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans[1] = {**spans[1], **bad}
    spans.append("not a span")
    message, malformed = decode_body(json.dumps(obj).encode(), JSON, "", LIMITS)
    decoded = extract_spans(message)
    assert malformed == 2 and len(decoded.spans) == 5 and not decoded.rejected
    assert count_spans(message) == 5


@pytest.mark.parametrize(
    ("where", "bad"),
    [
        ("resource", {"attributes": [{"key": "host.cores", "value": {"intValue": "many"}}]}),
        ("resource", {"attributes": 7}),
        ("scope", {"name": 5}),
    ],
)
def test_spans_of_a_resource_or_scope_that_does_not_parse_are_malformed_and_others_kept(
    where: str, bad: dict[str, Any]
) -> None:
    obj = _otlp_json(span_request(2, 10 * NS))  # 3 resources of 2 spans, one scope each
    first = obj["resourceSpans"][0]
    if where == "resource":
        first["resource"] = {**first["resource"], **bad}
    else:
        first["scopeSpans"][0]["scope"] = bad
    message, malformed = decode_body(json.dumps(obj).encode(), JSON, "", LIMITS)
    assert malformed == 2 and count_spans(message) == 4  # the other resources' spans are kept
    assert len(extract_spans(message).spans) == 4


def test_traces_assemble_across_requests_and_out_of_order() -> None:
    spans = extract_spans(span_request(3, 7 * NS + 5)).spans
    assembler = TraceAssembler(grace=1.0, max_pending=100)
    aggregator = WindowAggregator(window=2.0, delay=2.0, now=6.0)
    assert assembler.add(spans[6:][::-1], now=6.0)  # leaf spans first, in another request
    assert assembler.add(spans[3:6], now=6.5)
    assert assembler.expire(now=7.2) == []  # the trace saw spans 0.7 s ago: still open
    assert assembler.add(spans[:3], now=7.0)
    assert assembler.pending_spans == 9
    closed = assembler.expire(now=8.1)
    assert len(closed) == 3 and assembler.pending_spans == 0
    for trees in closed:
        aggregator.add_trees(trees, now=8.1)
    assert aggregator.close(now=9.9) == []  # [6, 8) closes at 8 + delay
    (window,) = aggregator.close(now=10.0)
    assert (window.start, window.end) == (6.0, 8.0)
    assert window.calls == {path: 3.0 for path in PATHS}
    assert aggregator.api_calls() == {("front", "/compose"): 3.0}
    latency = window.latency[("front", "/compose")]  # the root spans last 10 microseconds
    assert latency.count == 3 and latency.p99 == pytest.approx(10e-6)
    late = aggregator.add_paths([(int(7.5 * NS), PATHS[0])], now=10.0)
    assert late == 1


def test_spans_after_their_trace_closed_count_as_a_split_trace() -> None:
    """A request longer than the grace: its children close as an orphan tree, and the root,
    arriving later, is a trace anew. Both count; the split is counted once per trace."""
    spans = extract_spans(span_request(2, 7 * NS)).spans  # 2 traces: front -> compose -> store
    roots = [s for s in spans if s[3] == "front"]
    children = [s for s in spans if s[3] != "front"]
    assembler = TraceAssembler(grace=1.0, max_pending=100)
    assert assembler.add(children, now=0.0)
    assert [len(trees) for trees in assembler.expire(now=1.5)] == [1, 1]  # two orphan trees
    assert assembler.split_traces == 0
    assert assembler.add(roots, now=2.0)
    assert assembler.add(roots, now=2.1)  # a retry of the same spans: the same split
    assert assembler.split_traces == 2
    assert sum(len(t.paths) for trees in assembler.expire(now=4.0) for t in trees) == 2


def test_a_trace_whose_spans_never_stop_closes_at_its_age_limit() -> None:
    """A trace that gets a span within every grace (one trace id a misconfigured client gives
    every request) closes once open for MAX_TRACE_AGE: the buffer it holds stays bounded, and
    the span buffer does not fill up for ever, refusing every client with 503."""
    from exporter.assembly import MAX_TRACE_AGE

    (tid, _, _, component, operation, end, start, weight) = extract_spans(
        span_request(1, 7 * NS)
    ).spans[0]
    assembler = TraceAssembler(grace=1.0, max_pending=10**6)
    closed = []
    now, n = 0.0, 0
    while now < 3 * MAX_TRACE_AGE:
        span = (tid, n.to_bytes(8, "big"), b"", component, operation, end, start, weight)
        assert assembler.add([span], now=now)
        closed += assembler.expire(now)
        assert assembler.pending_spans <= MAX_TRACE_AGE / 0.5 + 1
        now, n = now + 0.5, n + 1
    assert len(closed) == 2 and assembler.split_traces == 2  # closed twice, begun anew
    counted = sum(t.weight for trees in closed for t in trees)  # each span a root here
    assert counted + assembler.pending_spans == n  # every span counted once


def test_gateways_learned_from_live_traces_stay_bounded() -> None:
    """Every catch-all root a trace shows is remembered as a gateway: a flood of traces each
    with a new service name at a `/*` root must not grow that memory without end."""
    from estimator.spans import MAX_KNOWN_GATEWAYS

    assembler = TraceAssembler(grace=1.0, max_pending=10**6)
    for n in range(MAX_KNOWN_GATEWAYS + 50):
        tid, sid = n.to_bytes(16, "big"), (n + 1).to_bytes(8, "big")
        root = (tid, sid, b"", f"gw-{n}", "/*", 7 * NS, 6 * NS, 1.0)
        child = (tid, sid[::-1], sid, "svc", "/api", 7 * NS, 6 * NS, 1.0)
        assert assembler.add([root, child], now=0.0)
    assert len(assembler.expire(now=2.0)) == MAX_KNOWN_GATEWAYS + 50
    assert len(assembler.routes.gateways) == MAX_KNOWN_GATEWAYS


def test_a_kept_window_ahead_of_the_clock_leaves_the_downtime_to_the_retries() -> None:
    """A window the stop kept for a client whose clock runs an hour ahead must not make the
    windows that passed while nothing listened read as empty, nor their retries as late."""
    from estimator.windows import Window

    path = (("front", "/compose"),)
    ahead = Window(3700.0, 3710.0, {path: 1.0})
    kept = [(Window(100.0, 110.0, {path: 4.0}), {}), (ahead, {})]
    # the newest stored window ended at 100; the exporter was down from 112 to 135
    aggregator = WindowAggregator(
        window=10.0, delay=10.0, now=135.0, after=100.0, resumed=kept, restarted=True
    )
    closed = aggregator.close(now=200.0)
    assert [w.start for w in closed] == [100.0, 130.0, 140.0, 150.0, 160.0, 170.0, 180.0]
    assert closed[0].calls == {path: 4.0}
    # killed after a checkpoint that held the window ahead only: retries still land
    aggregator = WindowAggregator(
        window=10.0, delay=10.0, now=135.0, after=100.0, resumed=[(ahead, {})], restarted=True
    )
    assert aggregator.add_paths([(115 * NS, path)], now=136.0) == 0  # a retry, not late
    closed = aggregator.close(now=200.0)
    assert [w.start for w in closed] == [110.0, 130.0, 140.0, 150.0, 160.0, 170.0, 180.0]
    assert closed[0].calls == {path: 1.0}
    assert [w.start for w, _ in aggregator.open_windows()] == [3700.0]  # kept for its time
    # nothing stored yet, the window ahead kept alone: the traffic of now is not late
    aggregator = WindowAggregator(
        window=10.0, delay=10.0, now=135.0, resumed=[(ahead, {})], restarted=True
    )
    assert aggregator.add_paths([(136 * NS, path)], now=136.0) == 0
    assert [w.start for w in aggregator.close(now=200.0)][:1] == [130.0]


def test_api_names_past_the_label_cap_count_as_other() -> None:
    from exporter.assembly import MAX_API_LABELS, OTHER_API

    aggregator = WindowAggregator(window=2.0, delay=2.0, now=6.0)
    register = ("front", "/register")
    aggregator.reserved = frozenset({register})  # the serving model's APIs
    aggregator.add_paths(
        [(7 * NS, (("front", f"/user/{i}"),)) for i in range(MAX_API_LABELS + 5)], 6.0
    )
    aggregator.add_paths([(7 * NS, (("front", "/user/0"),))], 6.0)  # a known one keeps its name
    aggregator.add_paths([(7 * NS, (register,))], 6.0)  # a model's API is never hidden
    calls = aggregator.api_calls()
    assert len(calls) == MAX_API_LABELS + 2
    assert calls[OTHER_API] == 5 and calls[("front", "/user/0")] == 2 and calls[register] == 1


def test_orphans_and_cycles_become_roots() -> None:
    spans = {
        b"a": (b"missing", "svc", "orphan", 5, 1, 1.0),
        b"b": (b"a", "svc", "child", 4, 2, 1.0),
        b"c": (b"d", "x", "one", 3, 1, 1.0),
        b"d": (b"c", "y", "two", 2, 1, 1.0),
    }
    with pytest.warns(DataWarning, match="parent cycle"):
        paths = {path: end for end, path in trace_paths(spans)}
    lost = ORPHAN_ROOT  # an orphan's work counts below a step that is no API
    assert paths[(lost, ("svc", "orphan"))] == 5
    assert paths[(lost, ("svc", "orphan"), ("svc", "child"))] == 5
    assert api_counts(dict.fromkeys(paths, 1.0)) == {}
    assert len(paths) == 4  # the cycle c <-> d is cut, each span counted once


def test_pending_limit_refuses_whole_batches() -> None:
    spans = extract_spans(span_request(4, 7 * NS)).spans
    assembler = TraceAssembler(grace=1.0, max_pending=10)
    assert assembler.add(spans[:9], now=0.0)
    assert not assembler.add(spans[9:], now=0.0)
    assert assembler.pending_spans == 9


def test_live_paths_fold_gateway_internals_like_the_importers() -> None:
    spans = {
        b"r": (b"", "gateway", "/*", 9, 1, 1.0),
        b"g": (b"r", "gateway", "HTTP POST", 8, 2, 1.0),
        b"o": (b"g", "orders", "/api/orders", 7, 3, 1.0),
    }
    paths = {path for _, path in trace_paths(spans)}
    assert paths == {(("gateway", "/*"),), (("gateway", "/*"), ("orders", "/api/orders"))}


def test_live_traces_that_lost_their_gateway_root_fold_below_it_as_the_importers_do() -> None:
    """The assembler remembers what closed traces showed of gateways across traces: a later
    trace whose root span was lost is one request below that gateway's root."""
    from estimator.spans import Routes

    def trace(root: bool) -> dict[bytes, tuple[bytes, str, str, int, int, float]]:
        spans = {
            b"g": (b"r", "gateway", "HTTP POST", 8, 2, 1.0),
            b"h": (b"r", "gateway", "Filter.handle", 8, 2, 1.0),
            b"o": (b"g", "orders", "/api/orders", 7, 3, 1.0),
        }
        return {b"r": (b"", "gateway", "/*", 9, 1, 1.0), **spans} if root else spans

    routes = Routes()
    assert len(trace_trees(trace(root=True), routes)) == 1
    [tree] = trace_trees(trace(root=False), routes)  # two orphans: one request, not two
    assert not tree.rooted
    assert tree.paths == [(("gateway", "/*"),), (("gateway", "/*"), ("orders", "/api/orders"))]
    assert len(trace_trees(trace(root=False))) == 2  # nothing known of the gateway: as before


class _Recording(io.BytesIO):
    """A body stream that records the size of every read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.asked: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        self.asked.append(-1 if size is None else size)
        return super().read(size)


def test_a_body_is_read_in_pieces_not_in_one_buffer_of_its_announced_length() -> None:
    """A client that announces 4 MiB and sends little must not make the server hold 4 MiB."""
    data = bytes(range(256)) * 1000  # 256,000 bytes
    stream = _Recording(data)
    assert read_limited(stream, len(data), 4 << 20) == data
    assert max(stream.asked) <= READ_PIECE and len(stream.asked) >= len(data) // READ_PIECE
    stream = _Recording(data)
    assert read_limited(stream, None, 4 << 20) == data  # no length: read to the end
    assert max(stream.asked) <= READ_PIECE
    with pytest.raises(OtlpError, match="ended after 256000 of its 300000 bytes"):
        read_limited(_Recording(data), 300_000, 4 << 20)
    with pytest.raises(OtlpError, match="body exceeds 1000 bytes"):
        read_limited(_Recording(data), None, 1000)

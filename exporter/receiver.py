"""OTLP/HTTP trace decoding: body limits, gzip, protobuf and JSON, per-span validation."""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from werkzeug.exceptions import ClientDisconnected

from estimator.importers.common import MAX_UNIX_NS
from estimator.spans import MAX_NAME, adjusted_count, bounded_name, check_sampling_ratio
from exporter.config import ReceiverConfig

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

SpanRecord = tuple[bytes, bytes, bytes, str, str, int, int, float]
"""(trace id, span id, parent span id or b"", component, operation, end and start time in ns,
adjusted count; start -1 when the span does not set it; the adjusted count is the traces a
sampled one stands for, from its tracestate's `ot=th:` threshold, else the configured ratio's)."""

REASONS = (
    "missing_service_name", "empty_name", "bad_id", "bad_time", "malformed", "late", "too_deep",
)  # fmt: skip
"""Why a single span is rejected (label values of deeprest_otlp_spans_rejected_total):
malformed is an OTLP JSON span whose fields do not parse; bad_time one with no time, or whose
trace ends in no window the exporter can count (exporter.skew: a client's clock is off); late a
span of a trace whose root ended in a window already closed, or implausibly far ahead; too_deep
a span below the call depth cap (estimator.spans.MAX_PATH_DEPTH). The last two are counted once
the trace is assembled."""

REQUEST_REASONS = (
    "too_large",
    "bad_encoding",
    "bad_content_type",
    "undecodable",
    "too_many_spans",
    "queue_full",
    "body_cut",
    "stopping",
)
"""Why a whole request is refused (label values of deeprest_otlp_requests_rejected_total)."""

_ZERO16 = bytes(16)
_ZERO8 = bytes(8)
_HEX = re.compile(r"[0-9a-fA-F]*")
_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


class OtlpError(Exception):
    """A request the receiver refuses as a whole: HTTP status, reason label, message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


@dataclass
class Decoded:
    """Usable spans of one request and counts of the rejected ones per reason."""

    spans: list[SpanRecord] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # for the client, its spans kept

    @property
    def n_rejected(self) -> int:
        return sum(self.rejected.values())


# ---------------------------------------------------------------- body


READ_PIECE = 64 << 10
"""Bytes of a request body read at a time: a connection holds what has arrived of its body,
never a buffer the size its Content-Length announces (thousands of slow clients announcing
4 MiB each would otherwise take gigabytes before sending a byte)."""


def read_limited(stream: Any, content_length: int | None, limit: int) -> bytes:
    """Read at most `limit` bytes of a request body, refusing larger ones before reading them."""
    if content_length is not None and content_length > limit:
        raise OtlpError(413, "too_large", f"body of {content_length} bytes exceeds {limit}")
    want = limit + 1 if content_length is None else content_length
    body = bytearray()
    try:
        while len(body) < want:
            piece = stream.read(min(READ_PIECE, want - len(body)))
            if not piece:
                break
            body += piece
    except ClientDisconnected as exc:
        if not isinstance(exc.__context__, OSError):  # nothing more came: the client hung up
            raise _hung_up(len(body), content_length) from None
        raise _stalled() from None
    except OSError:  # the connection's idle timeout
        raise _stalled() from None
    if len(body) > limit:
        raise OtlpError(413, "too_large", f"body exceeds {limit} bytes")
    if content_length is not None and len(body) < content_length:
        raise _hung_up(len(body), content_length)
    return bytes(body)


def _stalled() -> OtlpError:
    return OtlpError(408, "body_cut", "the body stopped arriving before its end")


def _hung_up(got: int, content_length: int | None) -> OtlpError:
    return OtlpError(400, "body_cut", f"the body ended after {got} of its {content_length} bytes")


def inflate(body: bytes, limit: int) -> bytes:
    """Gunzip incrementally, never producing more than `limit` + 1 bytes (gzip bombs get 413)."""
    out = bytearray()
    data = body
    while data:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(data, limit + 1 - len(out))
        except zlib.error as exc:
            raise OtlpError(400, "bad_encoding", f"gzip body does not decompress: {exc}") from None
        if len(out) > limit or inflater.unconsumed_tail:
            raise OtlpError(413, "too_large", f"decompressed body exceeds {limit} bytes")
        if not inflater.eof:
            raise OtlpError(400, "bad_encoding", "gzip body is truncated")
        data = inflater.unused_data  # a further gzip member
    return bytes(out)


def decode_body(
    body: bytes, content_type: str, encoding: str, limits: ReceiverConfig
) -> tuple[ExportTraceServiceRequest, int]:
    """Decompress and decode a request body of either OTLP encoding; the request and how many
    of its spans were malformed (JSON only: a protobuf span that does not parse is a body that
    does not parse)."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "gzip":
        body = inflate(body, limits.max_decompressed_bytes)
    elif encoding not in ("identity", ""):
        raise OtlpError(415, "bad_encoding", f"unsupported Content-Encoding {encoding!r}; use gzip")
    kind = content_type.split(";")[0].strip().lower()
    if kind == PROTOBUF:
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except (DecodeError, RecursionError, ValueError) as exc:
            raise OtlpError(400, "undecodable", f"not an OTLP protobuf request: {exc}") from None
        return request, 0
    if kind == JSON:
        return decode_json(body)
    raise OtlpError(
        415, "bad_content_type", f"unsupported Content-Type {kind!r}; use {PROTOBUF} or {JSON}"
    )


def _fix_id(value: Any) -> Any:
    """OTLP JSON ids are hex; protobuf JSON wants base64. Invalid ids become empty (rejected)."""
    if not isinstance(value, str):
        return value
    if len(value) % 2 == 0 and _HEX.fullmatch(value):
        return base64.b64encode(bytes.fromhex(value)).decode("ascii")
    try:
        base64.b64decode(value, validate=True)
        return value
    except (binascii.Error, ValueError):
        return ""


def _items(obj: Any, *keys: str) -> Iterable[Any]:
    for key in keys:
        value = obj.get(key) if isinstance(obj, dict) else None
        if isinstance(value, list):
            yield from value


def _fix_ids(obj: Any) -> None:
    for key in _ID_KEYS:
        if key in obj:
            obj[key] = _fix_id(obj[key])


_PARSE_ERRORS = (json_format.ParseError, ValueError, TypeError, AttributeError, RecursionError)


def decode_json(body: bytes) -> tuple[ExportTraceServiceRequest, int]:
    """Decode OTLP JSON: hex ids, integer or named enums, unknown fields ignored. Each span is
    parsed on its own, and each resource and scope apart from its spans: a span whose fields do
    not parse is counted (malformed), as are the spans of a resource or scope whose own fields
    do not parse (a bad resource attribute); the others are kept. A body whose shape is not
    OTLP's (resourceSpans, scopeSpans or spans that are no list of objects) is refused."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise OtlpError(400, "undecodable", f"not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise OtlpError(400, "undecodable", "the JSON body must be an object with resourceSpans")
    request = ExportTraceServiceRequest()
    malformed = 0
    for rs in _listed(obj, "resourceSpans", "resource_spans"):
        if "instrumentationLibrarySpans" in rs and "scopeSpans" not in rs:
            rs["scopeSpans"] = rs.pop("instrumentationLibrarySpans")
        scopes = _listed(rs, "scopeSpans", "scope_spans")
        kept: list[tuple[ScopeSpans, list[Span]]] = []
        for scope in scopes:
            spans = _listed(scope, "spans", objects=False)  # a span that is none: malformed
            good, bad = _spans_of(spans)
            malformed += bad
            head = ScopeSpans()
            if _parsed({k: v for k, v in scope.items() if k != "spans"}, head):
                kept.append((head, good))
            else:
                malformed += len(good)  # its scope does not parse: its spans are unusable
        resource = ResourceSpans()
        own = {k: v for k, v in rs.items() if k not in ("scopeSpans", "scope_spans")}
        if not _parsed(own, resource):
            malformed += sum(len(good) for _, good in kept)
            continue
        for head, good in kept:
            head.spans.extend(good)
            resource.scope_spans.append(head)
        request.resource_spans.append(resource)
    return request, malformed


def _listed(obj: dict[str, Any], *keys: str, objects: bool = True) -> list[Any]:
    """The items listed under the first of `keys` that `obj` has (none if it has none); a
    value that is no list (of objects, with `objects`) refuses the request."""
    for key in keys:
        if key not in obj:
            continue
        value = obj[key]
        if not isinstance(value, list) or (objects and not all(isinstance(v, dict) for v in value)):
            raise OtlpError(
                400, "undecodable", f"JSON does not match OTLP: '{key}' must be a list of objects"
            )
        return value
    return []


def _parsed(obj: dict[str, Any], message: Any) -> bool:
    """Parse `obj` into `message`; False where its fields do not parse."""
    try:
        json_format.ParseDict(obj, message, ignore_unknown_fields=True)
    except _PARSE_ERRORS:
        return False
    return True


def _spans_of(spans: list[Any]) -> tuple[list[Span], int]:
    """The spans that parse, and how many do not."""
    good: list[Span] = []
    bad = 0
    for span in spans:
        message = Span()
        try:
            if not isinstance(span, dict):
                raise TypeError("a span must be an object")
            _fix_ids(span)
            for link in _items(span, "links"):
                if isinstance(link, dict):
                    _fix_ids(link)
        except _PARSE_ERRORS:
            bad += 1
            continue
        if _parsed(span, message):
            good.append(message)
        else:
            bad += 1
    return good, bad


# ---------------------------------------------------------------- spans


def _service_name(resource: Any) -> str:
    for attribute in resource.attributes:
        if attribute.key == "service.name":
            value: str = attribute.value.string_value
            return value
    return ""


def extract_spans(request: ExportTraceServiceRequest, sampling_ratio: float = 1.0) -> Decoded:
    """Usable spans of a request; bad ones are counted per reason, never fatal. A span whose
    tracestate carries no sampling threshold stands for 1 / `sampling_ratio` traces."""
    unannotated = check_sampling_ratio(sampling_ratio)
    weights: dict[str, float] = {"": unannotated}
    out = Decoded()
    spans = out.spans
    append = spans.append
    rejected = out.rejected
    for rs in request.resource_spans:
        component = _service_name(rs.resource)
        if len(component) > MAX_NAME:  # names are label values: bounded at once, held so
            component = bounded_name(component)
        for scope in rs.scope_spans:
            if not component:
                if scope.spans:
                    n = len(scope.spans)
                    rejected["missing_service_name"] = rejected.get("missing_service_name", 0) + n
                continue
            for span in scope.spans:
                tid = span.trace_id
                sid = span.span_id
                parent = span.parent_span_id
                name = span.name
                end = span.end_time_unix_nano
                if (
                    len(tid) != 16
                    or len(sid) != 8
                    or tid == _ZERO16
                    or sid == _ZERO8
                    or (parent and (len(parent) != 8 or parent == sid))
                ):
                    rejected["bad_id"] = rejected.get("bad_id", 0) + 1
                elif not name:
                    rejected["empty_name"] = rejected.get("empty_name", 0) + 1
                elif end <= 0 or end < span.start_time_unix_nano or end > MAX_UNIX_NS:
                    # past 2262 (64-bit nanoseconds) is a corrupted value, as the importers say
                    rejected["bad_time"] = rejected.get("bad_time", 0) + 1
                else:
                    if len(name) > MAX_NAME:
                        name = bounded_name(name)
                    start = span.start_time_unix_nano or -1
                    parent = b"" if parent == _ZERO8 else parent
                    state = span.trace_state
                    weight = weights.get(state)
                    if weight is None:
                        weight = weights[state] = adjusted_count(state) or unannotated
                    append((tid, sid, parent, component, name, end, start, weight))
    return out


def count_spans(request: ExportTraceServiceRequest) -> int:
    """Number of spans in a request (cheap: no span is touched)."""
    return sum(len(scope.spans) for rs in request.resource_spans for scope in rs.scope_spans)


# ---------------------------------------------------------------- responses


def success_body(decoded: Decoded, content_type: str) -> tuple[bytes, str]:
    """ExportTraceServiceResponse, with partial success when spans were rejected, or a warning
    in its message alone (rejected_spans 0, as OTLP allows) when all were kept."""
    response = ExportTraceServiceResponse()
    message = []
    if decoded.rejected:
        response.partial_success.rejected_spans = decoded.n_rejected
        detail = ", ".join(f"{n} {reason}" for reason, n in sorted(decoded.rejected.items()))
        message.append(f"rejected spans: {detail}")
    message.extend(decoded.warnings)
    if message:
        response.partial_success.error_message = "; ".join(message)
    if content_type.split(";")[0].strip().lower() == PROTOBUF:
        return response.SerializeToString(), PROTOBUF
    return json.dumps(json_format.MessageToDict(response)).encode(), JSON


def status_body(error: OtlpError, content_type: str) -> tuple[bytes, str]:
    """A google.rpc.Status body (protobuf or JSON as the request); JSON also carries `error`."""
    code = {400: 3, 413: 8, 415: 3, 429: 8, 503: 14}.get(error.status, 2)
    status = status_pb2.Status(code=code, message=error.message)
    if content_type.split(";")[0].strip().lower() == PROTOBUF:
        return status.SerializeToString(), PROTOBUF
    payload = {"code": code, "message": error.message, "error": error.message}
    return json.dumps(payload).encode(), JSON


class ReceiverStats:
    """Counters of the receiver, shared between request threads and the collector."""

    def __init__(self) -> None:
        self.received = 0
        self.rejected: dict[str, int] = {}
        self.refused: dict[str, int] = {}
        self.connections_refused = 0
        self._lock = threading.Lock()

    def count(self, received: int, rejected: dict[str, int]) -> None:
        with self._lock:
            self.received += received
            for reason, n in rejected.items():
                self.rejected[reason] = self.rejected.get(reason, 0) + n

    def refuse(self, reason: str) -> None:
        """Count a request refused as a whole (an OtlpError's reason)."""
        with self._lock:
            self.refused[reason] = self.refused.get(reason, 0) + 1

    def refuse_connection(self) -> None:
        """Count a connection answered 503 at once: `receiver.max_connections` were open."""
        with self._lock:
            self.connections_refused += 1

    def read(self) -> tuple[int, dict[str, int]]:
        with self._lock:
            return self.received, dict(self.rejected)

    def read_refused(self) -> dict[str, int]:
        with self._lock:
            return dict(self.refused)

"""A tiny traced HTTP service: routes, OpenTelemetry server spans, and traced calls to peers."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

MAX_BODY = 8 * 1024 * 1024


class HttpError(Exception):
    """An error answered as JSON {"error": message} with this status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Request:
    """What a handler sees of a request."""

    method: str
    path: str
    query: dict[str, str]
    body: bytes
    headers: dict[str, str]

    def json(self) -> dict[str, Any]:
        """The body as a JSON object, or a 400."""
        try:
            value = json.loads(self.body or b"{}")
        except ValueError as exc:
            raise HttpError(400, f"body is not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise HttpError(400, "body must be a JSON object")
        return value

    def int_field(self, source: dict[str, Any], name: str) -> int:
        """An integer field of a JSON body or query, or a 400 naming it."""
        value = source.get(name)
        try:
            return int(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise HttpError(400, f"field '{name}' must be an integer") from None


Handler = Callable[[Request], Any]


def setup_tracing(service: str, otlp_url: str | None, delay_ms: int) -> TracerProvider:
    """A tracer provider naming the service, exporting OTLP/HTTP to otlp_url when given."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if otlp_url:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=otlp_url, timeout=5)
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=delay_ms))
    return provider


@dataclass
class Service:
    """Routes of one service plus its peers' base URLs; serve() runs it until shutdown()."""

    name: str
    peers: dict[str, str]
    provider: TracerProvider
    routes: dict[tuple[str, str], tuple[str, Handler]] = field(default_factory=dict)
    admin: dict[tuple[str, str], Handler] = field(default_factory=dict)
    _local: threading.local = field(default_factory=threading.local)
    _server: ThreadingHTTPServer | None = None

    def __post_init__(self) -> None:
        """Create the tracer."""
        self.tracer = self.provider.get_tracer("deeprest.testbed")

    def route(self, method: str, path: str, operation: str) -> Callable[[Handler], Handler]:
        """Register a traced handler; `operation` names its span."""

        def register(handler: Handler) -> Handler:
            self.routes[(method, path)] = (operation, handler)
            return handler

        return register

    def call(self, peer: str, method: str, path: str, **kwargs: Any) -> Any:
        """Call a peer inside the current span's context; its JSON answer, or a 502."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        headers: dict[str, str] = dict(kwargs.pop("headers", {}))
        propagate.inject(headers)
        try:
            response = session.request(method, self.peers[peer] + path, headers=headers,
                                       timeout=10, **kwargs)  # fmt: skip
        except requests.RequestException as exc:
            raise HttpError(502, f"{peer} unreachable: {exc}") from exc
        if response.status_code >= 400:
            raise HttpError(502 if response.status_code >= 500 else response.status_code,
                            f"{peer}{path} answered {response.status_code}")  # fmt: skip
        return response.json()

    def handle(self, request: Request) -> tuple[int, Any]:
        """Dispatch one request: admin and health untraced, routes inside a server span."""
        key = (request.method, request.path)
        if key == ("GET", "/healthz"):
            return 200, {"status": "ok", "service": self.name}
        if key in self.admin:
            return 200, self.admin[key](request)
        if key not in self.routes:
            raise HttpError(404, f"no route {request.method} {request.path}")
        operation, handler = self.routes[key]
        context = propagate.extract(request.headers)
        with self.tracer.start_as_current_span(
            operation, context=context, kind=SpanKind.SERVER,
            attributes={"http.method": request.method, "http.route": request.path},
        ) as span:  # fmt: skip
            try:
                result = handler(request)
            except HttpError as exc:
                span.set_attribute("http.status_code", exc.status)
                if exc.status >= 500:
                    span.set_status(Status(StatusCode.ERROR, exc.message))
                raise
            span.set_attribute("http.status_code", 200)
            return 200, result

    def serve(self, port: int) -> None:
        """Serve on 127.0.0.1:port until shutdown()."""
        service = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: no line per request."""

            def _dispatch(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._answer(413, {"error": f"body over {MAX_BODY} bytes"})
                    self.close_connection = True
                    return
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(self.command, parts.path, dict(parse_qsl(parts.query)), body,
                                  {k.lower(): v for k, v in self.headers.items()})  # fmt: skip
                try:
                    status, payload = service.handle(request)
                except HttpError as exc:
                    status, payload = exc.status, {"error": exc.message}
                except Exception as exc:  # answered as JSON, never a stack trace
                    status, payload = 500, {"error": f"{type(exc).__name__}: {exc}"}
                self._answer(status, payload)

            def _answer(self, status: int, payload: Any) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client left (Locust stops)
                    self.close_connection = True

            do_GET = do_POST = _dispatch

        self._server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self._server.daemon_threads = True
        self._server.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        """Stop serving and flush spans."""
        if self._server is not None:
            self._server.shutdown()
        self.provider.shutdown()


def current_trace_id() -> str:
    """Hex trace id of the current span (for answers that help debugging)."""
    return format(trace.get_current_span().get_span_context().trace_id, "032x")

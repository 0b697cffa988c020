"""Everything `deeprest serve` runs, wired from one Config: store, loop, collector, app, server."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import math
import re
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from estimator.bundle import Bundle, load_bundle
from estimator.errors import DeepRestError, count_of
from exporter.app import create_app
from exporter.collector import DeepRestCollector, make_registry
from exporter.config import Config
from exporter.live import LiveLoop
from exporter.prom import PrometheusClient
from exporter.receiver import ReceiverStats
from exporter.skew import SkewLog
from exporter.store import StoreError, WindowStore

log = logging.getLogger("deeprest.serve")


class ListenError(DeepRestError):
    """The configured host and port cannot be listened on."""


def check_listen(host: str, port: int) -> None:
    """ListenError with the cause where `host:port` cannot be bound (the web server would print
    its own hint and exit the process instead)."""
    where = f"cannot listen on {host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise ListenError(f"{where}: host does not resolve ({exc})") from None
    try:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
            probe.bind(address)
    except OSError as exc:
        hint = " (in use by another program?)" if exc.errno == errno.EADDRINUSE else ""
        raise ListenError(f"{where}: {exc.strerror or exc}{hint}") from None


class _TimedOutBody(logging.Filter):
    """Drops werkzeug's traceback of a body that stopped arriving: the request was answered 408
    and counted (`body_cut`); the server only fails to drain the rest of the dead socket."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "cannot read from timed out object" not in record.getMessage()


logging.getLogger("werkzeug").addFilter(_TimedOutBody())


class _Meter:
    """What the watchdog knows of one connection's request: when it began (its first byte
    awaited) and how long its headers may take, when they were read and how many of the bytes
    received since it began were theirs, whether its thread is now blocked reading from the
    client, and whether the watchdog cut it."""

    __slots__ = ("begun", "body_from", "cut", "header_limit", "headers_at", "reading", "received")

    def __init__(self) -> None:
        self.restart(HEADER_DEADLINE)
        self.reading = False

    def restart(self, header_limit: float) -> None:
        self.begun, self.header_limit = time.monotonic(), header_limit
        self.headers_at: float | None = None
        self.received = self.body_from = 0
        self.cut = False

    def late(self, now: float) -> bool:
        """Whether a read still blocked has overrun the request's allowance (see HEADER_DEADLINE,
        BODY_GRACE and MIN_BODY_RATE); time the app spends answering is never cut. Only body
        bytes earn time: megabytes of headers sent fast must not buy hours for a trickled body."""
        if not self.reading:
            return False
        if self.headers_at is None:
            return now - self.begun > self.header_limit
        body = max(0, self.received - self.body_from)
        return now - self.headers_at > BODY_GRACE + body / MIN_BODY_RATE


class _MeteredIO(socket.SocketIO):
    """The connection's raw reader, counting the bytes that arrive for the watchdog."""

    def __init__(self, sock: socket.socket, meter: _Meter) -> None:
        super().__init__(sock, "rb")
        self._meter = meter

    def readinto(self, b: Any) -> int | None:
        self._meter.reading = True
        try:
            n = super().readinto(b)
        finally:
            self._meter.reading = False
        self._meter.received += n or 0
        return n


class _QuietHandler(WSGIRequestHandler):
    """No access log line per request (OTLP clients post many). A connection that sends
    nothing for `timeout` seconds (a body cut short, a client that connects and waits) is
    closed, so that stalled clients do not hold a thread each for ever; one that sends a byte
    now and then is cut by the server's watchdog once its request overruns its allowance (see
    `_Meter.late`)."""

    timeout = 30

    def setup(self) -> None:
        super().setup()
        self.meter = _Meter()
        plain, self.rfile = self.rfile, io.BufferedReader(_MeteredIO(self.connection, self.meter))
        plain.close()

    def handle_one_request(self) -> None:
        server = self.server
        probe = isinstance(server, _BoundedServer) and server.is_probe(self.connection)
        self.meter.restart(PROBE_HEADER_DEADLINE if probe else HEADER_DEADLINE)
        if isinstance(server, _BoundedServer):
            server.begin(self.connection, self.meter)
        try:
            super().handle_one_request()
        finally:
            if isinstance(server, _BoundedServer):
                server.end(self.connection)
            if probe:
                self.close_connection = True  # a spare slot serves one request

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        if self.meter.cut:  # the headers stopped at the cut: not a request to answer
            self.close_connection = True
            return False
        self.meter.headers_at = time.monotonic()
        if parsed:
            lines = sum(len(k) + len(v) + 4 for k, v in self.headers.raw_items())
            self.meter.body_from = len(self.raw_requestline) + lines + 2
        return parsed

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def log_error(self, format: str, *args: Any) -> None:
        if format.startswith("Request timed out") and isinstance(self.server, _BoundedServer):
            self.server.timed_out()  # an idle or stalled client closed: said in a summary
            return
        super().log_error(format, *args)


_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: %d\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
)
PROBE_SLOTS = 16
"""Connections past `receiver.max_connections` that may still be served, one request each, when
they ask for a scrape or a health check (see `_BoundedServer`)."""
_PROBE = re.compile(rb"GET /(metrics|healthz|readyz)[ ?]")
PROBE_WAIT = 0.25
"""Seconds a connection past the limit has to send its request line before it is refused (a
scraper or a probe sends it as it connects; idle connections must not hold the spares)."""
PROBE_HEADER_DEADLINE = 2.0
"""Seconds the rest of a spare thread's request headers may take."""
STOP_DRAIN = 5.0
"""Seconds a stop waits for the requests being served to end before it keeps what the exporter
holds; a request still unanswered then is refused with 503 (`stopping`), and retried."""
WARN_EVERY = 600.0
"""Seconds between two log lines of refused connections, and of connections closed silent."""
HEADER_DEADLINE = 30.0
"""Seconds from a request's first byte awaited (its connection's opening: werkzeug answers each
request with `Connection: close`) to the end of its headers."""
BODY_GRACE = 20.0
MIN_BODY_RATE = 500.0
"""Bytes per second a body must keep up after its first BODY_GRACE seconds: a read still waiting
when the request's headers are older than BODY_GRACE + its bytes so far / MIN_BODY_RATE is cut
(the rule of Apache's mod_reqtimeout, `body=20,MinRate=500`). A client that sends a byte every
few seconds stays under the idle timeout but would hold its connection slot for ever (and, with
enough of them, every slot: health checks and scrapes refused); a slow link that keeps sending
is never cut."""


class _BoundedServer(ThreadedWSGIServer):
    """Werkzeug's threaded server with at most `slots` connections at once, each on its own
    thread. A connection past them is answered 503 with Retry-After and closed: thousands of
    slow or idle clients would otherwise hold a thread each, and the live loop would starve among
    them. Past them, PROBE_SLOTS spare threads read the request line (within PROBE_WAIT) and
    still serve a scrape or health check (`GET /metrics`, `/healthz`, `/readyz`), once per
    connection, so that Prometheus and the liveness probe do not see a busy exporter as down."""

    def __init__(
        self, host: str, port: int, app: Any, slots: int, retry_after: float, stats: ReceiverStats
    ) -> None:
        super().__init__(host, port, app, handler=_QuietHandler)
        self._slots = threading.BoundedSemaphore(slots)
        self._spare = threading.BoundedSemaphore(PROBE_SLOTS)
        self._probes: set[socket.socket] = set()
        self._limit = slots
        error = json.dumps(
            {"error": f"{slots} connections are open (receiver.max_connections); retry later"}
        ).encode()
        self._busy = _BUSY % (max(1, math.ceil(retry_after)), len(error), error)
        self._stats = stats
        self._warned = -math.inf
        self._timeouts, self._timeouts_said = 0, time.monotonic()  # since the last summary
        self._requests: dict[socket.socket, _Meter] = {}  # connection -> its request
        self._requests_lock = threading.Lock()
        self._serving = 0  # connections on a thread (slot or spare), for `drain`
        self._served = threading.Condition()
        self._watching = threading.Event()
        threading.Thread(target=self._watch, name="deeprest-http-watchdog", daemon=True).start()

    def _enter(self) -> None:
        with self._served:
            self._serving += 1

    def _leave(self) -> None:
        with self._served:
            self._serving -= 1
            self._served.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait, at most `timeout` seconds, until no connection is served any longer (after
        `shutdown`, none is accepted); whether none is."""
        with self._served:
            return self._served.wait_for(lambda: self._serving == 0, timeout)

    def begin(self, connection: socket.socket, meter: _Meter) -> None:
        with self._requests_lock:
            self._requests[connection] = meter

    def end(self, connection: socket.socket) -> None:
        with self._requests_lock:
            self._requests.pop(connection, None)

    def _watch(self) -> None:
        """Cut the connections whose request overran its allowance while reading (see
        `_Meter.late`): shutting the socket down wakes the thread blocked reading it (a body so
        cut counts as `body_cut`)."""
        while not self._watching.wait(1.0):
            now = time.monotonic()
            with self._requests_lock:
                late = [c for c, m in self._requests.items() if m.late(now)]
                for connection in late:
                    self._requests.pop(connection).cut = True
            for connection in late:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)

    def server_close(self) -> None:
        self._watching.set()
        super().server_close()

    def timed_out(self) -> None:
        """Count a connection closed for sending nothing for the handler's timeout; say how
        many at most every WARN_EVERY (one log line each made thousands under a flood)."""
        with self._requests_lock:
            self._timeouts += 1
            now = time.monotonic()
            if now - self._timeouts_said < WARN_EVERY:
                return
            count, self._timeouts, self._timeouts_said = self._timeouts, 0, now
        log.info(
            "%s closed after %gs without a byte (idle or stalled clients), since the start or "
            "the last such line",
            count_of(count, "connection"),
            _QuietHandler.timeout,
        )

    def is_probe(self, connection: socket.socket) -> bool:
        return connection in self._probes

    def process_request(self, request: Any, client_address: Any) -> None:
        if self._slots.acquire(blocking=False):
            self._enter()
            try:
                super().process_request(request, client_address)  # starts the connection's thread
            except BaseException:
                self._slots.release()
                self._leave()
                raise
            return
        if not self._spare.acquire(blocking=False):
            self._refuse(request)
            return
        self._enter()
        try:
            threading.Thread(
                target=self._probe_or_refuse, args=(request, client_address), daemon=True
            ).start()
        except BaseException:
            self._spare.release()
            self._leave()
            raise

    def _probe_or_refuse(self, request: socket.socket, client_address: Any) -> None:
        """On a spare thread: serve the connection's one request if it is a scrape or a health
        check, else refuse it as any connection past the limit."""
        try:
            if not _asks_probe(request):
                self._refuse(request)
                return
            self._probes.add(request)
            try:
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                self._probes.discard(request)
                self.shutdown_request(request)
        finally:
            self._spare.release()
            self._leave()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()
            self._leave()

    def _refuse(self, request: socket.socket) -> None:
        self._stats.refuse_connection()
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY:
            self._warned = now
            log.warning(
                "connections refused with 503: %d are open (receiver.max_connections); slow "
                "or idle clients, or more senders than it allows (deeprest_http_connections_"
                "refused_total counts them)",
                self._limit,
            )
        try:
            request.settimeout(1.0)
            request.sendall(self._busy)
        except OSError:
            pass
        finally:
            self.shutdown_request(request)


def _asks_probe(request: socket.socket) -> bool:
    """Whether the connection's request line, peeked within PROBE_WAIT, is a scrape or a
    health check (the bytes stay for the handler to read)."""
    deadline = time.monotonic() + PROBE_WAIT
    seen = b""
    try:
        while time.monotonic() < deadline:
            request.settimeout(max(0.01, deadline - time.monotonic()))
            seen = request.recv(64, socket.MSG_PEEK)
            if not seen or _PROBE.match(seen) or len(seen) >= 16 or b"\n" in seen:
                break
            time.sleep(0.01)  # a part of the line: peek again once more has come
    except OSError:
        return False
    return _PROBE.match(seen) is not None


class Runtime:
    """The running exporter; `start()` serves HTTP and ticks the live loop in threads."""

    def __init__(
        self,
        config: Config,
        bundle: Bundle | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if bundle is None and config.model is not None:
            bundle = load_bundle(config.model)
        self.config = config
        self.clock = clock
        self.store = WindowStore(config.data_dir)
        try:
            self.store.claim()
        except StoreError:
            self.store.close()
            raise
        prometheus = PrometheusClient(config.prometheus) if config.prometheus.url else None
        self.loop = LiveLoop(config, self.store, bundle, prometheus, clock)
        self.stats = ReceiverStats()
        self.skew_log = SkewLog()
        self.registry = make_registry(
            DeepRestCollector(
                lambda: self.loop.snapshot,
                self.stats,
                self.loop.aggregator.api_calls,
                self.loop.aggregator.rejected,
                lambda: self.loop.assembler.split_traces,
            )
        )
        self.app = create_app(self)
        self._server: _BoundedServer | None = None
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return self._server.server_port if self._server else self.config.port

    @property
    def url(self) -> str:
        host = self.config.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"  # IPv6 in brackets

    def start(self, tick: bool = True) -> Runtime:
        """Bind the port and serve in background threads; `tick=False` leaves ticking to the caller.
        ListenError where the host and port cannot be listened on."""
        check_listen(self.config.host, self.config.port)
        try:
            self._server = _BoundedServer(
                self.config.host,
                self.config.port,
                self.app,
                self.config.receiver.max_connections,
                self.config.receiver.retry_after,
                self.stats,
            )
        except (OSError, SystemExit) as exc:  # taken between the check and now
            raise ListenError(f"cannot listen on {self.config.host}:{self.config.port}") from exc
        self._threads.append(
            threading.Thread(target=self._server.serve_forever, name="deeprest-http", daemon=True)
        )
        if tick:
            self._threads.append(
                threading.Thread(
                    target=self.loop.run, args=(self._stop,), name="deeprest-loop", daemon=True
                )
            )
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and ticking, keep the traces and windows still open in the store for the
        next start to resume, and close the store."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            if not self._server.drain(STOP_DRAIN):
                log.info(
                    "stopping with requests still being served after %gs: any of them bringing "
                    "spans is answered 503, for its client to retry",
                    STOP_DRAIN,
                )
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()
        try:
            self.loop.save_open()
        finally:
            self.store.close()

    def wait(self) -> None:
        """Block until stop() is called from another thread or a signal handler; reload the
        configured bundle when `request_reload` asks."""
        while not self._stop.wait(0.5):
            if self._reload.is_set():
                self._reload.clear()
                self.reload_configured()

    def request_reload(self) -> None:
        """Ask `wait` to reload the configured bundle (from a signal handler: SIGHUP)."""
        self._reload.set()

    def reload_configured(self) -> bool:
        """Reload the bundle at the configured model path, as POST /api/v1/model/reload with no
        body does; the loaded model goes on serving where it does not load. Whether it did."""
        path = self.config.model
        if not path:
            log.warning(
                "SIGHUP: no model path configured (--model, or model in the config) to reload"
            )
            return False
        try:
            self.loop.load(load_bundle(str(path)))
        except DeepRestError as exc:
            log.warning("SIGHUP: model reload refused, the loaded model goes on serving: %s", exc)
            return False
        estimator = self.loop.estimator
        version = estimator.info.version if estimator is not None else "none"
        log.info("model reloaded from %s on SIGHUP: version %s", path, version)
        return True

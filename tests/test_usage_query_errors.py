"""Usage and limit queries against a real Prometheus: a query Prometheus refuses (a typo in the
configuration) leaves out its own resource only, named once in a warning; an upstream that does
not answer fails the whole read, naming the query; a window's queries are asked side by side."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from exporter.config import PrometheusConfig
from exporter.prom import PrometheusClient, PrometheusError, UsageQueries, fetch_usage
from tests.servers import (
    NEEDS_PROMETHEUS,
    CadvisorTarget,
    PrometheusHandle,
    free_port,
    scrape_config,
    start_prometheus,
    wait_until,
)

pytestmark = [
    pytest.mark.integration,
    NEEDS_PROMETHEUS,
]

SERIES = [("api", "cpu"), ("api", "memory")]


@pytest.fixture(scope="module")
def prometheus() -> Iterator[PrometheusHandle]:
    target = CadvisorTarget()
    target.set_rate("container_cpu_usage_seconds_total", "api", 0.5)
    for metric, value in (
        ("container_memory_working_set_bytes", 1 << 20),
        ("container_spec_cpu_quota", 50000),
        ("container_spec_cpu_period", 100000),
        ("container_spec_memory_limit_bytes", 2 << 20),
    ):
        target.set_gauge(metric, "api", value)
    handle = start_prometheus(scrape_config({"cadvisor": target.address}))
    try:
        wait_until(
            lambda: handle.query("rate(container_cpu_usage_seconds_total[10s])"), 20, what="scrapes"
        )
        yield handle
    finally:
        handle.stop()
        target.stop()


@pytest.mark.parametrize("limits", [False, True])
def test_a_refused_query_leaves_out_its_resource_only_and_is_named_once(
    prometheus: PrometheusHandle, limits: bool, caplog: pytest.LogCaptureFixture
) -> None:
    key = "limit_queries" if limits else "queries"
    metric = "container_spec_memory_limit_bytes" if limits else "container_memory_working_set_bytes"
    broken = f"sum by ({{label}}) ({metric}{{{{{{selector}}}}}}"  # no ")"
    config = PrometheusConfig(url=prometheus.url)
    config = replace(config, **{key: {**getattr(config, key), "memory": broken}})
    queries = UsageQueries(config, 10.0)
    client = PrometheusClient(config)
    caplog.set_level(logging.WARNING, logger="deeprest.prometheus")
    for _ in range(2):
        found = fetch_usage(client, queries, SERIES, time.time(), limits=limits)
        assert set(found) == {("api", "cpu")}  # cpu is still read
    expr = queries.limit("memory") if limits else queries.usage("memory")
    kind = "limit" if limits else "usage"
    said = [r.getMessage() for r in caplog.records if "refuses" in r.getMessage()]
    assert len(said) == 1, said  # once, not every window
    assert f"Prometheus refuses the memory {kind} query {expr!r}" in said[0]
    assert "HTTP 400" in said[0] and "the other resources are read" in said[0]


def test_an_upstream_that_does_not_answer_fails_the_read_naming_the_query() -> None:
    config = PrometheusConfig(url=f"http://127.0.0.1:{free_port()}", retries=0)
    queries = UsageQueries(config, 10.0)
    with pytest.raises(PrometheusError) as error:
        fetch_usage(PrometheusClient(config), queries, SERIES, time.time())
    assert str(error.value).startswith(f"cpu usage query {queries.usage('cpu')!r}: ")


class _SlowProxy:
    """A loopback proxy in front of a Prometheus that answers each request after `delay`
    seconds, counting the requests it holds at once (as a busy Prometheus would hold them)."""

    def __init__(self, upstream: str, delay: float) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        import requests

        self.held, self.most = 0, 0
        lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                with lock:
                    proxy.held += 1
                    proxy.most = max(proxy.most, proxy.held)
                try:
                    time.sleep(delay)
                    answer = requests.get(upstream + self.path, timeout=10)
                finally:
                    with lock:
                        proxy.held -= 1
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_queries_of_a_window_are_asked_side_by_side(prometheus: PrometheusHandle) -> None:
    """A slow Prometheus costs a window one query's time, not the sum of its queries'."""
    proxy = _SlowProxy(prometheus.url, delay=0.3)
    try:
        config = PrometheusConfig(url=proxy.url)
        series = [("api", r) for r in ("cpu", "memory", "write_iops", "write_throughput")]
        found = fetch_usage(
            PrometheusClient(config), UsageQueries(config, 10.0), series, time.time()
        )
    finally:
        proxy.stop()
    assert {("api", "cpu"), ("api", "memory")} <= set(found)
    assert proxy.most == len(series)  # every resource's query was held at once


def test_a_wrong_url_path_is_no_refusal_of_the_query(prometheus: PrometheusHandle) -> None:
    """A path Prometheus does not serve (a reverse proxy's prefix left out or added) answers
    404: the upstream is not reached, so the read fails, as deeprest_up then says."""
    config = PrometheusConfig(url=f"{prometheus.url}/prefix", retries=0)
    queries = UsageQueries(config, 10.0)
    with pytest.raises(PrometheusError, match="HTTP 404"):
        fetch_usage(PrometheusClient(config), queries, SERIES, time.time())

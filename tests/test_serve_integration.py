"""End to end with real parts: OpenTelemetry SDK -> exporter -> real Prometheus, cAdvisor series."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import requests
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from estimator.bundle import load_bundle
from exporter.config import ApiTraffic, Config, PrometheusConfig
from exporter.prom import PrometheusClient
from exporter.runtime import Runtime
from exporter.trainset import collect_training_windows
from tests.exporter_world import PATHS, train, truth
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

WINDOW = 2.0
COMPOSE_CPU = 20 * truth(30)[("compose", "cpu")]
"""Injected compose cpu: far above anything its traffic explains."""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("serve")
    train(tmp / "model", window=WINDOW)
    target = CadvisorTarget()
    target.set_rate("container_cpu_usage_seconds_total", "front", truth(6)[("front", "cpu")])
    target.set_rate("container_cpu_usage_seconds_total", "compose", COMPOSE_CPU)
    target.set_rate("container_cpu_usage_seconds_total", "store", truth(6)[("store", "cpu")])
    target.set_gauge("container_memory_working_set_bytes", "store", truth(6)[("store", "memory")])
    target.set_gauge("container_spec_cpu_quota", "front", 200000)
    target.set_gauge("container_spec_cpu_period", "front", 100000)
    port = free_port()
    prometheus = start_prometheus(
        scrape_config({"cadvisor": target.address, "deeprest": f"127.0.0.1:{port}"})
    )
    config = Config(
        model=tmp / "model",
        data_dir=tmp / "data",
        host="127.0.0.1",
        port=port,
        window=WINDOW,
        # each service's SDK exports its span on its own, the root's last: on a busy two-core
        # machine the root can come more than 0.3 s after its children, its trace already closed
        trace_grace=1.0,
        prometheus=PrometheusConfig(url=prometheus.url, timeout=1.0, retries=0, rate_range=4.0),
    )
    runtime = Runtime(config).start()

    def scraping() -> bool:  # Prometheus starts scraping new targets after about 5 s
        value = _value(prometheus, 'count_over_time(up{job="cadvisor"}[10s])')
        return value is not None and value >= 5

    try:
        wait_until(scraping, 30, 0.25, what="Prometheus to scrape the test target")
        yield {"runtime": runtime, "prometheus": prometheus, "target": target, "config": config}
    finally:
        runtime.stop()
        prometheus.stop()
        target.stop()


def _tracers(url: str) -> list[TracerProvider]:
    providers = []
    for i, service in enumerate(("front", "compose", "store")):
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        exporter = OTLPSpanExporter(
            endpoint=f"{url}/v1/traces", compression=Compression.Gzip if i else None
        )
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        providers.append(provider)
    return providers


def _value(prometheus: PrometheusHandle, expr: str) -> float | None:
    result = prometheus.query(expr)
    return float(result[0]["value"][1]) if result else None


def test_traces_in_expected_and_observed_out(world: dict) -> None:
    runtime: Runtime = world["runtime"]
    prometheus: PrometheusHandle = world["prometheus"]
    providers = _tracers(runtime.url)
    front, compose, store = (p.get_tracer("deeprest-test") for p in providers)
    sent = 0
    for traces in (3, 7, 5, 9):
        time.sleep(WINDOW - time.time() % WINDOW + 0.2)  # early in the next window
        for _ in range(traces):
            with (
                front.start_as_current_span("/compose"),
                compose.start_as_current_span("compose"),
                store.start_as_current_span("write"),
            ):
                pass
        sent += traces
    last_send = time.time()
    for provider in providers:
        provider.shutdown()

    def all_counted() -> bool:
        windows = runtime.store.range(0, math.inf)
        return sum(w.calls.get(PATHS[0], 0.0) for w in windows) == sent

    wait_until(all_counted, 4 * WINDOW, what="every trace counted into a stored window")
    windows = runtime.store.range(0, math.inf)
    assert all(w.calls.get(PATHS[2], 0.0) == w.calls.get(PATHS[0], 0.0) for w in windows)

    snapshot = runtime.loop.snapshot
    upto = [w for w in windows if w.end <= snapshot.window_end]  # type: ignore[operator]
    bundle = load_bundle(world["config"].model)
    offline, _ = bundle.predict(upto)
    live = np.array([snapshot.expected[key] for key in bundle.series])
    np.testing.assert_allclose(live, offline[-1], rtol=1e-9)

    def scraped_everything() -> bool:
        calls = _value(prometheus, 'deeprest_api_calls_total{api="front:/compose"}')
        return calls == sent and _value(prometheus, "deeprest_up") == 1

    wait_until(scraped_everything, 10, 0.25, what="Prometheus to scrape the exporter")
    compose_cpu = '{component="compose",resource="cpu"}'
    client = PrometheusClient(PrometheusConfig(url=prometheus.url))
    at = time.time() - 0.1  # both series come from the same scrape of the exporter
    stamp = client.query("deeprest_last_estimate_timestamp_seconds", at)[0][1]
    observed = client.query(f"deeprest_observed_usage{compose_cpu}", at)[0][1]
    rate = 'rate(container_cpu_usage_seconds_total{container="compose"}[4s])'
    same_query = client.query(rate, stamp)
    assert same_query, (stamp, at, prometheus.query(f"{rate}[10s:1s]"))
    assert observed == pytest.approx(same_query[0][1], rel=1e-9)  # the window's own value
    assert observed == pytest.approx(COMPOSE_CPU, rel=0.2)  # rate() of a 4 s range, 1 s scrapes
    medians = {round(float(m), 9) for m in offline[:, bundle.series.index(("compose", "cpu")), 1]}
    expected = _value(prometheus, f"deeprest_expected_usage{compose_cpu}")
    assert expected is not None and expected < COMPOSE_CPU / 5
    score = _value(prometheus, f"deeprest_anomaly_score{compose_cpu}")
    assert score is not None and score > 1.0
    front_score = _value(prometheus, 'deeprest_anomaly_score{component="front",resource="cpu"}')
    assert front_score is not None and front_score < score
    headroom = _value(prometheus, 'deeprest_capacity_headroom_ratio{component="front"}')
    assert headroom is not None and 0 < headroom < 1
    assert len(medians) >= 2  # the estimate followed the traffic, window by window
    assert time.time() - last_send < 30


def test_training_windows_join_store_and_prometheus(world: dict) -> None:
    runtime: Runtime = world["runtime"]
    wait_until(lambda: runtime.store.count() >= 3, 4 * WINDOW, what="stored windows")
    stored = runtime.store.range(0, math.inf)
    config: Config = world["config"]
    windows = collect_training_windows(config, stored[0].start, stored[-1].end)
    assert [w.start for w in windows] == [w.start for w in stored]
    values = [w.metrics[("compose", "cpu")] for w in windows if ("compose", "cpu") in w.metrics]
    assert values and np.median(values) == pytest.approx(COMPOSE_CPU, rel=0.1)
    now = time.time()
    chunked, whole = (
        PrometheusClient(PrometheusConfig(url=world["prometheus"].url, max_points=n)).query_range(
            'up{job="cadvisor"}', now - 10, now, 1.0
        )
        for n in (3, 1000)
    )
    assert len(chunked) == 1 and len(chunked[0][1]) >= 3  # chunks merged into one series
    assert chunked == whole


FRONT_RATE = 'sum(rate(http_requests_total{container="front"}[4s]))'
"""The request rate the test target serves for container front (6/s), as PromQL."""


def _promql_traffic(world: dict, tmp_path: Path, exprs: dict[str, str]) -> Config:
    """The world's config with traffic read from PromQL: operation -> expression, each an API of
    component front; once Prometheus has the target's request rate."""
    target: CadvisorTarget = world["target"]
    target.set_rate("http_requests_total", "front", 6.0)
    config = replace(
        world["config"],
        port=0,
        data_dir=tmp_path,
        traffic_source="prometheus",
        traffic_apis=tuple(ApiTraffic("front", op, expr) for op, expr in exprs.items()),
        prometheus=PrometheusConfig(url=world["prometheus"].url, timeout=1.0, retries=0),
    )
    what = "request rate series"
    wait_until(lambda: _value(world["prometheus"], FRONT_RATE), 10, 0.25, what=what)
    return config


def _until(seconds: float) -> str:
    """FRONT_RATE with samples until `seconds` (Unix time) and none after."""
    return f"{FRONT_RATE} and on () (vector(time()) < {seconds:.3f})"


def test_traffic_from_promql_instead_of_traces(world: dict, tmp_path: Path) -> None:
    config = _promql_traffic(world, tmp_path, {"/compose": FRONT_RATE})
    runtime = Runtime(config).start()
    try:
        wait_until(lambda: runtime.store.count() >= 2, 4 * WINDOW, what="windows from PromQL")
        window = runtime.store.recent(1)[0]
        assert window.calls[PATHS[0]] == pytest.approx(6.0 * WINDOW, rel=0.4)
        # the API's calls stand for its whole call tree, as in the training windows
        assert window.calls[PATHS[2]] == pytest.approx(window.calls[PATHS[0]])
        snapshot = runtime.loop.snapshot
        assert snapshot.window_end == window.end and snapshot.expected
    finally:
        runtime.stop()


def test_a_failing_traffic_query_leaves_the_window_unstored_and_names_its_api(
    world: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = FRONT_RATE[:-1]  # one ) short
    config = _promql_traffic(world, tmp_path, {"/compose": FRONT_RATE, "/read": broken})
    runtime = Runtime(config).start()
    try:
        wait_until(
            lambda: "traffic query of 1 API failed" in caplog.text, 4 * WINDOW, what="a warning"
        )
        time.sleep(3 * WINDOW)
        # a bad expression fails every window: said once, not every window
        assert caplog.text.count("traffic query of 1 API failed") == 1
        # an empty window would claim there was no traffic: none is stored, none estimated
        assert runtime.store.count() == 0
        assert runtime.loop.snapshot.up and not runtime.loop.snapshot.expected
        assert "front:/read (" + broken + "): " in caplog.text  # the API and its expression
        text = requests.get(f"{runtime.url}/metrics", timeout=5).text
        assert 'deeprest_api_calls_total{api="front:/compose"}' in text  # it answered
        assert "\ndeeprest_up 1.0" in text
    finally:
        runtime.stop()


def test_a_traffic_query_that_answered_before_and_now_has_no_samples_is_unknown(
    world: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Prometheus holds no data for a time it was down: the query that had samples before
    answers none, which is not zero calls. A query that never had any (an API not yet called,
    its counter not yet created) is zero calls."""
    until = time.time() + 4 * WINDOW  # the query has samples until then, none after
    never = "sum(rate(never_created_total[4s]))"
    config = _promql_traffic(world, tmp_path, {"/compose": _until(until), "/read": never})
    runtime = Runtime(config).start()
    try:
        wait_until(lambda: runtime.store.count() >= 1, 6 * WINDOW, what="a window stored")
        wait_until(lambda: ": no samples" in caplog.text, 8 * WINDOW, what="the warning")
        time.sleep(WINDOW)
        stored = runtime.store.range(0, time.time() + WINDOW)
        assert stored and all(w.end <= until + 1e-6 for w in stored)  # none after: unknown
        assert all(w.calls for w in stored)  # /read never answered: zero calls, not unknown
        assert "front:/compose (" in caplog.text and "front:/read (" not in caplog.text
    finally:
        runtime.stop()


def test_one_api_series_gone_while_others_answer_is_no_calls_not_unknown(
    world: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A counter gone while the other APIs' answer (a restarted pod's, an endpoint retired):
    that API has no calls; the windows go on being stored and estimated."""
    until = time.time() + 3 * WINDOW
    config = _promql_traffic(world, tmp_path, {"/compose": _until(until), "/read": FRONT_RATE})
    runtime = Runtime(config).start()
    try:
        wait_until(
            lambda: any(w.start > until for w in runtime.store.range(0, time.time() + WINDOW)),
            8 * WINDOW,
            what="a window stored after the series went",
        )
        after = [w for w in runtime.store.range(0, time.time() + WINDOW) if w.start > until]
        compose = (("front", "/compose"),)
        assert all(w.calls.get(compose, 0.0) == 0.0 and w.calls for w in after)
        assert "traffic query" not in caplog.text
    finally:
        runtime.stop()


def test_negative_usage_from_prometheus_is_left_out_with_a_warning(
    world: dict, caplog: pytest.LogCaptureFixture
) -> None:
    from exporter.prom import UsageQueries, fetch_usage

    target: CadvisorTarget = world["target"]
    target.set_gauge("container_memory_working_set_bytes", "minus", -1.0)
    target.set_gauge("container_memory_working_set_bytes", "plus", 5.0)
    expr = 'container_memory_working_set_bytes{container="minus"}'
    wait_until(lambda: _value(world["prometheus"], expr) == -1.0, 10, 0.25, what="the gauge")
    config: Config = world["config"]
    client = PrometheusClient(config.prometheus)
    queries = UsageQueries(config.prometheus, WINDOW)
    series = [("minus", "memory"), ("plus", "memory")]
    got = fetch_usage(client, queries, series, time.time())
    assert got == {("plus", "memory"): 5.0}  # no usage is below zero
    assert "Prometheus gave a negative usage for minus/memory: left out" in caplog.text


def test_up_without_a_model_says_whether_prometheus_answers(world: dict, tmp_path: Path) -> None:
    from exporter.live import LiveLoop
    from exporter.store import WindowStore

    clock = [1000.0]
    for url, expected in (
        (world["prometheus"].url, True),
        (f"http://127.0.0.1:{free_port()}", False),
    ):
        config = Config(
            model=None,
            data_dir=tmp_path / str(expected),
            window=WINDOW,
            trace_grace=WINDOW / 10,
            prometheus=PrometheusConfig(url=url, timeout=1.0, retries=0),
        )
        store = WindowStore(config.data_dir)
        loop = LiveLoop(config, store, None, PrometheusClient(config.prometheus), lambda: clock[0])
        loop.tick(clock[0])
        loop.tick(clock[0] + 3 * WINDOW)
        assert loop.snapshot.up is expected
        store.close()


def test_windows_closed_late_still_read_their_usage_while_prometheus_answers(
    world: dict, tmp_path: Path
) -> None:
    """Windows due over a window ago (a restart's catch-up) still ask Prometheus while it
    answers: stored without their usage, they would be lost to `train --config`."""
    prometheus = world["prometheus"]

    def history() -> bool:  # the first windows' usage is in Prometheus (rates need 2 samples)
        value = _value(prometheus, f'count_over_time(up{{job="cadvisor"}}[{8 * WINDOW:g}s])')
        return value is not None and value >= 8 * WINDOW - 1

    wait_until(history, 30, 0.25, what="Prometheus to hold the late windows' usage")
    now = [time.time() - 6 * WINDOW]
    config = replace(world["config"], data_dir=tmp_path / "data", port=0)
    runtime = Runtime(config, clock=lambda: now[0]).start(tick=False)
    try:
        now[0] = time.time()  # six windows due at once, most of them late
        closed = runtime.loop.tick()
        assert len(closed) >= 4
        stored = runtime.store.recent(len(closed))
        assert [w.start for w in stored] == [w.start for w in closed]
        assert all(w.metrics.get(("compose", "cpu"), 0) > 0 for w in stored)
        assert runtime.loop.snapshot.up
    finally:
        runtime.stop()


def test_prometheus_down_means_up_zero_and_observed_absent(world: dict) -> None:
    runtime: Runtime = world["runtime"]
    before = runtime.loop.snapshot.window_end or 0.0
    world["prometheus"].stop()

    def estimated_without_prometheus() -> bool:
        snapshot = runtime.loop.snapshot
        return (snapshot.window_end or 0.0) > before + WINDOW and not snapshot.up

    wait_until(estimated_without_prometheus, 6 * WINDOW, what="a window estimated while down")
    text = requests.get(f"{runtime.url}/metrics", timeout=5).text
    assert "\ndeeprest_up 0.0" in text
    assert "deeprest_observed_usage{" not in text and "deeprest_anomaly_score{" not in text
    assert 'deeprest_expected_usage{component="compose",resource="cpu"}' in text


def test_series_without_actual_usage_are_logged_when_they_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from exporter.live import LiveLoop
    from exporter.store import WindowStore

    config = Config(model=None, data_dir=tmp_path, window=WINDOW, trace_grace=WINDOW / 10)
    store = WindowStore(config.data_dir)
    loop = LiveLoop(config, store, None, None, lambda: 1000.0)
    missing = frozenset({("post", "cpu"), ("post", "memory")})
    with caplog.at_level("INFO", logger="deeprest.live"):
        loop._note_unobserved(missing)
        loop._note_unobserved(missing)  # unchanged: once is enough
        loop._note_unobserved(frozenset())
    store.close()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "no actual usage for 2 of the model's series (post/cpu, post/memory)" in messages[0]
    assert "component_rename" in messages[0] and "every series again" in messages[1]


def test_series_without_actual_usage_point_at_the_range_their_rate_queries_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from exporter.live import LiveLoop
    from exporter.store import WindowStore

    missing = frozenset({("post", "cpu"), ("post", "memory")})
    plain = {"cpu": "sum by ({label}) (cpu_cores{{{selector}}})", "memory": "mem_bytes"}
    for queries, said in ((None, True), (plain, False)):
        prometheus = PrometheusConfig() if queries is None else PrometheusConfig(queries=plain)
        config = Config(data_dir=tmp_path / str(said), window=5.0, prometheus=prometheus)
        store = WindowStore(config.data_dir)
        caplog.clear()
        with caplog.at_level("WARNING", logger="deeprest.live"):
            LiveLoop(config, store, None, None, lambda: 1000.0)._note_unobserved(missing)
        store.close()
        (message,) = [r.getMessage() for r in caplog.records if "no actual usage" in r.getMessage()]
        hint = (
            "the range of the cpu/memory queries: they read [5s] (the window, or "
            "prometheus.rate_range where longer), and rate() or increase() over a range needs two "
            "samples in it, so set prometheus.rate_range to at least twice, better 4 times, "
            "Prometheus's scrape interval"
        )
        assert (hint in message) is said, message

"""Every dashboard's variables and panels, run by a real Prometheus with the shipped rules.

An exporter-like target serves the series of contract 3 (two busy components and one whose CPU
reads 0 while its band expects some: a dead one); Prometheus scrapes it and evaluates the shipped
rules on a compressed clock. Each template variable's `label_values(...)` must list the values it
should, each panel's PromQL must be accepted and return data, and the overview must show a dead
component's alert and, as soon as the traces stop, that the anomaly alerts are held back.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from infra.local import demo
from infra.local.exposition import ExpositionServer
from tests.servers import (
    NEEDS_PROMETHEUS,
    PrometheusHandle,
    start_prometheus,
    wait_until,
)
from tests.test_dashboards import (
    DASHBOARDS,
    LABEL_VALUES,
    OVERVIEW,
    load,
    panel_exprs,
    substitute,
)

pytestmark = [
    pytest.mark.integration,
    NEEDS_PROMETHEUS,
]

WINDOW_S = 0.5
"""Seconds that stand for one of the rules' minutes (their 5m `for:` is 2.5 s)."""
JOB = "deeprest"
BUSY = {"front": 0.2, "compose": 0.5}
DEAD = "cache"
RESOURCES = {"cpu": 1.0, "memory": 1e8, "write_iops": 10.0, "write_throughput": 1e5}
APIS = {"front:/home": 5.0, "front:/compose": 2.0}
VALUES = {"job": JOB, "component": ".+", "resource": ".+", "api": ".+"}


class Exporter:
    """Contract 3 as an exporter publishes it, with usage inside the band and traffic that
    varies (the API traffic dashboard correlates the two); `spans` stops the traces."""

    def __init__(self) -> None:
        self.start = time.time()
        self.spans = 50.0
        self._spans_total = 0.0
        self._last = self.start
        self._lock = threading.Lock()
        self.http = ExpositionServer(self.render)

    def render(self) -> str:
        now = time.time()
        with self._lock:
            self._spans_total += self.spans * (now - self._last)
            self._last = now
            spans_total = self._spans_total
        elapsed = now - self.start
        load = 1.0 + 0.5 * math.sin(elapsed / 2.0)
        lines = []
        for component, share in [*BUSY.items(), (DEAD, 0.05)]:
            for resource, unit in RESOURCES.items():
                expected = share * unit * load
                actual = 0.0 if component == DEAD and resource == "cpu" else expected * 1.05
                labels = f'component="{component}",resource="{resource}"'
                lines += [
                    f"deeprest_expected_usage{{{labels}}} {expected!r}",
                    f"deeprest_expected_usage_lower{{{labels}}} {0.8 * expected!r}",
                    f"deeprest_expected_usage_upper{{{labels}}} {1.2 * expected!r}",
                    f"deeprest_observed_usage{{{labels}}} {actual!r}",
                    f"deeprest_anomaly_score{{{labels}}} 0",
                    f"deeprest_capacity_headroom_ratio{{{labels}}} 0.4",
                    f"deeprest_model_accuracy_ratio{{{labels}}} 0.9",
                ]
        for api, rate in APIS.items():
            calls = rate * (elapsed + 2.0 * math.sin(elapsed / 2.0))  # 1 + 0.5 sin: rate * load
            lines.append(f'deeprest_api_calls_total{{api="{api}"}} {calls!r}')
        lines += [
            'deeprest_model_info{model="xgboost",version="1"} 1',
            f"deeprest_last_estimate_timestamp_seconds {now!r}",
            "deeprest_up 1",
            "deeprest_unknown_api_calls_ratio 0.05",
            f"deeprest_otlp_spans_received_total {spans_total!r}",
            f'deeprest_otlp_spans_rejected_total{{reason="late"}} {elapsed!r}',
            f'deeprest_otlp_requests_rejected_total{{reason="too_large"}} {elapsed!r}',
            f"deeprest_otlp_traces_split_total {elapsed!r}",
            f"deeprest_http_connections_refused_total {elapsed!r}",
        ]
        return "\n".join(lines) + "\n"


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[tuple[Exporter, PrometheusHandle]]:
    exporter = Exporter()
    rules = demo.compressed_rules(tmp_path / "rules", WINDOW_S)
    config = (
        "global:\n  scrape_interval: 250ms\n  evaluation_interval: 250ms\n"
        "rule_files:\n" + "".join(f"  - {path.name}\n" for path in rules) + "scrape_configs:\n"
        f"  - job_name: {JOB}\n    honor_labels: true\n    static_configs:\n"
        f"      - targets: ['{exporter.http.address}']\n"
    )
    prometheus = start_prometheus(config, rules)
    try:
        yield exporter, prometheus
    finally:
        prometheus.stop()
        exporter.http.stop()


def _answer(prometheus: PrometheusHandle, expr: str) -> list[dict]:
    """The instant result of a query; a query Prometheus refuses fails with its error."""
    response = requests.get(f"{prometheus.url}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert body["status"] == "success", f"{expr}\n{body.get('error')}"
    return list(body["data"]["result"])


def _label_values(prometheus: PrometheusHandle, query: str) -> set[str]:
    """What Grafana lists for a `label_values(selector, label)` variable."""
    match = LABEL_VALUES.match(query)
    assert match, query
    params = {"match[]": substitute(match.group(1), VALUES)} if match.group(1) else {}
    url = f"{prometheus.url}/api/v1/label/{match.group(2)}/values"
    return set(requests.get(url, params=params, timeout=10).json()["data"])


def _panel(title: str) -> list[str]:
    """The PromQL of an overview panel, variables filled in."""
    exprs = [substitute(e, VALUES) for t, e in panel_exprs(load(OVERVIEW)) if t == title]
    assert exprs, f"no panel {title!r} on the overview"
    return exprs


def test_every_variable_lists_its_values_and_every_panel_has_data(
    world: tuple[Exporter, PrometheusHandle],
) -> None:
    _, prometheus = world
    expected = {
        "job": {JOB},
        "component": {*BUSY, DEAD},
        "resource": set(RESOURCES),
        "api": set(APIS),
    }
    wait_until(
        lambda: _answer(prometheus, 'ALERTS{alertstate="firing"}'), 30, 0.5, "a firing alert"
    )
    pending = {
        f"{path.name} / {title}: {expr}": substitute(expr, VALUES)
        for path in DASHBOARDS
        for title, expr in panel_exprs(load(path))
    }
    deadline = time.monotonic() + 30.0  # the correlation needs a few changes of the load
    while True:
        pending = {k: q for k, q in pending.items() if not _answer(prometheus, q)}
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert not pending, "panels without data:\n" + "\n".join(pending)
    for path in DASHBOARDS:
        for variable in load(path)["templating"]["list"]:
            if variable["type"] == "query":
                got = _label_values(prometheus, variable["query"]["query"])
                assert got == expected[variable["name"]], f"{path.name}: ${variable['name']}"


def test_the_overview_shows_a_dead_component_and_alerts_held_back(
    world: tuple[Exporter, PrometheusHandle],
) -> None:
    exporter, prometheus = world
    [firing] = _panel("Alerts firing")
    [stopped, unknown] = _panel("Anomaly alerts held back")

    def listed() -> set[tuple[str, str]]:
        return {
            (r["metric"]["alertname"], r["metric"].get("component", ""))
            for r in _answer(prometheus, firing)
        }

    def value(expr: str) -> float | None:
        result = _answer(prometheus, expr)
        return float(result[0]["value"][1]) if result else None

    dead = ("DeepRestComponentReportsNoUsage", DEAD)
    wait_until(lambda: dead in listed(), 30, 0.5, "the dead component's alert on the overview")
    assert value(stopped) == 0.0 and value(unknown) == 0.0
    before = "instance:deeprest_otlp_spans_received:rate5m_avg1h_before > 40"
    wait_until(lambda: _answer(prometheus, before), 30, 0.5, "a span rate to judge a stop by")
    exporter.spans = 0.0
    wait_until(lambda: value(stopped) == 1.0, 20, 0.25, "traces stopped on the overview")
    stop = ("DeepRestTracesStopped", "")
    wait_until(lambda: stop in listed(), 30, 0.5, "DeepRestTracesStopped on the overview")
    assert value(stopped) == 1.0, "the stop is latched while spans stay away"
    exporter.spans = 50.0
    wait_until(lambda: value(stopped) == 0.0, 30, 0.5, "traces back on the overview")

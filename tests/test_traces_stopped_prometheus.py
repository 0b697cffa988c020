"""The trace-stop state of the shipped rules, run by a real Prometheus on a compressed clock.

`instance:deeprest_traces_stopped:bool` reads its own last value (and the rate it froze) to stay
1 for as long as an exporter's spans stay under a tenth of what they were: compared with the
hour before alone, a stop ended 70 minutes in, once that hour held no spans either, and the
anomaly alerts paged every busy component. promtool evaluates the rules as Prometheus does; this
runs them on the real server, with real scrapes, stale markers and rule groups.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local import demo
from tests.servers import (
    NEEDS_PROMETHEUS,
    CadvisorTarget,
    PrometheusHandle,
    start_prometheus,
    wait_until,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    NEEDS_PROMETHEUS,
]

WINDOW_S = 0.5
"""Seconds that stand for one of the rules' minutes (1h of the rules is 30 s)."""
SPANS = "deeprest_otlp_spans_received_total"
STOPPED = "instance:deeprest_traces_stopped:bool"


@pytest.fixture()
def exporters(tmp_path: Path) -> Iterator[tuple[CadvisorTarget, CadvisorTarget, PrometheusHandle]]:
    """Exporter "shop" receiving 10 spans/s, exporter "blog" that never receives one, and a
    Prometheus scraping both and running the shipped rules scaled to WINDOW_S."""
    shop, blog = CadvisorTarget(label="namespace"), CadvisorTarget(label="namespace")
    shop.set_rate(SPANS, "shop", 10.0)
    blog.set_rate(SPANS, "blog", 0.0)
    rules = demo.compressed_rules(tmp_path / "rules", WINDOW_S)
    config = (
        "global:\n  scrape_interval: 250ms\n  evaluation_interval: 250ms\n"
        "rule_files:\n" + "".join(f"  - {path.name}\n" for path in rules) + "scrape_configs:\n"
        "  - job_name: deeprest\n    static_configs:\n"
        f"      - targets: ['{shop.address}', '{blog.address}']\n"
    )
    prometheus = start_prometheus(config, rules)
    try:
        yield shop, blog, prometheus
    finally:
        prometheus.stop()
        shop.stop()
        blog.stop()


def _stopped(prometheus: PrometheusHandle) -> dict[str, float]:
    """namespace -> the value of the stop state, per exporter."""
    return {r["metric"]["namespace"]: float(r["value"][1]) for r in prometheus.query(STOPPED)}


def _firing(prometheus: PrometheusHandle) -> set[str]:
    query = 'ALERTS{alertname="DeepRestTracesStopped", alertstate="firing"}'
    return {r["metric"]["namespace"] for r in prometheus.query(query)}


def test_a_stop_holds_past_the_hour_before_and_ends_when_spans_return(
    exporters: tuple[CadvisorTarget, CadvisorTarget, PrometheusHandle],
) -> None:
    shop, _, prometheus = exporters
    start = time.monotonic()

    def minutes() -> float:
        return (time.monotonic() - start) / WINDOW_S

    wait_until(lambda: _stopped(prometheus) == {"shop": 0.0, "blog": 0.0}, 20, what="both rules")
    time.sleep(max(0.0, 20 * WINDOW_S - (time.monotonic() - start)))
    shop.set_rate(SPANS, "shop", 0.0)
    stopped_at = minutes()
    wait_until(lambda: _stopped(prometheus)["shop"] == 1.0, 10 * WINDOW_S, what="the stop")
    wrong = []
    while minutes() < stopped_at + 90:  # 20 minutes past the hour before
        state = _stopped(prometheus)
        if state != {"shop": 1.0, "blog": 0.0}:
            wrong.append((round(minutes() - stopped_at), state))
        time.sleep(WINDOW_S)
    assert not wrong, f"(minutes into the stop, state): {wrong}"
    assert _firing(prometheus) == {"shop"}

    shop.set_rate(SPANS, "shop", 10.0)
    wait_until(lambda: _stopped(prometheus)["shop"] == 0.0, 5 * WINDOW_S, what="the end of it")
    # Thawed: the rate it is judged against is the hour before again, and stays so.
    time.sleep(5 * WINDOW_S)
    assert _stopped(prometheus) == {"shop": 0.0, "blog": 0.0}

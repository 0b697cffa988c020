"""A failing usage or limit query is named in the error the exporter logs."""

from __future__ import annotations

import pytest

from exporter.config import PrometheusConfig
from exporter.prom import PrometheusError, UsageQueries, fetch_usage


class _Refusing:
    """Answers every query but the memory one, which Prometheus refuses as unparsable."""

    def query(self, expr: str, at: float | None = None) -> list:
        if "memory" in expr:
            raise PrometheusError("http://prom/api/v1/query: HTTP 400: parse error")
        return [({"container": "api"}, 0.5)]


@pytest.mark.parametrize("limits", [False, True])
def test_the_failing_query_is_named(limits: bool) -> None:
    config = PrometheusConfig(url="http://prom")
    queries = UsageQueries(config, 60.0)
    series = [("api", "cpu"), ("api", "memory")]
    with pytest.raises(PrometheusError) as error:
        fetch_usage(_Refusing(), queries, series, 0.0, limits=limits)  # type: ignore[arg-type]
    message = str(error.value)
    expr = queries.limit("memory") if limits else queries.usage("memory")
    assert message.startswith(f"memory {'limit' if limits else 'usage'} query {expr!r}: ")
    assert "HTTP 400: parse error" in message

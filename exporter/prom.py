"""Prometheus HTTP API client: instant and range queries, chunking, timeouts, retries."""

from __future__ import annotations

import logging
import math
import re
import string
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import requests

from estimator.errors import DeepRestError
from estimator.windows import SeriesKey
from exporter.config import PrometheusConfig, format_duration

log = logging.getLogger("deeprest.prometheus")


class PrometheusError(DeepRestError):
    """Prometheus did not answer, or answered with an error."""


QUERY_THREADS = 8
"""Queries a client asks side by side at most (a window asks one per resource)."""


class QueryRefused(PrometheusError):
    """Prometheus answered, refusing the query itself (its JSON error with HTTP 400 or 422: a
    syntax error, an unknown function): the query is at fault, not the upstream. A 404 or 401
    (a wrong URL path, missing credentials) is no answer of Prometheus's."""


Sample = tuple[dict[str, str], float]
RangeSeries = tuple[dict[str, str], list[tuple[float, float]]]


class PrometheusClient:
    """Thin client of /api/v1/query and /api/v1/query_range."""

    def __init__(
        self, config: PrometheusConfig, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        if not config.url:
            raise PrometheusError("no Prometheus URL configured (prometheus.url)")
        self.config = config
        self._sleep = sleep
        self._local = threading.local()  # a Session per thread: queries run side by side
        self._pool: ThreadPoolExecutor | None = None  # its threads, and sessions, are kept
        self._pool_lock = threading.Lock()

    @property
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _get(self, path: str, params: Mapping[str, Any]) -> Any:
        """GET with retries and exponential backoff; returns the `data` of a success answer."""
        url = f"{self.config.url}{path}"
        last = ""
        for attempt in range(self.config.retries + 1):
            if attempt:
                self._sleep(self.config.backoff * 2 ** (attempt - 1))
            try:
                response = self._session.get(url, params=params, timeout=self.config.timeout)
            except requests.RequestException as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            try:
                payload = response.json()
            except ValueError:
                payload = None
            ok = response.status_code == 200 and isinstance(payload, dict)
            if ok and payload.get("status") == "success":
                return payload.get("data")
            error = payload.get("error") if isinstance(payload, dict) else response.text[:200]
            last = f"HTTP {response.status_code}: {error}"
            if response.status_code in (400, 422) and isinstance(payload, dict):
                raise QueryRefused(f"{url}: {last}")  # Prometheus's own refusal of the query
            if 400 <= response.status_code < 500 and response.status_code != 429:
                break  # a wrong URL or credentials do not get better by retrying either
        raise PrometheusError(f"{url}: {last}")

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        """Instant vector at time `at` as (labels, value) pairs; NaN values are left out."""
        params: dict[str, Any] = {"query": expr, "timeout": format_duration(self.config.timeout)}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", params)
        if not isinstance(data, dict) or data.get("resultType") not in ("vector", "scalar"):
            raise PrometheusError(f"query {expr!r} did not return an instant vector")
        if data["resultType"] == "scalar":
            return _finite([({}, data["result"][1])])
        return _finite([(item.get("metric", {}), item["value"][1]) for item in data["result"]])

    def query_all(
        self, exprs: Mapping[str, str], at: float | None = None
    ) -> dict[str, list[Sample] | PrometheusError]:
        """`query` of each expression, side by side: per key, its samples or the error it met.
        A Prometheus slow to answer then costs one query's time, not the sum of them."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(QUERY_THREADS, thread_name_prefix="prometheus")
        pending = {key: self._pool.submit(self.query, expr, at) for key, expr in exprs.items()}
        return {key: _outcome(future) for key, future in pending.items()}

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[RangeSeries]:
        """Range query over [start, end] at `step`, split into chunks of at most max_points."""
        merged: dict[tuple[tuple[str, str], ...], RangeSeries] = {}
        span = step * (self.config.max_points - 1)
        chunk_start = start
        while chunk_start <= end:
            chunk_end = min(end, chunk_start + span)
            data = self._get(
                "/api/v1/query_range",
                {
                    "query": expr,
                    "start": f"{chunk_start:.3f}",
                    "end": f"{chunk_end:.3f}",
                    "step": f"{step:g}",
                },
            )
            if not isinstance(data, dict) or data.get("resultType") != "matrix":
                raise PrometheusError(f"query_range {expr!r} did not return a matrix")
            for item in data["result"]:
                labels = item.get("metric", {})
                key = tuple(sorted(labels.items()))
                series = merged.setdefault(key, (labels, []))
                for t, v in item.get("values", []):
                    value = float(v)
                    if math.isfinite(value):
                        series[1].append((float(t), value))
            chunk_start = chunk_end + step
        return list(merged.values())


def _finite(samples: list[tuple[dict[str, str], Any]]) -> list[Sample]:
    out = []
    for labels, raw in samples:
        value = float(raw)
        if math.isfinite(value):
            out.append((labels, value))
    return out


@dataclass(frozen=True)
class UsageQueries:
    """PromQL of actual usage and limits per resource, and the label-to-component mapping."""

    config: PrometheusConfig
    window: float

    @property
    def range_seconds(self) -> float:
        """What `{range}` stands for: the window, or `prometheus.rate_range` where longer."""
        return max(self.window, self.config.rate_range or 0.0)

    def _render(self, template: str) -> str:
        return template.format(
            label=self.config.component_label,
            selector=self.config.selector,
            range=format_duration(self.range_seconds),
        )

    def ranged(self, resources: Iterable[str]) -> list[str]:
        """Those of the resources whose usage query reads a range (`{range}`), in order: a
        rate() over it is empty unless Prometheus scraped twice within it."""
        return [
            resource
            for resource in sorted(set(resources))
            if any(
                name == "range"
                for _, name, _, _ in string.Formatter().parse(self.config.queries.get(resource, ""))
            )
        ]

    def usage(self, resource: str) -> str | None:
        template = self.config.queries.get(resource)
        return self._render(template) if template else None

    def sample_counts(self, resource: str) -> list[str]:
        """Queries of how many samples each series has in a window's range: one
        `count_over_time` per selector the resource's usage query reads over `{range}` (none
        where it reads no plain selector over it, such as a subquery)."""
        expr = self.usage(resource)
        if expr is None:
            return []
        ranged = f"[{format_duration(self.range_seconds)}]"
        return [
            f"count_over_time({match.group(1)}{ranged})"
            for match in re.finditer(_SELECTOR + r"\s*" + re.escape(ranged), expr)
        ]

    def limit(self, resource: str) -> str | None:
        template = self.config.limit_queries.get(resource)
        return self._render(template) if template else None

    def component(self, labels: Mapping[str, str]) -> str | None:
        """Component named by a series' labels (regex and rename applied), or None to skip it."""
        name = labels.get(self.config.component_label)
        if not name:
            return None
        if self.config.component_regex:
            match = re.fullmatch(self.config.component_regex, name)
            if match is None:
                return None
            name = match.group(1) if match.groups() else match.group(0)
        return self.config.component_rename.get(name, name)


_NAME = r"[A-Za-z_:][A-Za-z0-9_:]*"
_MATCHERS = r'\{(?:[^{}"]|"(?:[^"\\]|\\.)*")*\}'
_SELECTOR = rf"((?:{_NAME})?\s*{_MATCHERS}|{_NAME})"
"""A PromQL vector selector: a metric name, label matchers in braces, or both."""


def fetch_usage(
    client: PrometheusClient,
    queries: UsageQueries,
    series: list[SeriesKey],
    at: float,
    limits: bool = False,
) -> dict[SeriesKey, float]:
    """Actual usage (or limits) of the given series at time `at`; missing ones are left out.

    A query Prometheus refuses (QueryRefused: a typo in the config) leaves out its resource
    only, with a warning naming it once: the other resources are read, and the upstream counts
    as answering. Any other failure raises, naming the query."""
    wanted = set(series)
    out: dict[SeriesKey, float] = {}
    kind = "limit" if limits else "usage"
    asked = {
        resource: expr
        for resource in sorted({r for _, r in series})
        if (expr := queries.limit(resource) if limits else queries.usage(resource)) is not None
    }
    # side by side: one after another, queries of 3 s each outlasted a 10 s window, and every
    # window was estimated without its usage
    answers = client.query_all(asked, at)
    for resource, expr in asked.items():
        answer = answers[resource]
        if isinstance(answer, QueryRefused):
            if expr not in _WARNED_REFUSED:
                _WARNED_REFUSED.add(expr)
                log.warning(
                    "Prometheus refuses the %s %s query %r (%s): %s %s is left out until the "
                    "configuration is fixed; the other resources are read",
                    resource,
                    kind,
                    expr,
                    answer,
                    resource,
                    kind,
                )
            continue
        if isinstance(answer, PrometheusError):  # name the query: one of several failed
            raise PrometheusError(f"{resource} {kind} query {expr!r}: {answer}") from answer
        for labels, value in answer:
            component = queries.component(labels)
            key = (component or "", resource)
            if component and key in wanted:
                out[key] = out.get(key, 0.0) + value
    negative = sorted(key for key, value in out.items() if value < 0)
    for key in negative:  # no usage or limit is below zero: a query of something else
        del out[key]
    if negative and set(negative) - _WARNED_NEGATIVE:
        _WARNED_NEGATIVE.update(negative)
        log.warning(
            "Prometheus gave a negative %s for %s: left out (a query of something other than "
            "usage?)",
            kind,
            ", ".join(f"{c}/{r}" for c, r in negative[:5]),
        )
    return out


def _outcome(future: Future[list[Sample]]) -> list[Sample] | PrometheusError:
    """A query's samples, or the PrometheusError it raised (any other error is raised)."""
    try:
        return future.result()
    except PrometheusError as exc:
        return exc


_WARNED_NEGATIVE: set[SeriesKey] = set()
"""Series already warned of for a negative value (each is said once)."""
_WARNED_REFUSED: set[str] = set()
"""Queries already warned of as refused (each is said once)."""

"""Load-test summaries that hold one step each: k6's and Vegeta's JSON.

- k6: `k6 run --summary-export FILE` (metrics at `metrics.NAME.STAT`) or a `handleSummary` that
  writes `JSON.stringify(data)` (at `metrics.NAME.values.STAT`). `http_reqs.rate` is the rate
  sent, less the share `http_req_failed` counts (its `value`, or `rate`: the fraction failed)
  for the rate served; `http_req_duration` holds the latency in milliseconds (`p(95)`, `med`,
  `avg`, ...). Its sub-metrics tagged `name` (`http_req_duration{name:GET /cart}`, exported
  where a threshold names them) are read as APIs, with the `http_reqs{name:...}` of that name.
- Vegeta: `vegeta report -type=json`: `rate` is the rate sent, `throughput` the rate of
  successful responses (or `rate` times `success`, in older versions), `latencies.50th`, `90th`,
  `95th`, `99th` and `mean` in nanoseconds.

Neither names an API unless asked as above: the step is then of API `all`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from estimator.errors import InputError
from estimator.latency import Step
from exporter.objective import Objective

VEGETA_LATENCIES = {"p50": "50th", "p90": "90th", "p95": "95th", "p99": "99th", "mean": "mean"}
TAGGED = re.compile(r"http_req_duration\{name:(?P<name>.*)\}")


def _dataset_hint(text: str) -> str:
    """A hint where the text is a window dataset (a JSON object per line with `start` and
    `end`): recorded traffic, which `capacity --data` reads, not a load-test summary."""
    try:
        first = json.loads(text.split("\n", 1)[0])
    except (ValueError, RecursionError):
        return ""
    if isinstance(first, dict) and {"start", "end"} <= set(first):
        return " (a window dataset, a JSON object per line: give it as --data, not --runs)"
    return ""


def read_summary(
    text: str,
    source: str,
    objective: Objective,
    group_by: Sequence[str],
    steps: dict[tuple[str, str], list[Step]],
) -> None:
    """Add the step (per API) of one k6 or Vegeta JSON summary to `steps`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"not JSON: {exc.msg}" + _dataset_hint(text), source=source, line=exc.lineno
        ) from None
    if group_by:
        raise InputError(
            "a k6 or Vegeta summary has no columns to group by: read each deployment's "
            "summaries in a capacity run of their own",
            source=source,
            field="--group-by",
        )
    if isinstance(data, dict) and isinstance(data.get("metrics"), dict):
        for api, step in _k6_steps(data["metrics"], source, objective):
            steps.setdefault(("", api), []).append(step)
    elif isinstance(data, dict) and isinstance(data.get("latencies"), dict):
        steps.setdefault(("", "all"), []).append(_vegeta_step(data, source, objective))
    else:
        raise InputError(
            "neither a k6 summary (an object with 'metrics') nor a Vegeta report (one with "
            "'latencies')",
            source=source,
            line=1,
        )


def _value(data: dict[str, Any], path: Sequence[str], source: str, how: str = "") -> float:
    """The finite, non-negative number at `path`; an InputError naming the field if there is
    none (`how` says how to have it written)."""
    node: Any = data
    for key in path:
        if not isinstance(node, dict) or key not in node:
            where = ".".join(path)
            raise InputError(
                f"no such field{'; ' + how if how else ''}", source=source, field=where
            )
        node = node[key]
    if isinstance(node, bool) or not isinstance(node, int | float) or not math.isfinite(node):
        raise InputError(f"not a number: {node!r}", source=source, field=".".join(path))
    if node < 0:
        raise InputError(f"must be non-negative, is {node!r}", source=source, field=".".join(path))
    return float(node)


def _k6_stat(metrics: dict[str, Any], metric: str, stat: str, source: str, how: str = "") -> float:
    """A statistic of a k6 metric, from a summary export or handleSummary's data."""
    node = metrics.get(metric)
    if isinstance(node, dict) and isinstance(node.get("values"), dict):
        return _value({"metrics": metrics}, ["metrics", metric, "values", stat], source, how)
    return _value({"metrics": metrics}, ["metrics", metric, stat], source, how)


def _k6_steps(metrics: dict[str, Any], source: str, objective: Objective) -> list[tuple[str, Step]]:
    """A step per API named in the summary's tagged sub-metrics, else one of API 'all'."""
    stat = {"mean": "avg", "p50": "med"}.get(objective.statistic, f"p({objective.statistic[1:]})")
    trend = (
        f"k6 exports avg, min, med, max, p(90) and p(95) unless told: run it with "
        f"--summary-trend-stats=avg,min,med,max,p(90),p(95),{stat}"
    )
    names = [m.group("name") for key in metrics if (m := TAGGED.fullmatch(key))]
    out = []
    for name in names or [None]:
        tag = "" if name is None else f"{{name:{name}}}"
        how = (
            f"k6 exports a tagged sub-metric only where a threshold names it: add "
            f"thresholds: {{'http_reqs{tag}': ['count>=0']}} to the script's options"
            if tag
            else "is this a k6 run with HTTP requests?"
        )
        latency = _k6_stat(metrics, f"http_req_duration{tag}", stat, source, trend) * 1e-3
        sent = _k6_stat(metrics, f"http_reqs{tag}", "rate", source, how)
        failed = 0.0
        if f"http_req_failed{tag}" in metrics:  # a rate: the share of requests that failed
            node = metrics[f"http_req_failed{tag}"]
            key = "rate" if isinstance(node, dict) and "values" in node else "value"
            failed = _k6_stat(metrics, f"http_req_failed{tag}", key, source)
            if failed > 1:
                raise InputError(
                    f"a share of requests must be at most 1, is {failed:g}",
                    source=source,
                    field=f"metrics.http_req_failed{tag}.{key}",
                )
        out.append((name or "all", Step(sent, sent * (1.0 - failed), latency)))
    return out


def _vegeta_step(data: dict[str, Any], source: str, objective: Objective) -> Step:
    """The step of a `vegeta report -type=json`."""
    key = VEGETA_LATENCIES.get(objective.statistic)
    if key is None:
        raise InputError(
            f"Vegeta reports no {objective.statistic} latency: its report has the "
            f"{', '.join(VEGETA_LATENCIES.values())} latencies; ask --slo for one of those",
            source=source,
            field=f"latencies.{objective.statistic}",
        )
    latency = _value(data, ["latencies", key], source) * 1e-9
    sent = _value(data, ["rate"], source)
    if "throughput" in data:
        served = _value(data, ["throughput"], source)
    else:  # Vegeta before 12.0
        served = sent * _value(data, ["success"], source)
    return Step(sent, served, latency)

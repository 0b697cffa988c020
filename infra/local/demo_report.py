"""What the demo shows: accuracy read back from Prometheus, alerts, and the HTML report."""

from __future__ import annotations

import html
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import requests

from estimator.evaluation import Evaluation
from estimator.windows import SeriesKey
from exporter.config import PrometheusConfig
from exporter.prom import PrometheusClient
from exporter.report import component_images, format_table, html_table, write_page

BAND = ("deeprest_expected_usage_lower", "deeprest_expected_usage", "deeprest_expected_usage_upper")
OBSERVED = "deeprest_observed_usage"


@dataclass(frozen=True)
class Phase:
    """A stretch of the test, in unix seconds."""

    name: str
    start: float
    end: float


def _matrix(client: PrometheusClient, expr: str, phase: Phase, step: float) -> dict:
    """(component, resource) -> {rounded time: value} of a range query."""
    out: dict[SeriesKey, dict[int, float]] = {}
    for labels, values in client.query_range(expr, phase.start, phase.end, step):
        key = (labels.get("component", ""), labels.get("resource", ""))
        out.setdefault(key, {}).update({int(round(t / step)): v for t, v in values})
    return out


def read_phase(prometheus_url: str, phase: Phase, step: float) -> Evaluation | None:
    """The exporter's band and observed usage over a phase, one point per window."""
    client = PrometheusClient(PrometheusConfig(url=prometheus_url))
    band = [_matrix(client, expr, phase, step) for expr in BAND]
    observed = _matrix(client, OBSERVED, phase, step)
    series = sorted(k for k in observed if all(k in b for b in band))
    if not series:
        return None
    times = sorted({t for k in series for t in observed[k]})
    pred = np.full((len(times), len(series), 3), np.nan)
    actual = np.full((len(times), len(series)), np.nan)
    for j, key in enumerate(series):
        for i, t in enumerate(times):
            actual[i, j] = observed[key].get(t, np.nan)
            for q in range(3):
                pred[i, j, q] = band[q][key].get(t, np.nan)
    keep = ~np.isnan(actual).all(axis=1)
    return Evaluation(series, np.array(times, float)[keep] * step, actual[keep], pred[keep], None)


NO_USAGE = "no usage"
"""What the table shows of a series that used nothing in a phase: no accuracy to score."""


def accuracy_table(evaluations: Mapping[str, Evaluation]) -> list[dict[str, object]]:
    """One row per series: accuracy (1 - WAPE) in each phase."""
    keys = sorted({k for e in evaluations.values() for k in e.series})
    rows = []
    for component, resource in keys:
        row: dict[str, object] = {"component": component, "resource": resource}
        for name, evaluation in evaluations.items():
            key = (component, resource)
            found = key in evaluation.series
            value = float(evaluation.accuracy[evaluation.series.index(key)]) if found else math.nan
            row[name] = value if math.isfinite(value) else NO_USAGE
        rows.append(row)
    return rows


def phase_summary(evaluation: Evaluation) -> dict[str, Any]:
    """Mean and worst accuracy, coverage, and per-series accuracy of one phase."""
    acc = evaluation.accuracy
    return {
        **evaluation.summary(),
        "windows": len(evaluation.starts),
        "series": {f"{c}/{r}": float(a) for (c, r), a in zip(evaluation.series, acc, strict=True)},
    }


# ---------------------------------------------------------------- alerts


def prometheus_alerts(prometheus_url: str) -> list[dict[str, Any]]:
    """Active alerts (pending and firing) from Prometheus /api/v1/alerts."""
    response = requests.get(f"{prometheus_url}/api/v1/alerts", timeout=5)
    response.raise_for_status()
    return list(response.json()["data"]["alerts"])


def alertmanager_alerts(alertmanager_url: str) -> list[dict[str, Any]]:
    """Active alerts from Alertmanager /api/v2/alerts."""
    response = requests.get(f"{alertmanager_url}/api/v2/alerts", timeout=5)
    response.raise_for_status()
    return list(response.json())


@dataclass
class AlertLog:
    """Every alert seen firing, by phase, with when it was first seen."""

    prometheus_url: str
    alertmanager_url: str
    firing: dict[tuple[str, str, str], tuple[str, float]] = field(default_factory=dict)
    delivered: set[tuple[str, str]] = field(default_factory=set)

    def poll(self, phase: str) -> list[dict[str, Any]]:
        """Record the alerts firing now; returns them (errors of one poll are skipped)."""
        try:
            alerts = [a for a in prometheus_alerts(self.prometheus_url) if a["state"] == "firing"]
        except (requests.RequestException, KeyError, ValueError):
            return []
        for alert in alerts:
            labels = alert["labels"]
            key = (labels["alertname"], labels.get("component", ""), labels.get("resource", ""))
            self.firing.setdefault(key, (phase, time.time()))
        return alerts

    def first(self, alertname: str, component: str, after: float) -> float | None:
        """When the alert for a component was first seen firing at or after `after`."""
        times = [
            t for (a, c, _), (_, t) in self.firing.items() if a == alertname and c == component
        ]
        times = [t for t in times if t >= after]
        return min(times) if times else None

    def during(self, phases: Sequence[str]) -> list[str]:
        """'alertname component resource' of alerts first seen firing in the given phases."""
        return sorted(" ".join(k).strip() for k, (p, _) in self.firing.items() if p in phases)

    def in_alertmanager(self, alertname: str, component: str) -> bool:
        """Whether Alertmanager holds the alert for the component."""
        try:
            alerts = alertmanager_alerts(self.alertmanager_url)
        except (requests.RequestException, ValueError):
            return False
        found = any(
            a["labels"].get("alertname") == alertname and a["labels"].get("component") == component
            for a in alerts
        )
        if found:
            self.delivered.add((alertname, component))
        return found or (alertname, component) in self.delivered


# ---------------------------------------------------------------- report


def print_accuracy(evaluations: Mapping[str, Evaluation]) -> None:
    """The per-series table and one summary line per phase."""
    rows = accuracy_table(evaluations)
    print(format_table(rows, ["component", "resource", *evaluations]), flush=True)
    for name, evaluation in evaluations.items():
        s = evaluation.summary()
        accuracy = evaluation.accuracy
        worst = ""
        if not np.isnan(accuracy).all():
            component, resource = evaluation.series[int(np.nanargmin(accuracy))]
            worst = f" ({component}/{resource})"
        print(
            f"accuracy {name}: mean {s['mean_accuracy']:.3f} worst "
            f"{round(s['worst_accuracy'], 3) + 0.0:.3f}{worst} "  # + 0.0: never "-0.000"
            f"coverage {s['coverage']:.3f} ({int(np.isfinite(accuracy).sum())} series scored "
            f"of {len(evaluation.series)}, "
            f"{len(evaluation.starts)} windows)",
            flush=True,
        )


def write_demo_report(
    directory: Path,
    evaluations: Mapping[str, Evaluation],
    plots: Mapping[str, Evaluation],
    plot_components: Sequence[str],
    facts: Sequence[str],
) -> tuple[Path, list[str]]:
    """index.html: facts, accuracy table of `evaluations`, PNGs of `plots`; returns its path and
    the names of the PNGs it shows."""
    directory.mkdir(parents=True, exist_ok=True)
    parts = ["<h1>DeepRest demo</h1><ul>"]
    parts += [f"<li>{html.escape(f)}</li>" for f in facts]
    parts.append("</ul><h2>Accuracy per series (1 - WAPE of the expected median)</h2>")
    parts.append(html_table(accuracy_table(evaluations)))
    images: list[str] = []
    for name, evaluation in plots.items():
        parts.append(f"<h2>{html.escape(name)}: actual usage, expected band, anomaly score</h2>")
        tags = component_images(directory, name, evaluation, plot_components)
        images += re.findall(r'src="([^"]+)"', "".join(tags))
        parts += tags
    return write_page(directory, "DeepRest demo", parts), images


def busiest(evaluation: Evaluation, n: int, resource: str = "cpu") -> list[str]:
    """The n components with the highest mean actual usage of a resource."""
    means = [
        (float(np.nanmean(evaluation.actual[:, j])), c)
        for j, (c, r) in enumerate(evaluation.series)
        if r == resource and not np.isnan(evaluation.actual[:, j]).all()
    ]
    return [c for _, c in sorted(means, reverse=True)[:n]]

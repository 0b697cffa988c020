"""Generated configuration of the testbed's Prometheus and Alertmanager."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml


def duration(seconds: float) -> str:
    """A Prometheus duration string."""
    return f"{max(1, int(round(seconds * 1000)))}ms"


def prometheus_config(
    exporter_target: str,
    deeprest_target: str | None,
    alertmanager_target: str | None,
    rule_files: Sequence[Path],
    interval_s: float,
) -> str:
    """prometheus.yml scraping the resource exporter (job testbed) and DeepRest (job deeprest)."""
    scrape: list[dict[str, Any]] = [
        {"job_name": "testbed", "static_configs": [{"targets": [exporter_target]}]}
    ]
    if deeprest_target:
        scrape.append({"job_name": "deeprest", "static_configs": [{"targets": [deeprest_target]}]})
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": duration(interval_s),
            "evaluation_interval": duration(interval_s),
        },  # fmt: skip
        "scrape_configs": scrape,
        "rule_files": [str(Path(p).resolve()) for p in rule_files],
    }
    if alertmanager_target:
        config["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": [alertmanager_target]}]}]
        }
    return yaml.safe_dump(config, sort_keys=False)


def alertmanager_config(webhook_url: str | None) -> str:
    """alertmanager.yml: one route, quick grouping, to a webhook when given."""
    receiver: dict[str, Any] = {"name": "default"}
    if webhook_url:
        receiver["webhook_configs"] = [{"url": webhook_url, "send_resolved": True}]
    config = {
        "route": {
            "receiver": "default",
            "group_by": ["alertname", "component"],
            "group_wait": "1s",
            "group_interval": "5s",
            "repeat_interval": "1h",
        },  # fmt: skip
        "receivers": [receiver],
    }
    return yaml.safe_dump(config, sort_keys=False)

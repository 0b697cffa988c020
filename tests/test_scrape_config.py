"""The scrape configuration grafana-dashboards/README.md gives, run by a real Prometheus.

Two applications, each with its exporter, both with a component named redis; service discovery
or relabeling adds target labels, one of which (`component`) is also an exporter label.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from infra.local.exposition import ExpositionServer
from tests.servers import PROMETHEUS, start_prometheus, wait_until

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "grafana-dashboards" / "README.md"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which(PROMETHEUS) is None, reason="prometheus not installed"),
]

EXPOSITION = (
    'deeprest_expected_usage{component="redis",resource="cpu"} 0.5\n'
    'deeprest_expected_usage{component="web",resource="cpu"} 0.7\n'
)


def documented_scrape_configs() -> list[dict]:
    """The scrape_configs of the README's Prometheus example."""
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S)
    (block,) = [b for b in blocks if "scrape_configs:" in b]
    configs: list[dict] = yaml.safe_load(block)["scrape_configs"]
    return configs


def test_the_documented_jobs_are_those_the_alerts_watch() -> None:
    jobs = [c["job_name"] for c in documented_scrape_configs()]
    assert len(jobs) == 2 and all(re.fullmatch(r"deeprest(-.+)?", j) for j in jobs)


def test_the_documented_scrape_config_keeps_the_exporters_labels_and_the_targets() -> None:
    exporter = ExpositionServer(lambda: EXPOSITION)
    configs = documented_scrape_configs()
    for config in configs:
        for static in config["static_configs"]:
            static["targets"] = [exporter.address]
            # as a relabeling of the pod's app.kubernetes.io/component label would add it
            static.setdefault("labels", {})["component"] = "backend"
    text = yaml.safe_dump({"global": {"scrape_interval": "1s"}, "scrape_configs": configs})
    prometheus = start_prometheus(text)
    try:
        result = wait_until(
            lambda: (r := prometheus.query("deeprest_expected_usage")) and len(r) == 4 and r,
            30,
            0.5,
            "both exporters scraped",
        )
        got = {
            (s["metric"]["job"], s["metric"].get("namespace"), s["metric"]["component"])
            for s in result
        }
        namespaces = {c["job_name"]: c["static_configs"][0]["labels"]["namespace"] for c in configs}
        assert got == {
            (job, namespace, component)
            for job, namespace in namespaces.items()
            for component in ("redis", "web")
        }
    finally:
        prometheus.stop()
        exporter.stop()

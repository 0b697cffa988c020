"""Kubernetes objects generated from grafana-dashboards/: rules, dashboards, Alertmanager values.

Run as `python -m infra.minikube.render rules|dashboards|alertmanager` from the repository root;
each prints YAML for `kubectl apply -f -` or `helm -f`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "grafana-dashboards" / "rules"
DASHBOARDS_DIR = ROOT / "grafana-dashboards" / "dashboards"
ALERTMANAGER_EXAMPLE = ROOT / "grafana-dashboards" / "alertmanager" / "alertmanager.example.yml"
MONITORING_NAMESPACE = "monitoring"
RELEASE = "kps"
"""Release name of kube-prometheus-stack in up.sh (its selectors match `release: kps`)."""
CONFIGMAP_LIMIT = 1 << 20
"""Kubernetes refuses ConfigMaps over 1 MiB."""


def k8s_name(stem: str) -> str:
    """A DNS-1123 object name from a file stem."""
    name = re.sub(r"[^a-z0-9-]+", "-", stem.lower()).strip("-")
    return name[:63].rstrip("-")


def rule_files(rules_dir: Path = RULES_DIR) -> list[Path]:
    """Rule files loaded into Prometheus (their promtool tests under tests/ are not)."""
    return sorted(p for p in rules_dir.glob("*.yaml") if p.is_file())


def prometheus_rule(path: Path, namespace: str = MONITORING_NAMESPACE) -> dict[str, Any]:
    """A PrometheusRule object holding the groups of one Prometheus rule file."""
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(loaded, dict) or not isinstance(loaded.get("groups"), list):
        raise ValueError(f"{path}: not a Prometheus rule file (no top-level groups list)")
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": k8s_name(path.stem),
            "namespace": namespace,
            "labels": {"release": RELEASE, "app.kubernetes.io/part-of": "deeprest"},
        },
        "spec": {"groups": loaded["groups"]},
    }


def dashboard_configmap(path: Path, namespace: str = MONITORING_NAMESPACE) -> dict[str, Any]:
    """A ConfigMap the Grafana sidecar of kube-prometheus-stack loads as a dashboard."""
    text = path.read_text(encoding="utf-8")
    json.loads(text)  # refuse a broken dashboard here rather than in Grafana
    if len(text.encode("utf-8")) >= CONFIGMAP_LIMIT:
        raise ValueError(f"{path}: {len(text)} bytes do not fit in a ConfigMap (1 MiB)")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": k8s_name(f"deeprest-dashboard-{path.stem}"),
            "namespace": namespace,
            "labels": {"grafana_dashboard": "1", "app.kubernetes.io/part-of": "deeprest"},
            "annotations": {"grafana_folder": "DeepRest"},
        },
        "data": {path.name: text},
    }


def alertmanager_values(path: Path = ALERTMANAGER_EXAMPLE) -> dict[str, Any]:
    """kube-prometheus-stack values that give Alertmanager the example routing of DeepRest."""
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(config, dict) or "route" not in config:
        raise ValueError(f"{path}: not an Alertmanager configuration (no route)")
    return {"alertmanager": {"config": config}}


def render(what: str) -> str:
    """YAML text of the objects (or values) named by `what`."""
    if what == "rules":
        docs: list[dict[str, Any]] = [prometheus_rule(p) for p in rule_files()]
    elif what == "dashboards":
        docs = [dashboard_configmap(p) for p in sorted(DASHBOARDS_DIR.glob("*.json"))]
    elif what == "alertmanager":
        docs = [alertmanager_values()]
    else:
        raise ValueError(f"unknown kind {what!r}: rules, dashboards or alertmanager")
    return yaml.safe_dump_all(docs, sort_keys=False, width=1000)


def main(argv: list[str] | None = None) -> int:
    """Print the requested YAML on standard output."""
    parser = argparse.ArgumentParser(prog="python -m infra.minikube.render", description=__doc__)
    parser.add_argument("what", choices=("rules", "dashboards", "alertmanager"))
    args = parser.parse_args(argv)
    sys.stdout.write(render(args.what))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

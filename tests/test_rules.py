"""Prometheus rules and the Alertmanager example: promtool and amtool checks, plus conventions."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import promql_parser
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES_DIR = ROOT / "grafana-dashboards" / "rules"
RULE_FILES = sorted(RULES_DIR.glob("*.yaml"))
TEST_FILES = sorted((RULES_DIR / "tests").glob("*.yaml"))
ALERTMANAGER_EXAMPLE = ROOT / "grafana-dashboards" / "alertmanager" / "alertmanager.example.yml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
DASHBOARDS_README = ROOT / "grafana-dashboards" / "README.md"
RUNBOOK_BASE = "https://deeprest.example.com/docs/runbooks.md"
"""The placeholder every alert's runbook_url starts with, documented as the one string to replace
with where a copy of docs/runbooks.md is served."""
RECORD_NAME = re.compile(r"^[a-z][a-z_]*:deeprest_[a-z0-9_]+:[a-z0-9_]+$")
SEVERITIES = {"critical", "warning", "info"}

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (Debian package prometheus)"
)


def rules_of(kind: str) -> list[dict[str, Any]]:
    """Every rule of the given kind ('alert' or 'record') across the shipped rule files."""
    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            found += [rule for rule in group["rules"] if kind in rule]
    return found


def unit_tests() -> list[dict[str, Any]]:
    """Every test group of every promtool test file."""
    groups: list[dict[str, Any]] = []
    for path in TEST_FILES:
        groups += yaml.safe_load(path.read_text())["tests"]
    return groups


def github_anchors(markdown: str) -> set[str]:
    """Anchors GitHub makes of the headings of a Markdown document."""
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^a-z0-9 _-]", "", title).replace(" ", "-"))
    return anchors


def run_tool(*cmd: str | Path) -> subprocess.CompletedProcess[str]:
    """Run a command line tool, capturing its output as text."""
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=60)


def test_rule_files_and_tests_exist() -> None:
    assert len(RULE_FILES) >= 2 and len(TEST_FILES) >= 2
    assert rules_of("alert") and rules_of("record")


@needs_promtool
@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(path: Path) -> None:
    result = run_tool("promtool", "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    result = run_tool("promtool", "test", "rules", *TEST_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_tests_catch_a_wrong_value(tmp_path: Path) -> None:
    """The exact-value tests are not vacuous: one changed expectation makes promtool fail."""
    source = RULES_DIR / "tests" / "deeprest-recording.test.yaml"
    doc = yaml.safe_load(source.read_text())
    doc["rule_files"] = [str((source.parent / f).resolve()) for f in doc["rule_files"]]
    sample = doc["tests"][0]["promql_expr_test"][0]["exp_samples"][0]
    sample["value"] = float(sample["value"]) + 0.001
    broken = tmp_path / "broken.test.yaml"
    broken.write_text(yaml.safe_dump(doc))
    result = run_tool("promtool", "test", "rules", broken)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def test_recording_rule_names_follow_level_metric_operations() -> None:
    for rule in rules_of("record"):
        assert RECORD_NAME.match(rule["record"]), rule["record"]


def test_every_alert_is_documented_and_templated() -> None:
    anchors = github_anchors(RUNBOOKS.read_text())
    for rule in rules_of("alert"):
        name = rule["alert"]
        assert name.startswith("DeepRest"), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        notes = rule["annotations"]
        assert {"summary", "description", "runbook_url"} <= set(notes), name
        assert "$value" in notes["description"] or "$value" in notes["summary"], name
        assert "$labels." in notes["description"], name
        base, _, anchor = notes["runbook_url"].partition("#")
        assert base == RUNBOOK_BASE and anchor == name.lower(), notes["runbook_url"]
        assert anchor in anchors, f"{name}: no heading for #{anchor} in docs/runbooks.md"


def test_every_runbook_url_is_absolute() -> None:
    """Alertmanager and Grafana render a relative runbook_url as a broken link."""
    for rule in rules_of("alert"):
        url = urlsplit(rule["annotations"]["runbook_url"])
        assert url.scheme == "https" and url.netloc and url.fragment, rule["alert"]


def test_the_runbook_base_is_documented_and_one_replacement_moves_every_link() -> None:
    """The docs tell users to replace RUNBOOK_BASE with their own URL in the rule files (and
    their tests): the string stands nowhere else there, so a plain replacement is safe."""
    assert RUNBOOK_BASE in DASHBOARDS_README.read_text()
    assert RUNBOOK_BASE in RUNBOOKS.read_text()
    for path in RULE_FILES + TEST_FILES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if RUNBOOK_BASE in line:
                assert line.strip().startswith("runbook_url:"), f"{path.name}:{number}"
            elif "runbook_url:" in line:
                raise AssertionError(f"{path.name}:{number}: a runbook_url not under the base")


def test_every_for_has_its_reason_beside_it() -> None:
    for path in RULE_FILES:
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip().startswith("for:"):
                inline = "#" in line
                above = lines[i - 1].strip().startswith("#")
                assert inline or above, f"{path.name}:{i + 1}: `for:` without its reason"


def test_every_alert_is_tested_not_firing_then_firing() -> None:
    cases = [case for group in unit_tests() for case in group.get("alert_rule_test", [])]
    for rule in rules_of("alert"):
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        quiet = [case for case in mine if not case.get("exp_alerts")]
        firing = [alert for case in mine for alert in case.get("exp_alerts") or []]
        assert quiet, f"{rule['alert']}: no 'not yet firing' case"
        assert firing, f"{rule['alert']}: no 'firing' case"
        for alert in firing:
            assert alert["exp_labels"]["severity"] == rule["labels"]["severity"]
            assert set(alert["exp_annotations"]) == set(rule["annotations"]), rule["alert"]


def test_every_recording_rule_is_tested_with_values() -> None:
    cases = [case for group in unit_tests() for case in group.get("promql_expr_test", [])]
    for rule in rules_of("record"):
        name = rule["record"]
        mine = [case for case in cases if case["expr"].split("{")[0].strip() == name]
        assert mine, f"{name}: no promql_expr_test"
        samples = [s for case in mine for s in case["exp_samples"]]
        assert samples and all(s["labels"].startswith(name + "{") for s in samples), name


def test_alertmanager_example_routes_the_alerts() -> None:
    config = yaml.safe_load(ALERTMANAGER_EXAMPLE.read_text())
    receivers = {r["name"] for r in config["receivers"]}
    routes = [config["route"], *config["route"].get("routes", [])]
    assert all(route["receiver"] in receivers for route in routes)
    matched = " ".join(m for route in routes for m in route.get("matchers", []))
    assert "DeepRestCPUNotExplainedByTraffic" in matched


@pytest.mark.skipif(
    shutil.which("amtool") is None,
    reason="amtool not installed (Debian package prometheus-alertmanager)",
)
def test_amtool_check_config() -> None:
    result = run_tool("amtool", "check-config", ALERTMANAGER_EXAMPLE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def runbook_queries() -> list[str]:
    """Each line of the runbooks' PromQL blocks, its comment removed, placeholders filled in."""
    blocks = re.findall(r"```promql\n(.*?)```", RUNBOOKS.read_text(), flags=re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    return [re.sub(r"\b[A-Z]+\b", "x", line) for line in lines if line]


def test_runbook_queries_of_a_component_keep_to_its_application() -> None:
    """Two applications in one Prometheus may both have a redis: a query of a component names
    the exporter's job (DeepRest series) or the application's namespace (cAdvisor's)."""
    unpinned = []
    for query in runbook_queries():

        def visit(node: object, query: str = query) -> None:
            if not isinstance(node, promql_parser.VectorSelector):
                return
            labels = {m.name for m in node.matchers.matchers}
            name = node.name or ""
            if "container" in labels and "namespace" not in labels:
                unpinned.append(query)
            if ("component" in labels or name.startswith("api:")) and "job" not in labels:
                unpinned.append(query)

        promql_parser.walk(promql_parser.parse(query), visit)
    assert runbook_queries() and not unpinned, unpinned

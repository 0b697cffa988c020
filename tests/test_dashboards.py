"""Lint of the Grafana dashboards and provisioning files: shape, uids, variables, units, PromQL."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "grafana-dashboards"
DASHBOARDS = sorted((BASE / "dashboards").glob("*.json"))
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}

CONTRACT_3 = {
    "deeprest_expected_usage",
    "deeprest_expected_usage_lower",
    "deeprest_expected_usage_upper",
    "deeprest_observed_usage",
    "deeprest_anomaly_score",
    "deeprest_api_calls_total",
    "deeprest_capacity_headroom_ratio",
    "deeprest_model_info",
    "deeprest_model_accuracy_ratio",
    "deeprest_last_estimate_timestamp_seconds",
    "deeprest_up",
    "deeprest_unknown_api_calls_ratio",
    "deeprest_otlp_spans_received_total",
    "deeprest_otlp_spans_rejected_total",
}
"""The series the exporter publishes (contract 3 of the design)."""
CADVISOR = {
    "container_cpu_usage_seconds_total",
    "container_memory_working_set_bytes",
    "container_memory_usage_bytes",
    "container_fs_writes_total",
    "container_fs_writes_bytes_total",
    "container_spec_cpu_quota",
    "container_spec_cpu_period",
    "container_spec_memory_limit_bytes",
}
"""Actual usage and limits as cAdvisor names them."""
PROMETHEUS_OWN = {"ALERTS"}
"""Series Prometheus writes itself: the alerts of the shipped rules, pending or firing."""
OVERVIEW = BASE / "dashboards" / "expected-vs-actual.json"

GRAFANA_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.*),)?\s*(\w+)\s*\)\s*$", re.S)
BUILTINS = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}


def load(path: Path) -> dict[str, Any]:
    """One dashboard as a dict."""
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def panels(doc: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that draws data (rows excluded, panels inside collapsed rows included)."""
    for panel in doc.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def panel_exprs(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel."""
    return [(p["title"], t["expr"]) for p in panels(doc) for t in p.get("targets", [])]


def variable_queries(doc: Mapping[str, Any]) -> list[str]:
    """The PromQL selectors inside the query variables' label_values(...)."""
    found = []
    for var in doc["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            match = LABEL_VALUES.match(query)
            assert match, f"variable {var['name']}: not label_values(...): {query}"
            if match.group(1):
                found.append(match.group(1))
    return found


def substitute(expr: str, values: Mapping[str, str] | None = None) -> str:
    """Replace Grafana variables ($x, ${x}, ${x:fmt}) by values; unknown ones by '.+'."""
    table = {**BUILTINS, **(values or {})}

    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return table.get(name, ".+")

    return GRAFANA_VARIABLE.sub(repl, expr)


def metric_names(expr: str) -> set[str]:
    """Metric names of every selector in a PromQL expression (parsed, not grepped)."""
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for matcher in node.matchers.matchers:
                if matcher.name == "__name__":
                    names.add(matcher.value)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def rule_names(kind: str) -> set[str]:
    """Names of every rule of `kind` ("record" or "alert") in the shipped rule files."""
    names = set()
    for path in (BASE / "rules").glob("*.yaml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names |= {rule[kind] for rule in group["rules"] if kind in rule}
    return names


def recording_rules() -> set[str]:
    return rule_names("record")


def alert_names() -> set[str]:
    return rule_names("alert")


def alerts_selected(expr: str) -> set[str]:
    """Shipped alerts that the ALERTS selectors of an expression can match, by alertname."""
    selected: set[str] = set()

    def visit(node: Any) -> None:
        if not (isinstance(node, promql_parser.VectorSelector) and node.name == "ALERTS"):
            return
        names = alert_names()
        for m in node.matchers.matchers:
            if m.name == "alertname":
                keep = {
                    "MatchOp.Equal": lambda a, v=m.value: a == v,
                    "MatchOp.NotEqual": lambda a, v=m.value: a != v,
                    "MatchOp.Re": lambda a, v=m.value: re.fullmatch(v, a) is not None,
                    "MatchOp.NotRe": lambda a, v=m.value: re.fullmatch(v, a) is None,
                }[str(m.op)]
                names = {a for a in names if keep(a)}
        selected.update(names)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return selected


def all_exprs() -> list[tuple[str, str, str]]:
    """(file, panel title, PromQL) over every dashboard."""
    return [(p.name, title, e) for p in DASHBOARDS for title, e in panel_exprs(load(p))]


def test_the_four_dashboards_exist() -> None:
    titles = {load(p)["title"] for p in DASHBOARDS}
    assert titles == {
        "DeepRest / Expected vs actual",
        "DeepRest / API traffic",
        "DeepRest / Capacity",
        "DeepRest / Model health",
    }


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_shape(path: Path) -> None:
    doc = load(path)
    assert isinstance(doc["schemaVersion"], int) and doc["schemaVersion"] >= 30
    assert doc["uid"] == "deeprest-" + path.stem, "uid must stay derived from the file name"
    assert len(doc["uid"]) <= 40 and re.fullmatch(r"[a-z0-9-]+", doc["uid"])
    assert "deeprest" in doc["tags"]
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in doc["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["title"]


def test_uids_are_unique() -> None:
    uids = [load(p)["uid"] for p in DASHBOARDS]
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_variables(path: Path) -> None:
    variables = {v["name"]: v for v in load(path)["templating"]["list"]}
    sources = [v for v in variables.values() if v["type"] == "datasource"]
    assert len(sources) == 1 and sources[0]["name"] == "datasource"
    assert sources[0]["query"] == "prometheus"
    for name in ("job", "component", "resource"):
        assert variables[name]["type"] == "query", name
        assert variables[name]["datasource"] == DATASOURCE_REF, name
    for selector in variable_queries(load(path)):
        assert metric_names(substitute(selector)) <= CONTRACT_3 | recording_rules()


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_one_job_at_a_time(path: Path) -> None:
    """Two exporters' series drawn together would share every legend, and a band's fill pairs
    its lower and upper series by name: the job variable picks one exporter."""
    job = {v["name"]: v for v in load(path)["templating"]["list"]}["job"]
    assert job["multi"] is False and job["includeAll"] is False
    sources = {
        "model-health.json": "deeprest_otlp_spans_received_total",
        "api-traffic.json": "deeprest_api_calls_total",
    }
    source = sources.get(path.name)
    if source:  # an exporter still collecting windows, without a model, can be picked there
        assert job["query"]["query"] == f"label_values({source}, job)"


def test_write_panels_say_why_they_are_empty() -> None:
    dashboard = load(BASE / "dashboards" / "expected-vs-actual.json")
    writes = [p for p in panels(dashboard) if p["title"].startswith("$component: Write")]
    assert len(writes) == 2
    assert all("no disk writes" in p["fieldConfig"]["defaults"]["noValue"] for p in writes)


def test_cpu_and_memory_panels_say_why_they_are_empty() -> None:
    """Training leaves out a CPU or memory series it cannot model (a memory series that reads 0,
    one with too few windows): its panel says so, as the write panels do, not a bare "No data"."""
    dashboard = load(BASE / "dashboards" / "expected-vs-actual.json")
    for title, said in (("$component: CPU", "no CPU"), ("$component: Memory", "no memory")):
        [panel] = [p for p in panels(dashboard) if p["title"] == title]
        assert said in panel["fieldConfig"]["defaults"].get("noValue", ""), title


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_deeprest_selector_keeps_to_the_chosen_jobs(path: Path) -> None:
    """Two exporters scraped by one Prometheus (two jobs) are never drawn as one."""
    for title, expr in panel_exprs(load(path)):
        unfiltered: list[str] = []

        def visit(node: Any, found: list[str] = unfiltered) -> None:
            if not isinstance(node, promql_parser.VectorSelector):
                return
            jobs = [m.value for m in node.matchers.matchers if m.name == "job"]
            if "deeprest_" in (node.name or "") and jobs != ["$job"]:
                found.append(node.name)

        promql_parser.walk(promql_parser.parse(expr), visit)
        assert not unfiltered, f'{title}: {unfiltered} without job=~"$job"'


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_has_a_unit_and_uses_the_datasource_variable(path: Path) -> None:
    for panel in panels(load(path)):
        title = panel["title"]
        assert panel["fieldConfig"]["defaults"].get("unit"), f"{title}: no unit"
        assert panel["datasource"] == DATASOURCE_REF, title
        assert panel["targets"], f"{title}: no query"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE_REF, title
            assert target["expr"].strip(), title


def _datasource_refs(node: Any) -> Iterator[Any]:
    """Every value held under a `datasource` key anywhere in a JSON document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            yield from _datasource_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _datasource_refs(item)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_no_hard_coded_datasource(path: Path) -> None:
    refs = list(_datasource_refs(load(path)))
    assert refs
    for ref in refs:
        uid = ref.get("uid") if isinstance(ref, dict) else ref
        assert uid in ("${datasource}", "$datasource"), f"hard-coded data source: {ref!r}"


@pytest.mark.parametrize(("name", "title", "expr"), all_exprs(), ids=lambda x: str(x)[:40])
def test_panel_queries_parse_and_use_known_series(name: str, title: str, expr: str) -> None:
    parsed = substitute(expr, {"component": "compose", "resource": "cpu", "api": "front:/home"})
    names = metric_names(parsed)  # raises on a PromQL syntax error
    assert names, f"{name} / {title}: no series"
    unknown = names - CONTRACT_3 - CADVISOR - PROMETHEUS_OWN - recording_rules()
    assert not unknown, f"{name} / {title}: unknown series {unknown}"
    if "ALERTS" in names:
        assert alerts_selected(parsed), f"{name} / {title}: names no shipped alert"


def test_the_overview_shows_what_holds_the_anomaly_alerts_back() -> None:
    """Every series an alert is held back by for its whole exporter (`unless on (job, instance)`:
    traces stopped, latched until spans come back; traffic unknown to the model) is drawn on the
    overview, so that an operator sees why nothing pages while the scores run high."""
    rules = (BASE / "rules" / "deeprest-alerts.yaml").read_text()
    holds = set(re.findall(r"unless on \(job, instance\) (instance:\w+:\w+)", rules))
    assert "instance:deeprest_traces_stopped:bool" in holds
    shown = {n for _, e in panel_exprs(load(OVERVIEW)) for n in metric_names(substitute(e))}
    assert holds <= shown, f"not on the overview: {sorted(holds - shown)}"


def test_the_overview_lists_every_alert_firing() -> None:
    """A dead component (DeepRestComponentReportsNoUsage) scores little on a light component's
    band: the overview lists the firing alerts of its job, every shipped one included."""
    listed = set()
    for _, expr in panel_exprs(load(OVERVIEW)):
        parsed = substitute(expr)
        if "ALERTS" in metric_names(parsed):
            assert 'alertstate="firing"' in expr and 'job=~"$job"' in expr, expr
            listed |= alerts_selected(parsed)
    assert "DeepRestComponentReportsNoUsage" in alert_names()
    assert listed == alert_names()


def test_substitution_and_name_extraction_catch_mistakes() -> None:
    with pytest.raises(ValueError):
        promql_parser.parse(
            substitute('rate(deeprest_api_calls_total{api=~"$api"}[$__rate_interval)')
        )
    assert metric_names(substitute('sum(rate(x{a=~"${component:regex}"}[$__rate_interval]))')) == {
        "x"
    }


def test_dashboards_query_recording_rules_where_they_exist() -> None:
    used = {n for _, _, e in all_exprs() for n in metric_names(substitute(e))}
    records = recording_rules()
    assert {
        "component_resource:deeprest_usage_excess:ratio",
        "component_resource:deeprest_band_coverage:avg_over_time1h",
        "component_resource:deeprest_live_accuracy:ratio1h",
        "instance:deeprest_estimate_age:seconds",
        "api:deeprest_api_calls:rate5m",
        "job:deeprest_otlp_spans_received:rate5m",
        "job_reason:deeprest_otlp_spans_rejected:rate5m",
    } <= used & records
    raw = [e for _, _, e in all_exprs() if re.search(r"rate\(deeprest_\w+_total", e)]
    assert not raw, f"counters rated in panels instead of recording rules: {raw}"


def test_expected_vs_actual_draws_the_band_as_a_filled_range() -> None:
    doc = load(BASE / "dashboards" / "expected-vs-actual.json")
    rows = [p for p in doc["panels"] if p["type"] == "row"]
    assert any(row.get("repeat") == "component" for row in rows)
    fills = [
        prop["value"]
        for panel in panels(doc)
        for override in panel["fieldConfig"]["overrides"]
        for prop in override["properties"]
        if prop["id"] == "custom.fillBelowTo"
    ]
    assert fills and set(fills) == {"lower"}
    scored = [
        p for p in panels(doc) if any("anomaly_score" in e for _, e in panel_exprs({"panels": [p]}))
    ]
    assert scored


def test_provisioning_files() -> None:
    sources = yaml.safe_load((BASE / "provisioning/datasources/prometheus.yaml").read_text())
    assert [s["type"] for s in sources["datasources"]] == ["prometheus"]
    providers = yaml.safe_load((BASE / "provisioning/dashboards/deeprest.yaml").read_text())
    assert providers["apiVersion"] == 1
    assert [p["type"] for p in providers["providers"]] == ["file"]
    assert providers["providers"][0]["options"]["path"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_the_driven_components_panel_is_a_correlation_over_the_minutes_with_both(
    tmp_path: Path,
) -> None:
    """The panel's PromQL on a real evaluator (promtool): expected usage linear in the API's
    rate gives 1 even where it exists only for the last half hour while the rate has an hour
    (averages over different minutes gave -0.22); falling with the rate gives -1; a series that
    did not change gives no row (not NaN)."""
    doc = load(BASE / "dashboards" / "api-traffic.json")
    [expr] = [e for title, e in panel_exprs(doc) if title == "Components driven by $api"]
    expr = substitute(expr, {"api": "front:/read"})
    per_minute = [2.0 + (k % 20) * 0.5 + (3.0 if k % 7 == 0 else 0.0) for k in range(91)]
    counter = [sum(per_minute[: k + 1]) * 60 for k in range(91)]
    rate5m = {k: (counter[k] - counter[k - 5]) / 300 for k in range(5, 91)}
    late = range(60, 91)  # expected usage only from minute 60: the model was loaded then

    def values(f: Any) -> str:
        return " ".join(repr(f(rate5m[k])) if k in late else "_" for k in range(91))

    labels = 'job="deeprest",instance="a"'
    test = {
        "rule_files": [str(BASE / "rules" / "deeprest-recording.yaml")],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": f'deeprest_api_calls_total{{{labels},api="front:/read"}}',
                        "values": " ".join(repr(c) for c in counter),
                    },
                    *(
                        {
                            "series": f'deeprest_expected_usage{{{labels},component="{c}",'
                            'resource="cpu"}',
                            "values": values(f),
                        }
                        for c, f in (
                            ("rising", lambda r: 0.1 + 0.002 * r),
                            ("falling", lambda r: 1.0 - 0.001 * r),
                            ("flat", lambda r: 0.3),
                        )
                    ),
                ],
                "promql_expr_test": [
                    {
                        "expr": f"round({expr}, 0.000001)",
                        "eval_time": "90m",
                        "exp_samples": [
                            {"labels": '{component="rising",resource="cpu"}', "value": 1},
                            {"labels": '{component="falling",resource="cpu"}', "value": -1},
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "panel.test.yaml"
    path.write_text(yaml.safe_dump(test))
    result = subprocess.run(
        ["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_receiver_health_counter_is_on_a_dashboard() -> None:
    """The counters the README lists as receiver health, each shown directly or through a
    recording rule that reads it: one with no panel is a signal nobody sees (split traces,
    telling an operator to raise trace_grace)."""
    readme = (ROOT / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.endswith("| receiver health |"))
    counters = set(re.findall(r"`(deeprest_\w+_total)", row))
    assert "deeprest_otlp_traces_split_total" in counters
    reads: dict[str, set[str]] = {}
    for path in (BASE / "rules").glob("*.yaml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    reads[rule["record"]] = metric_names(rule["expr"])
    shown = set()
    for _, _, expr in all_exprs():
        for name in metric_names(substitute(expr)):
            shown |= {name} | reads.get(name, set())
    assert counters <= shown, f"on no dashboard: {sorted(counters - shown)}"

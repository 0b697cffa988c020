"""Contract-1 reading and writing, validation with file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from estimator.errors import InputError
from estimator.windows import (
    Latency,
    api_counts,
    api_of,
    load_windows,
    read_windows,
    targets,
    tree_paths,
    write_windows,
)
from tests.worlds import tiny_world

LATENCY = {"api": ["nginx", "/compose"], "count": 4, "mean": 0.02, "p50": 0.015}
LATENCY |= {"p90": 0.04, "p95": 0.05, "p99": 0.08}
GOOD = {
    "start": 0,
    "end": 60,
    "calls": [{"path": [["nginx", "/compose"], ["compose-post", "compose"]], "count": 5}],
    "traces": [
        {
            "component": "nginx",
            "operation": "/compose",
            "children": [{"component": "compose-post", "operation": "compose", "children": []}],
        }
    ],
    "metrics": [{"component": "compose-post", "resource": "cpu", "value": 0.5}],
    "latency": [LATENCY],
}
GOOD_LATER = {"start": 60, "end": 120}


def write_lines(path: Path, objects: list[object]) -> Path:
    path.write_text("\n".join(json.dumps(o) for o in objects) + "\n")
    return path


def test_calls_and_traces_are_both_counted(tmp_path: Path) -> None:
    [window] = load_windows(write_lines(tmp_path / "d.jsonl", [GOOD]))
    assert window.calls[(("nginx", "/compose"),)] == 1
    assert window.calls[(("nginx", "/compose"), ("compose-post", "compose"))] == 6
    assert window.metrics == {("compose-post", "cpu"): 0.5}


def test_round_trip_keeps_counts_metrics_and_oracle(tmp_path: Path) -> None:
    windows = tiny_world(20)
    write_windows(tmp_path / "w.jsonl", windows)
    again = load_windows(tmp_path / "w.jsonl")
    assert [w.calls for w in again] == [w.calls for w in windows]
    assert [w.metrics for w in again] == pytest.approx([w.metrics for w in windows])
    assert again[3].oracle == pytest.approx(windows[3].oracle)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda o: o.pop("start"), "start"),
        (lambda o: o.update(end=-1), "end"),
        (lambda o: o["calls"][0].update(count="many"), "calls[0].count"),
        (lambda o: o["calls"][0].update(path=[["nginx"]]), "calls[0].path"),
        (
            lambda o: o["traces"][0]["children"][0].pop("operation"),
            "traces[0].children[0].operation",
        ),
        (lambda o: o["metrics"][0].update(value=float("inf")), "metrics[0].value"),
        (lambda o: o["metrics"][0].pop("resource"), "metrics[0].resource"),
        (lambda o: o["metrics"][0].update(val=o["metrics"][0].pop("value")), "metrics[0].value"),
        (lambda o: o["metrics"].append(dict(o["metrics"][0])), "metrics[1]"),
        (lambda o: o["latency"][0].update(count=0), "latency[0].count"),
        (lambda o: o["latency"][0].update(count=2.5), "latency[0].count"),
        (lambda o: o["latency"][0].pop("p99"), "latency[0].p99"),
        (lambda o: o["latency"][0].update(api=["nginx"]), "latency[0].api"),
        (lambda o: o.update(latency={}), "latency"),
        (lambda o: o.update(start=o["start"] * 1000, end=o["end"] * 1000), "start"),  # ms
        (lambda o: o["calls"][0].update(count=1e40), "calls[0].count"),
    ],
)
def test_bad_lines_name_file_line_and_field(tmp_path: Path, mutate, field: str) -> None:
    bad = json.loads(json.dumps(GOOD))
    mutate(bad)
    path = write_lines(tmp_path / "bad.jsonl", [GOOD, bad])
    with pytest.raises(InputError) as err:
        list(read_windows(path))
    assert err.value.line == 2
    assert err.value.field == field
    assert str(path) in str(err.value) and "line 2" in str(err.value)


def test_latency_round_trips_and_is_optional(tmp_path: Path) -> None:
    [window] = load_windows(write_lines(tmp_path / "d.jsonl", [GOOD]))
    summary = window.latency[("nginx", "/compose")]
    assert (summary.count, summary.p50, summary.statistic("p99")) == (4, 0.015, 0.08)
    write_windows(tmp_path / "again.jsonl", [window])
    assert load_windows(tmp_path / "again.jsonl")[0].latency == window.latency
    plain = {k: v for k, v in GOOD.items() if k != "latency"}
    write_windows(
        tmp_path / "plain.jsonl", load_windows(write_lines(tmp_path / "p.jsonl", [plain]))
    )
    assert "latency" not in json.loads((tmp_path / "plain.jsonl").read_text())


def test_latency_summary_of_durations() -> None:
    summary = Latency.of([0.01 * i for i in range(1, 101)])
    assert summary.count == 100 and summary.mean == pytest.approx(0.505)
    assert summary.p50 == pytest.approx(0.505) and summary.p99 == pytest.approx(0.9901)
    with pytest.raises(KeyError):
        summary.statistic("p42")


def test_invalid_json_and_order(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(GOOD) + "\n{not json\n")
    with pytest.raises(InputError, match="line 2"):
        list(read_windows(path))
    late = dict(GOOD, start=120, end=180)
    with pytest.raises(InputError, match="time order"):
        list(read_windows(write_lines(path, [late, GOOD])))
    dated = dict(GOOD, start=1672531200, end=1672531260)
    with pytest.raises(InputError) as info:
        list(read_windows(write_lines(path, [dated, dated])))  # a window written twice
    assert (
        "line 2, field 'start': starts at 1672531200, before the window before it ends (at "
        "1672531260); windows must not overlap" in str(info.value)
    )
    long = dict(GOOD, end=GOOD["end"] + 120)
    with pytest.raises(InputError, match="windows must not overlap"):
        list(read_windows(write_lines(path, [long, dict(GOOD, start=GOOD["end"], end=180)])))
    next_one = dict(GOOD, start=GOOD["end"], end=GOOD["end"] + 60)
    assert len(list(read_windows(write_lines(path, [GOOD, next_one])))) == 2


def test_readme_window_example_loads_written_on_one_line(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## The window dataset") :]
    example = section.split("```json\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "example.jsonl"
    path.write_text(json.dumps(json.loads(example)) + "\n")
    (window,) = load_windows(path)
    assert window.metrics == {("compose-post", "cpu"): 0.53}
    assert api_counts(window.calls) == {("nginx", "/compose"): 523, ("nginx", "/home"): 1}
    # wrapped as the README shows it, the first line ends inside the object: said where it ends
    path.write_text(example)
    column = len(example.splitlines()[0]) + 1
    with pytest.raises(InputError, match=rf"line 1: not valid JSON \(.*, column {column}\)"):
        list(read_windows(path))


def test_missing_metric_is_unknown_not_zero(tmp_path: Path) -> None:
    other = dict(GOOD, start=60, end=120, metrics=[])
    windows = load_windows(write_lines(tmp_path / "d.jsonl", [GOOD, other]))
    y = targets(windows, [("compose-post", "cpu")])
    assert y[0, 0] == 0.5 and y[1, 0] != y[1, 0]  # NaN


def test_api_below_catch_all_gateway() -> None:
    gateway = ("gateway", "/*")
    assert api_of((gateway, ("orders", "/api/orders"), ("db", "q"))) == ("orders", "/api/orders")
    assert api_of((gateway,)) is None
    calls = {(gateway,): 3.0, (gateway, ("orders", "/api/orders")): 2.0, (("a", "/x"),): 1.0}
    assert api_counts(calls) == {("orders", "/api/orders"): 2.0, ("a", "/x"): 1.0}
    for route in ("*", "/**", "ts-gateway-service.default.svc.cluster.local:8080/*"):
        assert api_of((("gw", route), ("orders", "/api/orders"))) == ("orders", "/api/orders")
    home = ("frontend", "/")  # a home page is an API of its own, not a gateway
    assert api_of((home, ("frontend", "render"), ("cart", "get"))) == home


def test_deep_tree_paths_do_not_recurse() -> None:
    node: dict = {"component": "c", "operation": "leaf", "children": []}
    for i in range(5000):
        node = {"component": "c", "operation": f"op{i}", "children": [node]}
    assert sum(1 for _ in tree_paths(node)) == 5001


def test_a_line_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "x.jsonl", [GOOD, GOOD])
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0] + lines[1].replace(b'"start"', b'"st\xffart"', 1))
    with pytest.raises(InputError) as info:
        list(read_windows(path))
    assert info.value.line == 2 and "not UTF-8 text (byte 5 of the line)" in str(info.value)


def test_counts_are_said_with_their_plural() -> None:
    from estimator.errors import count_of, first_few

    assert (count_of(1, "window"), count_of(3, "window")) == ("1 window", "3 windows")
    assert (count_of(1, "series"), count_of(2, "series")) == ("1 series", "2 series")
    assert first_few(["a", "b", "c"], 2) == "a, b ..."


def test_names_over_the_bound_are_cut_as_the_importers_cut_them(tmp_path: Path) -> None:
    """A dataset written by hand with a SQL statement as an operation: cut, with a warning,
    in calls, traces and metrics alike, so that paths and series still meet."""
    from estimator.errors import DataWarning
    from estimator.windows import MAX_NAME

    sql, service = "SELECT " + "x" * 400, "s" * 300
    line = json.loads(json.dumps(GOOD).replace("compose-post", service).replace("compose", sql))
    with pytest.warns(DataWarning, match=f"longer than {MAX_NAME} characters are cut"):
        [window] = load_windows(write_lines(tmp_path / "d.jsonl", [line]))
    cut = (service[: MAX_NAME - 1] + "…", sql[: MAX_NAME - 1] + "…")
    assert window.calls[(("nginx", "/" + sql[: MAX_NAME - 2] + "…"), cut)] == 6
    assert window.metrics == {(cut[0], "cpu"): 0.5}


def test_windows_read_from_a_file_share_one_copy_of_each_path_and_series(tmp_path: Path) -> None:
    # thousands of windows of thousands of paths would otherwise each hold their own copies,
    # several times the file's size in memory
    first, second = load_windows(write_lines(tmp_path / "d.jsonl", [GOOD, GOOD | GOOD_LATER]))
    assert first.calls == second.calls and first.metrics == second.metrics
    for a, b in zip(first.calls, second.calls, strict=True):
        assert a is b
    assert next(iter(first.metrics)) is next(iter(second.metrics))

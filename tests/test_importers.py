"""Importers: span CSV, Jaeger JSON, OTLP JSON, raw trees, Train-Ticket metrics, `deeprest import`."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from time import gmtime, strftime
from typing import Any

import numpy as np
import pytest

from estimator.errors import DataWarning, InputError
from estimator.importers import (
    FORMATS,
    import_jaeger,
    import_otlp_json,
    import_raw,
    import_span_csv,
    import_windows,
    load_trainticket,
    service_of_pod,
)
from estimator.importers.trainticket import join_metrics, read_pod_metrics
from estimator.spans import (
    LOST_API,
    MAX_PATH_DEPTH,
    Span,
    SpanColumns,
    Tally,
    assemble,
    columns_of,
    windows_from_spans,
    windows_of_batches,
)
from estimator.windows import ORPHAN_ROOT, CallPath, Window, api_counts, api_of, load_windows

S = 1_000_000_000
HEADER = "TraceID,SpanID,ParentID,PodName,OperationName,StartTimeUnixNano,EndTimeUnixNano,Duration"
GW = "ts-gateway-service-6f6cfc45b-d9pnv"
SVC_A = "svc-a-5b67c48447-fj8b7"
SVC_B = "svc-b-7f8d7d756d-kzp47"
REAL = (
    Path(os.environ.get("DEEPREST_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
    / "trainticket-2023-01-30"
)  # the real recording: `DEEPREST_DATA`, else shared/data beside the checkout, as the benchmarks


def row(trace: str, span: str, parent: str, pod: str, op: str, end_s: float) -> str:
    end = int(end_s * S)
    return f"{trace},{span},{parent},{pod},{op},{end - 1000},{end},1"


def write_csv(path: Path, rows: list[str], gz: bool = False) -> Path:
    text = "\n".join([HEADER, *rows]) + "\n"
    if gz:
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


def calls_by_start(windows: list[Window]) -> dict[float, dict[CallPath, float]]:
    return {w.start: w.calls for w in windows}


@pytest.fixture
def span_dir(tmp_path: Path) -> Path:
    """Two minute files: trace t1 crosses them, spans out of order, one duplicated row."""
    folder = tmp_path / "trace"
    folder.mkdir()
    write_csv(
        folder / "11_00_trace.csv.gz",
        [
            row("t1", "s2", "s1", SVC_B, "op-b", 120.2),  # child before its parent (file 2)
            row("t1", "r1", "root", GW, "/*", 120.5),
            row("t1", "g2", "r1", GW, "FilteringWebHandler.handle", 120.4),
            row("t1", "g1", "r1", GW, "HTTP GET", 120.4),
        ],
        gz=True,
    )
    write_csv(
        folder / "11_01_trace.csv",
        [
            row("t1", "s1", "g1", SVC_A, "/api/a", 120.3),
            row("t2", "c1", "r2", SVC_B, "q", 60.5),
            row("t2", "r2", "root", SVC_A, "GET /x", 61.0),
            row("t2", "c2", "r2", SVC_B, "q", 60.6),
            row("t1", "s2", "s1", SVC_B, "op-b", 120.2),  # the same span exported twice
        ],
    )
    return folder


def test_span_csv_across_files_counts_exactly(span_dir: Path) -> None:
    windows = import_span_csv(span_dir, window_seconds=30)
    assert [(w.start, w.end) for w in windows] == [(60.0, 90.0), (120.0, 150.0)]
    gw, api, child = ("ts-gateway-service", "/*"), ("svc-a", "/api/a"), ("svc-b", "op-b")
    assert calls_by_start(windows) == {
        60.0: {(("svc-a", "GET /x"),): 1.0, (("svc-a", "GET /x"), ("svc-b", "q")): 2.0},
        120.0: {(gw,): 1.0, (gw, api): 1.0, (gw, api, child): 1.0},
    }
    assert api_of((gw, api, child)) == api


def test_windows_keep_each_apis_request_latency_from_the_root_span(tmp_path: Path) -> None:
    rows = [  # two requests of /api/a through the gateway (root spans of 0.2 s and 0.4 s)
        f"t1,r1,root,{GW},/*,{int(10.0 * S)},{int(10.2 * S)},200000",
        f"t1,a1,r1,{SVC_A},/api/a,{int(10.05 * S)},{int(10.15 * S)},100000",
        f"t2,r2,root,{GW},/*,{int(20.0 * S)},{int(20.4 * S)},400000",
        f"t2,a2,r2,{SVC_A},/api/a,{int(20.1 * S)},{int(20.3 * S)},200000",
        f"t3,r3,root,{SVC_B},GET /b,{int(30.0 * S)},{int(30.1 * S)},100000",
    ]
    [window] = import_span_csv(write_csv(tmp_path / "t.csv", rows))
    a, b = window.latency[("svc-a", "/api/a")], window.latency[("svc-b", "GET /b")]
    assert (a.count, a.mean, a.p50) == (2, pytest.approx(0.3), pytest.approx(0.3))
    assert (b.count, b.p99) == (1, pytest.approx(0.1))
    # Without a start time column the windows hold no latency, and nothing else changes.
    plain = tmp_path / "plain.csv"
    plain.write_text(
        "TraceID,SpanID,ParentID,PodName,OperationName,EndTimeUnixNano\n"
        + "".join(",".join(r.split(",")[:5] + [r.split(",")[6]]) + "\n" for r in rows)
    )
    [bare] = import_span_csv(plain)
    assert bare.latency == {} and bare.calls == window.calls
    # Roots whose parent id is all zeros (an unset id written out) are roots all the same.
    zeros = write_csv(tmp_path / "z.csv", [r.replace(",root,", ",0000000000000000,") for r in rows])
    [same] = import_span_csv(zeros)
    assert same.calls == window.calls and same.latency == window.latency
    dashes = write_csv(tmp_path / "d.csv", [r.replace(",root,", ",-,") for r in rows])
    [same] = import_span_csv(dashes)  # as some exports write an empty parent
    assert same.calls == window.calls and same.latency == window.latency


def test_span_csv_glob_and_keeping_gateway_spans(span_dir: Path) -> None:
    windows = import_span_csv(str(span_dir / "11_0*"), window_seconds=60, fold_gateway=False)
    gw = ("ts-gateway-service", "/*")
    get = ("ts-gateway-service", "HTTP GET")
    assert calls_by_start(windows)[120.0] == {
        (gw,): 1.0,
        (gw, ("ts-gateway-service", "FilteringWebHandler.handle")): 1.0,
        (gw, get): 1.0,
        (gw, get, ("svc-a", "/api/a")): 1.0,
        (gw, get, ("svc-a", "/api/a"), ("svc-b", "op-b")): 1.0,
    }
    assert sum(calls_by_start(windows)[60.0].values()) == 3.0


def span(trace: str, sid: str, parent: str | None, comp: str, op: str, end_s: float) -> Span:
    return Span(trace, sid, parent, comp, op, int(end_s * S) - 10, int(end_s * S))


def test_orphans_join_the_root_or_stand_alone() -> None:
    spans = [
        span("t", "r", None, "a", "api", 10.0),
        span("t", "x", "missing", "b", "op", 9.0),  # adopted by the trace's root
        span("u", "y", "gone", "c", "op", 75.0),  # no root in the batch: its own root
        span("u", "z", "y", "d", "op", 74.0),
    ]
    windows = windows_from_spans(spans, window_seconds=60)
    lost = ORPHAN_ROOT  # its work counts, below a step that is no API
    assert calls_by_start(windows) == {
        0.0: {(("a", "api"),): 1.0, (("a", "api"), ("b", "op")): 1.0},
        60.0: {(lost, ("c", "op")): 1.0, (lost, ("c", "op"), ("d", "op")): 1.0},
    }
    # The true root times its request; an orphan standing as a root times none, nor is it one.
    assert set(windows[0].latency) == {("a", "api")} and windows[1].latency == {}
    assert api_counts(windows[0].calls) == {("a", "api"): 1.0}
    assert api_counts(windows[1].calls) == {}


def test_orphans_under_a_catch_all_gateway_join_the_api_it_routed_to() -> None:
    """Adopted by the gateway's root, an orphan would sit where APIs sit (just below it) and
    read as an API of its own; it joins the one API span below the gateway instead."""
    gw = "ts-gateway-service"
    spans = [
        span("t", "r", None, gw, "/*", 10.0),
        span("t", "g", "r", gw, "HTTP GET", 9.9),
        span("t", "a", "g", "svc-a", "/api/a", 9.8),
        span("t", "x", "lost", "svc-b", "op-b", 9.0),  # its parent span was not recorded
    ]
    [window] = windows_from_spans(spans, window_seconds=60)
    assert api_counts(window.calls) == {("svc-a", "/api/a"): 1.0}
    assert ((gw, "/*"), ("svc-a", "/api/a"), ("svc-b", "op-b")) in window.calls
    # Two APIs below one gateway root (a batch of calls): the orphan's API is unknown; it hangs
    # below a step that names no API, and counts as no API call.
    two = [*spans, span("t", "b", "g", "svc-c", "/api/c", 9.7)]
    [window] = windows_from_spans(two, window_seconds=60)
    assert ((gw, "/*"), (gw, LOST_API), ("svc-b", "op-b")) in window.calls
    assert api_counts(window.calls) == {("svc-a", "/api/a"): 1.0, ("svc-c", "/api/c"): 1.0}


def _gateway_trace(trace: str, end_s: float, api: str = "/api/a") -> list[Span]:
    gw = "ts-gateway-service"
    return [
        span(trace, "r", None, gw, "/*", end_s),
        span(trace, "g", "r", gw, "HTTP GET", end_s - 0.1),
        span(trace, "a", "g", "svc-a", api, end_s - 0.2),
        span(trace, "c", "a", "svc-a", "Controller.handle", end_s - 0.3),
        span(trace, "d", "c", "svc-b", "op-b", end_s - 0.4),
    ]


def test_spans_that_lost_their_api_span_or_gateway_root_count_no_new_api() -> None:
    """Where spans of a gateway's trace were lost, what is left counts once, under the API where
    that is known and under no API where it is not: never as APIs of their own."""
    gw = "ts-gateway-service"
    whole = _gateway_trace("t0", 10.0)
    no_api = [s for s in _gateway_trace("t1", 11.0, "/api/x") if s.span_id != "a"]
    no_proxy = [s for s in _gateway_trace("t2", 12.0) if s.span_id != "g"]
    no_root = [s for s in _gateway_trace("t3", 13.0) if s.span_id != "r"]
    [window] = windows_from_spans(whole + no_api + no_proxy + no_root, window_seconds=60)
    # t1's API span is lost: its children hang below the unknown API; t3 lost its root: it is
    # one request, folded as the gateway's others are
    assert api_counts(window.calls) == {("svc-a", "/api/a"): 3.0}
    lost = ((gw, "/*"), (gw, LOST_API), ("svc-a", "Controller.handle"))
    assert window.calls[lost] == 1.0 and window.calls[(*lost, ("svc-b", "op-b"))] == 1.0
    below = ((gw, "/*"), ("svc-a", "/api/a"), ("svc-a", "Controller.handle"), ("svc-b", "op-b"))
    assert window.calls[below] == 3.0
    assert window.calls[((gw, "/*"),)] == 4.0  # four requests, t3's below the root it lost
    assert sum(window.calls.values()) == 4 + 3 + 4 + 4  # every span counted once
    # only the true roots time their requests
    assert window.latency[("svc-a", "/api/a")].count == 2


def test_requests_that_lost_their_api_span_are_counted_in_a_warning() -> None:
    whole = _gateway_trace("t0", 10.0)
    no_api = [s for s in _gateway_trace("t1", 11.0, "/api/x") if s.span_id != "a"]
    no_proxy = [s for s in _gateway_trace("t2", 12.0) if s.span_id != "g"]
    tally = Tally()
    with pytest.warns(DataWarning, match="1 request below a catch-all gateway lost the span"):
        windows_of_batches([columns_of(whole + no_api + no_proxy)], 60, True, tally=tally)
    assert tally.lost_api == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        windows_of_batches([columns_of(whole + no_proxy)], 60, True)


def test_files_assembled_as_read_count_as_one_batch_does() -> None:
    """Spans of random traces spread over consecutive files, read file by file: the windows are
    those of all the spans at once, while only a few files' spans are held at a time."""
    rng = np.random.default_rng(3)
    spans = []
    for t in range(300):
        end = float(rng.uniform(100, 600))
        spans.append(span(f"t{t}", "r", None, "gw", "api", end))
        for k in range(int(rng.integers(1, 6))):  # children end up to 90 s before their root
            spans.append(span(f"t{t}", f"c{k}", "r", "svc", f"op{k % 2}", end - rng.uniform(0, 90)))
    files: list[SpanColumns] = [SpanColumns.empty() for _ in range(11)]
    for one in sorted(spans, key=lambda x: x.end_ns):  # a file per minute of span end
        files[one.end_ns // (60 * S)].append(one)
    streamed = windows_of_batches(files, window_seconds=60)
    assert calls_by_start(streamed) == calls_by_start(windows_from_spans(spans, window_seconds=60))
    assert sum(sum(w.calls.values()) for w in streamed) == len(spans)


def test_a_trace_is_closed_after_settle_files_and_seconds_without_its_spans() -> None:
    def batch(*spans: Span) -> SpanColumns:
        return columns_of(spans)

    root, child = span("t", "r", None, "gw", "api", 10.0), span("t", "c", "r", "svc", "op", 9.0)
    other = span("u", "r", None, "gw", "api", 75.0)  # another trace, 65 s on
    near = [batch(root), batch(), batch(child)]  # one file between: still one tree
    whole = {(("gw", "api"),): 1.0, (("gw", "api"), ("svc", "op")): 1.0}
    assert calls_by_start(windows_of_batches(near, settle=2)) == {0.0: whole}
    # files of a second each: two files between, but a few seconds apart, it is still one tree
    seconds = [batch(root), batch(), batch(), batch(child)]
    assert calls_by_start(windows_of_batches(seconds, settle=2)) == {0.0: whole}
    # two files and a minute between: closed before; the late child is its own tree, whose
    # work counts below a step that is no API, and a warning counts the trace split so
    far = [batch(root), batch(), batch(other), batch(child)]
    with pytest.warns(DataWarning, match=r"1 trace had spans in files more than 2 files and 60 s"):
        split = calls_by_start(windows_of_batches(far, settle=2))
    assert split[0.0] == {(("gw", "api"),): 1.0, (ORPHAN_ROOT, ("svc", "op")): 1.0}


def test_a_span_given_twice_counts_once_and_a_colliding_id_is_said() -> None:
    root, child = span("t", "r", None, "gw", "api", 10.0), span("t", "c", "r", "svc", "op", 9.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # an export given twice: nothing to say
        twice = windows_of_batches([columns_of([root, child, child, root])])
    assert twice[0].calls == {(("gw", "api"),): 1.0, (("gw", "api"), ("svc", "op")): 1.0}
    other = span("t", "c", "r", "svc", "another-op", 9.0)  # the child's id, another span
    with pytest.warns(
        DataWarning, match="1 span of a trace and span id seen before, but of another"
    ):
        collided = windows_of_batches([columns_of([root, child, other])])
    assert collided[0].calls == twice[0].calls  # the first kept


def test_most_trees_without_a_root_span_are_said_with_the_parent_they_name() -> None:
    spans = []
    for t in range(12):  # every top span names the parent '~', which no span has
        spans.append(span(f"t{t}", "a", "~", "front", "/home", 10.0 + t))
        spans.append(span(f"t{t}", "b", "a", "svc", "op", 9.0 + t))
    with pytest.warns(DataWarning, match="12 of 12 call trees lack their root span") as said:
        windows = windows_of_batches([columns_of(spans)])
    assert "many name the parent '~', which no span has" in str(said[0].message)
    assert sum(w.calls[(ORPHAN_ROOT, ("front", "/home"))] for w in windows) == 12
    rooted = [replace(s, parent_id=None) if s.span_id == "a" else s for s in spans]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # roots found: nothing to say
        windows_of_batches([columns_of(rooted)])


def test_parent_cycle_is_cut_and_counted_once() -> None:
    spans = [span("t", "a", "b", "x", "one", 5.0), span("t", "b", "a", "y", "two", 6.0)]
    with pytest.warns(DataWarning, match="parent cycle"):
        trees = list(assemble(spans))
    lost = ORPHAN_ROOT  # the cut span stands as an orphan does: its work counts, as no API
    assert [t.paths for t in trees] == [[(lost, ("x", "one")), (lost, ("x", "one"), ("y", "two"))]]
    assert trees[0].end_ns == 5 * S and not trees[0].rooted  # a cut span times no request


def test_a_parent_cycle_beside_a_root_hangs_below_it_as_orphans_do() -> None:
    root = span("t", "r", None, "front", "/home", 9.0)
    cycle = [span("t", "c1", "c2", "db", "x", 5.0), span("t", "c2", "c1", "db", "y", 6.0)]
    below = span("t", "c3", "c2", "db", "z", 6.5)  # hangs below the cycle
    with pytest.warns(DataWarning, match="parent cycle"):
        trees = list(assemble([root, *cycle, below]))
    home, x = ("front", "/home"), ("db", "x")
    assert [sorted(t.paths) for t in trees] == [
        sorted([(home,), (home, x), (home, x, ("db", "y")), (home, x, ("db", "y"), ("db", "z"))])
    ]  # one request of /home; no API of its own for the cycle


def test_service_of_pod() -> None:
    assert service_of_pod("ts-order-service-5b67c48447-fj8b7") == "ts-order-service"
    assert service_of_pod("frontend") == "frontend"
    assert service_of_pod("redis-0") == "redis"  # StatefulSet ordinal
    assert service_of_pod("mongodb-12") == "mongodb"
    assert service_of_pod("node-exporter-x7k2q") == "node-exporter"  # DaemonSet
    assert service_of_pod("redis-cache") == "redis-cache"  # a word, not a random suffix
    assert service_of_pod("ts-travel2-service") == "ts-travel2-service"
    assert service_of_pod("svc-v2") == "svc-v2"


def jaeger_doc() -> dict[str, Any]:
    def js(
        sid: str, op: str, pid: str, start_s: float, refs: list[dict[str, str]]
    ) -> dict[str, Any]:
        return {
            "spanID": sid,
            "operationName": op,
            "references": refs,
            "startTime": int(start_s * 1e6),
            "duration": 500_000,
            "processID": pid,
        }

    return {
        "data": [
            {
                "traceID": "t1",
                "processes": {"p1": {"serviceName": "nginx"}, "p2": {"serviceName": "compose"}},
                "spans": [
                    js("b", "compose", "p2", 100.1, [{"refType": "CHILD_OF", "spanID": "a"}]),
                    js("a", "/compose", "p1", 100.0, []),
                    js("c", "store", "p2", 100.2, [{"refType": "FOLLOWS_FROM", "spanID": "b"}]),
                ],
            },
            {
                "traceID": "t2",
                "processes": {"p1": {"serviceName": "nginx"}},
                "spans": [js("d", "/home", "p1", 200.0, [])],
            },
        ]
    }


def test_jaeger_json(tmp_path: Path) -> None:
    path = tmp_path / "traces.json"
    path.write_text(json.dumps(jaeger_doc()))
    windows = import_jaeger(path)
    assert set(windows[0].latency) == {("nginx", "/compose")}
    nginx, compose = ("nginx", "/compose"), ("compose", "compose")
    assert calls_by_start(windows) == {
        60.0: {(nginx,): 1.0, (nginx, compose): 1.0, (nginx, compose, ("compose", "store")): 1.0},
        180.0: {(("nginx", "/home"),): 1.0},
    }


def test_a_jaeger_document_over_several_lines_or_one_long_line_is_streamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Jaeger export written over several lines, or as one line too long to read as a line,
    is read trace by trace as the file streams by (never held whole), with the windows of
    reading it whole and errors that name the trace's field."""
    import estimator.importers.common as common

    doc = jaeger_doc()
    whole = import_jaeger(write_json(tmp_path / "one.json", doc))
    indented = write_json(tmp_path / "indented.json", doc, indent=2)
    assert [w.calls for w in import_jaeger(indented)] == [w.calls for w in whole]
    streamed = list(common.streamed_items(indented, ("data",)))
    assert [(line, d.key, d.index) for line, d in streamed] == [
        (None, "data", 0),
        (None, "data", 1),
    ]

    bad = json.loads(json.dumps(doc))
    bad["data"][1]["spans"][0]["startTime"] = "soon"
    field = r"field 'data\[1\]\.spans\[0\]\.startTime'"
    with pytest.raises(InputError, match=rf"bad\.json, line 1, {field}"):  # a line: read as one
        import_jaeger(write_json(tmp_path / "bad.json", bad))
    monkeypatch.setattr(common, "LONG_LINE", 64)  # the one-line export is now a long one
    assert [w.calls for w in import_jaeger(tmp_path / "one.json")] == [w.calls for w in whole]
    with pytest.raises(InputError, match=rf"bad\.json, {field}"):  # streamed: no line
        import_jaeger(tmp_path / "bad.json")


def test_documents_one_per_long_line_are_read_a_line_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file of documents one per line, each longer than a line is read at first: line by line
    still (an error names its line), not as one document read whole at the second; a long
    line followed by nothing but blank lines is one document, streamed."""
    import estimator.importers.common as common

    doc = jaeger_doc()
    whole = import_jaeger(write_json(tmp_path / "one.json", doc))
    lines = [json.dumps({"data": [trace]}) for trace in doc["data"]]
    path = tmp_path / "lines.json"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(common, "LONG_LINE", 64)
    assert all(len(line) > 64 for line in lines)

    def as_one(_: Path) -> Iterator[tuple[int | None, Any]]:
        raise AssertionError("a file of a document per line read as one document")

    assert [line for line, _ in common.json_documents(path, as_one)] == [1, 2]
    assert [w.calls for w in import_jaeger(path)] == [w.calls for w in whole]
    bad = json.loads(lines[1])
    bad["data"][0]["spans"][0]["duration"] = -1
    path.write_text("\n".join([lines[0], json.dumps(bad)]) + "\n")
    with pytest.raises(InputError, match=r"lines\.json, line 2, field 'data\[0\]\.spans\[0\]"):
        import_jaeger(path)
    (tmp_path / "one.json").write_text(json.dumps(doc) + "\n\n  \n")
    documents = list(common.json_documents(tmp_path / "one.json", common_streamed()))
    assert [(line, d.index) for line, d in documents] == [(None, 0), (None, 1)]


def common_streamed() -> Any:
    """`json_documents`' reader of a document over several lines, streaming Jaeger's traces."""
    import estimator.importers.common as common

    return lambda path: common.streamed_items(path, ("data",))


def test_a_document_the_streaming_parser_refuses_is_read_whole_without_a_trace_twice(
    tmp_path: Path,
) -> None:
    """NaN, which Python's JSON reader takes and the streaming parser refuses, in the second
    trace: the first trace, already streamed, is not counted again; a document that is no JSON
    at all is refused naming its line."""
    import estimator.importers.common as common

    doc = jaeger_doc()
    text = json.dumps(doc, indent=2)
    path = tmp_path / "nan.json"
    path.write_text(text.replace('"traceID": "t2"', '"traceID": "t2", "score": NaN'))
    items = [d for _, d in common.streamed_items(path, ("data",))]
    assert [(d.index, d.value["traceID"]) for d in items] == [(0, "t1"), (1, "t2")]
    assert [w.calls for w in import_jaeger(path)] == [
        w.calls for w in import_jaeger(write_json(tmp_path / "plain.json", doc))
    ]
    path.write_text(text.replace('"traceID": "t2"', '"traceID": t2'))
    with pytest.raises(InputError, match=r"nan\.json, line 51: not valid JSON"):
        import_jaeger(path)


def test_an_otlp_json_document_over_several_lines_is_streamed(tmp_path: Path) -> None:
    """A whole ExportTraceServiceRequest written with indents: its resourceSpans streamed one by
    one, under either spelling, with the windows of reading it whole."""
    request = otlp_request([os_("a", "", "/x", 61)], "front")
    request["resourceSpans"].append(
        otlp_request([os_("b", "a", "op", 61)], "back")["resourceSpans"][0]
    )
    whole = import_otlp_json(write_json(tmp_path / "one.json", request))
    assert sum(sum(w.calls.values()) for w in whole) == 2
    indented = write_json(tmp_path / "indented.json", request, indent=2)
    assert [w.calls for w in import_otlp_json(indented)] == [w.calls for w in whole]
    snake = write_json(
        tmp_path / "snake.json", {"resource_spans": request["resourceSpans"]}, indent=2
    )
    assert [w.calls for w in import_otlp_json(snake)] == [w.calls for w in whole]


def write_json(path: Path, doc: Any, indent: int | None = None) -> Path:
    path.write_text(json.dumps(doc, indent=indent))
    return path


def otlp_request(spans: list[dict[str, Any]], service: str) -> dict[str, Any]:
    attrs = [{"key": "service.name", "value": {"stringValue": service}}]
    return {
        "resourceSpans": [{"resource": {"attributes": attrs}, "scopeSpans": [{"spans": spans}]}]
    }


def hex_id(name: str) -> str:
    """A span id of 16 hex digits for a short name ("a"); one given so is kept."""
    if len(name) == 16 and all(c in "0123456789abcdef" for c in name):
        return name
    return name.encode().hex().rjust(16, "0")


def os_(sid: str, parent: str, name: str, end_s: int, as_text: bool = True) -> dict[str, Any]:
    end = end_s * S
    return {
        "traceId": "0af7651916cd43dd8448eb211c80319c",
        "spanId": hex_id(sid),
        "parentSpanId": hex_id(parent) if parent else "",
        "name": name,
        "startTimeUnixNano": str(end - 5) if as_text else end - 5,
        "endTimeUnixNano": str(end) if as_text else end,
    }


def test_otlp_spans_of_a_resource_without_service_name_are_counted_with_a_warning(
    tmp_path: Path,
) -> None:
    request = otlp_request([os_("a", "", "/x", 61)], "front")
    request["resourceSpans"].append({"scopeSpans": [{"spans": [os_("b", "a", "op", 61)]}]})
    empty = otlp_request([os_("c", "a", "op", 61)], "")  # a name said empty: no name either
    request["resourceSpans"] += empty["resourceSpans"]
    path = tmp_path / "otlp.json"
    path.write_text(json.dumps(request))
    with pytest.warns(DataWarning, match=f"{path}: 2 spans without a service name") as caught:
        windows = import_otlp_json(path)
    assert "component 'unknown_service'" in str(caught[0].message)
    assert (("front", "/x"), ("unknown_service", "op")) in windows[0].calls


def test_json_files_are_read_in_the_time_order_of_their_first_span(tmp_path: Path) -> None:
    t0 = 1675080000
    folder = tmp_path / "otlp"
    folder.mkdir()

    def write(name: str, trace: str, end_s: int) -> None:
        span = dict(os_("00f067aa0ba902b7", "", "/cart", end_s), traceId=trace)
        (folder / name).write_text(json.dumps(otlp_request([span], "frontend")))

    # a trace exported twice, in the files of two neighbouring minutes whose names sort apart
    write("export-a.json", "aa" * 16, t0 + 10)
    write("export-b.json", "bb" * 16, t0 + 130)
    write("export-c.json", "cc" * 16, t0 + 190)
    write("export-d.json", "aa" * 16, t0 + 10)
    windows = import_otlp_json(folder)
    root = (("frontend", "/cart"),)
    assert sum(w.calls.get(root, 0.0) for w in windows) == 3  # the duplicate counted once


def test_span_csv_reads_names_literally_and_its_errors_name_what_the_file_says(
    tmp_path: Path,
) -> None:
    rows = [row("t", "a", "root", GW, "/*", 61.0), row("t", "b", "a", SVC_A, "None", 61.0)]
    [window] = import_span_csv(write_csv(tmp_path / "none.csv", rows))  # a span named None
    assert (("ts-gateway-service", "/*"), ("svc-a", "None")) in window.calls
    # a quoted line break above the bad row: the error names the line the row is on
    broken = [row("t", "a", "root", GW, "/*", 61.0), row("t", "b", "a", SVC_A, '"GET\n/x"', 61.0)]
    bad = row("t", "c", "a", SVC_A, "op", 61.0).split(",")
    bad[6] = "12abc"
    path = write_csv(tmp_path / "nl.csv", [*broken, ",".join(bad)])
    with pytest.raises(InputError) as caught:
        import_span_csv(path)
    assert caught.value.line == 5 == path.read_text().splitlines().index(",".join(bad)) + 1
    # another tool's column names: the error names the file's own
    path.write_text(path.read_text().replace("EndTimeUnixNano", "end_time"))
    with pytest.raises(InputError) as caught:
        import_span_csv(path)
    assert caught.value.field == "end_time (read as EndTimeUnixNano)"


def test_names_longer_than_the_bound_are_cut_with_a_warning_as_serve_cuts_them(
    tmp_path: Path,
) -> None:
    from estimator.spans import MAX_NAME

    sql = "SELECT " + "x" * 5000
    rows = [row("t", "a", "root", GW, "/*", 61.0), row("t", "b", "a", SVC_A, sql, 61.0)]
    with pytest.warns(DataWarning, match=f"longer than {MAX_NAME} characters are cut"):
        [window] = import_span_csv(write_csv(tmp_path / "long.csv", rows))
    cut = sql[: MAX_NAME - 1] + "…"
    assert (("ts-gateway-service", "/*"), ("svc-a", cut)) in window.calls


def test_files_of_a_folder_that_look_like_data_but_are_not_read_are_named(tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", [row("t", "a", "root", GW, "/*", 61.0)])
    (tmp_path / "b.csv.bz2").write_bytes(b"BZh9")
    (tmp_path / "c.tsv").write_text("x\ty\n")
    (tmp_path / "notes.md").write_text("# not data\n")
    with pytest.warns(
        DataWarning,
        match=r"2 files skipped, of a name this format does not read \(it reads \.csv, \.csv\.gz\): .*b\.csv\.bz2, .*c\.tsv$",
    ):
        assert len(import_span_csv(tmp_path)) == 1


def test_a_gzip_file_cut_short_is_read_up_to_the_cut(tmp_path: Path) -> None:
    t0 = 1675080000
    rows = [row(f"t{k}", "a", "root", GW, "/*", t0 + k) for k in range(2000)]
    whole = tmp_path / "whole.csv.gz"
    write_csv(whole, rows, gz=True)
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.7)])
    with pytest.warns(DataWarning, match=r"cut\.csv\.gz: cut short .*read up to its last whole"):
        windows = import_span_csv(cut)
    counted = sum(w.calls[(("ts-gateway-service", "/*"),)] for w in windows)
    assert 0 < counted < 2000  # what lies before the cut, less the edge windows dropped
    assert max(w.end for w in windows) < t0 + 2000


def test_a_gzip_file_of_json_lines_cut_short_is_read_up_to_the_cut(tmp_path: Path) -> None:
    t0 = 1675080000
    lines = []
    for k in range(600):
        request = otlp_request([os_("a", "", "/api", t0 + k)], "front")
        request["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = f"{k + 1:032x}"
        lines.append(json.dumps(request))
    whole = gzip.compress(("\n".join(lines) + "\n").encode())
    cut = tmp_path / "cut.json.gz"
    cut.write_bytes(whole[: int(len(whole) * 0.7)])
    with pytest.warns(DataWarning, match=r"cut\.json\.gz: cut short .*read up to its last whole"):
        windows = import_otlp_json(cut)
    counted = sum(w.calls[(("front", "/api"),)] for w in windows)
    assert 0 < counted < 600
    one = tmp_path / "one.json.gz"  # one document over several lines: no whole line to read
    one.write_bytes(gzip.compress(json.dumps({"data": []}, indent=2).encode())[:-12])
    with pytest.raises(InputError, match="cannot read"):
        import_jaeger(one)


def test_times_rounded_to_a_few_values_are_said_to_be(tmp_path: Path) -> None:
    t0 = 1675080000
    rows = [row(f"t{k}", "a", "root", GW, "/*", t0 + k * 0.37) for k in range(200)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # whole times: nothing to say
        import_span_csv(write_csv(tmp_path / "fine.csv", rows))
    rounded = [",".join(r.split(",")[:5] + ["1.67508E+18"] * 2 + ["1"]) for r in rows]
    with pytest.warns(
        DataWarning, match="EndTimeUnixNano holds one time for all 200 spans: rounded"
    ):
        import_span_csv(write_csv(tmp_path / "rounded.csv", rounded))


def test_a_time_in_another_unit_than_the_rest_is_refused_where_it_stands(tmp_path: Path) -> None:
    t0 = 1675080000
    rows = [row(f"t{k}", "a", "root", GW, "/*", t0 + k) for k in range(5)]
    cells = rows[3].split(",")
    cells[6] = str(int(cells[6]) // 10**6)  # milliseconds among nanoseconds: 1970
    bad = write_csv(tmp_path / "mixed.csv", [*rows[:3], ",".join(cells), rows[4]])
    with pytest.raises(InputError) as caught:
        import_span_csv(bad)
    assert (caught.value.line, caught.value.field) == (5, "EndTimeUnixNano")
    assert "reads as 1970-01-01T00:27:" in str(caught.value)
    assert "a time in another unit than the rest?" in str(caught.value)
    spans = [
        dict(os_(f"{k + 1:016x}", "", "/cart", t0 + k), traceId=f"{k + 1:032x}") for k in range(4)
    ]
    for key in ("startTimeUnixNano", "endTimeUnixNano"):
        spans[2][key] = str(int(spans[2][key]) // 10**6)
    path = tmp_path / "otlp.json"
    path.write_text(json.dumps(otlp_request(spans, "frontend")))
    with pytest.raises(InputError, match=r"span 0000000000000003 of trace 0+3 ends at 1970-"):
        import_otlp_json(path)


def test_otlp_json_one_request_per_line(tmp_path: Path) -> None:
    path = tmp_path / "otlp.jsonl"
    first = otlp_request([os_("b7ad6b7169203331", "00f067aa0ba902b7", "GET /cart", 119)], "cart")
    second = otlp_request([os_("00f067aa0ba902b7", "", "/cart", 121, as_text=False)], "frontend")
    path.write_text(json.dumps(first) + "\n\n" + json.dumps(second) + "\n")
    windows = import_otlp_json(path)
    assert windows[0].latency[("frontend", "/cart")].p50 == pytest.approx(5e-9)
    root = ("frontend", "/cart")
    assert calls_by_start(windows) == {120.0: {(root,): 1.0, (root, ("cart", "GET /cart")): 1.0}}
    single = tmp_path / "one.json"
    single.write_text(json.dumps(second, indent=2))
    assert calls_by_start(import_otlp_json(single)) == {120.0: {(root,): 1.0}}


def test_raw_trees(tmp_path: Path) -> None:
    tree = {
        "component": "nginx",
        "operation": "/c",
        "children": [{"component": "p", "operation": "w"}],
    }
    (tmp_path / "a.json").write_text(
        json.dumps([{"end": 59.9, **tree}, {"timestamp": 60.0, "tree": tree}])
    )
    (tmp_path / "b.json").write_text(json.dumps({"traces": [{"end": 61, "tree": tree}]}))
    windows = import_raw(tmp_path)
    nginx = ("nginx", "/c")
    assert calls_by_start(windows) == {
        0.0: {(nginx,): 1.0, (nginx, ("p", "w")): 1.0},
        60.0: {(nginx,): 2.0, (nginx, ("p", "w")): 2.0},
    }


METRIC_HEADER = "Time,TimeStamp,PodName,CpuUsage(m),MemoryUsage(Mi)"


def test_metrics_join_by_window(tmp_path: Path, span_dir: Path) -> None:
    metrics = tmp_path / "metric"
    metrics.mkdir()
    (metrics / "svc-a-5b67c48447-fj8b7_metric.csv").write_text(
        f"{METRIC_HEADER}\nx,112,p,20,100\nx,172,p,30,200\nx,232,p,40,300\n"
    )
    (metrics / "svc-a-5b67c48447-x9k2q_metric.csv").write_text(f"{METRIC_HEADER}\nx,178,p,10,\n")
    (metrics / "front_service.csv").write_text("Time,TimeStamp,ServiceName\nx,65,Frontend\n")
    windows = import_windows("span-csv", span_dir, metrics=metrics, window_seconds=60)
    assert [w.start for w in windows] == [60.0, 120.0]  # the metric row at 232 has no traces
    assert windows[0].metrics == pytest.approx(
        {("svc-a", "cpu"): 0.02, ("svc-a", "memory"): 100 * 2**20}
    )
    # replicas add up; the empty memory cell of the second pod makes the service's memory
    # unknown there, not the first pod's alone
    assert windows[1].metrics == pytest.approx({("svc-a", "cpu"): 0.04})


def test_windows_without_usage_between_a_series_first_and_last_are_named(tmp_path: Path) -> None:
    windows = [Window(s, s + 60, calls={(("svc-a", "op"),): 1.0}) for s in range(0, 300, 60)]
    later = "x,173,p,30,100\nx,233,p,30,100\nx,293,p,30,100\n"  # windows of 120 to 240
    a = tmp_path / "svc-a-5b67c48447-fj8b7_metric.csv"  # no row for the window of 60
    a.write_text(f"{METRIC_HEADER}\nx,53,p,20,100\n{later}")
    b = tmp_path / "svc-b-5b67c48447-fj8b7_metric.csv"  # a rolling restart: the window of 60
    b.write_text(f"{METRIC_HEADER}\nx,53,p,20,100\n")  # falls between the two pods
    (tmp_path / "svc-b-7f9b5d6c8d-qz8tk_metric.csv").write_text(f"{METRIC_HEADER}\n{later}")
    c = tmp_path / "svc-c-5b67c48447-fj8b7_metric.csv"  # a service that starts late: no gap
    c.write_text(f"{METRIC_HEADER}\n{later}")
    with pytest.warns(DataWarning, match="4 usage series have no value in some windows") as caught:
        join_metrics(windows, sorted(tmp_path.glob("*.csv")))
    said = " ".join(str(w.message) for w in caught)
    assert "svc-a/cpu (1 window), svc-a/memory (1 window), svc-b/cpu (1 window)" in said
    assert "svc-c" not in said
    assert [sorted(w.metrics) for w in windows][1] == []


@pytest.mark.parametrize("cell", ["", "n/a", "null", "NaN", "NA"])
def test_an_empty_usage_cell_is_missing_with_a_warning_naming_it(
    tmp_path: Path, span_dir: Path, cell: str
) -> None:
    metrics = tmp_path / "metric"
    metrics.mkdir()
    path = metrics / "svc-a-5b67c48447-fj8b7_metric.csv"
    path.write_text(f"{METRIC_HEADER}\nx,112,p,20,100\nx,172,p,30,{cell}\n")
    with pytest.warns(DataWarning, match="1 usage cell empty") as caught:
        windows = import_windows("span-csv", span_dir, metrics=metrics, window_seconds=60)
    said = " ".join(str(w.message) for w in caught)
    assert f"{path}: " in said and "line 3, field 'MemoryUsage(Mi)'" in said
    assert windows[1].metrics == pytest.approx({("svc-a", "cpu"): 0.03})


def test_a_metric_file_may_hold_one_resource(tmp_path: Path, span_dir: Path) -> None:
    metrics = tmp_path / "metric"
    metrics.mkdir()
    (metrics / "svc-a-5b67c48447-fj8b7_metric.csv").write_text("TimeStamp,CpuUsage(m)\n112,20\n")
    (metrics / "svc-b-5b67c48447-fj8b7_metric.csv").write_text("TimeStamp,MemoryUsage(Mi)\n112,3\n")
    windows = import_windows("span-csv", span_dir, metrics=metrics, window_seconds=60)
    assert windows[0].metrics == pytest.approx(
        {("svc-a", "cpu"): 0.02, ("svc-b", "memory"): 3 * 2**20}
    )
    (metrics / "svc-c-5b67c48447-fj8b7_metric.csv").write_text("TimeStamp,Latency\n112,3\n")
    with pytest.raises(InputError, match="no usage column") as info:
        import_windows("span-csv", span_dir, metrics=metrics, window_seconds=60)
    assert info.value.source is not None and info.value.source.endswith(
        "svc-c-5b67c48447-fj8b7_metric.csv"
    )


def test_a_window_dataset_given_as_raw_traces_is_refused_not_stripped(tmp_path: Path) -> None:
    path = tmp_path / "windows.jsonl"
    path.write_text(
        json.dumps(
            {
                "start": 0,
                "end": 60,
                "traces": [{"component": "a", "operation": "b"}],
                "metrics": [{"component": "a", "resource": "cpu", "value": 1}],
            }
        )
        + "\n"
    )
    with pytest.raises(InputError, match="line 1: this is a window of the window dataset"):
        import_raw(path)


def test_a_replica_without_a_resource_column_makes_its_service_usage_of_it_unknown(
    tmp_path: Path, span_dir: Path
) -> None:
    metrics = tmp_path / "metric"
    metrics.mkdir()
    (metrics / "svc-a-5b67c48447-fj8b7_metric.csv").write_text(
        f"{METRIC_HEADER}\nx,112,p,20,100\nx,172,p,30,200\n"
    )
    (metrics / "svc-a-5b67c48447-x9k2q_metric.csv").write_text(
        "TimeStamp,CpuUsage(m)\n112,10\n172,10\n"
    )
    with pytest.warns(DataWarning, match=r"unknown while the pod runs.*x9k2q \(memory\)"):
        windows = import_windows("span-csv", span_dir, metrics=metrics, window_seconds=60)
    # the second replica's memory is not measured: the first's alone is no total
    assert [w.metrics for w in windows] == [{("svc-a", "cpu"): 0.03}, {("svc-a", "cpu"): 0.04}]


def test_the_orphans_root_step_is_no_component_without_metrics(tmp_path: Path) -> None:
    spans = tmp_path / "spans"
    spans.mkdir()
    (spans / "a.csv").write_text(
        f"{HEADER}\n"
        f"t1,r1,,{SVC_A},/api/a,{100 * S},{101 * S},1\n"
        f"t2,o1,gone,{SVC_B},op-b,{100 * S},{102 * S},2\n"  # its parent and root were lost
    )
    metrics = tmp_path / "metric"
    metrics.mkdir()
    for pod in (SVC_A, SVC_B):
        (metrics / f"{pod}_metric.csv").write_text(f"{METRIC_HEADER}\nx,112,p,20,100\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        [window] = import_windows("span-csv", spans, metrics=metrics, window_seconds=60)
    assert (ORPHAN_ROOT, ("svc-b", "op-b")) in window.calls
    assert not [w for w in caught if "without a metric file" in str(w.message)]


def _import_with_metric_files(
    tmp_path: Path, span_dir: Path, svc_a: str, svc_b: str
) -> tuple[list[Window], str]:
    """The span folder imported with a metric file of these contents for each of svc-a and
    svc-b: its windows, and what the import warned, joined."""
    metrics = tmp_path / "metric"
    metrics.mkdir()
    (metrics / "svc-a-5b67c48447-fj8b7_metric.csv").write_text(svc_a)
    (metrics / "svc-b-5b67c48447-fj8b7_metric.csv").write_text(svc_b)
    with pytest.warns(DataWarning) as caught:
        windows = import_windows("span-csv", span_dir, metrics=metrics, window_seconds=60)
    return windows, " ".join(str(w.message) for w in caught)


def test_usage_columns_in_other_spellings_and_units(tmp_path: Path, span_dir: Path) -> None:
    windows, said = _import_with_metric_files(
        tmp_path,
        span_dir,
        "TimeStamp,CpuUsageRate(%),MemoryUsage(B)\n112,50,1000\n",
        "timestamp,pod,cpu_usage_cores,memory_usage_bytes,cpu_limit\n112,p,0.25,2000,2\n",
    )
    assert "'cpu_limit' is not read: 'limit' is no unit of cpu usage" in said
    assert "1 traced component without a metric file, so without usage series: ts-gateway" in said
    assert windows[0].metrics == pytest.approx(
        {("svc-a", "memory"): 1000, ("svc-b", "cpu"): 0.25, ("svc-b", "memory"): 2000}
    )


def test_cadvisor_usage_columns_are_read_or_named_never_dropped_silently(
    tmp_path: Path, span_dir: Path
) -> None:
    windows, said = _import_with_metric_files(
        tmp_path,
        span_dir,
        "TimeStamp,cpu_usage_seconds_total,memory_working_set_bytes\n112,0.25,1000\n",
        "TimeStamp,container_cpu_usage_seconds_total,container_memory_working_set_bytes\n"
        "112,0.25,2000\n",
    )
    assert "'cpu_usage_seconds_total' is not read: no cpu usage name" in said
    assert "'container_cpu_usage_seconds_total' is not read" in said
    assert windows[0].metrics == pytest.approx(
        {("svc-a", "memory"): 1000, ("svc-b", "memory"): 2000}
    )


def test_a_second_usage_column_of_a_resource_is_named_not_dropped_silently(
    tmp_path: Path, span_dir: Path
) -> None:
    windows, said = _import_with_metric_files(
        tmp_path,
        span_dir,
        "TimeStamp,CpuUsage(m),cpu_usage_cores,MemoryUsage(Mi),memory_usage_bytes\n"
        "112,250,0.9,5,1000\n",
        "TimeStamp,cpu_usage_cores,memory_usage_bytes\n112,0.25,2000\n",
    )
    assert "'cpu_usage_cores' is not read: the cpu usage is read from 'CpuUsage(m)'" in said
    assert (
        "'memory_usage_bytes' is not read: the memory usage is read from 'MemoryUsage(Mi)'" in said
    )
    assert windows[0].metrics == pytest.approx(
        {
            ("svc-a", "cpu"): 0.25,
            ("svc-a", "memory"): 5 * 2**20,
            ("svc-b", "cpu"): 0.25,
            ("svc-b", "memory"): 2000,
        }
    )


def test_a_metric_file_without_usage_fails_before_the_spans_are_read(
    tmp_path: Path, span_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import estimator.importers.trainticket as trainticket

    metrics = tmp_path / "metric"
    metrics.mkdir()
    (metrics / "svc-a-5b67c48447-fj8b7_metric.csv").write_text("TimeStamp,Latency\n112,3\n")

    def no_spans(*_: Any) -> None:
        raise AssertionError("spans were read")

    monkeypatch.setattr(trainticket, "import_span_files", no_spans)
    with pytest.raises(InputError, match="no usage column"):
        load_trainticket(span_dir.parent, metrics=metrics)


def test_metrics_that_miss_every_trace_window_are_an_error(tmp_path: Path, span_dir: Path) -> None:
    metrics = tmp_path / "metric"
    metrics.mkdir()  # milliseconds where seconds belong: no row meets a window with traces
    (metrics / "svc-a-5b67c48447-fj8b7_metric.csv").write_text(
        f"{METRIC_HEADER}\nx,65000,p,20,100\nx,125000,p,30,200\n"
    )
    with pytest.raises(InputError, match="unix seconds") as info:
        import_windows("span-csv", span_dir, metrics=metrics, window_seconds=60)
    assert info.value.source == str(metrics)


def test_a_metric_folder_without_metric_files_is_an_error(tmp_path: Path, span_dir: Path) -> None:
    metrics = tmp_path / "metric"
    metrics.mkdir()
    (metrics / "svc-a.csv").write_text(f"{METRIC_HEADER}\nx,112,p,20,100\n")
    with pytest.raises(InputError, match="no metric files") as info:
        import_windows("span-csv", span_dir, metrics=metrics, window_seconds=60)
    assert info.value.source == str(metrics)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_an_input_or_metrics_path_that_does_not_exist_is_named_as_such(
    tmp_path: Path, span_dir: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from exporter.cli import main

    absent, out = tmp_path / "absent", str(tmp_path / "x.jsonl")
    assert main(["import", "--format", fmt, "--input", str(absent), "--out", out]) == 2
    assert f"error: {absent}: no such " in capsys.readouterr().err
    given = span_dir.parent if fmt == "trainticket" else span_dir
    argv = ["import", "--format", fmt, "--input", str(given), "--metrics", str(absent)]
    assert main([*argv, "--out", out]) == 2
    assert f"error: {absent}: no such directory" in capsys.readouterr().err


def test_trainticket_layout(tmp_path: Path, span_dir: Path) -> None:
    with pytest.raises(InputError, match="trace/"):
        load_trainticket(tmp_path / "absent")
    windows = load_trainticket(span_dir.parent)  # no metric/ folder: traffic only
    assert len(windows) == 2 and all(not w.metrics for w in windows)
    with pytest.raises(
        InputError, match=f"trace is one of its folders: name the one above, {tmp_path}$"
    ):
        load_trainticket(span_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no trace/ folder: .*or folders holding it$"):
        load_trainticket(tmp_path / "empty")
    for day in ("day1", "day2"):
        (tmp_path / "days" / day / "trace").mkdir(parents=True)
    with pytest.raises(InputError, match="no span files .* in .*day1/trace, .*day2/trace"):
        load_trainticket(tmp_path / "days")


def test_pods_whose_files_hold_the_same_minutes_are_named_in_one_warning(tmp_path: Path) -> None:
    """Two recordings given the same metric files (two batches of one day, say): each pod's two
    files are one pod, averaged, never added up as replicas, and one warning names every pod so
    read, not one warning per pod."""
    t0 = 1675080000
    shared = tmp_path / "shared-metric"
    shared.mkdir()
    for pod, cpu in (("svc-a-5b67c48447-fj8b7", 10), ("svc-b-7c9d5f6b8d-xk2lp", 30)):
        rows = "".join(f"x,{t0 + 60 * k + 52},p,{cpu},100\n" for k in range(4))
        (shared / f"{pod}_metric.csv").write_text(f"{METRIC_HEADER}\n{rows}")
    for batch, start in (("b1", t0), ("b2", t0 + 120)):
        folder = tmp_path / "batches" / batch
        hhmm = [strftime("%H_%M", gmtime(start + 60 * k)) for k in range(2)]
        minute_files(folder / "trace", {hhmm[k]: start + 60 * k for k in range(2)})
        (folder / "metric").symlink_to(shared, target_is_directory=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        windows = load_trainticket(tmp_path / "batches")
    same = [str(w.message) for w in caught if "same minutes" in str(w.message)]
    assert len(same) == 1 and same[0].startswith("2 pods have several metric files")
    assert "svc-a-5b67c48447-fj8b7 (" in same[0] and "svc-b-7c9d5f6b8d-xk2lp (" in same[0]
    assert [w.metrics[("svc-a", "cpu")] for w in windows] == pytest.approx([0.01] * 4)
    assert [w.metrics[("svc-b", "cpu")] for w in windows] == pytest.approx([0.03] * 4)


def test_trainticket_folder_of_recordings_reads_them_as_one(tmp_path: Path) -> None:
    """A folder of batches, each a recording with its trace/ and metric/ (as a benchmark
    published in batches lays them out): windows of every batch in time order, each with its
    own usage, and the hours between them a gap, not idle windows."""
    t0 = 1675080000  # 12:00 UTC
    later = t0 + 4 * 3600
    pod = "svc-a-5b67c48447-fj8b7"
    for batch, start in (("batch2", later), ("batch1", t0)):  # made out of order
        folder = tmp_path / "batches" / batch
        hhmm = [strftime("%H_%M", gmtime(start + 60 * k)) for k in range(2)]
        minute_files(folder / "trace", {hhmm[k]: start + 60 * k for k in range(2)})
        (folder / "metric").mkdir()
        cpu = 10 if batch == "batch1" else 30
        rows = "".join(f"x,{start + 60 * k + 52},p,{cpu},100\n" for k in range(2))
        (folder / "metric" / f"{pod}_metric.csv").write_text(f"{METRIC_HEADER}\n{rows}")
        (folder / "metric" / "source_50.csv").write_text("a,b\n1,2\n")  # no pod's: skipped
    windows = load_trainticket(tmp_path / "batches")
    assert [w.start for w in windows] == [t0, t0 + 60, later, later + 60]
    assert [w.metrics[("svc-a", "cpu")] for w in windows] == pytest.approx([0.01] * 2 + [0.03] * 2)
    assert all(w.calls for w in windows)
    one = load_trainticket(tmp_path / "batches" / "batch2")
    assert [w.calls for w in one] == [w.calls for w in windows[2:]]


def test_a_batch_without_metric_folder_among_batches_with_one_is_named(tmp_path: Path) -> None:
    """A batch lacking metric/ where the others have one: its windows have no usage, which a
    warning names (one recording without metric/ is traffic only, and says so by itself)."""
    t0 = 1675080000  # 12:00 UTC
    pod = "svc-a-5b67c48447-fj8b7"
    for batch, start in (("batch1", t0), ("batch2", t0 + 3600)):
        hhmm = [strftime("%H_%M", gmtime(start + 60 * k)) for k in range(2)]
        minute_files(tmp_path / batch / "trace", {hhmm[k]: start + 60 * k for k in range(2)})
    (tmp_path / "batch1" / "metric").mkdir()
    rows = "".join(f"x,{t0 + 60 * k + 52},p,10,100\n" for k in range(2))
    (tmp_path / "batch1" / "metric" / f"{pod}_metric.csv").write_text(f"{METRIC_HEADER}\n{rows}")
    with pytest.warns(DataWarning, match=r"1 recording has no metric/ folder.*: .*batch2$"):
        windows = load_trainticket(tmp_path)
    assert [bool(w.metrics) for w in windows] == [True, True, False, False]


def test_a_file_without_spans_of_a_batch_days_later_is_idle_on_its_own_day(
    tmp_path: Path,
) -> None:
    """Batches recorded days apart: a file with a header and no spans is an idle minute on the
    day of the files around it, not one made up in the days between the batches."""
    t0, later = 1675080000, 1675080000 + 2 * 86400 + 3600  # 12:00 UTC, two days on at 13:00
    for batch, start in (("batch1", t0), ("batch2", later)):
        hhmm = [strftime("%H_%M", gmtime(start + 60 * k)) for k in range(4)]
        folder = minute_files(
            tmp_path / batch / "trace", {hhmm[k]: start + 60 * k for k in (0, 1, 3)}
        )
        write_csv(folder / f"{hhmm[2]}_trace.csv", [])  # the header alone: nobody called
    windows = load_trainticket(tmp_path)
    starts = [t0 + 60 * k for k in range(4)] + [later + 60 * k for k in range(4)]
    assert [w.start for w in windows] == starts
    assert [bool(w.calls) for w in windows] == [True, True, False, True] * 2


def test_span_input_of_a_glob_of_folders_or_a_folder_of_folders(
    tmp_path: Path, span_dir: Path
) -> None:
    root = tmp_path / "batches"
    for day in ("day1", "day2"):
        (root / day / "trace").mkdir(parents=True)
        for f in span_dir.iterdir():
            (root / day / "trace" / f.name).write_bytes(f.read_bytes())
    one = import_span_csv(span_dir)
    both = import_span_csv(str(root / "*" / "trace"))  # the same minutes twice: spans dedupe
    assert [w.calls for w in both] == [w.calls for w in one]
    (root / "day1" / "metric").mkdir()  # its CSV files are no span files: not in the hint
    (root / "day1" / "metric" / "svc-a-5b67c48447-fj8b7_metric.csv").write_text("TimeStamp\n1\n")
    with pytest.raises(
        InputError, match=f"2 hold some: .*day1/trace, .*day2/trace .*'{root}/\\*/trace'"
    ):
        import_span_csv(root)
    with pytest.raises(InputError, match="day1/trace holds some: name it$"):
        import_span_csv(root / "day1")


@pytest.mark.parametrize(
    ("rows", "line", "field"),
    [
        ([row("t", "a", "root", GW, "/*", 1.0), "t,b,a,pod,op,5,12x,1"], 3, "EndTimeUnixNano"),
        ([row("t", "a", "root", GW, "/*", 1.0), "t,b,a,,op,5,7,1"], 3, "PodName"),
        (["t,,root,pod,op,5,7,1"], 2, "SpanID"),
        ([row("t", "a", "root", GW, "/*", 1.0), "t,b,a,pod,op,5,1e30,1"], 3, "EndTimeUnixNano"),
        ([row("t", "a", "root", GW, "/*", 1.0), "t,b,a,pod,op,9,7,1"], 3, "EndTimeUnixNano"),
    ],
)
def test_span_csv_bad_rows(tmp_path: Path, rows: list[str], line: int, field: str) -> None:
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(InputError) as info:
        import_span_csv(path)
    assert (info.value.source, info.value.line, info.value.field) == (str(path), line, field)


def test_span_csv_bad_values_are_shown_as_written(tmp_path: Path) -> None:
    cases = (("-5", "got -5"), ("n/a", "got 'n/a'"), ("", "got an empty or not-available cell"))
    for cell, shown in cases:
        path = write_csv(tmp_path / "bad.csv", [f"t,a,root,{GW},/*,5,{cell},1"])
        with pytest.raises(InputError, match=f"expected a non-negative number, {shown}$"):
            import_span_csv(path)


def test_span_csv_row_longer_than_its_header_is_refused_with_its_line(tmp_path: Path) -> None:
    # an unquoted comma in an operation name shifts the row's later values; it is never read so
    rows = [row("t", "a", "root", GW, "/*", 1.0), "t,b,a,pod,GET /x,y,5,7,1"]
    for rows_of_file, line in ((rows, 3), (rows[::-1], 2)):
        path = write_csv(tmp_path / f"long{line}.csv", rows_of_file)
        with pytest.raises(InputError, match="9 fields where the header has 8$") as info:
            import_span_csv(path)
        assert (info.value.source, info.value.line) == (str(path), line)


def test_a_trailing_comma_on_every_line_is_an_empty_last_field(tmp_path: Path) -> None:
    end = 1675080000.5
    rows = [row("t", "a", "root", GW, "/x", end), row("t", "b", "a", SVC_A, "op", end)]
    plain = import_span_csv(write_csv(tmp_path / "plain.csv", rows))
    trailing = tmp_path / "trailing.csv"
    trailing.write_text("\n".join([HEADER + ",", *(r + "," for r in rows)]) + "\n")
    assert [w.calls for w in import_span_csv(trailing)] == [w.calls for w in plain]
    metrics = tmp_path / "metric"
    metrics.mkdir()
    (metrics / "svc-a-5b67c48447-fj8b7_metric.csv").write_text(
        f"{METRIC_HEADER}\nx,112,p,20,100,\nx,172,p,30,200,\n"  # no header field for the comma
    )
    read = read_pod_metrics(metrics / "svc-a-5b67c48447-fj8b7_metric.csv")
    assert read.values[60, "cpu"] == pytest.approx(0.02)
    assert read.values[120, "memory"] == pytest.approx(200 * 2**20)


def test_a_chain_deeper_than_the_cap_is_cut_with_a_warning(tmp_path: Path) -> None:
    from estimator.spans import MAX_PATH_DEPTH

    end = 1675080000.5
    rows = [row("t", "s0", "root", SVC_A, "/x", end)]
    rows += [row("t", f"s{d}", f"s{d - 1}", SVC_A, f"op{d}", end) for d in range(1, 100)]
    with pytest.warns(DataWarning, match=f"{100 - MAX_PATH_DEPTH} spans left out below call depth"):
        [window] = import_span_csv(write_csv(tmp_path / "deep.csv", rows))
    assert max(len(p) for p in window.calls) == MAX_PATH_DEPTH
    assert sum(window.calls.values()) == MAX_PATH_DEPTH


def test_import_summary_counts_spans_read_traces_and_spans_skipped_or_left_out(
    tmp_path: Path, span_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from exporter.cli import main

    out = tmp_path / "x.jsonl"
    assert (
        main(["import", "--format", "span-csv", "--input", str(span_dir), "--out", str(out)]) == 0
    )
    err = capsys.readouterr().err
    assert "read 9 spans of 2 traces (1 duplicate span skipped, 0 spans left out)\n" in err
    windows = load_windows(out)  # the calls (spans) and the distinct paths they are on
    calls = sum(sum(w.calls.values()) for w in windows)
    paths = len({p for w in windows for p in w.calls})
    assert paths < calls and f"({calls:.0f} calls on {paths} call paths, " in err
    end = 1675080000.5  # a chain too deep, and a span whose id another span of its trace has
    rows = [row("t", "s0", "root", SVC_A, "/x", end), row("t", "s0", "root", SVC_A, "/y", end)]
    rows += [row("t", f"s{d}", f"s{d - 1}", SVC_A, f"op{d}", end) for d in range(1, 100)]
    argv = ["import", "--format", "span-csv", "--input", str(write_csv(tmp_path / "d.csv", rows))]
    assert main([*argv, "--out", str(out)]) == 0
    deep = 100 - MAX_PATH_DEPTH
    assert (
        f"read 101 spans of 1 trace (0 duplicate spans skipped, {deep + 1} spans left out: "
        f"1 of colliding ids, {deep} below call depth {MAX_PATH_DEPTH})"
    ) in capsys.readouterr().err


def test_every_importer_tallies_what_it_read(tmp_path: Path, span_dir: Path) -> None:
    tally = Tally()
    import_windows("trainticket", span_dir.parent, tally=tally)
    assert (tally.spans, tally.traces, tally.duplicates, tally.left_out) == (9, 2, 1, 0)
    tree = {
        "component": "nginx",
        "operation": "/c",
        "children": [{"component": "p", "operation": "w"}],
    }
    (tmp_path / "raw.json").write_text(json.dumps([{"end": 59.9, **tree}, {"end": 60.0, **tree}]))
    tally = Tally()
    import_windows("raw", tmp_path / "raw.json", tally=tally)
    assert (tally.spans, tally.traces, tally.duplicates, tally.left_out) == (4, 2, 0, 0)


def test_import_without_usage_warns_that_train_will_refuse_it_and_names_the_flag(
    tmp_path: Path, span_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from exporter.cli import main

    out = str(tmp_path / "x.jsonl")
    said = "warning: no window carries usage (CPU, memory), so `deeprest train` will refuse"
    assert main(["import", "--format", "span-csv", "--input", str(span_dir), "--out", out]) == 0
    err = capsys.readouterr().err
    assert said in err and "with --metrics DIR" in err
    assert main(["import", "--format", "trainticket", "--input", str(tmp_path), "--out", out]) == 0
    assert "the recording has no metric/ folder: give the per-pod metric files with --metrics" in (
        capsys.readouterr().err
    )
    metrics = tmp_path / "metric"
    metrics.mkdir()
    (metrics / "svc-a-5b67c48447-fj8b7_metric.csv").write_text(f"{METRIC_HEADER}\nx,112,p,20,1\n")
    argv = ["import", "--format", "span-csv", "--input", str(span_dir), "--out", out]
    assert main([*argv, "--metrics", str(metrics)]) == 0
    assert "no window carries usage" not in capsys.readouterr().err


def test_import_says_so_when_every_request_is_of_one_fanning_out_api(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from exporter.cli import main

    end, root = 1675080000.5, "hipstershop.Frontend/Recv."
    rows = []
    for i, op in enumerate(["/cart", "/product", "/cart"]):
        rows += [
            row(f"t{i}", "r", "root", SVC_A, root, end),
            row(f"t{i}", "c", "r", SVC_B, op, end),
        ]
    path = write_csv(tmp_path / "one.csv", rows)
    out = tmp_path / "x.jsonl"
    assert main(["import", "--format", "span-csv", "--input", str(path), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "1 APIs" not in err and "every request is of one API, svc-a:" in err
    assert "calls 2 operations below it" in err


def test_import_says_so_when_operation_names_carry_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from exporter.cli import main

    t0 = 1675080000
    rows = [row(f"t{i}", "r", "root", SVC_A, f"GET /orders/{i:08x}", t0 + 5 * i) for i in range(60)]
    out = tmp_path / "x.jsonl"
    path = write_csv(tmp_path / "ids.csv", rows)
    assert main(["import", "--format", "span-csv", "--input", str(path), "--out", str(out)]) == 0
    assert "60 APIs of 60 are seen in one window only" in capsys.readouterr().err

    path = write_csv(tmp_path / "routes.csv", [r.replace("/orders/", "/orders-") for r in rows[:2]])
    assert main(["import", "--format", "span-csv", "--input", str(path), "--out", str(out)]) == 0
    assert "one window only" not in capsys.readouterr().err  # too few windows to tell


def test_span_csv_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "cols.csv"
    path.write_text("TraceID,SpanID,ParentID,PodName,OperationName\nt,a,root,p,o\n")
    with pytest.raises(InputError) as info:
        import_span_csv(path)
    assert (info.value.line, info.value.field) == (1, "EndTimeUnixNano")


def test_span_csv_accepts_other_spellings_of_its_columns(tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    other.write_text(
        "trace_id,span_id,parent_span_id,service_name,span_name,end_time_unix_nano\n"
        "t1,r,,front,/compose,60000000000\n"
        "t1,c,r,compose,write,59000000000\n"
    )
    [window] = import_span_csv(other)
    assert window.calls == {
        (("front", "/compose"),): 1.0,
        (("front", "/compose"), ("compose", "write")): 1.0,
    }


def test_a_time_unit_warning_names_the_column_as_the_file_spells_it(tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    other.write_text(  # microseconds
        "trace_id,span_id,parent_span_id,service_name,span_name,start_time,end_time\n"
        "t1,r,,front,/compose,1675080000000000,1675080001000000\n"
    )
    with pytest.warns(DataWarning) as caught:
        import_span_csv(other)
    said = " ".join(str(w.message) for w in caught)
    assert "end_time (read as EndTimeUnixNano) holds microseconds, not nanoseconds" in said
    assert "start_time (read as StartTimeUnixNano) holds microseconds" in said


def test_json_errors_name_line_and_field(tmp_path: Path) -> None:
    good = json.dumps(otlp_request([os_("a", "", "x", 1)], "s"))
    bad_time = otlp_request([os_("a", "", "x", 1)], "s")
    bad_time["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["endTimeUnixNano"] = "soon"
    cases = [
        (import_otlp_json, good + "\n{oops\n", 2, None),
        (
            import_otlp_json,
            good + "\n" + json.dumps(bad_time),
            2,
            "resourceSpans[0].scopeSpans[0].spans[0].endTimeUnixNano",
        ),
        (
            import_jaeger,
            json.dumps({"data": [{"traceID": "t", "spans": [{"spanID": "s"}]}]}),
            1,
            "data[0].spans[0].startTime",
        ),
        (import_raw, json.dumps([{"component": "a", "operation": "b"}]), 1, "[0].end"),
        (
            import_raw,
            json.dumps({"traces": [{"end": 1, "tree": {"component": "a"}}]}),
            1,
            "traces[0].tree.operation",
        ),
    ]
    far = otlp_request([os_("a", "", "x", 1)], "s")
    far["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["endTimeUnixNano"] = str(10**30)
    backwards = otlp_request([os_("a", "", "x", 1)], "s")
    backwards["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["startTimeUnixNano"] = str(2 * S)
    jaeger_far = {"data": [{"traceID": "t", "spans": [{"spanID": "s", "startTime": 10**17}]}]}
    otlp_end = "resourceSpans[0].scopeSpans[0].spans[0].endTimeUnixNano"
    cut = json.dumps(far, indent=2)[:-30]
    cases += [
        (import_otlp_json, json.dumps(far), 1, otlp_end),  # would overflow 64-bit nanoseconds
        (import_otlp_json, json.dumps(backwards), 1, otlp_end),  # ends before it starts
        (import_jaeger, json.dumps(jaeger_far), 1, "data[0].spans[0].startTime"),
        (import_raw, json.dumps([{"end": 1e12, "component": "a", "operation": "b"}]), 1, "[0].end"),
        # one document written over several lines: no line of its own, the field path says where
        (import_jaeger, json.dumps(jaeger_far, indent=2), None, "data[0].spans[0].startTime"),
        (import_otlp_json, json.dumps(far, indent=2), None, otlp_end),
        (import_otlp_json, cut, cut.count("\n") + 1, None),  # cut short: its last line
    ]
    for importer, text, line, field in cases:
        path = tmp_path / "in.json"
        path.write_text(text)
        with pytest.raises(InputError) as info:
            importer(path)
        assert (info.value.source, info.value.line, info.value.field) == (str(path), line, field)


def test_otlp_json_ids_are_checked_as_the_receiver_checks_them(tmp_path: Path) -> None:
    fld = "resourceSpans[0].scopeSpans[0].spans[0]"
    for edit, field, message in (
        ({"spanId": "zz"}, "spanId", 'expected 16 hex digits (an 8-byte id), got "zz"'),
        ({"traceId": "0" * 32}, "traceId", "an id of zeros is invalid"),
        ({"parentSpanId": "abc"}, "parentSpanId", "expected 16 hex digits"),
    ):
        path = tmp_path / "in.json"
        path.write_text(json.dumps(otlp_request([dict(os_("a", "", "/x", 1), **edit)], "s")))
        with pytest.raises(InputError) as info:
            import_otlp_json(path)
        assert info.value.field == f"{fld}.{field}" and message in str(info.value)
    # a parent id of zeros says there is none, as OTLP writes it: the span is a root
    path.write_text(json.dumps(otlp_request([os_("a", "0" * 16, "/x", 1)], "s")))
    assert import_otlp_json(path)[0].calls == {(("s", "/x"),): 1.0}


def test_jaeger_import_of_another_format_names_what_it_holds(tmp_path: Path) -> None:
    failed = tmp_path / "failed.json"  # what the query API answers when its storage fails
    failed.write_text(json.dumps({"data": None, "errors": [{"code": 500, "msg": "storage down"}]}))
    with pytest.raises(InputError, match=r"query that wrote this file failed \(storage down\)"):
        import_jaeger(failed)
    path = tmp_path / "otlp.json"
    path.write_text(json.dumps({"resourceSpans": []}))
    with pytest.raises(InputError, match=r"no 'data' list .*keys: resourceSpans.*otlp-json"):
        import_jaeger(path)
    jaeger = tmp_path / "jaeger.json"
    jaeger.write_text(json.dumps(jaeger_doc()))
    with pytest.raises(InputError, match=r"no 'resourceSpans' list.*keys: data.*--format jaeger"):
        import_otlp_json(jaeger)
    nanoseconds = jaeger_doc()
    span = nanoseconds["data"][0]["spans"][0]
    span["startTime"] = 1675080000 * S
    jaeger.write_text(json.dumps(nanoseconds))
    with pytest.raises(InputError) as caught:
        import_jaeger(jaeger)
    assert caught.value.field == "data[0].spans[0].startTime"
    assert "a time in nanoseconds, where Jaeger JSON gives microseconds" in str(caught.value)


def test_json_errors_show_the_value_as_json_writes_it(tmp_path: Path) -> None:
    spans = [{"spanID": "s", "operationName": "/x", "startTime": 1, "duration": 1}]
    cases = [
        (
            {"traceID": "", "spans": spans},
            "field 'data[0].spans[0].traceID': expected a non-empty string, got \"\"",
        ),
        ({"traceID": "t", "spans": [dict(spans[0], duration=None)]}, "got null"),
        ({"traceID": "t", "spans": [dict(spans[0], duration=True)]}, "got true"),
        ({"traceID": "t", "spans": [dict(spans[0], duration="1.5")]}, 'got "1.5"'),
        ({"traceID": "t", "spans": {"a": 1}}, "expected a list, got an object"),
    ]
    for trace, message in cases:
        path = tmp_path / "in.json"
        path.write_text(json.dumps({"data": [trace]}))
        with pytest.raises(InputError) as info:
            import_jaeger(path)
        assert message in str(info.value)


@pytest.mark.parametrize(
    ("times", "stamp", "joined"),
    [
        # one row a minute, stamped at its end (Prometheus, cAdvisor): the window before
        ((120, 180), "end", {60: 0.02, 120: 0.03}),
        ((88, 148), "end", {0: 0.02, 60: 0.03}),  # 12:00:28 measures mostly 11:59
        ((112, 172), "end", {60: 0.02, 120: 0.03}),  # 12:00:52 mostly 12:00
        ((120, 180), "start", {120: 0.02, 180: 0.03}),  # stamped at its start
        ((88, 148), "start", {60: 0.02, 120: 0.03}),
    ],
)
def test_a_metric_row_joins_the_window_holding_the_middle_of_what_it_measures(
    tmp_path: Path, times: tuple[int, int], stamp: str, joined: dict[int, float]
) -> None:
    path = tmp_path / "svc-a-5b67c48447-fj8b7_metric.csv"
    path.write_text(f"{METRIC_HEADER}\nx,{times[0]},p,20,1\nx,{times[1]},p,30,1\n")
    read = read_pod_metrics(path, 60, stamp)
    assert {start: v for (start, r), v in read.values.items() if r == "cpu"} == pytest.approx(
        joined
    )


@pytest.mark.parametrize(
    ("stamp", "joined"),
    [
        ("end", {60: 0.02, 90: 0.02, 120: 0.03, 150: 0.03, 180: 0.04, 210: 0.04}),
        ("start", {120: 0.02, 150: 0.02, 180: 0.03, 210: 0.03, 240: 0.04, 270: 0.04}),
    ],
)
def test_metric_rows_wider_apart_than_the_windows_join_each_window_they_measure(
    tmp_path: Path, stamp: str, joined: dict[int, float]
) -> None:
    path = tmp_path / "svc-a-5b67c48447-fj8b7_metric.csv"
    path.write_text(f"{METRIC_HEADER}\nx,120,p,20,1\nx,180,p,30,1\nx,240,p,40,1\n")
    with pytest.warns(DataWarning, match="metric rows come every 60 s, and windows are of 30 s"):
        read = read_pod_metrics(path, 30, stamp)
    assert {start: v for (start, r), v in read.values.items() if r == "cpu"} == pytest.approx(
        joined
    )


@pytest.mark.parametrize(("window", "counts"), [(45, "1 or 2"), (24, "2 or 3")])
def test_metric_rows_apart_by_a_window_and_a_fraction_leave_no_window_between_them(
    tmp_path: Path, window: int, counts: str
) -> None:
    path = tmp_path / "svc-a-5b67c48447-fj8b7_metric.csv"
    rows = "".join(f"x,{53 + 60 * k},p,{10 + k},1\n" for k in range(12))  # at :53, 12 minutes
    path.write_text(f"{METRIC_HEADER}\n{rows}")
    with pytest.warns(DataWarning, match=f"each of the {counts} windows it measures"):
        read = read_pod_metrics(path, window)
    cpu = {start: v for (start, r), v in read.values.items() if r == "cpu"}
    # every window from the first row's interval (-7 to 53) to the last's holds a middle
    assert sorted(cpu) == list(range(min(cpu), max(cpu) + window, window))
    assert cpu[0] == pytest.approx(0.010)  # middle at 22.5 (or 12): the first row's interval
    assert cpu[max(cpu)] == pytest.approx(0.021)


def test_cli_import_reads_metric_times_as_starts_when_told(tmp_path: Path, span_dir: Path) -> None:
    from exporter.cli import main

    metrics = tmp_path / "metric"
    metrics.mkdir()
    (metrics / "svc-a-5b67c48447-fj8b7_metric.csv").write_text(
        f"{METRIC_HEADER}\nx,60,p,20,1\nx,120,p,30,1\n"
    )
    out = tmp_path / "w.jsonl"
    cpu = {}
    for stamp in ("end", "start"):
        args = ["import", "--format", "span-csv", "--input", str(span_dir), "--out", str(out)]
        assert main([*args, "--metrics", str(metrics), "--metrics-stamp", stamp]) == 0
        cpu[stamp] = [w.metrics.get(("svc-a", "cpu")) for w in load_windows(out)]
    assert cpu == pytest.approx({"end": [0.03, None], "start": [0.02, 0.03]})


def test_metric_rows_more_often_than_windows_measure_their_own_spacing(tmp_path: Path) -> None:
    path = tmp_path / "svc-a-5b67c48447-fj8b7_metric.csv"
    rows = "".join(f"x,{60 + 15 * k},p,{k},1\n" for k in range(8))  # every 15 s from 60 to 165
    path.write_text(f"{METRIC_HEADER}\n{rows}")
    read = read_pod_metrics(path, 60)
    # the row at 60 measured 45 to 60; those at 75, 90, 105 and 120 the window of 60
    cpu = {start: v for (start, r), v in read.values.items() if r == "cpu"}
    assert cpu == pytest.approx({0: 0.0, 60: 0.0025, 120: 0.006})
    with pytest.raises(InputError, match="'middle' is not one of end, start"):
        read_pod_metrics(path, 60, "middle")


def test_a_metric_file_twice_is_one_pod_not_two_replicas(tmp_path: Path, span_dir: Path) -> None:
    metrics = tmp_path / "metric"
    metrics.mkdir()
    text = f"{METRIC_HEADER}\nx,112,p,20,100\nx,172,p,30,200\n"
    (metrics / "svc-a-5b67c48447-fj8b7_metric.csv").write_text(text)
    with gzip.open(metrics / "svc-a-5b67c48447-fj8b7_metric.csv.gz", "wt") as handle:
        handle.write(text)  # `gzip -k` left both
    (metrics / "svc-a-5b67c48447-x9k2q_metric.csv").write_text(text)  # a replica: it adds up
    same = (
        r"^1 pod has several metric files that hold the same minutes: .*svc-a-5b67c48447-fj8b7 \("
    )
    with pytest.warns(DataWarning, match=same):
        windows = import_windows("span-csv", span_dir, metrics=metrics, window_seconds=60)
    assert [w.metrics[("svc-a", "cpu")] for w in windows] == pytest.approx([0.04, 0.06])


def test_a_metric_file_suffix_in_capitals_still_names_its_pod(
    tmp_path: Path, span_dir: Path
) -> None:
    metrics = tmp_path / "metric"
    metrics.mkdir()
    (metrics / "svc-a-5b67c48447-fj8b7_Metric.CSV").write_text(f"{METRIC_HEADER}\nx,112,p,20,\n")
    windows = import_windows("span-csv", span_dir, metrics=metrics, window_seconds=60)
    assert windows[0].metrics == pytest.approx({("svc-a", "cpu"): 0.02})


def test_a_metric_file_that_meets_no_trace_is_named_below_the_metric_folder(
    tmp_path: Path, span_dir: Path
) -> None:
    metrics = tmp_path / "metric"
    for day, time in (("day1", 112), ("day2", 9000)):
        (metrics / day).mkdir(parents=True)
        (metrics / day / "svc-a-5b67c48447-fj8b7_metric.csv").write_text(
            f"{METRIC_HEADER}\nx,{time},p,20,100\n"
        )
    with pytest.warns(DataWarning, match="1 metric file has no row .* day2/svc-a-5b67c"):
        windows = import_windows("span-csv", span_dir, metrics=metrics, window_seconds=60)
    assert windows[0].metrics[("svc-a", "cpu")] == pytest.approx(0.02)


def test_metric_bad_number(tmp_path: Path, span_dir: Path) -> None:
    metrics = tmp_path / "metric"
    metrics.mkdir()
    (metrics / "svc-a-5b67c48447-fj8b7_metric.csv").write_text(
        f"{METRIC_HEADER}\nx,112,p,20,1\nx,172,p,lots,2\n"
    )
    with pytest.raises(InputError) as info:
        import_windows("span-csv", span_dir, metrics=metrics)
    assert (info.value.line, info.value.field) == (3, "CpuUsage(m)")


def test_cli_import_writes_dataset_and_exits_2_on_bad_input(tmp_path: Path, span_dir: Path) -> None:
    from exporter.cli import main

    out = tmp_path / "data.jsonl"
    assert (
        main(
            [
                "import",
                "--format",
                "span-csv",
                "--input",
                str(span_dir),
                "--window",
                "30",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert [w.calls for w in load_windows(out)] == [w.calls for w in import_span_csv(span_dir, 30)]
    again = tmp_path / "again.jsonl"
    base = ["import", "--format", "span-csv", "--input", str(span_dir), "--out", str(again)]
    assert main([*base, "--window", "30s"]) == 0  # a duration, as serve --window takes
    assert again.read_bytes() == out.read_bytes()
    assert main([*base, "--window", "1.5s"]) == 2
    assert main([*base, "--window", "0.5m"]) == 0
    bad = write_csv(tmp_path / "bad.csv", ["t,b,root,pod,op,5,12x,1"])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter.cli",
            "import",
            "--format",
            "span-csv",
            "--input",
            str(bad),
            "--out",
            str(tmp_path / "x.jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert str(bad) in done.stderr and "line 2" in done.stderr and "EndTimeUnixNano" in done.stderr
    assert not (tmp_path / "x.jsonl").exists()


@pytest.mark.skipif(not REAL.is_dir(), reason="Train-Ticket data not present")
def test_real_trainticket_minutes(tmp_path: Path) -> None:
    with pytest.warns(DataWarning, match="1 window dropped"):  # 11:59's stragglers
        windows = import_windows(
            "span-csv", str(REAL / "trace" / "12_0[0-2]_trace.csv.gz"), metrics=REAL / "metric"
        )
    assert [w.start for w in windows] == [1675080000 + 60 * k for k in range(3)]
    below = [p for w in windows for p in w.calls if len(p) > 1]
    assert below and all(p[0] == ("ts-gateway-service", "/*") for p in below)
    apis = {api_of(p) for p in below}
    assert all(api is not None and api[0] != "ts-gateway-service" for api in apis)
    assert all(api[1].startswith("/api/") for api in apis if api is not None)
    full = [w for w in windows if ("ts-order-service", "cpu") in w.metrics]
    assert full and all(w.metrics[("ts-order-service", "memory")] > 0 for w in full)


def test_trainticket_metrics_folder_is_joined_once(tmp_path: Path, span_dir: Path) -> None:
    metrics = span_dir.parent / "metric"
    metrics.mkdir()
    (metrics / "svc-b-7f8d7d756d-kzp47_metric.csv").write_text(f"{METRIC_HEADER}\nx,112,p,8,1\n")
    by_default = import_windows("trainticket", span_dir.parent)
    named = import_windows("trainticket", span_dir.parent, metrics=metrics)
    assert (
        by_default[0].metrics
        == named[0].metrics
        == pytest.approx({("svc-b", "cpu"): 0.008, ("svc-b", "memory"): float(2**20)})
    )


MIDNIGHT = 1675123200  # 2023-01-31T00:00:00Z


def minute_files(folder: Path, minutes: dict[str, float], unit: int = 1) -> Path:
    """HH_MM_trace.csv files, one trace a second through each minute starting at `minutes`'s
    value (unix seconds); times written in units of `unit` nanoseconds."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, start in minutes.items():
        rows = []
        for k in range(60):
            end = start + k + 0.5
            rows.append(row(f"{name}-{k}", f"r{k}", "root", SVC_A, "GET /x", end))
            rows.append(row(f"{name}-{k}", f"c{k}", f"r{k}", SVC_B, "q", end - 0.1))
        if unit != 1:
            rows = [
                ",".join(
                    [*r.split(",")[:5], *(str(int(v) // unit) for v in r.split(",")[5:7]), "1"]
                )
                for r in rows
            ]
        write_csv(folder / f"{name}_trace.csv", rows)
    return folder


def test_minute_files_are_read_in_time_order_across_midnight(tmp_path: Path) -> None:
    names = {"23_58": MIDNIGHT - 120, "23_59": MIDNIGHT - 60, "00_00": MIDNIGHT, "00_01": MIDNIGHT + 60, "00_02": MIDNIGHT + 120}  # fmt: skip
    folder = minute_files(tmp_path / "trace", names)
    # a trace across midnight: its root in 00_00, its child in 23_59
    with open(folder / "00_00_trace.csv", "a") as handle:
        handle.write(row("across", "ra", "root", SVC_A, "GET /x", MIDNIGHT + 0.2) + "\n")
    with open(folder / "23_59_trace.csv", "a") as handle:
        handle.write(row("across", "ca", "ra", SVC_B, "q", MIDNIGHT - 0.1) + "\n")
    windows = import_span_csv(folder)
    assert [w.start for w in windows] == [MIDNIGHT + 60 * k for k in range(-2, 3)]
    roots = [w.calls[(("svc-a", "GET /x"),)] for w in windows]
    assert roots == [60, 60, 61, 60, 60], "the trace across midnight counts once, whole"
    assert windows[2].calls[(("svc-a", "GET /x"), ("svc-b", "q"))] == 61


def test_a_window_the_minute_files_cover_in_part_is_dropped_saying_so(tmp_path: Path) -> None:
    t0 = 1675080000  # 12:00, the start of a five-minute window; the files begin at 12:04
    names = {f"12_{m:02d}": t0 + 60 * m for m in range(4, 15)}
    with pytest.warns(DataWarning) as caught:
        windows = import_span_csv(minute_files(tmp_path / "trace", names), window_seconds=300)
    assert [w.start for w in windows] == [t0 + 300, t0 + 600]
    said = " ".join(str(w.message) for w in caught)
    assert "cover less than half of" in said and "with the 60 requests whose root" in said
    assert f"starts {t0}" in said


def test_a_missing_minute_file_leaves_a_gap_not_a_thin_window(tmp_path: Path) -> None:
    t0 = 1675080000
    folder = minute_files(tmp_path / "trace", {"12_00": t0, "12_01": t0 + 60, "12_03": t0 + 180})
    with open(folder / "12_03_trace.csv", "a") as handle:  # a straggler of the missing minute
        handle.write(row("late", "rl", "root", SVC_A, "GET /x", t0 + 179.9) + "\n")
    with pytest.warns(DataWarning, match="1 window dropped"):
        windows = import_span_csv(folder)
    assert [w.start for w in windows] == [t0, t0 + 60, t0 + 180]


def steady_rows(first_s: float, last_s: float, every_s: float = 1.0) -> list[str]:
    """One request every `every_s` seconds whose root ends from `first_s` to `last_s`."""
    count = int((last_s - first_s) / every_s) + 1
    return [row(f"t{i}", "r", "root", SVC_A, "GET /x", first_s + i * every_s) for i in range(count)]


def test_a_recording_that_starts_or_stops_mid_window_drops_that_edge(tmp_path: Path) -> None:
    t0 = 1675080000  # a window start; the recording runs from 0:50 into it to 0:10 into the 5th
    path = write_csv(tmp_path / "spans.csv", steady_rows(t0 + 50, t0 + 250))
    with pytest.warns(DataWarning, match="2 edge windows dropped"):
        windows = import_span_csv(path)
    assert [w.start for w in windows] == [t0 + 60, t0 + 120, t0 + 180]
    assert all(sum(w.calls.values()) == 60 for w in windows)

    whole = write_csv(tmp_path / "whole.csv", steady_rows(t0 + 1, t0 + 239))
    assert len(import_span_csv(whole)) == 4  # edges covered all but a second: kept

    # sparse traffic, a request now and then: its edge windows hold a window's usual calls
    sparse = write_csv(tmp_path / "sparse.csv", steady_rows(t0 + 50, t0 + 250, every_s=40))
    assert [w.start for w in import_span_csv(sparse)] == [t0 + 60 * k for k in range(5)]

    # the first window also holds the remains of traces begun before the recording (calls whose
    # root span it lacks): many calls, few requests, still part of the window's traffic
    remains = [
        row(f"o{i}", f"c{i}{k}", f"gone{i}", SVC_B, f"q{k}", t0 + 50 + i / 10)
        for i in range(40)
        for k in range(3)
    ]
    begun = write_csv(tmp_path / "begun.csv", remains + steady_rows(t0 + 50, t0 + 250))
    with pytest.warns(DataWarning, match="2 edge windows dropped"):
        assert [w.start for w in import_span_csv(begun)] == [t0 + 60, t0 + 120, t0 + 180]


def test_json_imports_drop_a_partial_edge_window_too(tmp_path: Path) -> None:
    t0 = 1675080000
    spans = [
        dict(os_(f"{i + 1:016x}", "", "/cart", t0 + 40 + i), traceId=f"{i + 1:032x}")
        for i in range(140)
    ]
    path = tmp_path / "otlp.json"
    path.write_text(json.dumps(otlp_request(spans, "frontend")))
    with pytest.warns(DataWarning, match="1 edge window dropped"):
        windows = import_otlp_json(path)
    assert [w.start for w in windows] == [t0 + 60, t0 + 120]  # 0:40 to 2:59: the first mostly empty

    # the raw format's trees, a recording from 0:40 to 2:59 too
    tree = {"component": "nginx", "operation": "/c"}
    (tmp_path / "raw.json").write_text(
        json.dumps([{"end": t0 + 40 + i, **tree} for i in range(140)])
    )
    with pytest.warns(DataWarning, match="1 edge window dropped"):
        windows = import_raw(tmp_path / "raw.json")
    assert [w.start for w in windows] == [t0 + 60, t0 + 120]


@pytest.mark.parametrize(("unit", "name"), [(1000, "microseconds"), (1_000_000, "milliseconds")])
def test_times_in_another_unit_are_recognized(tmp_path: Path, unit: int, name: str) -> None:
    t0 = 1675080000
    folder = minute_files(tmp_path / "trace", {"12_00": t0, "12_01": t0 + 60}, unit=unit)
    with pytest.warns(DataWarning, match=f"holds {name}"):
        windows = import_span_csv(folder)
    assert [w.start for w in windows] == [t0, t0 + 60]


def test_blank_lines_are_skipped_and_broken_files_skipped_with_a_warning(tmp_path: Path) -> None:
    t0 = 1675080000
    folder = minute_files(tmp_path / "trace", {"12_00": t0, "12_01": t0 + 60, "12_02": t0 + 120})
    text = (folder / "12_01_trace.csv").read_text().splitlines()
    (folder / "12_01_trace.csv").write_text("\n".join([*text[:10], "", *text[10:]]) + "\n\n")
    whole = gzip.compress((folder / "12_02_trace.csv").read_bytes())
    (folder / "12_02_trace.csv").unlink()
    (folder / "12_02_trace.csv.gz").write_bytes(whole[: len(whole) // 2])  # cut short
    (folder / "12_03_trace.csv").write_text("")  # empty
    with pytest.warns(DataWarning) as caught:
        windows = import_span_csv(folder)
    said = " ".join(str(w.message) for w in caught)
    assert "12_02_trace.csv.gz: cut short" in said and "12_03_trace.csv: empty file" in said
    assert [w.start for w in windows] == [t0, t0 + 60]
    assert windows[1].calls[(("svc-a", "GET /x"),)] == 60


def test_a_replica_without_a_row_makes_its_services_value_unknown(
    tmp_path: Path, span_dir: Path
) -> None:
    metrics = tmp_path / "metric"
    metrics.mkdir()
    (metrics / "svc-a-5b67c48447-fj8b7_metric.csv").write_text(
        f"{METRIC_HEADER}\nx,112,p,20,100\n\nx,172,p,30,200\n"
    )
    # the second replica runs from 60 to 232 but has no row at 172: its window is unknown
    (metrics / "svc-a-5b67c48447-x9k2q_metric.csv").write_text(
        f"{METRIC_HEADER}\nx,112,p,10,50\nx,232,p,10,50\n"
    )
    # a replica that started later adds nothing before it ran
    (metrics / "svc-b-5b67c48447-fj8b7_metric.csv").write_text(
        f"{METRIC_HEADER}\nx,112,p,5,5\nx,172,p,5,5\n"
    )
    (metrics / "svc-b-5b67c48447-x9k2q_metric.csv").write_text(f"{METRIC_HEADER}\nx,172,p,5,5\n")
    (metrics / "svc-c-5b67c48447-fj8b7_metric.csv").write_text(f"{METRIC_HEADER}\nx,9000,p,5,5\n")
    with pytest.warns(DataWarning, match="svc-c-5b67c48447-fj8b7_metric.csv"):
        windows = import_windows("span-csv", span_dir, metrics=metrics, window_seconds=60)
    assert windows[0].metrics[("svc-a", "cpu")] == pytest.approx(0.03)
    assert ("svc-a", "cpu") not in windows[1].metrics
    assert windows[0].metrics[("svc-b", "cpu")] == pytest.approx(0.005)
    assert windows[1].metrics[("svc-b", "cpu")] == pytest.approx(0.01)


def test_import_prints_data_warnings_once_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from exporter.cli import main

    t0 = 1675080000
    folder = minute_files(
        tmp_path / "trace", {f"12_0{k}": t0 + 60 * k for k in range(4)}, unit=1000
    )
    out = tmp_path / "x.jsonl"
    assert main(["import", "--format", "span-csv", "--input", str(folder), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: EndTimeUnixNano holds microseconds") == 1
    assert "(x4 in all)" in err


def test_trainticket_layout_with_a_folder_per_day(tmp_path: Path) -> None:
    root = tmp_path / "recording"
    minute_files(root / "trace" / "2023-01-30", {"23_58": MIDNIGHT - 120, "23_59": MIDNIGHT - 60})
    minute_files(root / "trace" / "2023-01-31", {"00_00": MIDNIGHT, "00_01": MIDNIGHT + 60})
    for day, start in (("2023-01-30", MIDNIGHT - 120), ("2023-01-31", MIDNIGHT)):
        folder = root / "metric" / day
        folder.mkdir(parents=True)
        rows = "".join(f"x,{start + 60 * k + 52},p,10,100\n" for k in range(2))
        (folder / "svc-a-5b67c48447-fj8b7_metric.csv").write_text(f"{METRIC_HEADER}\n{rows}")
    windows = load_trainticket(root)
    assert [w.start for w in windows] == [MIDNIGHT + 60 * k for k in range(-2, 2)]
    assert all(w.metrics[("svc-a", "cpu")] == pytest.approx(0.01) for w in windows)


def test_a_quiet_minute_file_covers_its_own_minute_and_a_file_without_spans_is_an_idle_one(
    tmp_path: Path,
) -> None:
    """A minute's file names its minute: a quiet minute whose one trace ends 50 s into it is
    kept, a file with a header and no spans is a minute without calls (not a missing one), and
    a file cut short says nothing of its minute."""
    t0 = 1675080000  # 12:00 UTC
    folder = minute_files(tmp_path / "trace", {"12_00": t0, "12_03": t0 + 180})
    write_csv(folder / "12_01_trace.csv", [row("q", "rq", "root", SVC_A, "GET /x", t0 + 110)])
    write_csv(folder / "12_02_trace.csv", [])  # the header alone: nobody called
    windows = import_span_csv(folder)
    assert [w.start for w in windows] == [t0 + 60 * k for k in range(4)]
    assert sum(windows[1].calls.values()) == 1 and windows[2].calls == {}

    whole = gzip.compress((folder / "12_02_trace.csv").read_bytes() + b"x" * 100)
    (folder / "12_02_trace.csv").unlink()
    (folder / "12_02_trace.csv.gz").write_bytes(whole[: len(whole) // 2])  # cut short
    with pytest.warns(DataWarning, match="cut short"):
        windows = import_span_csv(folder)
    assert [w.start for w in windows] == [t0, t0 + 60, t0 + 180]


def test_minute_names_of_another_clock_than_the_spans_are_not_read(tmp_path: Path) -> None:
    """Files named in local time (two hours off the spans' UTC) cover by their spans alone: a
    file without spans makes no idle window at a minute its name cannot place."""
    t0 = 1675080000  # 12:00 UTC, named 14:00
    folder = minute_files(tmp_path / "trace", {"14_00": t0, "14_01": t0 + 60, "14_03": t0 + 180})
    write_csv(folder / "14_02_trace.csv", [])
    windows = import_span_csv(folder)
    assert [w.start for w in windows] == [t0, t0 + 60, t0 + 180]


def test_a_file_of_json_lines_is_read_in_batches_with_the_windows_of_one_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OpenTelemetry Collector's single file: assembled a batch of spans at a time, never
    held whole, with the windows that reading it whole gives; a span of another time unit in
    a later batch is still refused."""
    import estimator.importers.common as common

    t0, lines = 1675080000, []
    for k in range(300):
        trace = f"{k + 1:032x}"
        root = otlp_request([os_(f"r{k}", "", "/api", t0 + k)], "front")
        child = otlp_request([os_(f"c{k}", f"r{k}", "get", t0 + k)], "back")
        for request in (root, child):
            request["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = trace
        lines.append(json.dumps(child))  # children come first, as exporters send them
        lines.insert(max(0, len(lines) - 3), json.dumps(root))  # roots a few lines away
    path = tmp_path / "otelcol.jsonl"
    path.write_text("\n".join(lines) + "\n")
    whole = import_otlp_json(path)
    monkeypatch.setattr(common, "BATCH_SPANS", 7)
    batches = list(common.json_span_batches(path, (".jsonl",), common_parse(), None, None))
    assert len(batches) == 600 // 7 + 1 and max(map(len, batches)) == 7
    in_batches = import_otlp_json(path)
    assert [w.calls for w in in_batches] == [w.calls for w in whole]
    assert sum(w.calls[(("front", "/api"),)] for w in whole) > 280  # edge windows dropped
    assert [w.latency for w in in_batches] == [w.latency for w in whole]
    late = json.loads(lines[-1])
    span = late["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["startTimeUnixNano"], span["endTimeUnixNano"] = str(t0 * 999), str(t0 * 1000)  # in ms
    path.write_text("\n".join([*lines[:-1], json.dumps(late)]) + "\n")
    monkeypatch.setattr(common, "BATCH_SPANS", 599)  # the last batch: that span alone
    with pytest.raises(InputError, match="1970|far from"):
        import_otlp_json(path)


def common_parse() -> Any:
    from estimator.importers.otlp import spans_from_otlp_json

    return spans_from_otlp_json

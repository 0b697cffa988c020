"""The seed's raw trace format as JSON: whole call trees, each with its end time.

Accepted shape: a list of traces, or {"traces": [...]}, or one trace (or one such list) per line.
A trace is an object with a time, `end` (preferred) or `timestamp`, in Unix seconds, and its call
tree either inline or under `tree`:

    {"end": 1675078742.5, "component": "nginx", "operation": "/compose", "children": [...]}
    {"timestamp": 1675078742.5, "tree": {"component": "nginx", "operation": "/compose"}}

A tree node has `component` and `operation` (non-empty strings) and `children` (a list of nodes,
may be absent). Each trace is counted in the window holding its time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from estimator.importers.common import (
    MAX_UNIX_NS,
    OnFile,
    Where,
    check_window_seconds,
    expand_inputs,
    json_documents,
)
from estimator.spans import NS_PER_S, Tally, TracePaths, bucket
from estimator.windows import Window, _check_tree, tree_paths

SUFFIXES = (".json", ".json.gz", ".jsonl", ".jsonl.gz")


def _entries(doc: Any, where: Where) -> Iterator[tuple[str, Any]]:
    """(field path, trace object) of each trace in one decoded document."""
    if isinstance(doc, dict) and ({"start", "calls", "metrics"} & doc.keys()):
        raise where.fail(
            "this is a window of the window dataset (start, calls, traces, metrics): such a file "
            "is used as it is (--data), not imported; the raw format holds traces only, each "
            "with its 'end' time"
        )
    if isinstance(doc, dict) and "traces" in doc:
        yield from ((f"traces[{i}]", t) for i, t in enumerate(where.items(doc["traces"], "traces")))
    elif isinstance(doc, list):
        yield from ((f"[{i}]", t) for i, t in enumerate(doc))
    elif isinstance(doc, dict):
        yield "", doc
    else:
        raise where.fail("expected a list of traces, {'traces': [...]} or one trace object")


def traces_from_raw(doc: Any, source: str = "<input>", line: int | None = 1) -> list[TracePaths]:
    """Validate one decoded raw-format document and return the paths of each of its traces."""
    where = Where(source, line)
    out: list[TracePaths] = []
    for fld, entry in _entries(doc, where):
        entry = where.obj(entry, fld or None)
        prefix = f"{fld}." if fld else ""
        key = "end" if "end" in entry else "timestamp"
        if key not in entry:
            raise where.fail(
                "missing time: give 'end' (or 'timestamp') in Unix seconds", f"{prefix}end"
            )
        end = where.seconds(entry[key], f"{prefix}{key}")
        if end * NS_PER_S > MAX_UNIX_NS:
            raise where.fail(f"{end!r} is past the year 2262: not a time", f"{prefix}{key}")
        tree = entry.get("tree", entry)
        _check_tree(tree, source, line, f"{prefix}tree" if "tree" in entry else fld or "trace")
        out.append(TracePaths(round(end * NS_PER_S), list(tree_paths(tree))))
    return out


def read_raw(spec: str | Path, on_file: OnFile | None = None) -> list[TracePaths]:
    """All traces of raw-format JSON files (a file, a directory or a glob)."""
    out: list[TracePaths] = []
    for path in expand_inputs(spec, SUFFIXES):
        for line, doc in json_documents(path):
            out.extend(traces_from_raw(doc, str(path), line))
        if on_file is not None:
            on_file(path)
    return out


def import_raw(
    spec: str | Path,
    window_seconds: int = 60,
    on_file: OnFile | None = None,
    fold_gateway: bool = True,
    sampling_ratio: float = 1.0,
    tally: Tally | None = None,
) -> list[Window]:
    """Windows of call-path counts from raw-format traces (trees are taken as they are);
    `tally`, where given, counts the traces and their spans (a tree's nodes)."""
    del fold_gateway  # whole trees are given; nothing to fold
    check_window_seconds(window_seconds)
    traces = read_raw(spec, on_file)
    if tally is not None:
        tally.traces += len(traces)
        tally.spans += sum(len(t.paths) for t in traces)  # a path per node
    return bucket(traces, window_seconds, sampling_ratio, drop_edges=True, tally=tally)

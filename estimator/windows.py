"""Time windows of call-path counts and resource usage, and the JSON Lines dataset (contract 1)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from estimator.errors import InputError, data_warning

Pair = tuple[str, str]
"""A (component, operation) step of a call path."""
CallPath = tuple[Pair, ...]
"""Root-to-span list of (component, operation) pairs."""
SeriesKey = tuple[str, str]
"""A (component, resource) series."""

CATCH_ALL_SUFFIXES = ("/*", "/**")
"""Route patterns that match every path: a root operation ending in one (`/*`, Spring's `/**`,
Envoy's `host:port/*`), or `*` alone, names a gateway rather than an API. A bare `/` is a route
of its own (a home page)."""


def is_catch_all(operation: str) -> bool:
    """Whether a root operation names a catch-all gateway route (the API is the next step)."""
    name = operation.strip()
    return name == "*" or name.endswith(CATCH_ALL_SUFFIXES)


LATENCY_STATISTICS = ("mean", "p50", "p90", "p95", "p99")
"""Latency statistics a window keeps per API, in seconds."""


@dataclass(frozen=True)
class Latency:
    """Latency of the requests of one API in one window: how many, and statistics in seconds."""

    count: int
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        """Summary of request durations (seconds); percentiles by linear interpolation."""
        values = np.asarray(seconds, dtype=float)
        p50, p90, p95, p99 = np.percentile(values, [50, 90, 95, 99]).tolist()
        return cls(len(values), float(values.mean()), p50, p90, p95, p99)

    def statistic(self, name: str) -> float:
        """'mean' or a percentile 'pNN' this summary holds; KeyError otherwise."""
        if name not in LATENCY_STATISTICS:
            raise KeyError(name)
        value: float = getattr(self, name)
        return value


@dataclass
class Window:
    """One time window: call-path counts, and usage per (component, resource) where known.

    `latency` holds, per API, the latency of the requests whose root span ended in the window,
    where the traces carried span start times.
    """

    start: float
    end: float
    calls: dict[CallPath, float] = field(default_factory=dict)
    metrics: dict[SeriesKey, float] = field(default_factory=dict)
    oracle: dict[SeriesKey, float] = field(default_factory=dict)
    latency: dict[Pair, Latency] = field(default_factory=dict)

    def add_path(self, path: CallPath, count: float = 1.0) -> None:
        self.calls[path] = self.calls.get(path, 0.0) + count

    def add_tree(self, tree: Mapping[str, Any]) -> None:
        for path in tree_paths(tree):
            self.add_path(path)


def tree_paths(tree: Mapping[str, Any], prefix: CallPath = ()) -> Iterator[CallPath]:
    """Every root-to-span path of a call tree in the seed's raw format (iterative, deep trees ok)."""
    stack: list[tuple[Mapping[str, Any], CallPath]] = [(tree, prefix)]
    while stack:
        node, above = stack.pop()
        path = (*above, (str(node["component"]), str(node["operation"])))
        yield path
        for child in reversed(node.get("children") or ()):
            stack.append((child, path))


ORPHAN_ROOT: Pair = ("<unknown>", "<unknown>")
"""Root step of the paths of a span whose parent was lost and that stands as the root of its
own tree (`estimator.spans`): the work below it is counted, but it is no API and no API call."""


def api_of(path: CallPath) -> Pair | None:
    """The API a path belongs to: its root, or the step below a catch-all gateway root; None
    for a path below an orphan (`ORPHAN_ROOT`)."""
    if not path:
        return None
    root = path[0]
    if root == ORPHAN_ROOT:
        return None
    if is_catch_all(root[1]):
        return path[1] if len(path) > 1 else None
    return root


def api_depth(path: CallPath) -> int:
    """Length of the path prefix that names the API (1, or 2 below a catch-all gateway)."""
    return 2 if path and is_catch_all(path[0][1]) else 1


def api_counts(calls: Mapping[CallPath, float]) -> dict[Pair, float]:
    """Calls per API in a window: counts of the paths that end at the API's entry span."""
    out: dict[Pair, float] = {}
    for path, count in calls.items():
        if len(path) == api_depth(path):
            api = api_of(path)
            if api is not None:
                out[api] = out.get(api, 0.0) + count
    return out


# ---------------------------------------------------------------- JSON Lines reading and writing


def _fail(message: str, source: str, line: int | None, fld: str | None = None) -> InputError:
    return InputError(message, source=source, line=line, field=fld)


MAX_UNIX_S = (2**63 - 1) / 1e9
"""The latest start or end a window may have: Unix nanoseconds in 64 bits (2262-04-11); a later
one is milliseconds (or finer) read as seconds."""
MAX_NAME = 256
"""Characters of a component's or an operation's name. The importers and the exporter's receiver
cut a longer one (a SQL statement or a URL with its query as a span name, or a hostile client)
there, ending in "…": names are features, stored in every window and exported as label values,
so their length is bounded. A window dataset's reader cuts them too."""
MAX_CALL_RATE = 1e9
"""Calls per second of one path in a window past which a count is a typo or a corrupted value
(it would overflow the models' float32 features), as a what-if's rate is."""


def _time(value: Any, source: str, line: int, fld: str) -> float:
    out = _number(value, source, line, fld)
    if out > MAX_UNIX_S:
        raise _fail(
            f"{value!r} is past the year 2262: not Unix seconds (milliseconds?)", source, line, fld
        )
    return out


def _number(value: Any, source: str, line: int, fld: str, allow_negative: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(f"expected a number, got {type(value).__name__}", source, line, fld)
    out = float(value)
    if not math.isfinite(out) or (out < 0 and not allow_negative):
        raise _fail(f"expected a finite non-negative number, got {value!r}", source, line, fld)
    return out


def bounded_name(name: str) -> str:
    """A component's or an operation's name cut to MAX_NAME characters (the last one "…")."""
    return name if len(name) <= MAX_NAME else name[: MAX_NAME - 1] + "…"


def _name(name: str) -> str:
    """`bounded_name`, with a warning where it cuts, as the importers and the receiver cut."""
    if len(name) > MAX_NAME:
        data_warning(
            f"component or operation names longer than {MAX_NAME} characters are cut to that "
            "length, ending in '…'"
        )
    return bounded_name(name)


def _path(value: Any, source: str, line: int, fld: str) -> CallPath:
    if not isinstance(value, list) or not value:
        raise _fail("expected a non-empty list of [component, operation] pairs", source, line, fld)
    steps = []
    for i, step in enumerate(value):
        if (
            not isinstance(step, list)
            or len(step) != 2
            or not all(isinstance(s, str) and s for s in step)
        ):
            raise _fail(
                f"step {i} must be a [component, operation] pair of non-empty strings",
                source,
                line,
                fld,
            )
        steps.append((_name(step[0]), _name(step[1])))
    return tuple(steps)


def _objects(
    value: Any, source: str, line: int, fld: str, holding: str
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The entries of a list field, each an object: (where, entry); the error names the list, or
    the entry that is not an object (`holding` says what it should hold)."""
    if not isinstance(value, list):
        raise _fail("expected a list", source, line, fld)
    for i, entry in enumerate(value):
        where = f"{fld}[{i}]"
        if not isinstance(entry, dict):
            raise _fail(f"expected an object with {holding}", source, line, where)
        yield where, entry


def _check_tree(node: Any, source: str, line: int | None, fld: str, depth: int = 0) -> None:
    stack = [(node, fld)]
    while stack:
        item, where = stack.pop()
        if not isinstance(item, dict):
            raise _fail(
                "expected an object with component, operation, children", source, line, where
            )
        for key in ("component", "operation"):
            if not isinstance(item.get(key), str) or not item[key]:
                raise _fail(f"missing or empty '{key}'", source, line, f"{where}.{key}")
        children = item.get("children", [])
        if not isinstance(children, list):
            raise _fail("'children' must be a list", source, line, f"{where}.children")
        stack.extend((c, f"{where}.children[{i}]") for i, c in enumerate(children))


def _one(value: Any, shared: dict[Any, Any] | None) -> Any:
    """`value`, or the equal one already in `shared` (kept there if none is)."""
    return value if shared is None else shared.setdefault(value, value)


def window_from_json(
    obj: Any, source: str = "<input>", line: int = 1, shared: dict[Any, Any] | None = None
) -> Window:
    """Validate one decoded JSON object of contract 1 and build its Window.

    `shared`, kept by a reader of many windows, holds one copy of each call path, series key and
    call count: the windows then share them instead of each holding its own (a dataset of
    thousands of windows of thousands of paths otherwise takes several times its size in memory).
    """
    if not isinstance(obj, dict):
        raise _fail("each line must be a JSON object", source, line)
    for name in ("start", "end"):
        if name not in obj:
            raise _fail("missing", source, line, name)
    start = _time(obj["start"], source, line, "start")
    end = _time(obj["end"], source, line, "end")
    if end <= start:
        raise _fail(f"end ({end}) must be after start ({start})", source, line, "end")
    window = Window(start=start, end=end)
    for where, entry in _objects(obj.get("calls", []), source, line, "calls", "path and count"):
        path = _path(entry.get("path"), source, line, f"{where}.path")
        count = _number(entry.get("count"), source, line, f"{where}.count")
        if count > MAX_CALL_RATE * (end - start):
            raise _fail(
                f"{count:g} calls in {end - start:g} s is over {MAX_CALL_RATE:g} a second: a typo?",
                source,
                line,
                f"{where}.count",
            )
        window.add_path(_one(path, shared), _one(count, shared))
    traces = obj.get("traces", [])
    if not isinstance(traces, list):
        raise _fail("expected a list", source, line, "traces")
    for i, tree in enumerate(traces):
        _check_tree(tree, source, line, f"traces[{i}]")
        for path in tree_paths(tree):
            window.add_path(_one(tuple((_name(c), _name(o)) for c, o in path), shared))
    metrics = _objects(
        obj.get("metrics", []), source, line, "metrics", "component, resource, value"
    )
    seen: set[tuple[str, str]] = set()
    for where, entry in metrics:
        for name in ("component", "resource"):
            if not isinstance(entry.get(name), str) or not entry[name]:
                raise _fail("missing or empty", source, line, f"{where}.{name}")
        key = _one((_name(entry["component"]), _name(entry["resource"])), shared)
        if key in seen:
            raise _fail(f"{key[0]}/{key[1]} is given twice in one window", source, line, where)
        seen.add(key)
        if "value" not in entry:  # a misspelt key would read as unknown, unnoticed
            unknown = sorted(set(entry) - {"component", "resource", "oracle"})
            also = f" (it has {', '.join(map(repr, unknown))})" if unknown else ""
            raise _fail(
                f"missing: write null for an unknown value{also}", source, line, f"{where}.value"
            )
        if entry["value"] is None:
            continue  # unknown, never zero
        window.metrics[key] = _number(entry["value"], source, line, f"{where}.value")
        if entry.get("oracle") is not None:
            window.oracle[key] = _number(entry["oracle"], source, line, f"{where}.oracle")
    _read_latency(obj.get("latency", []), window, source, line)
    return window


def _read_latency(entries: Any, window: Window, source: str, line: int) -> None:
    """The optional `latency` list: per API, a request count and statistics in seconds."""
    for where, entry in _objects(entries, source, line, "latency", "api, count and statistics"):
        api = _path([entry.get("api")], source, line, f"{where}.api")[0]
        count = _number(entry.get("count"), source, line, f"{where}.count")
        if not count.is_integer() or count < 1:
            raise _fail(
                f"expected a whole number >= 1, got {count:g}", source, line, f"{where}.count"
            )
        values = {
            name: _number(entry.get(name), source, line, f"{where}.{name}")
            for name in LATENCY_STATISTICS
        }
        window.latency[api] = Latency(int(count), **values)


def window_to_json(window: Window) -> dict[str, Any]:
    """The contract-1 object of a window (counts in `calls`; oracle values beside metrics)."""
    metrics = []
    for (component, resource), value in sorted(window.metrics.items()):
        item: dict[str, Any] = {"component": component, "resource": resource, "value": value}
        if (component, resource) in window.oracle:
            item["oracle"] = window.oracle[(component, resource)]
        metrics.append(item)
    out: dict[str, Any] = {
        "start": _plain(window.start),
        "end": _plain(window.end),
        "calls": [
            {"path": [list(step) for step in path], "count": _plain(count)}
            for path, count in sorted(window.calls.items())
        ],
        "metrics": metrics,
    }
    if window.latency:
        out["latency"] = [
            {"api": list(api), "count": summary.count}
            | {name: summary.statistic(name) for name in LATENCY_STATISTICS}
            for api, summary in sorted(window.latency.items())
        ]
    return out


def _plain(x: float) -> float | int:
    return int(x) if float(x).is_integer() else float(x)


def read_windows(path: str | Path) -> Iterator[Window]:
    """Stream windows from a JSON Lines file, validating each line; blank lines are skipped."""
    source = str(path)
    try:
        handle: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InputError(f"cannot open: {exc.strerror}", source=source) from exc
    with handle:
        previous_start = previous_end = -math.inf
        shared: dict[Any, Any] = {}
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                message = f"not UTF-8 text (byte {exc.start + 1} of the line)"
                raise _fail(message, source, number) from None
            if not text.strip():
                continue
            try:
                # without its line break, so that an object cut at the end of the line is
                # placed there, not at column 1 of the line after it
                obj = json.loads(text.rstrip("\r\n"))
            except json.JSONDecodeError as exc:
                raise _fail(
                    f"not valid JSON ({exc.msg}, column {exc.colno})", source, number
                ) from exc
            window = window_from_json(obj, source, number, shared)
            if window.start < previous_start:
                raise _fail("windows must be in time order", source, number, "start")
            if window.start < previous_end - 1e-6:
                raise _fail(
                    f"starts at {_plain(window.start)}, before the window before it ends (at "
                    f"{_plain(previous_end)}); windows must not overlap (a window written twice?)",
                    source,
                    number,
                    "start",
                )
            previous_start, previous_end = window.start, window.end
            yield window


def check_windows(windows: Sequence[Window], source: str = "windows", ordered: bool = True) -> None:
    """Windows built in code, checked as a dataset's lines are read: each ends after it starts,
    in time order and none overlapping the one before it (unless not `ordered`: times that are
    only labels), with finite non-negative call counts and usage (NaN usage is unknown); an
    InputError names the window (`source[i]`) otherwise."""
    previous_end = -math.inf
    for i, window in enumerate(windows):
        where = f"{source}[{i}]"
        if not (math.isfinite(window.start) and math.isfinite(window.end)):
            raise InputError(
                f"start and end must be finite, got {window.start}, {window.end}", field=where
            )
        if window.end <= window.start:
            raise InputError(
                f"end ({window.end}) must be after start ({window.start})", field=where
            )
        if ordered and window.start < previous_end - 1e-6:
            raise InputError(
                f"starts at {_plain(window.start)}, before the window before it ends (at "
                f"{_plain(previous_end)}): windows must be in time order and not overlap",
                field=f"{where}.start",
            )
        previous_end = window.end
        for path, count in window.calls.items():
            if not (math.isfinite(count) and count >= 0):
                raise InputError(
                    f"call count {count!r} of path {list(path)} is not a finite non-negative "
                    "number",
                    field=f"{where}.calls",
                )
        for (component, resource), value in window.metrics.items():
            if not math.isnan(value) and not (math.isfinite(value) and value >= 0):
                raise InputError(
                    f"usage {value!r} of {component}/{resource} is not a finite non-negative "
                    "number (NaN for unknown)",
                    field=f"{where}.metrics",
                )


def load_windows(path: str | Path) -> list[Window]:
    """Read a whole dataset; an empty file is an error."""
    windows = list(read_windows(path))
    if not windows:
        raise InputError("holds no windows", source=str(path))
    return windows


def write_windows(path: str | Path, windows: Iterable[Window]) -> int:
    """Write windows as JSON Lines; returns how many were written."""
    n = 0
    with open(path, "w", encoding="utf-8") as handle:
        for window in windows:
            handle.write(json.dumps(window_to_json(window), separators=(",", ":")))
            handle.write("\n")
            n += 1
    return n


# ---------------------------------------------------------------- targets as arrays


def series_of(windows: Sequence[Window]) -> list[SeriesKey]:
    """Sorted (component, resource) keys seen in any window."""
    keys: set[SeriesKey] = set()
    for window in windows:
        keys.update(window.metrics)
    return sorted(keys)


def targets(
    windows: Sequence[Window], series: Sequence[SeriesKey], oracle: bool = False
) -> np.ndarray:
    """[windows, series] matrix of usage; NaN where a value is unknown."""
    out = np.full((len(windows), len(series)), np.nan)
    index = {key: j for j, key in enumerate(series)}
    for i, window in enumerate(windows):
        source = window.oracle if oracle else window.metrics
        for key, value in source.items():
            j = index.get(key)
            if j is not None:
                out[i, j] = value
    return out

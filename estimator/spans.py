"""Spans to call paths: group a batch of spans by trace, build the trees, bucket them into windows.

Choices, made once here for every importer:

- Duplicate spans (same trace and span id, as when a trace is exported twice) count once; the
  first one seen wins.
- An orphan (its parent is not in the batch) is attached to its nearest known ancestor: the
  trace's root, when the batch holds exactly one root span of that trace (the missing parent is
  somewhere below it). Below a catch-all gateway root (see folding) an orphan must not sit
  where APIs sit unless it is one: an API span (one that gateway traces assembled so far routed
  to, `Routes`) or a gateway span goes below the root; another joins the one API span the
  gateway routed to, or, where that is not one (its API span was lost), hangs below a
  `LOST_API` step, which counts as no API call. A trace that lost its root span, whose orphans
  are spans of a known gateway, hangs below that gateway's root, folded as its other traces
  (one request, not one per orphan). Traces that lost spans are assembled after the batch's
  whole traces. Otherwise an orphan is the root of its own tree, below an `ORPHAN_ROOT` step
  (unless it is a catch-all gateway span): its paths count the work, but it makes no API of its
  own and no API call.
- A parent cycle (a span its own ancestor) is cut at its first span seen, which then counts as
  an orphan, with a warning.
- Gateway folding (on by default): below a root whose operation is a catch-all route (`/*`), the
  spans of the root's own component are gateway internals (request filters, the proxy's outgoing
  HTTP span). They add no path; their children hang from the root, so the step below the root is
  the API, as `estimator.windows.api_of` expects.
- Sampled traces count for the traces they stand for: a tree's paths count its root span's
  adjusted count (1 / the probability its trace was kept, see `adjusted_count`), 1 where the
  source does not say.
- A window is chosen by the end time of the tree's root span. The root span's duration is the
  request's latency, kept per API in the window (`Window.latency`) where start times are known
  and the root is a true root (an orphan standing as a root times no request).
- Files are assembled as they are read (`windows_of_batches`), so memory holds a few files'
  spans, not a whole recording's: a trace is closed once SETTLE_BATCHES files in a row have
  brought none of its spans and the files have moved SETTLE_SECONDS past its last span (files
  of a second each hold a minute of spans, not two seconds). A trace whose spans lie further
  apart than that becomes separate trees, as a trace cut off at the edge of a recording does,
  with a warning that counts them.
- Where most trees lack a root span (a span without parent), a warning says so: no request
  latency is known, and a parent id that marks roots otherwise is likely.
"""

from __future__ import annotations

import bisect
import math
import statistics
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from estimator.errors import DataWarning, InputError, count_of, first_few
from estimator.windows import (
    MAX_NAME,
    ORPHAN_ROOT,
    CallPath,
    Latency,
    Pair,
    Window,
    api_depth,
    api_of,
    bounded_name,
    is_catch_all,
)

NS_PER_S = 1_000_000_000
MAX_PATH_DEPTH = 64
"""Longest call path kept: the spans below it are left out (and counted). Every span holds its
whole path, so a chain of n spans would otherwise hold n^2/2 steps: one small request could
fill the memory."""
SETTLE_BATCHES = 2
"""Files in a row without a span of a trace after which the trace is closed and counted."""
SETTLE_SECONDS = 60
"""And how far the files' span ends must have moved past a trace's last span end."""
SPLIT_MEMORY_SECONDS = 3600
"""How long a closed trace's id is kept to tell that a later span of it split it."""


@dataclass(frozen=True, slots=True)
class Span:
    """One span of a distributed trace, in any source format."""

    trace_id: str
    span_id: str
    parent_id: str | None
    component: str
    operation: str
    start_ns: int
    end_ns: int
    weight: float | None = None  # adjusted count (1 / sampling probability); None: not said


UNKNOWN_NS = -1
"""Start time of a span whose source does not record it."""


@dataclass(frozen=True, slots=True)
class TracePaths:
    """The root-to-span call paths of one call tree, with its root span's end time and duration;
    `rooted` is False for the tree of an orphan (its parent, and the request, lie elsewhere), and
    `too_deep` counts the spans left out below MAX_PATH_DEPTH."""

    end_ns: int
    paths: list[CallPath]
    duration_ns: int = UNKNOWN_NS
    rooted: bool = True
    too_deep: int = 0
    weight: float = 1.0  # the root span's adjusted count: requests this tree stands for


@dataclass
class SpanColumns:
    """A batch of spans as parallel lists (fast to fill from CSV columns); parent None for roots.

    `weights` holds each span's adjusted count (see `adjusted_count`), NaN where its source does
    not say, or is empty where no span's source says (nothing to store); `resolved` gives the
    ones not said a recording's sampling ratio."""

    trace_ids: list[str]
    span_ids: list[str]
    parent_ids: list[str | None]
    pairs: list[Pair]
    end_ns: list[int]
    start_ns: list[int]  # UNKNOWN_NS where the source has no start time
    weights: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.span_ids)

    @classmethod
    def empty(cls) -> SpanColumns:
        return cls([], [], [], [], [], [])

    def weight(self, i: int) -> float:
        """Adjusted count of span `i` (1 where not said)."""
        w = self.weights[i] if self.weights else math.nan
        return 1.0 if math.isnan(w) else w

    def resolved(self, unsaid: float) -> SpanColumns:
        """These spans, those whose adjusted count is not said given `unsaid`."""
        if unsaid == 1.0 and not self.weights:
            return self
        weights = self.weights or [math.nan] * len(self)
        return replace(self, weights=[unsaid if math.isnan(w) else w for w in weights])

    def _weigh(self) -> None:
        """Hold one weight per span from here on."""
        if not self.weights:
            self.weights = [math.nan] * len(self)

    def extend(self, other: SpanColumns) -> None:
        if other.weights or self.weights:
            self._weigh()
            self.weights.extend(other.weights or [math.nan] * len(other))
        self.trace_ids.extend(other.trace_ids)
        self.span_ids.extend(other.span_ids)
        self.parent_ids.extend(other.parent_ids)
        self.pairs.extend(other.pairs)
        self.end_ns.extend(other.end_ns)
        self.start_ns.extend(other.start_ns)

    def take(self, rows: Sequence[int]) -> SpanColumns:
        """The spans at `rows`, in that order."""
        return SpanColumns(
            [self.trace_ids[i] for i in rows],
            [self.span_ids[i] for i in rows],
            [self.parent_ids[i] for i in rows],
            [self.pairs[i] for i in rows],
            [self.end_ns[i] for i in rows],
            [self.start_ns[i] for i in rows],
            [self.weights[i] for i in rows] if self.weights else [],
        )

    def append(self, span: Span) -> None:
        if span.weight is not None or self.weights:
            self._weigh()
            self.weights.append(math.nan if span.weight is None else span.weight)
        self.trace_ids.append(span.trace_id)
        self.span_ids.append(span.span_id)
        self.parent_ids.append(span.parent_id or None)
        self.pairs.append((span.component, span.operation))
        self.end_ns.append(span.end_ns)
        self.start_ns.append(span.start_ns)


THRESHOLD_BITS = 56
"""Bits of the rejection threshold of OpenTelemetry's probability sampling (`ot=th:`)."""
_TH_DIGITS = THRESHOLD_BITS // 4


def adjusted_count(tracestate: str) -> float | None:
    """Traces a sampled one stands for, from its W3C `tracestate` (OpenTelemetry's consistent
    probability sampling: `ot=...;th:<hex>`, a rejection threshold T of up to 14 hex digits
    padded with zeros; kept with probability 1 - T / 2**56). None where the tracestate carries
    no valid threshold: the caller's configured ratio, if any, applies instead."""
    for member in tracestate.split(","):
        key, _, value = member.strip().partition("=")
        if key.strip() != "ot":
            continue
        for item in value.split(";"):
            name, _, digits = item.partition(":")
            if name != "th":
                continue
            digits = digits.lower()
            if not 0 < len(digits) <= _TH_DIGITS or not _HEX_DIGITS.issuperset(digits):
                return None
            threshold = int(digits.ljust(_TH_DIGITS, "0"), 16)
            return float(2**THRESHOLD_BITS / (2**THRESHOLD_BITS - threshold))
    return None


_HEX_DIGITS = frozenset("0123456789abcdef")


def check_sampling_ratio(ratio: float, name: str = "sampling_ratio") -> float:
    """A configured share of traces kept (0 < ratio <= 1) as the adjusted count it gives."""
    if not 0.0 < ratio <= 1.0:  # NaN fails too
        raise InputError(f"expected a share of traces in (0, 1], got {ratio:g}", field=name)
    return 1.0 / ratio


def columns_of(spans: Iterable[Span]) -> SpanColumns:
    """Parallel lists of a batch of Span objects."""
    cols = SpanColumns.empty()
    for span in spans:
        cols.append(span)
    return cols


def assemble(spans: Iterable[Span], fold_gateway: bool = True) -> Iterator[TracePaths]:
    """Call paths of every tree in a batch of spans, in any order and across any sources."""
    return assemble_columns(columns_of(spans), fold_gateway)


LOST_API = "<unknown>"
"""Operation of the API step put below a catch-all gateway root for spans whose API span was
lost (`assemble_columns`): a step that counts as no API call."""
MAX_KNOWN_APIS = 100_000
"""The most API spans `Routes` remembers (spans named by raw URL would grow it without end)."""
MAX_KNOWN_GATEWAYS = 1000
"""The most gateway components `Routes` remembers (a flood of service names would grow it
without end; an application has a few gateways)."""


@dataclass
class Routes:
    """What traces assembled so far showed of catch-all gateways: each gateway component's
    root operation and the API spans they routed to. It places the spans of traces that lost
    their API span or their gateway root (see `assemble_columns`)."""

    gateways: dict[str, str] = field(default_factory=dict)
    apis: set[Pair] = field(default_factory=set)

    def learn(self, top: Pair, entries: Iterable[Pair]) -> None:
        """Remember a gateway root and the API spans one of its traces routed to."""
        if len(self.gateways) < MAX_KNOWN_GATEWAYS:
            self.gateways.setdefault(top[0], top[1])
        if len(self.apis) < MAX_KNOWN_APIS:
            self.apis.update(entries)


def _bounded_pairs(cols: SpanColumns) -> SpanColumns:
    """The batch with every name longer than MAX_NAME cut (a warning says so), or itself."""
    long = {p for p in set(cols.pairs) if len(p[0]) > MAX_NAME or len(p[1]) > MAX_NAME}
    if not long:
        return cols
    warnings.warn(
        DataWarning(
            f"component or operation names longer than {MAX_NAME} characters are cut to that "
            "length, ending in '…' (a span named by a SQL statement or a whole URL?)"
        ),
        stacklevel=3,
    )
    cut = {p: (bounded_name(p[0]), bounded_name(p[1])) for p in long}
    return replace(cols, pairs=[cut.get(p, p) for p in cols.pairs])


def assemble_columns(
    cols: SpanColumns,
    fold_gateway: bool = True,
    routes: Routes | None = None,
    tally: Tally | None = None,
) -> Iterator[TracePaths]:
    """Call paths of every tree in a batch given as columns (one tree per root, see module doc).
    `routes` carries what earlier batches showed of gateways (one is started where not given);
    `tally`, where given, counts the traces and the spans given twice. Names longer than
    MAX_NAME characters are cut (`bounded_name`)."""
    cols = _bounded_pairs(cols)
    groups: dict[str, list[int]] = {}
    for i, trace_id in enumerate(cols.trace_ids):
        group = groups.get(trace_id)
        if group is None:
            groups[trace_id] = [i]
        else:
            group.append(i)
    if tally is not None:
        tally.traces += len(groups)
    routes = Routes() if routes is None else routes
    parent_ids, span_ids = cols.parent_ids, cols.span_ids
    lacking = []  # last, once the batch's whole traces have shown what gateways route to
    for members in groups.values():
        ids = {span_ids[i] for i in members}
        if all(parent_ids[i] is None or parent_ids[i] in ids for i in members):
            yield from _trace_trees(cols, members, fold_gateway, routes, tally)
        else:
            lacking.append(members)
    for members in lacking:
        yield from _trace_trees(cols, members, fold_gateway, routes, tally)


def _trace_trees(
    cols: SpanColumns, members: list[int], fold: bool, routes: Routes, tally: Tally | None = None
) -> Iterator[TracePaths]:
    """The trees of one trace: link children to parents, then walk from each root."""
    span_ids, parent_ids, pairs = cols.span_ids, cols.parent_ids, cols.pairs
    index: dict[str, int] = {}
    for i in members:
        first = index.setdefault(span_ids[i], i)
        if first != i and tally is not None:
            if (pairs[i], parent_ids[i]) == (pairs[first], parent_ids[first]):
                tally.duplicates += 1
            else:  # one id, two spans: a collision, not a repeat
                tally.conflicts += 1
    kept = [i for i in members if index[span_ids[i]] == i]
    roots = [i for i in kept if parent_ids[i] is None]
    children: dict[str, list[int]] = {}
    orphans: list[int] = []
    cut = _cycle_cuts(cols, kept, index)
    for i in kept:
        parent = parent_ids[i]
        if parent is None:
            continue
        if parent not in index or parent == span_ids[i] or i in cut:
            orphans.append(i)
            continue
        children.setdefault(parent, []).append(i)
    gateway_roots = [r for r in roots if fold and is_catch_all(pairs[r][1])]
    entries = {r: _entries(cols, r, children) for r in gateway_roots}
    for r in gateway_roots:
        routes.learn(pairs[r], (pairs[i] for i in entries[r]))
    lost: list[int] = []
    virtual: dict[str, list[int]] = {}  # lost gateway root's span id -> its orphans
    true_roots = len(roots)
    for i in orphans:
        if true_roots == 1:
            root = roots[0]
            found = entries.get(root)
            if found is None or pairs[i] in routes.apis or pairs[i][0] == pairs[root][0]:
                children.setdefault(span_ids[root], []).append(i)  # the root's API, or gateway
            elif len(found) == 1:
                children.setdefault(span_ids[found[0]], []).append(i)  # the one API routed to
            else:
                lost.append(i)  # its API span was lost: which API is unknown
        elif not true_roots and fold and pairs[i][0] in routes.gateways:
            virtual.setdefault(str(parent_ids[i]), []).append(i)  # the gateway's root was lost
        else:
            roots.append(i)
    if lost and tally is not None:
        tally.lost_api += 1
    for root in roots:
        yield _walk(cols, root, children, fold, lost if root == roots[0] else ())
    for group in virtual.values():
        yield _walk_lost_root(cols, group, children, routes)


def _cycle_cuts(cols: SpanColumns, kept: list[int], index: dict[str, int]) -> set[int]:
    """The first span seen of each parent cycle (a span its own ancestor, a -> b -> a): cut
    there, it stands as an orphan (its true parent is not among the spans), with a warning."""
    span_ids, parent_ids = cols.span_ids, cols.parent_ids
    state: dict[int, bool] = {}  # True: on the chain being followed; False: done
    cuts: set[int] = set()
    for i in kept:
        chain: list[int] = []
        j: int | None = i
        while j is not None and j not in state:
            state[j] = True
            chain.append(j)
            parent = parent_ids[j]
            j = index.get(parent) if parent is not None and parent != span_ids[j] else None
        if j is not None and state[j]:  # the chain came back to a span of its own
            cuts.add(min(chain[chain.index(j) :]))
        state.update(dict.fromkeys(chain, False))
    if cuts:
        warnings.warn(
            DataWarning(
                "spans whose parents lead back to themselves (a parent cycle): each cycle is "
                "cut at its first span, which counts as a span whose parent was lost"
            ),
            stacklevel=2,
        )
    return cuts


def _entries(cols: SpanColumns, root: int, children: dict[str, list[int]]) -> list[int]:
    """The API spans a catch-all gateway root routed to: its first descendants of another
    component than the gateway's (whose own spans are folded away)."""
    span_ids, pairs = cols.span_ids, cols.pairs
    gateway = pairs[root][0]
    found: list[int] = []
    stack = list(children.get(span_ids[root], ()))
    while stack:
        i = stack.pop()
        if pairs[i][0] == gateway:
            stack.extend(children.get(span_ids[i], ()))
        else:
            found.append(i)
    return found


def _walk(
    cols: SpanColumns,
    root: int,
    children: dict[str, list[int]],
    fold: bool,
    lost: Sequence[int] = (),
) -> TracePaths:
    """Paths of the tree below one root (iterative: deep trees are fine).
    `lost`: orphans of the root's trace whose API span was lost, hung below a LOST_API step."""
    span_ids, pairs = cols.span_ids, cols.pairs
    top = pairs[root]
    gateway = top[0] if fold and is_catch_all(top[1]) else None
    # Only a true root span is a request: an orphan's parent (and the request) lies elsewhere.
    rooted = cols.parent_ids[root] is None
    # an orphan that is no gateway stands below ORPHAN_ROOT: its work counts, as no API
    path_root: CallPath = (top,) if rooted or gateway is not None else (ORPHAN_ROOT, top)
    stack: list[tuple[int, CallPath, bool]] = [
        (c, path_root, gateway is not None) for c in children.get(span_ids[root], ())
    ]
    if lost and gateway is not None:
        stack.extend((i, (top, (gateway, LOST_API)), False) for i in lost)
    paths, too_deep = _paths(cols, path_root, stack, children, gateway)
    start, end = cols.start_ns[root], cols.end_ns[root]
    timed = UNKNOWN_NS < start <= end and rooted
    duration = end - start if timed else UNKNOWN_NS
    return TracePaths(end, paths, duration, rooted, too_deep, cols.weight(root))


def _walk_lost_root(
    cols: SpanColumns, group: list[int], children: dict[str, list[int]], routes: Routes
) -> TracePaths:
    """The tree of a trace whose catch-all gateway root was lost: its orphans, spans of that
    gateway, hang below the root the gateway's other traces have, so that they fold as they
    would have (one request, its API below) rather than each counting as a request. Untimed;
    it ends when its last orphan does."""
    gateway = cols.pairs[group[0]][0]
    top: Pair = (gateway, routes.gateways[gateway])
    path_root: CallPath = (top,)
    stack = [(i, path_root, True) for i in group]
    paths, too_deep = _paths(cols, path_root, stack, children, gateway)
    end = max(cols.end_ns[i] for i in group)
    return TracePaths(end, paths, UNKNOWN_NS, False, too_deep, cols.weight(group[0]))


def _paths(
    cols: SpanColumns,
    path_root: CallPath,
    stack: list[tuple[int, CallPath, bool]],
    children: dict[str, list[int]],
    gateway: str | None,
) -> tuple[list[CallPath], int]:
    """The paths from `path_root` down through the spans on `stack` (span, path above it,
    whether gateway spans still fold there), and how many spans were left out below
    MAX_PATH_DEPTH."""
    span_ids, pairs = cols.span_ids, cols.pairs
    paths: list[CallPath] = [path_root]
    too_deep = 0
    while stack:
        i, above, folding = stack.pop()
        pair = pairs[i]
        if folding and pair[0] == gateway:
            stack.extend((c, above, True) for c in children.get(span_ids[i], ()))
            continue
        if len(above) >= MAX_PATH_DEPTH:
            too_deep += 1
            stack.extend((c, above, False) for c in children.get(span_ids[i], ()))
            continue
        path = (*above, pair)
        paths.append(path)
        stack.extend((c, path, False) for c in children.get(span_ids[i], ()))
    return paths, too_deep


def window_start(end_ns: int, window_seconds: int) -> int:
    """Start (Unix seconds) of the aligned window holding a time in nanoseconds."""
    return (end_ns // (window_seconds * NS_PER_S)) * window_seconds


Counts = dict[int, dict[CallPath, float]]
"""Path counts per window index (window start / window_seconds)."""
Durations = dict[int, dict[Pair, list[float]]]
"""Request durations (seconds) per window index and API."""


def trace_api(paths: Sequence[CallPath]) -> Pair | None:
    """The API of one tree: that of its first path that ends at the API's entry span."""
    for path in paths:
        if len(path) == api_depth(path):
            api = api_of(path)
            if api is not None:
                return api
    return None


def record_latency(trace: TracePaths, durations: dict[Pair, list[float]]) -> None:
    """Add a timed tree's duration (seconds) to its API's durations; untimed trees add none."""
    if trace.duration_ns == UNKNOWN_NS:
        return
    api = trace_api(trace.paths)
    if api is not None:
        durations.setdefault(api, []).append(trace.duration_ns / NS_PER_S)


def latency_of(durations: dict[Pair, list[float]]) -> dict[Pair, Latency]:
    """Per API, the latency summary of its requests' durations."""
    return {api: Latency.of(d) for api, d in sorted(durations.items())}


@dataclass
class Tally:
    """What reading spans met: spans read, traces assembled, spans skipped or left out, trees
    and trees of a true root. An import's summary reports it, so loss is not silent."""

    spans: int = 0  # spans read
    traces: int = 0  # traces assembled (a trace counted in parts counts each part)
    duplicates: int = 0  # spans given again, same trace and span id and content: skipped
    conflicts: int = 0  # spans of one trace and span id, but of another operation or parent
    too_deep: int = 0  # spans left out below MAX_PATH_DEPTH
    trees: int = 0
    rooted: int = 0
    lost_api: int = 0  # requests below a catch-all gateway whose API span was lost

    @property
    def left_out(self) -> int:
        """Spans read but in no call path (duplicates aside)."""
        return self.conflicts + self.too_deep


def _count(
    traces: Iterable[TracePaths],
    counts: Counts,
    durations: Durations,
    window_seconds: int,
    tally: Tally | None = None,
) -> int:
    """Add the paths of each tree to the counts of the window its root ends in, and its
    duration to that window's durations of its API; returns the spans left out as too deep
    (and adds what it met to `tally`)."""
    width = window_seconds * NS_PER_S
    too_deep = 0
    trees = rooted = 0
    for trace in traces:
        too_deep += trace.too_deep
        trees += 1
        rooted += trace.rooted
        key = trace.end_ns // width
        calls = counts.get(key)
        if calls is None:
            calls = counts[key] = {}
        weight = trace.weight
        for path in trace.paths:
            calls[path] = calls.get(path, 0.0) + weight
        record_latency(trace, durations.setdefault(key, {}))
    if tally is not None:
        tally.too_deep += too_deep
        tally.trees += trees
        tally.rooted += rooted
    return too_deep


def _warn_too_deep(spans: int) -> None:
    if spans:
        warnings.warn(
            DataWarning(
                f"{count_of(spans, 'span')} left out below call depth {MAX_PATH_DEPTH} "
                "(a chain that deep is no request's call tree)"
            ),
            stacklevel=3,
        )


def _windows(counts: Counts, durations: Durations, window_seconds: int) -> list[Window]:
    return [
        Window(
            start=float(key * window_seconds),
            end=float((key + 1) * window_seconds),
            calls=counts[key],
            latency=latency_of(durations.get(key, {})),
        )
        for key in sorted(counts)
    ]


def _check_width(window_seconds: int) -> None:
    if window_seconds <= 0:
        raise ValueError(f"window_seconds must be positive, got {window_seconds}")


def bucket(
    traces: Iterable[TracePaths],
    window_seconds: int = 60,
    sampling_ratio: float = 1.0,
    drop_edges: bool = False,
    tally: Tally | None = None,
) -> list[Window]:
    """Count the paths of each tree into windows aligned to multiples of `window_seconds`; each
    tree's paths count 1 / `sampling_ratio` times its weight (a sampled recording's traffic).
    With `drop_edges`, the trees are a whole recording (its first root end to its last), whose
    edge windows are dropped where it started or stopped in their middle (`_drop_edges`).
    `tally`, where given, counts the trees and their spans left out."""
    _check_width(window_seconds)
    if sampling_ratio != 1.0:
        unsaid = check_sampling_ratio(sampling_ratio)
        traces = (replace(t, weight=t.weight * unsaid) for t in traces)
    counts: Counts = {}
    durations: Durations = {}
    span: list[int] = []
    if drop_edges:
        traces = list(traces)
        ends = [t.end_ns for t in traces]
        span = [min(ends), max(ends)] if ends else []
    _warn_too_deep(_count(traces, counts, durations, window_seconds, tally))
    if span:
        _drop_edges(counts, span[0], span[1], window_seconds)
    return _windows(counts, durations, window_seconds)


def windows_of_batches(
    batches: Iterable[SpanColumns],
    window_seconds: int = 60,
    fold_gateway: bool = True,
    settle: int = SETTLE_BATCHES,
    file_seconds: int | None = None,
    sampling_ratio: float = 1.0,
    file_minutes: Sequence[int | None] | None = None,
    tally: Tally | None = None,
) -> list[Window]:
    """Windows of call-path counts from spans read batch by batch (a file each), in time order.

    A trace is assembled once `settle` batches in a row have brought none of its spans, so
    only the spans of the last few batches are held at a time. With traces that lie within
    `settle` batches the windows equal those of one batch of all the spans.

    With `file_seconds`, each batch is the file of one period of that length (a minute file of
    the HH_MM_trace.csv layout), which covers the time from its first span end to its last, and
    at least `file_seconds` from its first. Windows that the files cover less than half of are
    dropped with a warning (`_drop_uncovered`). Without, the recording covers the time from its
    first span end to its last, so only its two edge windows can be dropped (`_drop_edges`).
    `file_minutes` (with `file_seconds`), the minute of the day each file's name says (HH_MM),
    makes each file cover that minute too: a quiet minute's first span may end late in it, and
    a file without spans is a minute without calls, an idle window, not a missing one.

    A trace whose spans do not say how it was sampled stands for 1 / `sampling_ratio` traces.
    `tally`, where given, counts what the spans met (`Tally`): the import's summary.
    """
    _check_width(window_seconds)
    unsaid = check_sampling_ratio(sampling_ratio)
    counts: Counts = {}
    durations: Durations = {}
    pending = SpanColumns.empty()
    # trace -> (the last batch with a span of it, its last span end), the least recent first
    open_traces: dict[str, tuple[int, int]] = {}
    closed_at: dict[str, int] = {}  # recently closed trace -> the newest span end then
    split: set[str] = set()  # traces a later span of which came after they were closed
    newest = -1  # the latest span end so far
    covers: list[tuple[int, int]] = []  # with file_seconds: the time each batch covers
    span: list[int] = []  # without: the first and last span end of the recording
    tally = Tally() if tally is None else tally
    routes = Routes()  # what earlier files showed of gateways
    named: list[tuple[int, bool]] = []  # with file_minutes: (minute of day, file has spans)
    anchors: list[int] = []  # the ns each file with spans says its minute starts
    agree = 0  # files whose spans end around the minute their name says
    marker: str | None = None  # a parent id many top spans share: a root marker not known?
    looked = False  # for it, in the first batch with spans
    for number, batch in enumerate(batches):
        batch = batch.resolved(unsaid)
        tally.spans += len(batch)
        minute = file_minutes[number] if file_minutes and number < len(file_minutes) else None
        if file_seconds and minute is not None:  # None: an unreadable file, no minute of its own
            named.append((minute, bool(len(batch))))
            if len(batch):
                middle = statistics.median_low(batch.end_ns)
                anchors.append(_minute_near(minute, middle))
                agree += abs(anchors[-1] + MINUTE_NS // 2 - middle) <= MINUTE_NS
        if file_seconds and len(batch):
            first = min(batch.end_ns)
            covers.append((first, max(max(batch.end_ns), first + file_seconds * NS_PER_S)))
        elif len(batch):
            ends = [min(batch.end_ns), max(batch.end_ns)]
            span = [min(span[0], ends[0]), max(span[1], ends[1])] if span else ends
        if not looked and len(batch):
            marker, looked = _common_lost_parent(batch), True
        pending.extend(batch)
        for trace_id, end in zip(batch.trace_ids, batch.end_ns, strict=True):
            seen = open_traces.pop(trace_id, None)
            open_traces[trace_id] = (number, end if seen is None else max(end, seen[1]))
            if seen is None and trace_id in closed_at:
                split.add(trace_id)
        if len(batch):
            newest = max(newest, max(batch.end_ns))
        closed = _settled(open_traces, number - settle, newest - SETTLE_SECONDS * NS_PER_S)
        if not closed:
            continue
        done = [i for i, t in enumerate(pending.trace_ids) if t in closed]
        open_ = [i for i, t in enumerate(pending.trace_ids) if t not in closed]
        trees = assemble_columns(pending.take(done), fold_gateway, routes, tally)
        _count(trees, counts, durations, window_seconds, tally)
        pending = pending.take(open_)
        closed_at.update(dict.fromkeys(closed, newest))
        _forget_before(closed_at, newest - SPLIT_MEMORY_SECONDS * NS_PER_S)
    trees = assemble_columns(pending, fold_gateway, routes, tally)
    _count(trees, counts, durations, window_seconds, tally)
    _warn_too_deep(tally.too_deep)
    _warn_split(len(split), settle)
    _warn_conflicts(tally.conflicts)
    _warn_lost_api(tally.lost_api)
    _warn_rootless(tally, marker)
    if anchors and agree >= NAMES_AGREE * len(anchors):  # names in another time zone: unused
        by_name = _name_covers(named, anchors)
        _drop_uncovered(counts, covers + by_name, window_seconds)
        _add_idle(counts, by_name, window_seconds)
    elif covers:
        _drop_uncovered(counts, covers, window_seconds)
    elif span:
        _drop_edges(counts, span[0], span[1], window_seconds)
    return _windows(counts, durations, window_seconds)


def _settled(open_traces: dict[str, tuple[int, int]], batch: int, end: int) -> set[str]:
    """Remove and return the open traces, oldest first, last seen at `batch` or before and
    ending at `end` or before; the first that is not stops the search (it closes later, with
    whatever came after it)."""
    closed = set()
    for trace_id, (seen, last) in open_traces.items():
        if seen > batch or last > end:
            break
        closed.add(trace_id)
    for trace_id in closed:
        del open_traces[trace_id]
    return closed


def _forget_before(closed_at: dict[str, int], end: int) -> None:
    """Drop the closed traces (oldest first) closed when the files had reached `end` or before."""
    old = []
    for trace_id, when in closed_at.items():
        if when > end:
            break
        old.append(trace_id)
    for trace_id in old:
        del closed_at[trace_id]


def _common_lost_parent(batch: SpanColumns) -> str | None:
    """A parent id that no span of the batch has and several traces' spans name: a mark of
    roots ('-', 'nil') that `no_parent` of the importers does not know; None if none is."""
    ids = set(batch.span_ids)
    traces: dict[str, set[str]] = {}
    for trace_id, parent in zip(batch.trace_ids, batch.parent_ids, strict=True):
        if parent is not None and parent not in ids:
            traces.setdefault(parent, set()).add(trace_id)
    if not traces:
        return None
    parent, of = max(traces.items(), key=lambda item: len(item[1]))
    return parent if len(of) >= 3 else None


def _warn_split(traces: int, settle: int) -> None:
    if traces:
        warnings.warn(
            DataWarning(
                f"{count_of(traces, 'trace')} had spans in files more than {settle} files and "
                f"{SETTLE_SECONDS} s apart, and were counted in parts: a part after the first "
                "is no request, its paths start at <unknown> (files that hold whole traces "
                "keep them whole)"
            ),
            stacklevel=3,
        )


def _warn_conflicts(spans: int) -> None:
    if spans:
        warnings.warn(
            DataWarning(
                f"{count_of(spans, 'span')} of a trace and span id seen before, but of another "
                "operation or parent, left out (the first kept): ids that collide, as a "
                "generator of too few bits makes them?"
            ),
            stacklevel=3,
        )


def _warn_lost_api(requests: int) -> None:
    if requests:
        warnings.warn(
            DataWarning(
                f"{count_of(requests, 'request')} below a catch-all gateway lost the span of "
                f"their API (sampled away, dropped): their other spans count below a "
                f"[gateway, {LOST_API!r}] step, as no API call and without API latency"
            ),
            stacklevel=3,
        )


ROOTED_SHARE = 0.5
"""Share of call trees, under which most lacking their root span is worth a warning."""


def _warn_rootless(tally: Tally, marker: str | None) -> None:
    if tally.trees < 10 or tally.rooted >= ROOTED_SHARE * tally.trees:
        return
    hint = (
        f"; many name the parent {marker!r}, which no span has: a mark of roots?" if marker else ""
    )
    warnings.warn(
        DataWarning(
            f"{tally.trees - tally.rooted} of {count_of(tally.trees, 'call tree')} lack their "
            "root span (a span without a parent: an empty, 0, 'root' or '-' parent id), so no "
            f"request latency is known of them{hint}"
        ),
        stacklevel=3,
    )


DAY_NS = 86400 * NS_PER_S
MINUTE_NS = 60 * NS_PER_S
NAMES_AGREE = 0.9
"""Share of minute files with spans whose spans must end around the minute their name says
(in UTC) for the names to be read: otherwise the names keep another clock."""


def _minute_near(minute_of_day: int, t: int) -> int:
    """The start (ns) of the day's minute `minute_of_day` on the day nearest to `t`, so that
    `t` falls in or next to it (a file's spans straddle midnight at most by a minute)."""
    day = t // DAY_NS * DAY_NS + minute_of_day * MINUTE_NS
    return min((day - DAY_NS, day, day + DAY_NS), key=lambda m: abs(m + MINUTE_NS // 2 - t))


def _name_covers(named: list[tuple[int, bool]], anchors: list[int]) -> list[tuple[int, int]]:
    """The minute each named file's name says, from its start to its end (a file without spans
    on the day that puts it nearest to a file with spans: files recorded days apart, batches of
    one benchmark, leave the days between them a gap, where no idle minute is made up)."""
    ordered = sorted(anchors)
    first, last = ordered[0], ordered[-1]
    middle = (first + last) // 2
    out = []
    it = iter(anchors)
    for minute, has_spans in named:
        if has_spans:
            start = next(it)
        else:
            near = _minute_near(minute, first)
            days = range(near - DAY_NS, last + 2 * DAY_NS, DAY_NS)
            start = min(days, key=lambda m: (_distance(m, ordered), abs(m - middle)))
        out.append((start, start + MINUTE_NS))
    return out


def _distance(start: int, ordered: list[int]) -> int:
    """Nanoseconds from the minute at `start` to the nearest of the sorted minute starts."""
    at = bisect.bisect_left(ordered, start)
    return min(abs(ordered[k] - start) for k in (at - 1, at) if 0 <= k < len(ordered))


def _add_idle(counts: Counts, by_name: list[tuple[int, int]], window_seconds: int) -> None:
    """Windows without calls where the files' names cover COVERED of a window but no trace's
    root ended in it (a file without spans, or whose few traces ended in the minute before):
    an idle minute is traffic of 0, known. Only names say so: the time a file's spans cover
    (see `windows_of_batches`) is a guess at its minute, good enough to keep a window with
    calls, not to claim one had none."""
    width = window_seconds * NS_PER_S
    merged = _merged(by_name)
    first, last = merged[0][0], merged[-1][1]
    for key in range(first // width, (last - 1) // width + 1):
        if key not in counts and _covered(key, width, merged) >= COVERED * width:
            counts[key] = {}


def _merged(covers: list[tuple[int, int]]) -> list[list[int]]:
    """The union of time ranges, as disjoint ranges in time order."""
    merged: list[list[int]] = []
    for first, last in sorted(covers):
        if merged and first <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return merged


def _covered(key: int, width: int, merged: list[list[int]]) -> int:
    """Nanoseconds of window `key` that disjoint ranges (`_merged`) cover."""
    start, end = key * width, (key + 1) * width
    return sum(max(0, min(end, b) - max(start, a)) for a, b in merged)


EDGE_MIN_WINDOWS = 3
"""Windows a recording without minute files must span for its edge windows to be dropped."""


def _drop_edges(counts: Counts, first: int, last: int, window_seconds: int) -> None:
    """Drop, with a warning, an edge window that the recording (its first span end to its last)
    covers less than COVERED of and whose API calls (root spans; all calls where the trees have
    no roots) are fewer than COVERED of the other windows' median: the recording started or
    stopped in its middle, so it holds part of the window's traffic while its metrics cover all
    of it. A recording's first window also holds the rootless remains of traces that began
    before it, many calls for few requests, so its requests are what is compared. Sparse
    traffic (a few calls in every window) keeps its edges, and so does a recording of fewer than
    EDGE_MIN_WINDOWS windows."""
    if len(counts) < EDGE_MIN_WINDOWS:
        return
    width = window_seconds * NS_PER_S
    totals = {key: sum(n for p, n in calls.items() if len(p) == 1) for key, calls in counts.items()}
    if not any(totals.values()):
        totals = {key: sum(calls.values()) for key, calls in counts.items()}
    head, tail = min(counts), max(counts)
    edges = {head: (head + 1) * width - first, tail: last - tail * width}
    typical = statistics.median(n for key, n in totals.items() if key not in edges)
    dropped = [
        key
        for key, covered in edges.items()
        if covered < COVERED * width and totals[key] < COVERED * typical
    ]
    for key in dropped:
        del counts[key]
    if dropped:
        warnings.warn(
            DataWarning(
                f"{count_of(len(dropped), 'edge window')} dropped that the recording starts or "
                f"stops in the middle of (part of its traffic): starts "
                f"{first_few([str(k * window_seconds) for k in sorted(dropped)])}"
            ),
            stacklevel=3,
        )


COVERED = 0.5
"""Share of a window that the files must cover for the window to be kept."""


def _drop_uncovered(counts: Counts, covers: list[tuple[int, int]], window_seconds: int) -> None:
    """Drop, with a warning, the windows that the files cover less than COVERED of: the minutes
    of a missing file, and the minute before the first file or after the last, whose few traces
    are those that straddle a neighbouring file, not the minute's traffic."""
    merged = _merged(covers)
    width = window_seconds * NS_PER_S
    dropped = []
    requests = 0.0  # root spans of the windows dropped
    for key in list(counts):
        if _covered(key, width, merged) < COVERED * width:
            dropped.append(key)
            requests += sum(n for path, n in counts.pop(key).items() if len(path) == 1)
    if dropped:
        shown = first_few([str(k * window_seconds) for k in sorted(dropped)])
        warnings.warn(
            DataWarning(
                f"{count_of(len(dropped), 'window')} dropped that the files' minutes cover less "
                f"than half of (a missing file, or the recording's edge), with the {round(requests):,} "
                f"requests whose root span ended there: starts {shown}"
            ),
            stacklevel=2,
        )


def windows_from_spans(
    spans: Iterable[Span] | SpanColumns, window_seconds: int = 60, fold_gateway: bool = True
) -> list[Window]:
    """Windows of call-path counts from a batch of spans."""
    cols = spans if isinstance(spans, SpanColumns) else columns_of(spans)
    return bucket(assemble_columns(cols, fold_gateway), window_seconds)


def paths_of(trees: Sequence[TracePaths]) -> list[CallPath]:
    """Every path of a list of trees, in order (handy for tests and inspection)."""
    return [p for t in trees for p in t.paths]

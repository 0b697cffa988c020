"""Trace assembly across requests and out of order, and counting paths into time windows."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence

from estimator.spans import (
    NS_PER_S,
    Routes,
    SpanColumns,
    TracePaths,
    assemble_columns,
    latency_of,
    record_latency,
)
from estimator.windows import CallPath, Pair, Window, api_counts
from exporter.receiver import SpanRecord
from exporter.store import OpenTrace, OpenWindow, SpanRow

MAX_API_LABELS = 1000
"""Distinct APIs `deeprest_api_calls_total` counts by name; the calls of any further ones count
under OTHER_API."""
OTHER_API: Pair = ("", "other")
"""Counter key of the APIs past MAX_API_LABELS (label `api=":other"`)."""


class _Trace:
    __slots__ = ("last_seen", "spans")

    def __init__(self) -> None:
        self.spans: dict[bytes, SpanRow] = {}
        self.last_seen = 0.0


MAX_TRACE_AGE = 600.0
"""Seconds a trace stays open at most from its first span, whatever the grace: a trace whose
spans never stop (one trace id a misconfigured client gives every request, a session traced as
one request) would otherwise hold its spans for ever, and fill the span buffer until every
client is refused. Its later spans start it anew, counted as a split trace."""


def trace_trees(spans: dict[bytes, SpanRow], routes: Routes | None = None) -> list[TracePaths]:
    """The call trees of one trace, with their root's end time and duration.

    Assembled by `estimator.spans`, exactly as the importers do (orphans, cycles, gateway
    folding), so live windows hold the same paths (and latency) as imported training windows.
    """
    cols = SpanColumns.empty()
    weights = [span[5] for span in spans.values()]
    if any(w != 1.0 for w in weights):
        cols.weights = weights
    for sid, (parent, component, operation, end, start, _) in spans.items():
        cols.trace_ids.append("")
        cols.span_ids.append(sid.hex())
        cols.parent_ids.append(parent.hex() if parent else None)
        cols.pairs.append((component, operation))
        cols.end_ns.append(end)
        cols.start_ns.append(start)
    return list(assemble_columns(cols, routes=routes))


def trace_paths(spans: dict[bytes, SpanRow]) -> list[tuple[int, CallPath]]:
    """(root end ns, root-to-span path) of every span of one trace."""
    return [(tree.end_ns, path) for tree in trace_trees(spans) for path in tree.paths]


HORIZON = 1000
"""Windows ahead of the clock a trace may end in: one further ahead is counted `late` (its
client's clock is off), so that no such clock opens windows without end."""

RECENTLY_CLOSED = 100_000
"""Trace IDs the assembler remembers after closing them, to notice a trace split in two."""


class TraceAssembler:
    """Buffers spans per trace; a trace closes `grace` seconds after its last span arrived.

    A span arriving for a trace already closed starts the trace anew, counted in `split_traces`:
    a request that ran longer than the grace (its root span is exported when it ends, its
    children's long before), or a client that exports over the grace late. The two parts are
    counted as separate trees, the earlier one without its root."""

    def __init__(self, grace: float, max_pending: int) -> None:
        self.grace = grace
        self.max_pending = max_pending
        self._traces: OrderedDict[bytes, _Trace] = OrderedDict()  # by last span, oldest first
        self._opened: OrderedDict[bytes, float] = OrderedDict()  # when each opened, oldest first
        self._closed: OrderedDict[bytes, None] = OrderedDict()  # the last RECENTLY_CLOSED
        self._pending = 0
        self.split_traces = 0
        self.hold_until = -math.inf  # no trace closes before (a restart's catch-up)
        self.routes = Routes()  # what closed traces showed of gateways, for those that lost spans
        self.stopped = False  # set by `stop`: nothing more is buffered
        self._lock = threading.Lock()

    @property
    def pending_spans(self) -> int:
        return self._pending

    def add(self, spans: list[SpanRecord], now: float) -> bool:
        """Buffer spans; False (nothing buffered) when they would overflow the pending limit, or
        once `stop` was called."""
        with self._lock:
            if self.stopped or self._pending + len(spans) > self.max_pending:
                return False
            traces = self._traces
            last_tid = b""
            trace = _Trace()
            for tid, sid, parent, component, operation, end, start, weight in spans:
                if tid != last_tid:
                    found = traces.get(tid)
                    if found is None:
                        trace = traces[tid] = _Trace()
                        self._opened[tid] = now
                        if tid in self._closed:
                            del self._closed[tid]
                            self.split_traces += 1
                    else:
                        trace = found
                        traces.move_to_end(tid)
                    trace.last_seen = now
                    last_tid = tid
                before = len(trace.spans)
                trace.spans[sid] = (parent, component, operation, end, start, weight)
                self._pending += len(trace.spans) - before
            return True

    def stop(self) -> None:
        """Buffer nothing more: what a stopping exporter keeps is taken after this, so a span
        acknowledged later would be lost (its request is refused instead, and retried)."""
        with self._lock:
            self.stopped = True

    def _close(self, tid: bytes) -> dict[bytes, SpanRow]:
        """Take a trace out of the buffer (under the lock); its spans."""
        trace = self._traces.pop(tid)
        del self._opened[tid]
        self._pending -= len(trace.spans)
        self._closed[tid] = None
        return trace.spans

    def open_traces(self) -> dict[bytes, OpenTrace]:
        """The spans of every trace not closed yet: what a stopping exporter keeps."""
        with self._lock:
            return {tid: dict(trace.spans) for tid, trace in self._traces.items()}

    def resume(self, traces: Mapping[bytes, OpenTrace], now: float) -> None:
        """Buffer again the traces a stopped exporter kept, as if their spans arrived `now`."""
        with self._lock:
            for tid, spans in traces.items():
                trace = self._traces.setdefault(tid, _Trace())
                self._opened.setdefault(tid, now)
                before = len(trace.spans)
                trace.spans.update(spans)
                trace.last_seen = now
                self._pending += len(trace.spans) - before

    def expire(self, now: float) -> list[list[TracePaths]]:
        """Close the traces quiet for `grace` seconds, and those open for MAX_TRACE_AGE (none
        before `hold_until`); the call trees of each."""
        closed: list[dict[bytes, SpanRow]] = []
        if now < self.hold_until:
            return []
        with self._lock:
            traces, opened = self._traces, self._opened
            while traces:
                tid, trace = next(iter(traces.items()))
                if trace.last_seen + self.grace > now:
                    break
                closed.append(self._close(tid))
            while opened:
                tid, since = next(iter(opened.items()))
                if since + MAX_TRACE_AGE > now:
                    break
                closed.append(self._close(tid))
            while len(self._closed) > RECENTLY_CLOSED:
                self._closed.popitem(last=False)
        return [trace_trees(spans, self.routes) for spans in closed]


class WindowAggregator:
    """Counts paths into fixed windows aligned on multiples of `window` seconds."""

    def __init__(
        self,
        window: float,
        delay: float,
        now: float,
        after: float | None = None,
        resumed: Sequence[OpenWindow] = (),
        hold_until: float = -math.inf,
        restarted: bool = False,
    ) -> None:
        """`after`: end of the newest window already stored; `resumed`: the windows a stopped
        exporter left open (`open_windows`), reopened so that what they hold is not lost and
        their late spans still count. The windows between the newest of them and `now` passed
        while nothing listened: each is closed only if spans for it arrive (a client's retries),
        since an empty one would claim there was no traffic. No window closes before
        `hold_until` (a restart's catch-up: clients retry what failed while it was down). A
        `restarted` exporter with nothing to resume (killed before its first checkpoint, or
        after the windows of its last one were stored) treats the windows since the newest
        stored one alike, so that the retries of the window it was killed in are not late."""
        self.window = window
        self.delay = delay
        self.hold_until = hold_until
        current = math.floor(now / window)
        if after is not None:
            previous = math.floor(after / window) - 1
        elif resumed:  # nothing stored yet: every window the stop kept is still open
            previous = min(min(self._index(w.start) for w, _ in resumed), current) - 1
        else:
            previous = current - 1
        self._closed = max(previous, current - 1)  # index of the newest closed window
        self._open: dict[int, Window] = {}
        self._durations: dict[int, dict[Pair, list[float]]] = {}  # seconds, per window and API
        self._unheard = range(0)  # windows that passed while the exporter was down
        kept = sorted(
            (
                (self._index(w.start), w, d)
                for w, d in resumed
                if self._index(w.start) > previous and math.isclose(w.end - w.start, window)
            ),
            key=lambda item: item[0],
        )
        for k, w, durations in kept:
            self._open[k] = w
            self._durations[k] = {api: list(d) for api, d in durations.items()}
        # windows ahead of the clock (a client's clock off) say nothing of the downtime
        past = [k for k, _, _ in kept if k <= current]
        if past:
            self._closed = max(previous, min(self._closed, past[0] - 1))
            self._unheard = range(past[-1] + 1, current)
        elif restarted and after is not None and previous < current - 1:
            self._closed = previous
            self._unheard = range(previous + 1, current)
        self._api_calls: dict[Pair, float] = {}
        self.reserved: frozenset[Pair] = frozenset()  # APIs counted under their name always
        self.late_paths = 0
        self.too_deep_spans = 0
        self._lock = threading.Lock()

    def _index(self, seconds: float) -> int:
        return math.floor(seconds / self.window)

    def add_paths(self, paths: Iterable[tuple[int, CallPath]], now: float) -> int:
        """Count paths into the window of their root's end; returns how many were too late."""
        return self.add_trees([TracePaths(end, [path]) for end, path in paths], now)

    def add_trees(self, trees: Iterable[TracePaths], now: float) -> int:
        """Count each tree's paths (and its API's latency, where known) into the window of its
        root's end; returns how many paths were too late. Only a true root's paths count as API
        calls, and the spans left out below the depth cap are counted in `too_deep_spans`."""
        late = 0
        horizon = self._index(now) + HORIZON
        with self._lock:
            for tree in trees:
                self.too_deep_spans += tree.too_deep
                k = self._index(tree.end_ns / NS_PER_S)
                if k <= self._closed or k > horizon:
                    late += len(tree.paths)
                    continue
                window = self._open.get(k)
                if window is None:
                    window = self._open[k] = Window(k * self.window, (k + 1) * self.window)
                weight = tree.weight  # the requests a sampled trace stands for
                for path in tree.paths:
                    window.calls[path] = window.calls.get(path, 0.0) + weight
                    if len(path) <= 2 and tree.rooted:  # an orphan's root is no API call
                        for api, n in api_counts({path: weight}).items():
                            self._count_api(api, n)
                record_latency(tree, self._durations.setdefault(k, {}))
            self.late_paths += late
        return late

    def reach(self, now: float) -> tuple[float, float]:
        """Seconds between which a root's end lands in a window at `now`: the start of the
        oldest window still open, and the end of the one HORIZON windows ahead."""
        with self._lock:
            return (self._closed + 1) * self.window, (self._index(now) + HORIZON + 1) * self.window

    def rejected(self) -> dict[str, int]:
        """Spans refused once their trace was assembled, by reason (see receiver.REASONS)."""
        with self._lock:
            return {"late": self.late_paths, "too_deep": self.too_deep_spans}

    def count_calls(self, calls: dict[CallPath, float]) -> None:
        """Count API calls of traffic that did not come from traces (PromQL traffic)."""
        with self._lock:
            for api, n in api_counts(calls).items():
                self._count_api(api, n)

    def _count_api(self, api: Pair, n: float) -> None:
        """Add to an API's counter; past MAX_API_LABELS distinct APIs, new ones add to OTHER_API
        (spans named by raw URL would otherwise make a series each, for ever), except the
        `reserved` ones (the serving model's APIs: a flood of others must not hide them)."""
        if (
            api not in self._api_calls
            and api not in self.reserved
            and len(self._api_calls) >= MAX_API_LABELS
        ):
            api = OTHER_API
        self._api_calls[api] = self._api_calls.get(api, 0.0) + n

    def close(self, now: float, max_windows: int = 10000) -> list[Window]:
        """Windows whose end plus `delay` has passed (none before `hold_until`), oldest first,
        empty ones included."""
        if now < self.hold_until:
            return []
        frontier = self._index(now - self.delay) - 1
        out: list[Window] = []
        with self._lock:
            if frontier - self._closed > max_windows:  # a long gap: skip the empty past
                self._closed = frontier - max_windows
            for k in range(self._closed + 1, frontier + 1):
                if k in self._unheard and k not in self._open:
                    continue
                window = self._open.pop(k, None) or Window(k * self.window, (k + 1) * self.window)
                window.latency = latency_of(self._durations.pop(k, {}))
                out.append(window)
            self._closed = max(self._closed, frontier)
            for k in [k for k in self._open if k <= self._closed]:
                del self._open[k]
            for k in [k for k in self._durations if k <= self._closed]:
                del self._durations[k]
        return out

    def open_windows(self) -> list[OpenWindow]:
        """The windows not closed yet, with their requests' durations, oldest first: what a
        stopping exporter saves for the next one to resume."""
        with self._lock:
            return [
                (w, {api: list(d) for api, d in self._durations.get(k, {}).items()})
                for k, w in sorted(self._open.items())
                if k > self._closed
            ]

    def pending_window_end(self) -> float:
        """End of the oldest window not yet closed."""
        return (self._closed + 2) * self.window

    def api_calls(self) -> dict[Pair, float]:
        """Root API calls counted so far (the counter deeprest_api_calls_total)."""
        with self._lock:
            return dict(self._api_calls)

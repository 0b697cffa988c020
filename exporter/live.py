"""The live loop: at each window close, expected usage and band, observed usage, anomaly score."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from estimator import anomaly
from estimator.bundle import Bundle
from estimator.errors import count_of, first_few, utc_time
from estimator.features import HistoryState
from estimator.spans import NS_PER_S
from estimator.synthesizer import Synthesizer
from estimator.whatif import steady_estimates
from estimator.windows import CallPath, Pair, SeriesKey, Window, api_counts
from exporter.assembly import TraceAssembler, WindowAggregator
from exporter.config import Config, format_duration, readable_duration
from exporter.prom import PrometheusClient, PrometheusError, UsageQueries, fetch_usage
from exporter.store import OpenTrace, OpenWindow, StoreError, WindowStore

log = logging.getLogger("deeprest.live")

WARM_WINDOWS = 256
"""Stored windows replayed at least to rebuild the traffic history after a start or a reload."""
WARM_HALFLIVES = 10
"""Half-lives of the slowest traffic average replayed at least: its weight on windows before them
is then 2^-10, so estimates after a restart are those of an exporter that never stopped (with
256 windows and a 64-window half-life they were up to 0.8% off for an hour)."""


def warm_windows(bundle: Bundle) -> int:
    """Stored windows to replay into a bundle's traffic history and look-back when it starts."""
    slowest = max(bundle.vocabulary.halflives, default=0.0)
    return max(WARM_WINDOWS, bundle.model.context, math.ceil(WARM_HALFLIVES * slowest))


SPLIT_LOG_SECONDS = 600.0
"""The least time between two warnings of split traces, or of traffic queries failing."""


@dataclass(frozen=True)
class ModelInfo:
    """What the collector and /api/v1/model say about the serving bundle."""

    kind: str
    version: str
    window_seconds: float
    series: tuple[SeriesKey, ...]
    accuracy: Mapping[SeriesKey, float]
    training: Mapping[str, Any]
    drift: Mapping[SeriesKey, float] = field(default_factory=dict)
    kinds: Mapping[SeriesKey, str] = field(default_factory=dict)
    """The model kind of each series (`auto` chooses one per series)."""
    apis: tuple[str, ...] = ()
    """The APIs the model was trained on, as `component:operation` (the `api` label's form)."""


@dataclass(frozen=True)
class Snapshot:
    """The latest estimate, immutable; the collector reads only this."""

    model: ModelInfo | None = None
    window_end: float | None = None
    expected: Mapping[SeriesKey, tuple[float, float, float]] = field(default_factory=dict)
    observed: Mapping[SeriesKey, float] | None = None
    anomaly: Mapping[SeriesKey, float] | None = None
    limits: Mapping[SeriesKey, float] = field(default_factory=dict)
    up: bool | None = None  # None: the upstream was not asked yet (since the exporter started)
    unknown_share: float | None = None  # of the window's API calls, of APIs the model never saw
    estimate_seconds: float = 0.0


def _is_number(value: Any) -> bool:
    """A JSON number (an accuracy of another type in a manifest is left out, as a missing one)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validation_accuracy(validation: Mapping[str, Any], series: Sequence[SeriesKey]) -> dict:
    """Per-series accuracy from a bundle's validation record, whichever common shape it has."""
    out: dict[SeriesKey, float] = {}
    raw = validation.get("accuracy", validation.get("series"))
    if isinstance(raw, list) and raw and isinstance(raw[0], dict):
        for item in raw:
            key = (str(item.get("component")), str(item.get("resource")))
            value = item.get("accuracy")
            if isinstance(value, (int, float)):
                out[key] = float(value)
    elif isinstance(raw, list) and len(raw) == len(series):
        out.update({k: float(v) for k, v in zip(series, raw, strict=True) if _is_number(v)})
    elif isinstance(raw, dict):
        for name, value in raw.items():
            if isinstance(value, dict):
                out.update(
                    {(str(name), str(r)): float(v) for r, v in value.items() if _is_number(v)}
                )
            elif isinstance(value, (int, float)) and "/" in str(name):
                component, resource = str(name).rsplit("/", 1)
                out[(component, resource)] = float(value)
    return {k: v for k, v in out.items() if math.isfinite(v)}


def model_info(bundle: Bundle) -> ModelInfo:
    return ModelInfo(
        kind=bundle.model.kind,
        version=bundle.version,
        window_seconds=bundle.window_seconds,
        series=tuple(bundle.series),
        accuracy=validation_accuracy(bundle.validation, bundle.series),
        training=dict(bundle.training),
        drift=dict(zip(bundle.series, (float(r) for r in bundle.drift()), strict=True)),
        kinds=dict(zip(bundle.series, bundle.model.series_kinds(), strict=True)),
        apis=tuple(f"{component}:{operation}" for component, operation in bundle.vocabulary.apis),
    )


class Estimator:
    """A bundle with its running traffic history: one window in, one [series, 3] out."""

    def __init__(self, bundle: Bundle, window_seconds: float, warm: Sequence[Window] = ()) -> None:
        self.bundle = bundle
        self.info = model_info(bundle)
        self._scale = bundle.window_seconds / window_seconds  # counts per the bundle's window
        self._state: HistoryState | None = None
        self._rows: list[np.ndarray] = []
        self._lock = threading.Lock()
        if warm:
            self._advance(warm)

    def _advance(self, windows: Sequence[Window]) -> np.ndarray:
        counts = self.bundle.vocabulary.counts(windows) * self._scale
        X, self._state = self.bundle.vocabulary.transform_counts(counts, self._state)
        keep = self.bundle.model.context + 1
        self._rows = [*self._rows, *X][-keep:]
        return np.vstack(self._rows)

    def step(self, window: Window) -> np.ndarray:
        """[series, 3] lower, median, upper for the window just closed (the band widened where
        the bundle saw drift, for the time since its training end)."""
        with self._lock:
            X = self._advance([window])
            pred = np.asarray(self.bundle.model.predict_last(X))
        return self.bundle.age_band(pred[None], np.array([window.start]))[0]

    def predict_windows(self, windows: Sequence[Window], rescale: bool = True) -> np.ndarray:
        """[windows, series, 3] for hypothetical windows, as traffic that has been running
        (what-if, `estimator.whatif.steady_estimates`).

        `rescale` converts counts of the serving window length to the bundle's window length.
        """
        counts = self.bundle.vocabulary.counts(windows) * (self._scale if rescale else 1.0)
        return steady_estimates(self.bundle, counts)


def unknown_share(window: Window, known: Sequence[Pair]) -> float | None:
    """Share of a window's API calls that are of APIs the model never saw (their usage is
    estimated from its 'other' features, a guess); None without calls."""
    calls = api_counts(window.calls)
    total = sum(calls.values())
    if total <= 0:
        return None
    kept = set(known)
    return sum(n for api, n in calls.items() if api not in kept) / total


LATE_QUERY_SHARE = 0.5
"""Share of a window that one tick may spend asking Prometheus about windows already late."""

PRUNE_EVERY = 3600.0
"""Seconds of windows between two prunings of those past `retention`."""
PRUNE_NOTICE = 86400.0
"""Where a start finds more than this much of stored windows past `retention` (a data dir of a
release that kept everything, or a retention just shortened), they are deleted only this long
after the start, with a warning first, so that an upgrade does not delete training data
unannounced."""
PRUNE_FROM = "prune_from"
"""The store's note of when an announced deletion of windows past `retention` may begin."""
MAX_UNSAVED = 1440
"""Closed windows kept in memory while the store refuses them (a day of one-minute windows)."""


class LiveLoop:
    """Closes traces and windows on a clock, estimates each window, publishes a Snapshot."""

    def __init__(
        self,
        config: Config,
        store: WindowStore,
        bundle: Bundle | None = None,
        prometheus: PrometheusClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.prometheus = prometheus
        self.window = config.window_seconds
        self.queries = UsageQueries(config.prometheus, self.window)
        now = clock()
        self._start(now)
        self.estimator: Estimator | None = None
        self.synthesizer: Synthesizer | None = None
        self._scores: np.ndarray | None = None
        self._limits: dict[SeriesKey, float] = {}
        self._unobserved: frozenset[SeriesKey] = frozenset()  # last logged, to log changes only
        self.snapshot = Snapshot()
        self._tick_lock = threading.Lock()
        self._split_logged, self._split_logged_at = 0, -math.inf
        self._traffic_answered: set[Pair] = set()  # APIs whose traffic query had samples
        self._traffic_failing, self._traffic_logged_at, self._traffic_unlogged = False, 0.0, 0
        self._unsaved: list[Window] = []  # closed windows the store refused, to retry
        self._query_logged_at, self._query_unlogged = -math.inf, 0  # usage query failures
        self._pruned_at = -math.inf  # end of the newest window when old ones were last pruned
        self._prune_from = self._announce_pruning(clock())  # no pruning before this time
        self._checkpointed_at = clock()  # when the open windows and traces were last saved
        if bundle is not None:
            self.load(bundle)

    def load(self, bundle: Bundle) -> None:
        """Serve a bundle (start or hot reload), replaying stored windows into its history."""
        if abs(bundle.window_seconds - self.window) > 1e-9:
            log.warning(
                "window %gs differs from the bundle's %gs; counts are rescaled to the bundle's "
                "window",
                self.window,
                bundle.window_seconds,
            )
        unknown = sorted(set(self.config.limits) - set(bundle.series))
        if unknown:  # `deeprest whatif --limits` refuses them; here the rest still serve
            log.warning(
                "limits of %s the model does not estimate are not used: %s (its components: %s)",
                count_of(len(unknown), "series"),
                first_few([f"{c}/{r}" for c, r in unknown]),
                first_few(sorted({c for c, _ in bundle.series}), 8),
            )
        estimator = Estimator(bundle, self.window, self.store.recent(warm_windows(bundle)))
        synthesizer = Synthesizer.from_json(bundle.synthesizer)
        self.aggregator.reserved = frozenset(bundle.vocabulary.apis)
        with self._tick_lock:
            previous = self.estimator
            self.estimator = estimator
            self.synthesizer = synthesizer
            if previous is None or list(previous.info.series) != list(estimator.info.series):
                self._scores = None  # the smoothing state is per series, in their order
            # The last estimates stay published until the new model's first window closes: a
            # reload must not make every series vanish (and firing alerts resolve) for a window.
            self.snapshot = replace(
                self.snapshot, model=estimator.info, limits=self._config_limits(bundle)
            )

    def _config_limits(self, bundle: Bundle) -> dict[SeriesKey, float]:
        return {k: v for k, v in self.config.limits.items() if k in set(bundle.series)}

    def tick(self, now: float | None = None) -> list[Window]:
        """Close what is due at `now` (default: the clock); returns the windows closed."""
        now = self.clock() if now is None else now
        with self._tick_lock:
            for trees in self.assembler.expire(now):
                self.aggregator.add_trees(trees, now)
            windows = self.aggregator.close(now)
            self._note_split(now)
            late = 0
            budget = time.monotonic() + LATE_QUERY_SHARE * self.window
            for window in windows:
                # A window due over a window ago (a restart's catch-up, a slow tick) still asks
                # Prometheus while it answers and while this tick has spent under its share of
                # a window asking; past that it is estimated without asking: a slow or hung
                # upstream must not hold the estimates back ever further.
                due = window.end + self.aggregator.delay
                behind = max(now, self.clock()) - due > self.window
                ask = not behind or (self.snapshot.up is not False and time.monotonic() < budget)
                late += not ask
                self._close_window(window, query=ask)
            if late and self.config.traffic_source == "prometheus":
                log.warning(
                    "%s late: neither stored nor estimated (their traffic comes from Prometheus, "
                    "which a window this late is not asked)",
                    count_of(late, "window"),
                )
            elif late and self.prometheus is not None:
                log.warning(
                    "%s late: estimated without asking Prometheus", count_of(late, "window")
                )
            every = self.config.receiver.checkpoint
            if every and now - self._checkpointed_at >= every:
                self._checkpointed_at = now
                self._save_open()
        return windows

    def _save_open(self) -> None:
        """A checkpoint (under the tick lock): the open windows and traces, as a stop saves them,
        so that a killed process loses only what came since."""
        try:
            self.store.save_open(self.aggregator.open_windows(), self.assembler.open_traces())
        except StoreError as exc:
            log.error("%s", exc)

    def _query(self, series: list[SeriesKey], at: float, limits: bool) -> dict | None:
        if self.prometheus is None:
            return None
        try:
            found = fetch_usage(self.prometheus, self.queries, series, at, limits)
        except PrometheusError as exc:
            self._note_query_failed("Prometheus query failed", exc)
            return None
        self._note_query_answered()
        return found

    def _answers(self, at: float) -> bool:
        """Whether the upstream Prometheus answers, asked cheaply (used while no model is loaded)."""
        if self.prometheus is None:
            return False
        try:
            self.prometheus.query("vector(1)", at)
        except PrometheusError as exc:
            self._note_query_failed("Prometheus does not answer", exc)
            return False
        self._note_query_answered()
        return True

    def _note_query_failed(self, what: str, exc: PrometheusError) -> None:
        """Warn that Prometheus failed, at once, then at most every SPLIT_LOG_SECONDS while it
        goes on, with or without a model (deeprest_up says it at once)."""
        now = time.monotonic()
        if now - self._query_logged_at < SPLIT_LOG_SECONDS:
            self._query_unlogged += 1
            return
        since = (
            f" ({count_of(self._query_unlogged, 'more failure')} since the last warning)"
            if self._query_unlogged
            else ""
        )
        log.warning("%s%s: %s", what, since, exc)
        self._query_logged_at, self._query_unlogged = now, 0

    def _note_query_answered(self) -> None:
        """Say once that Prometheus answers again after a failure was warned of."""
        if self._query_logged_at > -math.inf:
            log.info("Prometheus answers again")
            self._query_logged_at, self._query_unlogged = -math.inf, 0

    def _traffic(self, window: Window) -> bool:
        """Fill a window's calls from PromQL when traffic comes from Prometheus; False if any
        API's traffic is unknown (its query failed): the window's traffic is then not known,
        though the calls of the APIs that answered are counted."""
        if self.config.traffic_source != "prometheus":
            return True
        if self.prometheus is None:
            return False
        counts: dict[Pair, float] = {}
        failed = []
        empty = []  # APIs that had samples before and have none now
        for api in self.config.traffic_apis:
            key = (api.component, api.operation)
            try:
                samples = self.prometheus.query(api.expr, window.end)
            except PrometheusError as exc:
                failed.append(f"{api.component}:{api.operation} ({api.expr}): {exc}")
                continue
            if samples:
                self._traffic_answered.add(key)
            elif key in self._traffic_answered:
                empty.append(f"{api.component}:{api.operation} ({api.expr}): no samples")
            counts[key] = sum(v for _, v in samples) * self.window
        if empty and len(empty) == len(self._traffic_answered) and not any(counts.values()):
            # every query that had samples before has none: Prometheus holds no data for this
            # time (it was down or paused then), not zero calls. One series gone while others
            # answer is an API no longer called (a restarted pod's counter, a retired endpoint).
            failed += empty
        self.aggregator.count_calls({(api,): n for api, n in counts.items()})
        if failed:
            self._note_traffic_failed(window, failed)
            return False
        if self._traffic_failing:
            log.info("traffic queries answer again: windows are stored and estimated")
            self._traffic_failing = False
        window.calls.update(self._paths_of(counts, window))
        return True

    def _note_traffic_failed(self, window: Window, failed: list[str]) -> None:
        """Warn that a window's traffic is not known: at once when it starts, then at most every
        SPLIT_LOG_SECONDS while it goes on (a bad expression fails every window)."""
        now = self.clock()
        if self._traffic_failing and now - self._traffic_logged_at < SPLIT_LOG_SECONDS:
            self._traffic_unlogged += 1
            return
        since = f" ({count_of(self._traffic_unlogged, 'window')} more since the last warning)"
        log.warning(
            "traffic query of %s failed, so the window ending at %s is neither stored nor "
            "estimated (its traffic is not known)%s: %s",
            count_of(len(failed), "API"),
            utc_time(window.end),
            since if self._traffic_unlogged else "",
            "; ".join(failed[:3]),
        )
        self._traffic_failing, self._traffic_logged_at, self._traffic_unlogged = True, now, 0

    def _paths_of(self, counts: Mapping[Pair, float], window: Window) -> dict[CallPath, float]:
        """Call-path counts of per-API calls, as the model saw them in training: each API's
        expected paths per call (the bundle's synthesizer, as what-if does). An API the bundle
        never saw, or no bundle, keeps its root alone."""
        synthesizer = self.synthesizer if self.estimator is not None else None
        known = {a: n for a, n in counts.items() if synthesizer and a in synthesizer.mean}
        out: dict[CallPath, float] = {(a,): n for a, n in counts.items() if a not in known}
        if synthesizer is not None and known:
            (expanded,) = synthesizer.windows([known], [window.start], self.window)
            out.update(expanded.calls)
        return out

    def _close_window(self, window: Window, query: bool = True) -> None:
        """Estimate a closed window and store it; with `query`, also read its traffic (if from
        Prometheus), actual usage and limits."""
        estimator = self.estimator
        known_traffic = (
            self._traffic(window) if query else self.config.traffic_source != "prometheus"
        )
        series = list(estimator.info.series) if estimator else []
        observed = self._query(series, window.end, limits=False) if series and query else None
        if not query or self.prometheus is None:  # not asked: what it said last still holds
            up = self.snapshot.up  # (None, absent, where no Prometheus is configured)
        else:
            up = observed is not None if series else self._answers(window.end)
        if observed is not None:
            window.metrics.update(observed)
        if known_traffic:  # a window of unknown traffic stored empty would claim there was none
            self._put(window)
        if estimator is None or not known_traffic:
            self.snapshot = Snapshot(model=self.snapshot.model, limits=self.snapshot.limits, up=up)
            return
        started = time.perf_counter()
        pred = estimator.step(window)
        expected = {
            key: (float(a), float(b), float(c)) for key, (a, b, c) in zip(series, pred, strict=True)
        }
        scores = None
        if observed is not None:
            actual = np.array([observed.get(key, np.nan) for key in series])
            self._scores = anomaly.smooth(
                self._scores,
                anomaly.excess(actual, pred[:, 0], pred[:, 2], anomaly.floors(series)),
                self.config.smoothing_windows,
            )  # fmt: skip
            scores = {
                k: float(s) for k, s in zip(series, self._scores, strict=True) if not math.isnan(s)
            }
            observed = {k: observed[k] for k in series if k in observed}
            self._note_unobserved(frozenset(series) - set(observed))
            limits = self._query(series, window.end, limits=True)
            if limits is not None:
                self._limits = {**limits, **self._config_limits(estimator.bundle)}
        elapsed = time.perf_counter() - started
        self.snapshot = Snapshot(
            model=estimator.info,
            window_end=window.end,
            unknown_share=unknown_share(window, estimator.bundle.vocabulary.apis),
            expected=expected,
            observed=observed,
            anomaly=scores,
            limits=self._limits or self._config_limits(estimator.bundle),
            up=up,
            estimate_seconds=elapsed,
        )

    def _note_split(self, now: float) -> None:
        """Warn, at most every SPLIT_LOG_SECONDS, that traces were split since the last warning."""
        split = self.assembler.split_traces
        if split > self._split_logged and now - self._split_logged_at >= SPLIT_LOG_SECONDS:
            log.warning(
                "%s got spans after they closed (%d in all): requests longer than "
                "trace_grace (%gs) or exports later than it are counted as two trees, the "
                "earlier without its root; raise trace_grace",
                count_of(split - self._split_logged, "trace"),
                split,
                self.config.grace,
            )
            self._split_logged, self._split_logged_at = split, now

    def _note_unobserved(self, missing: frozenset[SeriesKey]) -> None:
        """Log, when it changes, which series Prometheus holds no actual usage for: their anomaly
        scores and alerts are blind (a container named otherwise than the traced service)."""
        if missing == self._unobserved:
            return
        self._unobserved = missing
        if missing:
            shown = ", ".join(f"{c}/{r}" for c, r in sorted(missing)[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            log.warning(
                "Prometheus holds no actual usage for %d of the model's series (%s%s): no anomaly "
                "score for them; check the usage queries and component_rename%s",
                len(missing),
                shown,
                more,
                self._range_hint({r for _, r in missing}),
            )
        else:
            log.info("Prometheus holds actual usage for every series again")

    def _range_hint(self, resources: set[str]) -> str:
        """Where the usage queries of these resources read a range, that a rate() over it
        needs two scrapes within it (a 5s window under a 5s scrape interval reads nothing)."""
        ranged = self.queries.ranged(resources)
        if not ranged:
            return ""
        return (
            f", and the range of the {'/'.join(ranged)} queries: they read "
            f"[{format_duration(self.queries.range_seconds)}] (the window, or "
            "prometheus.rate_range where longer), and rate() or increase() over a range needs "
            "two samples in it, so set prometheus.rate_range to at least twice, better 4 times, "
            "Prometheus's scrape interval"
        )

    def _start(self, now: float) -> None:
        """The trace assembler and window aggregator, resuming what the last stop kept.

        After a restart, what clients sent while nothing listened comes back as their retries,
        late and out of step between services: for `receiver.restart_catchup` no trace or
        window closes."""
        config, store = self.config, self.store
        resumed, traces = store.take_open(), store.take_open_traces()
        after = store.last_end()
        last = store.recent(1)
        if last and abs((last[0].end - last[0].start) - self.window) > 1e-6:
            log.warning(
                "the data dir holds windows of %gs, this run's are %gs: a training set of both "
                "is refused (train --config); give this window length its own data_dir",
                last[0].end - last[0].start,
                self.window,
            )
        counted = self._counted(traces, after)
        if counted:  # closed into windows stored after the checkpoint, before a kill
            log.info(
                "%s of the last checkpoint had closed into windows stored before the stop: "
                "not counted again",
                count_of(len(counted), "trace"),
            )
            traces = {tid: spans for tid, spans in traces.items() if tid not in counted}
        restarted = after is not None or bool(resumed) or bool(traces)
        resumed = [*resumed, *self._windows_of(traces, after, {w.start for w, _ in resumed})]
        hold = now + config.receiver.restart_catchup if restarted else -math.inf
        self.aggregator = WindowAggregator(
            self.window, 2 * config.grace, now, after, resumed, hold_until=hold, restarted=restarted
        )
        kept = {w.start for w, _ in self.aggregator.open_windows()}
        stored: list[Window] = []
        dropped: list[Window] = []
        for w, _ in resumed:
            if w.start not in kept:
                (stored if store.has(w.start) else dropped).append(w)
        behind = {id(w) for w in self._store_behind(dropped)}
        dropped = [w for w in dropped if id(w) not in behind]
        if stored:  # a checkpoint's windows that closed and were stored before a kill
            log.info(
                "%s of the last checkpoint had been stored before the stop: nothing lost",
                count_of(len(stored), "window"),
            )
        if dropped:
            log.warning(
                "%s left open by the last stop dropped, with %g API calls: of another window "
                "length than this run's %gs, or behind windows stored since by another run on "
                "this data dir",
                count_of(len(dropped), "window"),
                sum(sum(api_counts(w.calls).values()) for w in dropped),
                self.window,
            )
        if kept or traces:
            log.info(
                "resumed %s and %s left open by the last stop",
                count_of(len(kept), "window"),
                count_of(len(traces), "trace"),
            )
        self.assembler = TraceAssembler(config.grace, config.receiver.max_pending_spans)
        self.assembler.hold_until = hold
        self.assembler.resume(traces, now)
        if restarted and config.receiver.restart_catchup > 0:
            log.info(
                "restart: no trace or window closes for %gs, while clients retry what they "
                "sent during the downtime (receiver.restart_catchup)",
                config.receiver.restart_catchup,
            )

    def _store_behind(self, windows: list[Window]) -> list[Window]:
        """Store the windows a stop kept that windows stored since (by another run on this data
        dir: an older release, run in between) left behind: closed now, with the calls they
        had, where their time is free and they are of this run's length. The ones stored."""
        width, store = self.window, self.store
        behind = [
            w
            for w in windows
            if abs((w.end - w.start) - width) < 1e-6
            and w.calls
            and not store.range(w.start - width + 1e-6, w.end)
        ]
        if not behind:
            return []
        try:
            store.put(behind)
        except StoreError as exc:
            log.error("%s", exc)
            return []
        log.info(
            "stored %s left open by the last stop, behind windows another run on this data dir "
            "stored since",
            count_of(len(behind), "window"),
        )
        return behind

    def _counted(self, traces: Mapping[bytes, OpenTrace], after: float | None) -> set[bytes]:
        """Traces whose root span ends in a window stored already: a window is stored only once
        its trace grace has passed, so such a trace had closed into it (or been counted late)
        before the stop, and resuming it would count it again as `late`."""
        if after is None:
            return set()
        width, limit = self.window, after + 1e-6
        return {
            tid
            for tid, spans in traces.items()
            if any(
                not parent and (math.floor(end / NS_PER_S / width) + 1) * width <= limit
                for parent, _, _, end, _, _ in spans.values()
            )
        }

    def _windows_of(
        self, traces: Mapping[bytes, OpenTrace], after: float | None, have: set[float]
    ) -> list[OpenWindow]:
        """Empty open windows for the spans of resumed traces to count into, where neither the
        store nor the resumed windows hold them (a stop came before their trace closed)."""
        width = self.window
        starts = {
            math.floor(span[3] / NS_PER_S / width) * width
            for spans in traces.values()
            for span in spans.values()
        }
        return [
            (Window(start, start + width), {})
            for start in sorted(starts)
            if start not in have and (after is None or start >= after)
        ]

    def _put(self, window: Window | None) -> None:
        """Store a closed window, with those the store refused before (a full disk, a locked
        file): they are kept, at most MAX_UNSAVED, and retried with each window, so a failed
        write neither loses the window nor stops its estimate."""
        if window is not None:
            self._unsaved.append(window)
        if not self._unsaved:
            return
        try:
            self.store.put(self._unsaved)
        except StoreError as exc:
            if len(self._unsaved) > MAX_UNSAVED:
                lost = self._unsaved[: len(self._unsaved) - MAX_UNSAVED]
                del self._unsaved[: len(lost)]
                log.error(
                    "%s dropped: the store refused them for over %s (from %s)",
                    count_of(len(lost), "window"),
                    count_of(MAX_UNSAVED, "window"),
                    utc_time(lost[0].start),
                )
            log.error(
                "%s not stored, kept to retry with the next: %s",
                count_of(len(self._unsaved), "window"),
                exc,
            )
            return
        if len(self._unsaved) > 1:
            log.info("stored %s the store had refused", count_of(len(self._unsaved), "window"))
        newest = self._unsaved[-1].end
        self._unsaved = []
        self._prune(newest)

    def _announce_pruning(self, now: float) -> float:
        """When pruning may begin: at once, or PRUNE_NOTICE from now, with a warning, where more
        than that much of the stored windows is past `retention` already. The date is noted in
        the store, so that a restart keeps it instead of putting it off again."""
        retention, newest = self.config.retention, self.store.last_end()
        due, oldest, cut = 0, None, -math.inf
        if retention and newest is not None:
            # pruning cuts at the newest window stored then, which is about now: a store left
            # for longer than the retention (an exporter stopped for weeks, a data dir restored)
            # has its windows past it by the clock, though not past its own newest window's
            cut = max(newest, now) - retention
            due, oldest = self.store.ended_before(cut)
        noted = self.store.note(PRUNE_FROM)
        # a backlog is more than PRUNE_NOTICE of windows past the retention (an hourly pruning
        # leaves an hour), or a store all of whose windows are (one left for longer than that)
        if (
            newest is None
            or oldest is None
            or (min(newest, cut) - oldest <= PRUNE_NOTICE and newest > cut)
        ):
            # nothing to announce (no retention, or what an hourly pruning leaves): a notice
            # of an earlier start is void, and a backlog found later is announced anew
            if noted is not None:
                self._forget_notice()
            return -math.inf
        try:
            prune_from = float(noted) if noted is not None else now + PRUNE_NOTICE
        except ValueError:
            prune_from = now + PRUNE_NOTICE
        if prune_from <= now:
            return prune_from
        log.warning(
            "%s (from %s) are older than the retention of %s: they are deleted from %s on; "
            "to keep them, set retention to 0 (keep every window) or longer and restart before",
            count_of(due, "stored window"),
            utc_time(oldest),
            readable_duration(retention),
            utc_time(prune_from),
        )
        if noted is None:
            try:
                self.store.set_note(PRUNE_FROM, repr(prune_from))
            except StoreError as exc:
                log.error("%s", exc)
        return prune_from

    def _forget_notice(self) -> None:
        try:
            self.store.set_note(PRUNE_FROM, None)
        except StoreError as exc:
            log.error("%s", exc)

    def _prune(self, newest: float) -> None:
        """Delete stored windows past `retention` before the newest, at most once an hour."""
        retention = self.config.retention
        if not retention or newest - self._pruned_at < PRUNE_EVERY:
            return
        if self.clock() < self._prune_from:
            return
        self._pruned_at = newest
        try:
            deleted = self.store.prune(newest - retention)
        except StoreError as exc:
            log.error("%s", exc)
            return
        if self._prune_from > -math.inf:  # the announced deletion is done
            self._prune_from = -math.inf
            self._forget_notice()
        if deleted:
            log.info(
                "deleted %s older than the retention of %s",
                count_of(deleted, "stored window"),
                readable_duration(retention),
            )

    def save_open(self) -> None:
        """On stopping: keep the traces and windows still open in the store, for the next start
        to resume (see WindowAggregator), so that spans retried across the restart join them."""
        with self._tick_lock:
            self._put(None)  # a last try for the closed windows the store refused
            self.assembler.stop()  # a span acknowledged after the traces are taken would be lost
            windows = self.aggregator.open_windows()
            traces = self.assembler.open_traces()
            self.store.save_open(windows, traces)
        if windows or traces:
            log.info(
                "kept %s and %s for the next start",
                count_of(len(windows), "open window"),
                count_of(len(traces), "open trace"),
            )

    def run(self, stop: threading.Event) -> None:
        """Tick until `stop` is set; errors of one tick are logged, never fatal."""
        while not stop.wait(self.config.tick_seconds):
            try:
                self.tick()
            except Exception:  # the loop must outlive any one bad window
                log.exception("live loop tick failed")

"""Latency capacity from load-test steps: the rate an API can serve within a latency objective.

A step load test (wrk2, Locust, k6) runs an API at a few request rates and records latency
percentiles per step. Two answers come out of those steps:

- the *measured* answer: the SLO crossing read between the two tested rates that bracket it
  (log-linear interpolation of latency in rate), when the steps do bracket it;
- the *modelled* answer: a queueing curve fitted to the unsaturated steps, latency(rate) =
  base + scale * load**k / (1 - load) with load = rate / capacity: a constant (network, fixed
  work) plus queueing that sets in like waiting in a pool of k workers (k = 1 is M/M/1). It reads
  the SLO crossing beyond the tested rates, with a range from the profile likelihood of
  `capacity` and `k`. A knee that explains the steps no better than flat latency does, by
  Akaike's criterion, is not believed: the best curve is then flat (no knee seen), while the
  range still holds the knees the steps allow.

Steps whose served rate falls short of the offered rate are saturated: their latency is a backlog
that grows with the run's length, not a steady state, so they only bound `capacity` from above.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import isotonic_regression, nnls
from scipy.stats import rankdata, spearmanr

from estimator.errors import InputError
from estimator.windows import Pair, Window, api_counts

SATURATED_RATIO = 0.97
"""A step is saturated when it served less than this share of the rate it was offered."""

NOISE_FLOOR = 0.1
"""Least log-latency noise assumed for one step (single runs vary by about 10% or more)."""

CURVE_PARAMETERS = 3
"""Parameters a queueing curve fits to the steps (base, scale, capacity): with no more steps
than these, the fit's error says nothing of their noise, and NOISE_FLOOR stands for it."""

CHI2_90 = 2.706
"""90% quantile of chi-square with one degree of freedom: the profile-likelihood cut."""

Z_90 = 1.645
"""Standard normal quantile of a two-sided 90% interval: a measurement's log noise either side."""

PARSIMONY = 6.0
"""Akaike's 2 per parameter for the curve's 3 beyond a flat latency: the least drop in squared
log error (in units of the noise variance) for which a knee is believed over no knee."""

GRID_POINTS = 400
GRID_SPAN = 200.0
"""Capacity is searched from just above the highest unsaturated rate to GRID_SPAN times it."""


@dataclass(frozen=True)
class Step:
    """One load step of one API: the rate asked, the rate served and a latency percentile."""

    offered: float  # requests/s; NaN when the tool does not record it
    achieved: float  # requests/s served
    latency: float  # seconds, at the percentile the objective names
    peak: float = math.nan  # highest rate served within the step (binned windows), if known
    # the most latency a curve may give at `peak`: what the busiest window measured, widened by
    # the spread of the step's windows (90%); NaN if unknown
    peak_bound: float = math.nan

    @property
    def rate(self) -> float:
        """The load of the step: the offered rate where known, else the served one."""
        return self.achieved if math.isnan(self.offered) else self.offered

    @property
    def saturated(self) -> bool:
        return not math.isnan(self.offered) and self.achieved < SATURATED_RATIO * self.offered


SERVERS = (1, 2, 4, 8, 16, 32)
"""Queue onsets tried: waiting starts like load**k with k servers (Erlang C), k from this set."""


@dataclass(frozen=True)
class QueueCurve:
    """latency(rate) = base + scale * load**servers / (1 - load), load = rate / capacity.

    With one server it is the M/M/1 response time; with k servers waiting (and so the tail) sets
    in late and steeply, as Erlang C has it for a pool of k workers. capacity may be infinite.
    """

    base: float
    scale: float
    capacity: float
    servers: int = 1

    def queueing(self, rate: np.ndarray | float) -> np.ndarray:
        """The load-dependent factor: load**servers / (1 - load), inf at or past capacity."""
        r = np.asarray(rate, dtype=float)
        if math.isinf(self.capacity):
            return np.zeros(r.shape)
        load = r / self.capacity
        with np.errstate(divide="ignore"):
            return np.where(load < 1.0, load**self.servers / (1.0 - load), np.inf)

    def latency(self, rate: np.ndarray | float) -> np.ndarray:
        wait = self.queueing(rate)
        return self.base + (self.scale * wait if self.scale > 0 else np.zeros(wait.shape))

    def max_rate(self, objective: float) -> float:
        """The highest rate whose latency stays at or under `objective` (0 if none, inf if all)."""
        room = objective - self.base
        if room < 0:
            return 0.0
        if self.scale <= 0 or math.isinf(self.capacity):
            return math.inf
        target = room / self.scale  # solve load**k / (1 - load) = target, increasing on [0, 1)
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if mid < 1.0 and mid**self.servers / (1.0 - mid) <= target:
                lo = mid
            else:
                hi = mid
        return lo * self.capacity


@dataclass(frozen=True)
class CurveFit:
    """The best curve and every curve the profile likelihood keeps at 90%."""

    best: QueueCurve
    plausible: tuple[QueueCurve, ...]
    steps_used: int
    highest_rate: float  # highest rate an unsaturated step served
    rmse_log: float  # of the best curve, in log latency
    noise_log: float = 0.0  # a step's log-latency noise the fit assumes (at least NOISE_FLOOR)

    def max_rate(self, objective: float) -> tuple[float, float, float]:
        """(low, best, high) rate that keeps latency within `objective`: the system's, from the
        plausible curves."""
        values = [c.max_rate(objective) for c in self.plausible]
        return min(values), self.best.max_rate(objective), max(values)

    def latency(self, rate: float) -> tuple[float, float, float]:
        """(low, best, high) latency a step at `rate` would measure: the plausible curves'
        range, widened by a measurement's noise (90%, `noise_log` in log latency)."""
        values = [float(c.latency(rate)) for c in self.plausible]
        spread = math.exp(Z_90 * self.noise_log)
        return min(values) / spread, float(self.best.latency(rate)), max(values) * spread


def _solve(
    rates: np.ndarray, latency: np.ndarray, capacity: float, servers: int
) -> tuple[QueueCurve, float]:
    """Non-negative base and scale for one capacity, by relative least squares; SSE in log."""
    x = QueueCurve(0.0, 1.0, capacity, servers).queueing(rates)
    design = np.column_stack([1.0 / latency, x / latency])
    (base, scale), _ = nnls(design, np.ones_like(latency))
    curve = QueueCurve(float(base), float(scale), capacity, servers)
    fitted = curve.latency(rates)
    if not np.all(fitted > 0):
        return curve, math.inf
    return curve, float(np.sum(np.log(fitted / latency) ** 2))


def _steepest(
    rates: np.ndarray, latency: np.ndarray, curves: Sequence[QueueCurve], cut: float
) -> list[QueueCurve]:
    """For each curve: the same capacity and servers with the largest scale (base refitted by
    relative least squares) whose squared log error stays within `cut`. The profile over
    capacity alone keeps, for each capacity, only its best scale, which is 0 wherever latency
    does not rise over the steps; then every kept curve is flat and the range says nothing about
    rates past the steps. The steepest curves say how much queueing the steps still allow."""
    finite = [c for c in curves if math.isfinite(c.capacity)]
    if not finite:
        return []
    q = np.array([c.queueing(rates) for c in finite])  # [curves, steps]
    a = 1.0 / latency
    saa, sqaa = float(a @ a), (q * a**2).sum(axis=1)

    def fit(scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        base = np.maximum(0.0, (a.sum() - scale * sqaa) / saa)
        fitted = base[:, None] + scale[:, None] * q
        with np.errstate(divide="ignore", invalid="ignore"):
            sse = np.where(fitted > 0, np.log(fitted / latency) ** 2, np.inf).sum(axis=1)
        return base, sse

    lo = np.array([c.scale for c in finite])
    hi = np.maximum(2.0 * lo, float(latency.max()) / np.maximum(q.max(axis=1), 1e-12))
    for _ in range(60):  # grow the bracket until the error leaves the cut
        inside = fit(hi)[1] <= cut
        if not inside.any():
            break
        hi = np.where(inside, 2.0 * hi, hi)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        inside = fit(mid)[1] <= cut
        lo, hi = np.where(inside, mid, lo), np.where(inside, hi, mid)
    base, _ = fit(lo)
    return [
        QueueCurve(float(b), float(s), c.capacity, c.servers)
        for b, s, c in zip(base, lo, finite, strict=True)
    ]


def fit_curve(steps: Sequence[Step], steepest: bool = True) -> CurveFit:
    """Fit the queueing curve to the unsaturated steps; saturated ones cap the capacity. The
    plausible curves are those the profile likelihood keeps and, with `steepest`, the steepest
    each of their capacities allows within the same cut (`_steepest`)."""
    # a step that served nothing, or measured no latency (below the tool's resolution), says
    # nothing about the curve's shape in log latency
    calm = [s for s in steps if not s.saturated and s.achieved > 0 and s.latency > 0]
    if len(calm) < 3:
        empty = sum(not s.saturated and not (s.achieved > 0 and s.latency > 0) for s in steps)
        aside = f" ({empty} more served nothing or measured no latency)" if empty else ""
        raise InputError(
            f"needs at least 3 unsaturated steps to fit a latency curve, has {len(calm)}{aside}"
        )
    rates = np.array([s.achieved for s in calm])
    latency = np.array([s.latency for s in calm])
    # Every rate an unsaturated step served, its peak included, lies below the capacity.
    top = max(float(rates.max()), max((s.peak for s in calm if s.peak == s.peak), default=0.0))
    # The busiest window was measured too: no curve may blow up at a load the system served at
    # the latency it measured (`Step.peak_bound`), beyond the steps' mean loads.
    busiest = max(calm, key=lambda s: s.peak if s.peak == s.peak else -math.inf)
    served = busiest.peak if busiest.peak > rates.max() and busiest.peak_bound > 0 else math.nan

    def possible(curve: QueueCurve) -> bool:
        return math.isnan(served) or float(curve.latency(served)) <= busiest.peak_bound

    full = [s.achieved for s in steps if s.saturated]
    # A saturated step served about what the system can: the capacity is near it, not below
    # what any step served (no rate the system was seen serving lies past its capacity).
    floor = max([top, *full])
    ceiling = max(min(full) * 1.05, floor * 1.01) if full else top * GRID_SPAN
    grid = [float(c) for c in np.geomspace(floor * 1.005, ceiling, GRID_POINTS)]
    candidates = [(c, k) for k in SERVERS for c in grid]
    if not full:
        candidates.append((math.inf, 1))
    solved = [_solve(rates, latency, c, k) for c, k in candidates]
    errors = np.array([e for _, e in solved])
    ruled_out = np.array([not possible(c) for c, _ in solved])
    if not ruled_out.all():
        errors[ruled_out] = np.inf
    best = int(np.argmin(errors))
    dof = len(calm) - CURVE_PARAMETERS
    variance = max(errors[best] / dof if dof > 0 else 0.0, NOISE_FLOOR**2)
    keep = errors <= errors[best] + CHI2_90 * variance
    if not full and errors[-1] - errors[best] <= PARSIMONY * variance:
        best = len(solved) - 1  # a knee no better than flat latency is noise: no knee seen
        keep[best] = True
    plausible = tuple(c for (c, _), k in zip(solved, keep, strict=True) if k)
    if steepest:
        cut = float(errors[int(np.argmin(errors))] + CHI2_90 * variance)
        plausible += tuple(c for c in _steepest(rates, latency, plausible, cut) if possible(c))
    rmse = math.sqrt(errors[best] / len(calm))
    return CurveFit(solved[best][0], plausible, len(calm), top, rmse, math.sqrt(variance))


def measured_max_rate(steps: Sequence[Step], objective: float) -> tuple[float, float, float]:
    """The SLO crossing read off the steps: (rate, lower tested rate, upper tested rate).

    Steps are taken in order of rate, up to the first saturated one (it served less than it was
    offered: no higher rate is served). Latency does not fall as load grows, but single runs are
    noisy (a warm-up bump at the lowest rate, a calm step past a slow one), so the steps are read
    through their monotone fit: log latency made non-decreasing in rate by pooling neighbours
    that break the order (pool-adjacent-violators; where the steps are in order it is the steps
    themselves). The crossing follows the last step whose fit is within `objective`, interpolated
    log-linearly between it and the next, toward the rate a saturated step served rather than the
    one it was offered (so no answer passes what the system served); a saturated step within the
    objective puts it at the rate that step served (at least the step before's). When no step is
    within, the rate is 0 (below everything tested); when the highest is, it is inf (not reached),
    with the highest tested rate as the lower bound. `over_below` names the steps over the
    objective that the fit passes over.
    """
    ordered = sorted(steps, key=lambda s: s.rate)
    end = next((i + 1 for i, s in enumerate(ordered) if s.saturated), len(ordered))
    fitted = _monotone_log([s.latency for s in ordered[:end]])
    bound = math.log(objective) if objective > 0 else -math.inf
    within = [i for i in range(end) if fitted[i] <= bound]
    if not within:
        return 0.0, 0.0, ordered[0].rate
    last = within[-1]
    step = ordered[last]
    if step.saturated:  # within the objective, at what it served
        if last == 0:  # no step below: what the lowest served (0: none tested below)
            return step.achieved, 0.0, step.rate
        previous = ordered[last - 1]
        return max(previous.rate, step.achieved), previous.rate, step.rate
    if last == len(ordered) - 1:
        return math.inf, step.rate, math.inf
    over = ordered[last + 1]
    lo, hi = fitted[last], fitted[last + 1]
    share = (bound - lo) / (hi - lo)
    top = max(step.rate, over.achieved) if over.saturated else over.rate
    return step.rate + share * (top - step.rate), step.rate, over.rate


def _monotone_log(latency: Sequence[float]) -> list[float]:
    """Log latency made non-decreasing in order (least squares; pool-adjacent-violators)."""
    logs = np.log(np.maximum(np.asarray(latency, dtype=float), 1e-12))
    if len(logs) < 2:
        return [float(v) for v in logs]
    return [float(v) for v in isotonic_regression(logs, increasing=True).x]


def over_below(
    steps: Sequence[Step], objective: float, measured: tuple[float, float, float]
) -> list[Step]:
    """The unsaturated steps over `objective` below a higher step within it, which the measured
    crossing (`measured`, as `measured_max_rate` reads it) passes over: a non-monotone latency
    to say so of."""
    rate, lo, _ = measured
    if rate == 0:
        return []
    return sorted(
        (s for s in steps if not s.saturated and s.rate < lo and s.latency > objective),
        key=lambda s: s.rate,
    )


def served_above(steps: Sequence[Step]) -> list[Step]:
    """The steps, with a saturated one read as unsaturated where a step offered more served
    at least what it was offered: the system served that rate, so the shortfall was the
    measurement's noise (a short step's served rate), not a limit. It is read at the rate it
    served."""
    out = []
    for step in steps:
        if step.saturated and any(
            other.rate > step.rate and other.achieved >= step.offered for other in steps
        ):
            step = replace(step, offered=step.achieved)
        out.append(step)
    return out


def within_above(
    steps: Sequence[Step], objective: float, measured: tuple[float, float, float]
) -> list[Step]:
    """The unsaturated steps within `objective` above the measured crossing (`measured`, as
    `measured_max_rate` reads it), which a slower step below them outweighed in the steps'
    monotone fit: an answer that rests on that one step, to say so of."""
    _, _, hi = measured
    if math.isinf(hi):
        return []
    return sorted(
        (s for s in steps if not s.saturated and s.rate >= hi and s.latency <= objective),
        key=lambda s: s.rate,
    )


def load_steps(
    windows: Sequence[Window], statistic: str, bins: int = 8, min_windows: int = 3
) -> dict[Pair, list[Step]]:
    """Steps per API from recorded windows, binned by load: production traffic as a step test.

    The load of a window is its total API request rate (every API's calls per second), since
    requests of all APIs share the components. Each API's windows that recorded its latency are
    sorted by load and cut into `bins` groups of equal size (at least `min_windows` each); a
    group is one step, at its mean load, with the request-weighted median of its windows'
    `statistic`, and its busiest window's load as the step's peak (served, so below capacity).
    That window measured its latency too: a curve may give at most that, widened by the spread of
    the group's windows (log standard deviation, 90% one-sided), at the peak (`peak_bound`).
    """
    if bins < 1 or min_windows < 1:
        raise InputError("bins and min_windows must be >= 1", field="bins")
    steps: dict[Pair, list[Step]] = {}
    for api, points in sorted(_latency_points(windows, statistic).items()):
        points.sort()
        groups = min(bins, len(points) // min_windows)
        if groups < 1:
            continue
        out = []
        for chunk in np.array_split(np.array(points), groups):
            order = np.argsort(chunk[:, 1])
            weights = np.cumsum(chunk[order, 2])
            median = chunk[order, 1][np.searchsorted(weights, weights[-1] / 2.0)]
            loads, values = chunk[:, 0], chunk[:, 1]
            busiest = values[loads == loads.max()].max()  # the slowest of tied busiest windows
            logs = np.log(values[values > 0])
            spread = float(logs.std()) if len(logs) > 1 else math.inf
            bound = float(busiest) * math.exp(Z_90 * spread)
            out.append(Step(math.nan, float(loads.mean()), float(median), loads.max(), bound))
        steps[api] = out
    return steps


def mutual_information(x: np.ndarray, y: np.ndarray, bins: int = 8) -> float:
    """Mutual information of two samples in nats, from equal-frequency bins, Miller-Madow
    corrected for the bias of a finite sample (0 when nothing is shared).

    Written here rather than taken from scikit-learn (whose estimator is k-nearest-neighbour
    based), which the project does not otherwise need.
    """
    n = len(x)
    if n != len(y) or n < 2:
        raise ValueError("x and y must be samples of one length >= 2")
    cells = np.zeros((bins, bins))
    np.add.at(cells, (_quantile_bins(x, bins), _quantile_bins(y, bins)), 1.0)
    p = cells / n
    px, py = p.sum(axis=1), p.sum(axis=0)
    nz = p > 0
    mi = float(np.sum(p[nz] * np.log(p[nz] / np.outer(px, py)[nz])))
    correction = (np.count_nonzero(px) - 1) * (np.count_nonzero(py) - 1) / (2.0 * n)
    return max(0.0, float(mi - correction))


def _quantile_bins(values: np.ndarray, bins: int) -> np.ndarray:
    """Equal-frequency bin of each value; tied values share a bin."""
    ranks = rankdata(values, method="min") - 1  # 0-based rank of the first of the ties
    return np.minimum((ranks * bins) // len(values), bins - 1).astype(int)


TOTAL_LOAD = "all APIs"
"""Name of the total request rate among the candidate drivers of latency."""


def latency_drivers(
    windows: Sequence[Window], statistic: str, min_windows: int = 30
) -> dict[Pair, list[tuple[str, float]]]:
    """Per API, the request rates its latency shares most information with, best first.

    The candidates are the total rate of all APIs and each API's own rate, per window; the
    ranking is by mutual information (nats) with the API's latency `statistic`, over the windows
    that recorded it (APIs with fewer than `min_windows` such windows are left out). It tells
    which traffic moves an API's latency, as the latency capacity study ranked its features.
    """
    per_window: list[dict[str, float]] = []
    for window in windows:
        counts = api_counts(window.calls)
        width = window.end - window.start
        row = {f"{c}:{o}": n / width for (c, o), n in counts.items()}
        row[TOTAL_LOAD] = sum(counts.values()) / width
        per_window.append(row)
    names = sorted({name for row in per_window for name in row})
    column = {name: j for j, name in enumerate(names)}
    rates = np.zeros((len(windows), len(names)))  # [windows, candidate rates]
    for i, row in enumerate(per_window):
        for name, value in row.items():
            rates[i, column[name]] = value
    out: dict[Pair, list[tuple[str, float]]] = {}
    apis = sorted({api for window in windows for api in window.latency})
    for api in apis:
        rows = [i for i, window in enumerate(windows) if api in window.latency]
        if len(rows) < min_windows:
            continue
        y = np.array([windows[i].latency[api].statistic(statistic) for i in rows])
        scores = [(name, mutual_information(rates[rows, j], y)) for j, name in enumerate(names)]
        out[api] = sorted(scores, key=lambda item: -item[1])
    return out


TREND_P = 0.05
"""One-sided p-value under which latency is taken to rise with load (`load_trend`)."""


def load_trend(windows: Sequence[Window], statistic: str) -> dict[Pair, tuple[float, float]]:
    """Per API: Spearman's rank correlation of its `statistic` with the window's load (all
    APIs' request rate) over the windows that recorded it, and the one-sided p-value of a rise.
    Where it shows none, the recording came near no limit: a crossing read off its load bins
    follows whatever else changed with them (the mix of requests, a fault), not load."""
    out = {}
    for api, points in _latency_points(windows, statistic).items():
        loads, values = np.array(points)[:, :2].T
        if len(points) < 3 or np.ptp(loads) == 0 or np.ptp(values) == 0:
            out[api] = (0.0, 1.0)
            continue
        result = spearmanr(loads, values, alternative="greater")
        out[api] = (float(result.statistic), float(result.pvalue))
    return out


def _latency_points(
    windows: Sequence[Window], statistic: str
) -> dict[Pair, list[tuple[float, float, int]]]:
    """Per API, over the windows that recorded its latency: (the window's load, the API's
    `statistic`, its request count)."""
    seen: dict[Pair, list[tuple[float, float, int]]] = {}
    for window in windows:
        if not window.latency:
            continue
        load = window_load(window)
        for api, summary in window.latency.items():
            seen.setdefault(api, []).append((load, summary.statistic(statistic), summary.count))
    return seen


def window_load(window: Window) -> float:
    """All APIs' requests per second in a window (the load latency curves are read against)."""
    return sum(api_counts(window.calls).values()) / (window.end - window.start)


def latency_at_loads(
    recorded: Sequence[Window],
    statistic: str,
    loads: Sequence[float],
    why: dict[Pair, str] | None = None,
) -> dict[Pair, list[tuple[float, float, float]]]:
    """Per API with a latency curve in `recorded`: its (low, best, high) `statistic` at each
    of `loads` (requests per second of all APIs). `why`, where given, gets the reason of each
    API whose recorded latency gives no curve: too few windows, or latency that does not rise
    with load (`load_trend`; a curve through noise tells nothing of another load, as `deeprest
    capacity` leaves its latency columns empty there)."""
    out: dict[Pair, list[tuple[float, float, float]]] = {}
    trends = load_trend(recorded, statistic)
    for api, steps in load_steps(recorded, statistic).items():
        rho, p = trends.get(api, (0.0, 0.0))
        if p >= TREND_P:
            if why is not None:
                why[api] = (
                    f"its latency does not rise with load in the recording, rank correlation "
                    f"{rho:.2f}, p {p:.3f}: no curve to read at another load"
                )
            continue
        try:
            fit = fit_curve(steps)
        except InputError as exc:  # too few steps, or zero load: no curve for this API
            if why is not None:
                why[api] = exc.bare_message
            continue
        out[api] = [fit.latency(load) for load in loads]
    return out

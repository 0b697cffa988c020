"""`deeprest capacity`: the request rate each API serves within a latency objective, from load steps.

Input is either CSV files of load-test steps, one row per step and API (column names of
wrk2-style summaries, `offered_rps`, `achieved_rps`, `latency_p99_ms`, and of Locust's `--csv`
stats files, `Name`, `Requests/s`, `99%`, are both understood, ignoring case and punctuation),
or recorded windows that carry per-API latency (a dataset from `deeprest import`, which keeps it
where spans have start times, or the store of a running exporter, which keeps it from the traces
it receives): recorded traffic binned by load, each bin a step, the load being all APIs'
requests per second.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from estimator.errors import InputError, count_of
from estimator.latency import (
    CURVE_PARAMETERS,
    NOISE_FLOOR,
    TREND_P,
    CurveFit,
    Step,
    fit_curve,
    latency_drivers,
    load_steps,
    load_trend,
    measured_max_rate,
    over_below,
    served_above,
    window_load,
    within_above,
)
from estimator.windows import LATENCY_STATISTICS, Window, load_windows
from exporter.commands.outputs import output_dir
from exporter.commands.ranges import (
    add_range_arguments,
    check_order,
    is_number,
    parse_bound,
    parse_time,
    select,
)
from exporter.loadtests import Labels, Objective, parse_objective, read_steps
from exporter.progress import Phases
from exporter.report import format_table, latency_ms, plain, pyplot


def _objective_arg(text: str) -> Objective:
    try:
        return parse_objective(text)
    except InputError as exc:  # argparse turns this into a usage error (exit status 2)
        raise argparse.ArgumentTypeError(exc.bare_message) from None


def configure(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--runs",
        type=Path,
        nargs="+",
        help="load steps: CSV (one row per step and API; Locust's stats_history), k6 or Vegeta "
        "JSON summaries (one per step), or a folder of them; several are read as one",
    )
    source.add_argument(
        "--data",
        type=Path,
        help="window dataset with per-API latency: recorded traffic, binned by load into steps",
    )
    source.add_argument(
        "--config",
        type=Path,
        help="exporter configuration: the windows its store recorded from live traces, as --data",
    )
    add_range_arguments(parser, "with --data or --config, read")
    parser.add_argument(
        "--bins", type=int, help="with --data/--config: load bins (steps) per API (default 8)"
    )
    parser.add_argument(
        "--slo",
        type=_objective_arg,
        default=parse_objective("p99=100ms"),
        help="latency objective, e.g. p99=100ms (default), p95=0.25s, mean=40ms",
    )
    parser.add_argument(
        "--group-by",
        default="",
        help="comma-separated columns that tell deployments apart; steps of different groups "
        "are never pooled (e.g. experiment,runtime,placement)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        action="append",
        default=[],
        help="also estimate latency at RATE requests/s (repeatable)",
    )
    parser.add_argument(
        "--scale",
        type=float,
        action="append",
        default=[],
        help="also estimate latency at K times the busiest step (3 = 3x the peak load; repeatable)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("capacity"),
        help="directory for CSV, PNG (default ./capacity)",
    )


BEYOND = 1.5
"""An asked rate past this many times the highest step is said to be an extrapolation."""
MISS_SLACK = 0.05
"""How far outside the curves' plausible range a measured crossing may lie and still agree."""


def _rate(value: float) -> str:
    """A rate for tables: whole numbers, or 3 significant digits below 100 (recorded traffic)."""
    if math.isinf(value):
        return "inf"
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def _measured(rate: float, lo: float, hi: float) -> str:
    """The measured crossing as a table shows it: a rate, `>=` the highest step where none broke
    the objective, `<` the lowest where it already did."""
    if rate == 0:
        return f"<{_rate(hi)}"
    return _rate(rate) if math.isfinite(hi) else f">={_rate(lo)}"


@dataclass(frozen=True)
class Answer:
    """What one (group, API) can serve within the objective, measured and modelled."""

    group: str
    api: str
    steps: list[Step]
    measured: tuple[float, float, float]
    fit: CurveFit | None
    why_no_fit: str
    unit: str = "requests/s"
    peak: float | None = None
    """The load `--scale K` multiplies: the recording's busiest window (shared by its APIs), or
    None for the API's busiest step."""
    trend: tuple[float, float] | None = None
    """Recorded traffic only: the rank correlation of latency with load, and the p-value of a
    rise (`load_trend`)."""

    def row(
        self, objective: Objective, rates: Sequence[float], scales: Sequence[float] = ()
    ) -> dict[str, object]:
        rate, lo, hi = self.measured
        saturated = [s.achieved for s in self.steps if s.saturated]
        row: dict[str, object] = {
            "group": self.group,
            "api": self.api,
            "steps": len(self.steps),
            "tested": f"{_rate(min(s.rate for s in self.steps))}-"
            f"{_rate(max(s.rate for s in self.steps))}",
            "measured": _measured(rate, lo, hi),
            "saturates_at": _rate(max(saturated)) if saturated else "-",
        }
        fit = None if self._flat() else self.fit  # a curve through noise tells no capacity
        slower = self.trend is not None and rate == 0  # recorded: slower, not at a capacity
        if fit is None:
            row.update(model="-", model_range="-", fit_rmse_log="-")
        elif slower:  # its curve still gives latency at a rate, but no capacity
            row.update(model="-", model_range="-", fit_rmse_log=fit.rmse_log)
        else:
            low, best, high = self._modelled(fit, objective)
            row.update(
                model=_rate(best), model_range=f"{_rate(low)}-{_rate(high)}",
                fit_rmse_log=fit.rmse_log,
            )  # fmt: skip
        top = self.peak if self.peak is not None else max(s.rate for s in self.steps)
        wanted = [(f"@{r:g}", r) for r in rates] + [(f"@{k:g}x", k * top) for k in scales]
        for label, r in wanted:
            column = f"{objective.statistic}_ms{label}"
            if fit is None:
                row[column] = "-"
                continue
            fastest, likeliest, slowest = (latency_ms(v) for v in fit.latency(r))
            row[column] = f"{likeliest} ({fastest}-{slowest})"
        return row

    def beyond(self, rates: Sequence[float], scales: Sequence[float]) -> list[str]:
        """The latency columns (`@R`, `@Kx`) of asked rates well past the highest step (BEYOND
        times it): the curve's extrapolation, not a measurement's neighbour."""
        if self.fit is None or self._flat():
            return []
        highest = max(s.rate for s in self.steps)
        top = self.peak if self.peak is not None else highest
        asked = [(f"@{r:g}", r) for r in rates] + [(f"@{k:g}x", k * top) for k in scales]
        return [label for label, rate in asked if rate > BEYOND * highest]

    def numbers(self, objective: Objective) -> dict[str, object]:
        """The row's answers as plain numbers for `capacity.csv` (the table's cells are text):
        the objective and unit, the measured rate's bounds (equal where the steps bracket the
        crossing; up to `inf` past the highest step; from 0 below the lowest) and the curve's
        rate and range (empty where the row gives none)."""
        rate, lo, hi = self.measured
        if rate == 0:
            low, high = 0.0, hi
        else:
            low, high = (rate, rate) if math.isfinite(hi) else (lo, math.inf)
        out: dict[str, object] = {
            "objective": str(objective),
            "unit": self.unit,
            "measured_low": round(low, 3),
            "measured_high": round(high, 3),
            "model_rate": "",
            "model_low": "",
            "model_high": "",
        }
        fit = None if self._flat() else self.fit
        if fit is not None and not (self.trend is not None and rate == 0):
            m_low, best, m_high = self._modelled(fit, objective)
            out.update(model_rate=round(best, 3), model_low=round(m_low, 3))
            out.update(model_high=round(m_high, 3))
        return out

    def sentence(self, objective: Objective) -> str:
        """The answer in words: the measurement where the steps bracket it, else the model's."""
        rate, lo, hi = self.measured
        who = f"{self.group} {self.api}".strip()
        if rate == 0 and self.trend is not None:
            lightest = min(self.steps, key=lambda s: s.rate)
            return (
                f"{who}: over {objective} at every load recorded, the lightest too "
                f"({latency_ms(lightest.latency)} ms at {_rate(lightest.rate)}/s): slower than "
                f"the objective, not at a capacity{self._flat()}"
            )
        if rate == 0:
            return (
                f"{who}: over {objective} already at the lowest tested rate ({_rate(hi)}/s)"
                f"{self._noise(objective)}"
            )
        if math.isfinite(hi):
            top = next((s for s in self.steps if s.rate == hi), None)
            served = f", which served {_rate(top.achieved)}" if top and top.saturated else ""
            if lo == 0:  # the lowest step saturated within the objective
                where = f"measured at the lowest step, at {_rate(hi)}{served}"
            elif lo == hi:
                where = f"measured at the steps at {_rate(lo)}{served}"
            else:
                where = f"measured between the steps at {_rate(lo)} and {_rate(hi)}{served}"
            curve = f"; no latency curve ({self.why_no_fit})" if self.fit is None else ""
            if self.fit is not None and not self._flat():
                curve = self._misses(rate, objective, self.fit)
            return (
                f"{who}: {_rate(rate)} {self.unit} within {objective} ({where})"
                f"{self._noise(objective)}{self._flat()}{curve}"
            )
        if self.fit is None:
            return f"{who}: at least {_rate(lo)} {self.unit} within {objective} ({self.why_no_fit})"
        if self._flat():  # no limit seen: a curve through noise has no capacity to tell
            return (
                f"{who}: at least {_rate(lo)} {self.unit} within {objective} (highest step)"
                f"{self._noise(objective)}{self._flat()}"
            )
        low, best, high = self._modelled(self.fit, objective)
        if math.isinf(best):
            curve = "the latency curve sees no knee (latency stays flat over the steps)"
            if math.isfinite(low):
                curve += f"; curves that fit them as well reach the objective from {_rate(low)}"
        else:
            upto = f"-{_rate(high)}" if math.isfinite(high) else " or more"
            curve = f"the latency curve extrapolates to {_rate(best)}, plausible {_rate(low)}{upto}"
            if self.fit.steps_used <= CURVE_PARAMETERS:
                # as many parameters as steps: a curve that can take them goes through them, and
                # what is left says how far no queueing curve can (latency that falls with load)
                fits = (
                    "fit the curve's parameters exactly"
                    if self.fit.rmse_log <= NOISE_FLOOR
                    else f"are as many as the curve's parameters, yet no curve takes them "
                    f"(fit_rmse_log {self.fit.rmse_log:.2f})"
                )
                curve += (
                    f" (its {self.fit.steps_used} steps {fits}, so the range assumes a step's "
                    f"noise of {NOISE_FLOOR:.0%} rather than measuring it: test more steps)"
                )
        return (
            f"{who}: at least {_rate(lo)} {self.unit} within {objective} (highest step); {curve}"
            f"{self._noise(objective)}{self._flat()}"
        )

    def _misses(self, rate: float, objective: Objective, fit: CurveFit) -> str:
        """Where the curves' plausible range misses the measured crossing, that they fit these
        steps poorly (a jump in latency, say, that no queueing curve takes): the table's
        `model` is then no second answer."""
        low, _, high = self._modelled(fit, objective)
        if low <= rate * (1 + MISS_SLACK) and rate <= high * (1 + MISS_SLACK):
            return ""
        upto = _rate(high) if math.isfinite(high) else "inf"
        return (
            f"; the latency curve's plausible range ({_rate(low)}-{upto}) misses it: no "
            f"queueing curve fits these steps well (fit_rmse_log {fit.rmse_log:.2f}), so its "
            "model and latency at other rates are rough"
        )

    def _modelled(self, fit: CurveFit, objective: Objective) -> tuple[float, float, float]:
        """The curves' (low, best, high) rate within the objective, none under the highest step
        where no step broke it: every rate up to it was measured within, whatever a curve
        through the steps' noise says (latency that falls with load fits knees anywhere)."""
        low, best, high = fit.max_rate(objective.seconds)
        _, lo, hi = self.measured
        if math.isinf(hi) and lo > 0:
            low, best, high = (max(v, lo) for v in (low, best, high))
        return low, best, high

    def _flat(self) -> str:
        """Recorded traffic whose latency does not rise with load: no limit was seen."""
        if self.trend is None or self.trend[1] < TREND_P:
            return ""
        rho, p = self.trend
        return (
            f"; in this recording its latency does not rise with load (rank correlation "
            f"{rho:.2f}, p {p:.3f}): the traffic came near no limit, and what changes latency "
            "across its load bins is something else (the mix of requests?)"
        )

    def _noise(self, objective: Objective) -> str:
        """What the measured answer passed over: lower steps over the objective (`over_below`),
        or higher ones within it that a slow step below outweighed (`within_above`)."""
        slow = over_below(self.steps, objective.seconds, self.measured)
        if slow:
            return (
                f"; lower steps measured over it ({_shown_steps(slow)}) below higher ones "
                "within it, read as a single run's noise (the steps' monotone fit)"
            )
        calm = within_above(self.steps, objective.seconds, self.measured)
        if calm:
            return (
                f"; higher steps measured within it ({_shown_steps(calm)}), outweighed in the "
                "steps' monotone fit by slower ones below them: an answer that rests on those "
                "(a slow outlier?)"
            )
        return ""


def _shown_steps(steps: Sequence[Step]) -> str:
    """The first few steps as a sentence names them: latency at rate."""
    shown = ", ".join(f"{latency_ms(s.latency)} ms at {_rate(s.rate)}" for s in steps[:3])
    return shown + (f" and {len(steps) - 3} more" if len(steps) > 3 else "")


def answer(
    group: str,
    api: str,
    steps: list[Step],
    objective: Objective,
    unit: str = "requests/s",
    peak: float | None = None,
    trend: tuple[float, float] | None = None,
) -> Answer:
    steps = served_above(steps)
    measured = measured_max_rate(steps, objective.seconds)
    try:
        fit, why = fit_curve(steps), ""
    except InputError as exc:
        fit, why = None, exc.bare_message
    return Answer(group, api, steps, measured, fit, why, unit, peak, trend)


def recorded_windows(args: argparse.Namespace) -> tuple[list[Window], str]:
    """The windows of --data (within --from/--to), or of the store of --config's exporter."""
    if args.data is not None:
        return select(load_windows(args.data), args.start, args.end, str(args.data)), str(args.data)
    from exporter.config import load_config
    from exporter.store import existing_store

    config = load_config(args.config)
    given = [(v, flag) for v, flag in ((args.start, "--from"), (args.end, "--to")) if v is not None]
    shares = any(parse_bound(v, flag).share is not None for v, flag in given)
    # a share is one of every window the store holds, as with --data
    start = -math.inf if shares or args.start is None else parse_time(args.start, "--from")
    end = math.inf if shares or args.end is None else parse_time(args.end, "--to")
    if args.start is not None and args.end is not None and not shares:
        check_order(args.start, start, args.end, end, str(args.config))
    store = existing_store(config.data_dir, str(args.config))
    try:
        windows = store.range(start, end)
    finally:
        store.close()
    source = f"{args.config} (store {config.data_dir})"
    if not windows:
        raise InputError("the store holds no windows in that range", source=source)
    if shares:
        windows = select(windows, args.start, args.end, source)
    return windows, source


def window_steps(
    windows: Sequence[Window], source: str, objective: Objective, bins: int
) -> dict[tuple[str, str], list[Step]]:
    """Steps per API from recorded windows' latency."""
    if objective.statistic not in LATENCY_STATISTICS:
        raise InputError(
            f"windows keep {', '.join(LATENCY_STATISTICS)}, not {objective.statistic}",
            field="slo",
        )
    steps = load_steps(windows, objective.statistic, bins)
    if not steps:
        raise InputError(
            "no window carries latency, or too few windows per API: `deeprest import` keeps it "
            "from spans with start times, `serve` from the spans it receives (windows stored by "
            "an earlier release have none)",
            source=source,
        )
    return {("", f"{c}:{o}"): s for (c, o), s in steps.items()}


def plot(result: Answer, objective: Objective, path: Path) -> None:
    """One PNG per answer (`capacity_figure`)."""
    fig = capacity_figure(result, objective)
    fig.savefig(path, dpi=80)
    pyplot().close(fig)


PLOT_NAME = re.compile(r"[0-9]{2,}_[A-Za-z0-9._-]*\.png")
"""The names `run` gives its plots: those of an earlier run in --out are removed first."""


def capacity_figure(result: Answer, objective: Objective) -> Any:
    """Latency against rate, in the answer's unit: the steps, the fitted curve with its plausible
    range, the objective."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7, 4))
    calm = [s for s in result.steps if not s.saturated]
    full = [s for s in result.steps if s.saturated]
    ax.scatter([s.rate for s in calm], [1e3 * s.latency for s in calm], label="step")
    if full:
        ax.scatter(
            [s.rate for s in full], [1e3 * s.latency for s in full], marker="x", label="saturated"
        )
    measured = [1e3 * s.latency for s in result.steps if s.latency > 0]
    low = min(measured, default=1e3 * objective.seconds) / 2
    high = max([*measured, 1e3 * objective.seconds]) * 30  # past it: saturated, off the plot
    if result.fit is not None:
        top = max(s.rate for s in result.steps) * 1.5
        x = np.linspace(0.0, top, 200)
        curves = np.array([c.latency(x) for c in result.fit.plausible]) * 1e3
        # a curve past its capacity has no latency: the range runs off the top of the plot
        curves = np.minimum(np.nan_to_num(curves, nan=np.inf), high)
        ax.fill_between(x, curves.min(axis=0), curves.max(axis=0), alpha=0.2, label="plausible")
        ax.plot(x, np.minimum(1e3 * result.fit.best.latency(x), high), label="fitted curve")
    ax.axhline(1e3 * objective.seconds, color="red", ls="--", label=plain(objective))
    ax.set_yscale("log")
    ax.set_ylim(low, high)
    ax.set_xlabel(plain(result.unit))
    ax.set_ylabel(plain(f"{objective.statistic} latency (ms)"))
    ax.set_title(plain(f"{result.group} {result.api}".strip()), fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def extrapolation_note(
    results: Sequence[Answer], rates: Sequence[float], scales: Sequence[float]
) -> None:
    """One line naming the latency columns that lie well past an API's highest step."""
    far: dict[str, list[str]] = {}
    for result in results:
        for label in result.beyond(rates, scales):
            far.setdefault(label, []).append(f"{result.group} {result.api}".strip())
    if not far:
        return
    parts = [
        f"{label} for {', '.join(who[:2])}{f' and {len(who) - 2} more' if len(who) > 2 else ''}"
        for label, who in far.items()
    ]
    print(
        f"note: latency columns past {BEYOND:g}x an API's highest step are the curve's "
        f"extrapolation, rough: {'; '.join(parts)}"
    )


def repeated_rates_note(
    steps: dict[tuple[str, str], list[Step]], labels: Labels | None = None
) -> None:
    """Warn where a group's API has several steps at one rate: runs of two deployments pooled
    (a --group-by column missing) or a file given twice; the curve then fits both as one. Where
    the table's other columns tell such steps apart, it names them."""
    pooled, telling = [], set()
    for (group, api), found in sorted(steps.items()):
        rates = [round(s.rate, 6) for s in found]
        if len(set(rates)) == len(rates):
            continue
        pooled.append(f"{group} {api}".strip())
        rows = (labels or {}).get((group, api), [])
        if len(rows) == len(found):
            telling |= set(_telling_columns(rates, rows))
    if not pooled:
        return
    shown = ", ".join(pooled[:3]) + (", ..." if len(pooled) > 3 else "")
    if telling:
        names = sorted(telling)
        hint = f"their rows differ in {', '.join(names)}: --group-by {','.join(names)}?"
    else:
        hint = "add the column that tells them apart to --group-by"
    print(
        f"deeprest capacity: warning: {count_of(len(pooled), 'group and API pair')} "
        f"({shown}) {'has' if len(pooled) == 1 else 'have'} several steps at one rate: runs "
        f"of different deployments pooled ({hint}) or a file given twice",
        file=sys.stderr,
    )


def _telling_columns(rates: Sequence[float], rows: Sequence[dict[str, str]]) -> list[str]:
    """Text columns that differ between steps of one rate and repeat across the steps: labels
    of a deployment (an experiment, a runtime), not of a run (its file name) or a measurement."""
    out = []
    for column in rows[0]:
        values = [row[column].strip() for row in rows]
        if not all(values) or any(is_number(v) for v in values):
            continue
        if len(set(values)) == len(values):  # one per run: names a run, not a deployment
            continue
        by_rate: dict[float, set[str]] = {}
        for rate, value in zip(rates, values, strict=True):
            by_rate.setdefault(rate, set()).add(value)
        if any(len(seen) > 1 for seen in by_rate.values()):
            out.append(column)

    def parts(columns: list[str]) -> int:
        return len({tuple(row[c].strip() for c in columns) for row in rows})

    for column in reversed(list(out)):  # one of two that say the same (an experiment, its commit)
        fewer = [c for c in out if c != column]
        if fewer and parts(fewer) == parts(out):
            out = fewer
    return out


def run(args: argparse.Namespace) -> int:
    say = Phases("capacity")
    output_dir(args.out, "--out")
    group_by = [c.strip() for c in args.group_by.split(",") if c.strip()]
    for name, values in (("rate", args.rate), ("scale", args.scale)):
        for value in values:
            if not (math.isfinite(value) and value > 0):
                raise InputError(f"--{name} must be a positive number, is {value:g}", field=name)
    if args.bins is not None and args.runs is not None:
        raise InputError(
            "applies to --data and --config only (the runs hold their steps)", field="bins"
        )
    bins = 8 if args.bins is None else args.bins
    if bins < 1:
        raise InputError(f"--bins must be >= 1, is {bins}", field="bins")
    windows: list[Window] = []
    if args.runs is None:
        if group_by:
            raise InputError("--group-by applies to --runs only", field="--group-by")
        windows, source = recorded_windows(args)
        steps = window_steps(windows, source, args.slo, bins)
        unit = "requests/s of all APIs"
    else:
        if args.start is not None or args.end is not None:
            raise InputError("--from and --to apply to --data and --config", field="from")
        labels: Labels = {}
        steps, unit = read_steps(args.runs, args.slo, group_by, labels), "requests/s"
        repeated_rates_note(steps, labels)
    say(f"fitting latency curves for {len(steps)} group and API pairs")
    # recorded traffic: one load axis for every API, so --scale multiplies the busiest window's
    peak = max(window_load(w) for w in windows) if windows else None
    trends = {f"{c}:{o}": t for (c, o), t in load_trend(windows, args.slo.statistic).items()}
    results = [
        answer(g, a, s, args.slo, unit, peak, trends.get(a)) for (g, a), s in sorted(steps.items())
    ]
    rows = [r.row(args.slo, args.rate, args.scale) for r in results]
    columns = list(rows[0])
    if not group_by:
        columns.remove("group")
    print(format_table(rows, columns))
    for result in results:
        print(result.sentence(args.slo))
    extrapolation_note(results, args.rate, args.scale)
    args.out.mkdir(parents=True, exist_ok=True)
    table = [row | result.numbers(args.slo) for row, result in zip(rows, results, strict=True)]
    with open(args.out / "capacity.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    for stale in args.out.iterdir():  # an earlier run's plots must not pass for this one's
        if PLOT_NAME.fullmatch(stale.name) and stale.is_file():
            stale.unlink()
    for i, result in enumerate(results):
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{result.group}_{result.api}").strip("_")
        plot(result, args.slo, args.out / f"{i:02d}_{name or 'all'}.png")
    (args.out / "drivers.csv").unlink(missing_ok=True)  # nor an earlier run's drivers
    if windows:
        write_drivers(windows, args.slo, args.out / "drivers.csv")
    say(f"wrote {args.out / 'capacity.csv'} and {len(results)} plots")
    return 0


def write_drivers(
    windows: Sequence[Window], objective: Objective, path: Path, shown: int = 3
) -> None:
    """Which request rates each API's latency follows, by mutual information: printed and CSV."""
    drivers = latency_drivers(windows, objective.statistic)
    if not drivers:
        return
    print(f"latency drivers (mutual information of {objective.statistic} with request rates):")
    for (component, operation), ranked in drivers.items():
        top = ", ".join(f"{name} {score:.3f}" for name, score in ranked[:shown])
        print(f"  {component}:{operation}: {top}")
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["api", "rank", "rate_of", "mutual_information_nats"])
        for (component, operation), ranked in drivers.items():
            for rank, (name, score) in enumerate(ranked, start=1):
                writer.writerow([f"{component}:{operation}", rank, name, f"{score:.4f}"])

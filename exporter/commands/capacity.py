"""`deeprest capacity`: the request rate each API serves within a latency objective, from load steps.

Input is either CSV files of load-test steps, one row per step and API (column names of
wrk2-style summaries, `offered_rps`, `achieved_rps`, `latency_p99_ms`, and of Locust's `--csv`
stats files, `Name`, `Requests/s`, `99%`, are both understood, ignoring case and punctuation),
or a window dataset whose windows carry per-API latency (`deeprest import` keeps it where spans
have start times): recorded traffic binned by load, each bin a step, the load being all APIs'
requests per second.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from estimator.errors import InputError
from estimator.latency import (
    CurveFit,
    Step,
    fit_curve,
    latency_drivers,
    load_steps,
    measured_max_rate,
)
from estimator.windows import LATENCY_STATISTICS, load_windows
from exporter.progress import Phases
from exporter.report import format_table

API_COLUMNS = ("api", "Name", "endpoint")
COUNT_COLUMNS = ("Request Count",)  # Locust: a row with no requests has no percentiles ("N/A")
ACHIEVED_COLUMNS = ("achieved_rps", "rps", "Requests/s")
OFFERED_COLUMNS = ("offered_rps",)
UNIT_SECONDS = {"ms": 1e-3, "s": 1.0}


@dataclass(frozen=True)
class Objective:
    """A latency objective: the percentile (or 'mean') must stay at or under `seconds`."""

    statistic: str  # "p99", "p50", "mean"
    seconds: float

    def columns(self) -> list[tuple[str, float]]:
        """Column names that may hold the statistic, with the factor from their unit to seconds."""
        s = self.statistic
        names = [(f"latency_{s}_ms", 1e-3), (f"{s}_ms", 1e-3), (f"latency_{s}_s", 1.0)]
        names.append((f"{s}_s", 1.0))
        if s == "mean":
            names.append(("Average Response Time", 1e-3))
        else:
            names.append((f"{s[1:]}%", 1e-3))  # Locust: "99%", in milliseconds
        return names

    def __str__(self) -> str:
        return f"{self.statistic} <= {self.seconds * 1e3:g} ms"


def parse_objective(text: str) -> Objective:
    """'p99=100ms', 'p95=0.25s' or 'mean=40ms'."""
    match = re.fullmatch(r"\s*(p\d{1,2}(?:\.\d+)?|mean)\s*=\s*([0-9.]+)\s*(ms|s)\s*", text)
    if match is None:
        raise InputError(
            f"bad objective {text!r}: write it as p99=100ms, p95=0.25s or mean=40ms", field="slo"
        )
    seconds = float(match.group(2)) * UNIT_SECONDS[match.group(3)]
    if not seconds > 0:
        raise InputError(f"bad objective {text!r}: the latency must be positive", field="slo")
    return Objective(match.group(1), seconds)


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
        help="CSV of load steps (one row per step and API); several files are read as one",
    )
    source.add_argument(
        "--data",
        type=Path,
        help="window dataset with per-API latency: recorded traffic, binned by load into steps",
    )
    parser.add_argument(
        "--bins", type=int, default=8, help="with --data: load bins (steps) per API (default 8)"
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
        "--rate", type=float, action="append", default=[], help="also estimate latency at RATE"
    )
    parser.add_argument(
        "--scale",
        type=float,
        action="append",
        default=[],
        help="also estimate latency at K times the busiest step (3 = 3x the peak load)",
    )
    parser.add_argument("--out", type=Path, default=Path("capacity"), help="directory for CSV, PNG")


def _normal(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _column(header: Sequence[str], names: Sequence[str]) -> str | None:
    """The header's column spelled like one of `names`, ignoring case and punctuation."""
    by_normal: dict[str, str] = {}
    for column in header:
        by_normal.setdefault(_normal(column), column)
    return next((by_normal[_normal(n)] for n in names if _normal(n) in by_normal), None)


def _number(text: str, source: str, line: int, field: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"not a number: {text!r}", source=source, line=line, field=field) from None
    if not math.isfinite(value) or value < 0:
        raise InputError(
            f"must be finite and non-negative, is {text!r}", source=source, line=line, field=field
        )
    return value


def read_steps(
    paths: Sequence[Path], objective: Objective, group_by: Sequence[str]
) -> dict[tuple[str, str], list[Step]]:
    """Steps per (group, API) from every file, validated; the latency in seconds."""
    steps: dict[tuple[str, str], list[Step]] = {}
    for path in paths:
        source = str(path)
        try:
            handle = open(path, newline="", encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise InputError(f"cannot open: {exc.strerror}", source=source) from exc
        with handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            achieved = _column(header, ACHIEVED_COLUMNS)
            if achieved is None:
                raise InputError(
                    f"no served-rate column (one of {', '.join(ACHIEVED_COLUMNS)})",
                    source=source,
                    line=1,
                )
            latency = next(
                ((found, f) for n, f in objective.columns() if (found := _column(header, [n]))),
                None,
            )
            if latency is None:
                names = ", ".join(n for n, _ in objective.columns())
                raise InputError(
                    f"no column for {objective.statistic} (one of {names})", source=source, line=1
                )
            groups = [_column(header, [name]) for name in group_by]
            for name, found in zip(group_by, groups, strict=True):
                if found is None:
                    raise InputError("no such column to group by", source=source, field=name)
            api, offered = _column(header, API_COLUMNS), _column(header, OFFERED_COLUMNS)
            count = _column(header, COUNT_COLUMNS)
            for line, row in enumerate(reader, start=2):
                if None in row or any(v is None for v in row.values()):
                    raise InputError(f"expected {len(header)} columns", source=source, line=line)
                if count and _number(row[count], source, line, count) == 0:
                    continue
                served = _number(row[achieved], source, line, achieved)
                seconds = _number(row[latency[0]], source, line, latency[0]) * latency[1]
                asked = _number(row[offered], source, line, offered) if offered else math.nan
                group = "/".join(row[str(name)] for name in groups)
                key = (group, row[api] if api else "all")
                steps.setdefault(key, []).append(Step(asked, served, seconds))
    if not steps:
        raise InputError("hold no steps", source=", ".join(map(str, paths)))
    return steps


def _rate(value: float) -> str:
    """A rate for tables: whole numbers, or 3 significant digits below 100 (recorded traffic)."""
    if math.isinf(value):
        return "inf"
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


def _ms(seconds: float) -> str:
    """A latency for tables, in ms: 'saturated' past the capacity, '>100s' for a backlog."""
    if math.isinf(seconds):
        return "saturated"
    return ">100s" if seconds > 100.0 else f"{1e3 * seconds:.1f}"


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
            "measured": _rate(rate) if lo < rate < hi or rate == 0 else f">={_rate(lo)}",
            "saturates_at": _rate(max(saturated)) if saturated else "-",
        }
        if self.fit is None:
            row.update(model="-", model_range="-", fit_rmse_log="-")
        else:
            low, best, high = self.fit.max_rate(objective.seconds)
            row.update(
                model=_rate(best), model_range=f"{_rate(low)}-{_rate(high)}",
                fit_rmse_log=self.fit.rmse_log,
            )  # fmt: skip
        top = max(s.rate for s in self.steps)
        wanted = [(f"@{r:g}", r) for r in rates] + [(f"@{k:g}x", k * top) for k in scales]
        for label, r in wanted:
            column = f"{objective.statistic}_ms{label}"
            if self.fit is None:
                row[column] = "-"
                continue
            fastest, likeliest, slowest = (_ms(v) for v in self.fit.latency(r))
            row[column] = f"{likeliest} ({fastest}-{slowest})"
        return row

    def sentence(self, objective: Objective) -> str:
        """The answer in words: the measurement where the steps bracket it, else the model's."""
        rate, lo, hi = self.measured
        who = f"{self.group} {self.api}".strip()
        if rate == 0:
            return f"{who}: over {objective} already at the lowest tested rate ({_rate(hi)}/s)"
        if lo < rate < hi:
            return (
                f"{who}: {_rate(rate)} {self.unit} within {objective} "
                f"(measured between the steps at {_rate(lo)} and {_rate(hi)})"
            )
        if self.fit is None:
            return f"{who}: at least {_rate(lo)} {self.unit} within {objective} ({self.why_no_fit})"
        low, best, high = self.fit.max_rate(objective.seconds)
        return (
            f"{who}: at least {_rate(lo)} {self.unit} within {objective} (highest step); the "
            f"latency curve extrapolates to {_rate(best)}, plausible {_rate(low)}-{_rate(high)}"
        )


def answer(
    group: str, api: str, steps: list[Step], objective: Objective, unit: str = "requests/s"
) -> Answer:
    measured = measured_max_rate(steps, objective.seconds)
    try:
        fit, why = fit_curve(steps), ""
    except InputError as exc:
        fit, why = None, exc.bare_message
    return Answer(group, api, steps, measured, fit, why, unit)


def window_steps(path: Path, objective: Objective, bins: int) -> dict[tuple[str, str], list[Step]]:
    """Steps per API from a window dataset's recorded latency."""
    if objective.statistic not in LATENCY_STATISTICS:
        raise InputError(
            f"windows keep {', '.join(LATENCY_STATISTICS)}, not {objective.statistic}",
            field="slo",
        )
    windows = load_windows(path)
    steps = load_steps(windows, objective.statistic, bins)
    if not steps:
        raise InputError(
            "no window carries latency (import spans with start times to keep it), or too few "
            "windows per API",
            source=str(path),
        )
    return {("", f"{c}:{o}"): s for (c, o), s in steps.items()}


def plot(result: Answer, objective: Objective, path: Path) -> None:
    """Latency against rate: the steps, the fitted curve with its plausible range, the objective."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    calm = [s for s in result.steps if not s.saturated]
    full = [s for s in result.steps if s.saturated]
    ax.scatter([s.rate for s in calm], [1e3 * s.latency for s in calm], label="step")
    if full:
        ax.scatter(
            [s.rate for s in full], [1e3 * s.latency for s in full], marker="x", label="saturated"
        )
    if result.fit is not None:
        top = max(s.rate for s in result.steps) * 1.5
        x = np.linspace(0.0, top, 200)
        curves = np.array([c.latency(x) for c in result.fit.plausible]) * 1e3
        ax.fill_between(x, curves.min(axis=0), curves.max(axis=0), alpha=0.2, label="plausible")
        ax.plot(x, 1e3 * result.fit.best.latency(x), label="fitted curve")
    ax.axhline(1e3 * objective.seconds, color="red", ls="--", label=str(objective))
    ax.set_yscale("log")
    ax.set_ylim(bottom=min(1e3 * s.latency for s in result.steps) / 2)
    ax.set_xlabel("requests/s")
    ax.set_ylabel(f"{objective.statistic} latency (ms)")
    ax.set_title(f"{result.group} {result.api}".strip(), fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    say = Phases("capacity")
    group_by = [c.strip() for c in args.group_by.split(",") if c.strip()]
    for name, values in (("rate", args.rate), ("scale", args.scale)):
        for value in values:
            if not (math.isfinite(value) and value > 0):
                raise InputError(f"--{name} must be a positive number, is {value:g}", field=name)
    if args.bins < 1:
        raise InputError(f"--bins must be >= 1, is {args.bins}", field="bins")
    if args.data is not None:
        if group_by:
            raise InputError("--group-by applies to --runs only", field="group-by")
        steps = window_steps(args.data, args.slo, args.bins)
        unit = "requests/s of all APIs"
    else:
        steps, unit = read_steps(args.runs, args.slo, group_by), "requests/s"
    say(f"fitting latency curves for {len(steps)} group and API pairs")
    results = [answer(g, a, s, args.slo, unit) for (g, a), s in sorted(steps.items())]
    rows = [r.row(args.slo, args.rate, args.scale) for r in results]
    columns = list(rows[0])
    if not group_by:
        columns.remove("group")
    print(format_table(rows, columns))
    for result in results:
        print(result.sentence(args.slo))
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "capacity.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for i, result in enumerate(results):
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{result.group}_{result.api}").strip("_")
        plot(result, args.slo, args.out / f"{i:02d}_{name or 'all'}.png")
    if args.data is not None:
        write_drivers(args.data, args.slo, args.out / "drivers.csv")
    say(f"wrote {args.out / 'capacity.csv'} and {len(results)} plots")
    return 0


def write_drivers(data: Path, objective: Objective, path: Path, shown: int = 3) -> None:
    """Which request rates each API's latency follows, by mutual information: printed and CSV."""
    drivers = latency_drivers(load_windows(data), objective.statistic)
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

"""Locust's `--csv PREFIX` history (PREFIX_stats_history.csv) read as load steps.

Locust writes a row per request name and second, and one named `Aggregated`, with the user count
of the moment. A run of consecutive rows at one user count is a step. What each column holds, in
Locust 2.x (`locust/stats.py`, `StatsCSVFileWriter._stats_history_data_rows`):

- `Requests/s` and `Failures/s`: the mean of the 10 seconds that end 2 s before the last request;
- the percentile columns (`50%` ... `100%`): with `--csv-full-history`, of the last 10 seconds
  (rows per request name are written only then); without it, of every request since the run
  began, so a step's own percentile cannot be read (the file has `Aggregated` rows only);
- `Total Request Count` and `Total Average Response Time`: since the run began.

So a step's rows are read from WARM_UP_S after its first: then each row's windows lie inside the
step. Its rate is the mean of those rows' `Requests/s` (less `Failures/s` for the rate served),
its percentile the median of theirs; its mean latency comes from the running totals (sums of
response times over requests, differenced across the step), which any history file holds.
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from estimator.errors import InputError
from estimator.importers.common import find_column
from estimator.latency import Step
from exporter.objective import Objective, number

WARM_UP_S = 12.0
"""Seconds from a step's first row until a row's windows (the rate's reaches 12 s back) hold no
second of the step before or of the ramp to it."""
REQUIRED = ("Timestamp", "User Count", "Name", "Requests/s")
TOTALS = ("Total Request Count", "Total Average Response Time")
AGGREGATED = "Aggregated"


def is_history(header: Sequence[str]) -> bool:
    """Whether a CSV header is that of Locust's stats_history file."""
    return all(find_column(header, [name]) for name in ("Timestamp", "User Count", "Requests/s"))


@dataclass(frozen=True)
class _Row:
    line: int
    time: float
    users: float
    group: str
    api: str
    rate: float  # requests/s sent
    failed: float  # failures/s among them
    latency: float | None  # seconds at the objective's percentile; None where "N/A"
    count: float  # requests since the run began
    total_s: float  # their summed response time, seconds


def read_history(
    reader: csv.DictReader[str],
    source: str,
    objective: Objective,
    group_by: Sequence[str],
    steps: dict[tuple[str, str], list[Step]],
) -> None:
    """Add the steps of a Locust stats_history file to `steps`."""
    rows = _rows(reader, source, objective, group_by)
    per_api = [r for r in rows if r.api != AGGREGATED]
    if per_api:
        rows = per_api  # the Aggregated rows sum them
    elif rows and objective.statistic != "mean":
        raise InputError(
            f"holds only '{AGGREGATED}' rows, whose percentiles Locust counts from the start of "
            "the run (it writes rows per request name, with the percentiles of the last 10 s, "
            f"only with --csv-full-history): no step's own {objective.statistic} can be read. "
            "Run Locust with --csv-full-history, or ask for --slo mean=..., read from the "
            "running totals",
            source=source,
            line=rows[0].line,
            field=_latency_column(reader.fieldnames or [], objective, source),
        )
    found = 0
    for segment in _segments(rows):
        found += _add_step(segment, objective, steps)
    if rows and not found:
        raise InputError(
            f"no step: no user count lasts over {WARM_UP_S:g} s (a step's first {WARM_UP_S:g} s "
            "are its ramp, in Locust's rate and percentile windows); hold each step longer",
            source=source,
            field="User Count",
        )


def _latency_column(header: Sequence[str], objective: Objective, source: str) -> str:
    """The percentile column of the objective (Locust's `99%`), in milliseconds."""
    if objective.statistic == "mean":
        return TOTALS[1]
    name = f"{objective.statistic[1:]}%"
    found = find_column(header, [name])
    if found is None:
        shown = ", ".join(h for h in header if h.endswith("%"))
        raise InputError(
            f"no column {name} for {objective.statistic} (this file has {shown}); Locust writes "
            "the percentiles of its --csv-percentiles-to-report (option of locust.conf or "
            "the locust.stats.PERCENTILES_TO_REPORT list)",
            source=source,
            line=1,
        )
    return found


def _rows(
    reader: csv.DictReader[str], source: str, objective: Objective, group_by: Sequence[str]
) -> list[_Row]:
    """Every row, validated, in file order (which must be time order)."""
    header = reader.fieldnames or []
    names = [find_column(header, [n]) for n in REQUIRED]
    wanted = [find_column(header, [n]) for n in TOTALS] if objective.statistic == "mean" else []
    for spelled, found in zip(REQUIRED + TOTALS, names + wanted, strict=False):
        if found is None:
            raise InputError(f"no column {spelled} (Locust's stats_history)", source=source, line=1)
    time, users, name, rate = (str(n) for n in names)
    kind = find_column(header, ["Type"])
    failed = find_column(header, ["Failures/s"])
    latency = _latency_column(header, objective, source)
    groups = [find_column(header, [g]) for g in group_by]
    for g, found in zip(group_by, groups, strict=True):
        if found is None:
            raise InputError("no such column to group by", source=source, field=g)
    out: list[_Row] = []
    for row in reader:
        line = reader.line_num
        if None in row or any(v is None for v in row.values()):
            raise InputError(f"expected {len(header)} columns", source=source, line=line)
        at = number(row[time], source, line, time)
        if out and at < out[-1].time:
            raise InputError(
                f"goes back in time (from {out[-1].time:g})", source=source, line=line, field=time
            )
        api = row[name].strip()
        if kind and row[kind].strip():  # GET and POST of one name are two APIs
            api = f"{row[kind].strip()} {api}"
        mean = objective.statistic == "mean"
        count = number(row[TOTALS[0]], source, line, TOTALS[0]) if mean else 0.0
        average = number(row[TOTALS[1]], source, line, TOTALS[1]) if mean else 0.0
        value = None
        if not mean and row[latency].strip() != "N/A":
            value = number(row[latency], source, line, latency) * 1e-3
        out.append(
            _Row(
                line, at, number(row[users], source, line, users),
                "/".join(row[str(g)] for g in groups), api,
                number(row[rate], source, line, rate),
                number(row[failed], source, line, failed) if failed else 0.0,
                value, count, count * average * 1e-3,
            )
        )  # fmt: skip
    return out


def _segments(rows: list[_Row]) -> list[list[_Row]]:
    """Runs of consecutive rows at one user count (and group), users > 0."""
    out: list[list[_Row]] = []
    for row in rows:
        if out and (out[-1][-1].users, out[-1][-1].group) == (row.users, row.group):
            out[-1].append(row)
        else:
            out.append([row])
    return [s for s in out if s[0].users > 0]


def _add_step(
    segment: list[_Row], objective: Objective, steps: dict[tuple[str, str], list[Step]]
) -> int:
    """Add a step per API of one segment to `steps`; how many were added."""
    start = segment[0].time + WARM_UP_S
    kept = [r for r in segment if r.time >= start]
    seconds = len({r.time for r in kept})
    added = 0
    for api in dict.fromkeys(r.api for r in kept):
        mine = [r for r in kept if r.api == api]
        sent = sum(r.rate for r in mine) / seconds
        served = max(0.0, sent - sum(r.failed for r in mine) / seconds)
        if objective.statistic == "mean":
            before = [r for r in segment if r.api == api and r.time < start]
            base = before[-1] if before else mine[0]
            done = mine[-1].count - base.count
            latency = (mine[-1].total_s - base.total_s) / done if done > 0 else None
        else:
            values = [r.latency for r in mine if r.latency is not None and r.rate > 0]
            latency = statistics.median(values) if values else None
        if latency is None or sent == 0:
            continue
        steps.setdefault((segment[0].group, api), []).append(Step(sent, served, latency))
        added += 1
    return added

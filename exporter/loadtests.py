"""Load-test steps from CSV: wrk2-style summaries, Locust's stats files and JMeter's aggregate
reports, validated.

One row per step and API. Column names are matched ignoring case and punctuation; the latency
column is the one of the objective's statistic (`latency_p99_ms`, `p99_ms`, `99%`, ...).
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from estimator.errors import DataWarning, InputError, not_utf8
from estimator.importers.common import find_column, open_binary
from estimator.latency import Step

API_COLUMNS = ("api", "Name", "endpoint", "Label", "url", "transaction", "request", "route")
"""Spellings of the column naming a row's API (Locust's Name, JMeter's Label, ...)."""
COUNT_COLUMNS = ("Request Count",)  # Locust: a row with no requests has no percentiles ("N/A")
ACHIEVED_COLUMNS = (
    "achieved_rps", "actual_rps", "served_rps", "achieved_rate", "served_rate", "Requests/s",
    "Requests/sec", "throughput_rps", "throughput", "requests_per_second", "rps",
)  # fmt: skip
"""Spellings of the rate a step served (requests/s), in order of preference: the names that say
served first; a bare `rps` beside one of them is the rate offered (a target)."""
FAILURE_COLUMNS = ("Failures/s", "failures_per_second", "errors_per_second")
"""Spellings of the failed requests per second among those sent (Locust's Failures/s): a
failure is not served, so they are taken off the rate served, and the rate sent is the rate
offered where no column says it (a step of errors reads as saturated)."""
OFFERED_COLUMNS = (
    "offered_rps", "offered_rate", "target_rps", "target_rate", "requested_rps", "rate", "offered",
)  # fmt: skip
"""Spellings of the rate a step was offered (an open-loop tool's `-R`), in order of preference."""
UNIT_SECONDS = {"ms": 1e-3, "s": 1.0}
OVER_OFFERED = 1.1
"""A step that served this many times what it was offered has its columns swapped, likely."""


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
            names.append((f"{s[1:]}% Line", 1e-3))  # JMeter: "99% Line", in milliseconds
        return names

    def __str__(self) -> str:
        return f"{self.statistic} <= {self.seconds * 1e3:g} ms"


def parse_objective(text: str) -> Objective:
    """'p99=100ms', 'p95=0.25s' or 'mean=40ms'."""
    match = re.fullmatch(
        r"\s*(p\d{1,2}(?:\.\d+)?|p99\d+|mean)\s*=\s*(-?(?:\d+\.?\d*|\.\d+))\s*(ms|s)\s*", text
    )
    if match is None:
        raise InputError(
            f"bad objective {text!r}: write it as p99=100ms, p95=0.25s, p99.9=1s or mean=40ms",
            field="slo",
        )
    seconds = float(match.group(2)) * UNIT_SECONDS[match.group(3)]
    if not seconds > 0:
        raise InputError(f"bad objective {text!r}: the latency must be positive", field="slo")
    statistic = match.group(1)
    if re.fullmatch(r"p99\d+", statistic):  # p999 is p99.9, as wrk2 summaries name columns
        statistic = f"p99.{statistic[3:]}"
    return Objective(statistic, seconds)


def _delimiter(handle: io.TextIOWrapper) -> str:
    """The field separator of a CSV file: a comma, or where its header has none but semicolons
    or tabs (a spreadsheet of a comma-decimal locale, a TSV), those."""
    header = handle.readline()
    handle.seek(0)
    if "," not in header:
        for other in (";", "\t"):
            if other in header:
                return other
    return ","


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
            raw = open_binary(path)  # a .gz file is read gunzipped
        except OSError as exc:
            raise InputError(f"cannot open: {exc.strerror}", source=source) from exc
        try:
            _read_file(raw, source, objective, group_by, steps)
        except UnicodeDecodeError as exc:
            raise InputError(not_utf8(exc), source=source) from None
        except (OSError, EOFError) as exc:  # a damaged gzip stream
            raise InputError(f"cannot read: {exc}", source=source) from None
    if not steps:
        raise InputError("hold no steps", source=", ".join(map(str, paths)))
    return steps


def _read_file(
    raw: gzip.GzipFile | BinaryIO,
    source: str,
    objective: Objective,
    group_by: Sequence[str],
    steps: dict[tuple[str, str], list[Step]],
) -> None:
    """Add the steps of one open file to `steps`."""
    with raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=_delimiter(handle))
        header = reader.fieldnames or []
        achieved = find_column(header, ACHIEVED_COLUMNS)
        offered = find_column(header, OFFERED_COLUMNS)
        bare = find_column(header, ["rps"])
        if offered is None and bare is not None and achieved != bare:
            offered = bare  # a target `rps` beside the rate served
        failures = find_column(header, FAILURE_COLUMNS) if achieved else None
        if achieved is None and offered is None:
            raise InputError(
                f"no rate column: one of {', '.join(ACHIEVED_COLUMNS)} (served) or "
                f"{', '.join(OFFERED_COLUMNS)} (offered)",
                source=source,
                line=1,
            )
        if achieved is None:
            warnings.warn(
                DataWarning(
                    f"{source}: no served-rate column ({', '.join(ACHIEVED_COLUMNS[:3])}, ...): "
                    f"each step is read as serving the rate it was offered ({offered}), so a "
                    "saturated step cannot be told"
                ),
                stacklevel=2,
            )
        latency = next(
            ((found, f) for n, f in objective.columns() if (found := find_column(header, [n]))),
            None,
        )
        if latency is None:
            names = ", ".join(n for n, _ in objective.columns())
            raise InputError(
                f"no column for {objective.statistic} (one of {names})", source=source, line=1
            )
        groups = [find_column(header, [name]) for name in group_by]
        for name, found in zip(group_by, groups, strict=True):
            if found is None:
                raise InputError("no such column to group by", source=source, field=name)
        api = find_column(header, API_COLUMNS)
        kind = find_column(header, ["Type"]) if api == find_column(header, ["Name"]) else None
        count = find_column(header, COUNT_COLUMNS)
        first_over: tuple[int, float, float] | None = None  # a step serving more than asked
        for row in reader:
            line = reader.line_num  # blank lines skipped by the reader still count
            if None in row or any(v is None for v in row.values()):
                raise InputError(f"expected {len(header)} columns", source=source, line=line)
            if count and _number(row[count], source, line, count) == 0:
                continue
            seconds = _number(row[latency[0]], source, line, latency[0]) * latency[1]
            asked = _number(row[offered], source, line, offered) if offered else math.nan
            served = _number(row[achieved], source, line, achieved) if achieved else asked
            if failures:  # what was sent is offered, what did not fail served
                asked = served if math.isnan(asked) else asked
                served = max(0.0, served - _number(row[failures], source, line, failures))
            group = "/".join(row[str(name)] for name in groups)
            name = row[api] if api else "all"
            if kind and row[kind].strip():  # Locust: GET and POST of one name are two APIs
                name = f"{row[kind].strip()} {name}"
            key = (group, name)
            steps.setdefault(key, []).append(Step(asked, served, seconds))
            if served > OVER_OFFERED * asked and first_over is None:  # NaN asked: never
                first_over = (line, served, asked)
        if first_over is not None:
            line, served, asked = first_over
            warnings.warn(
                DataWarning(
                    f"{source}, line {line}: a step served {served:g}/s of {asked:g}/s offered "
                    f"({achieved} over {offered}): are the two columns swapped? A step is read "
                    "as saturated where it serves less than it was offered"
                ),
                stacklevel=2,
            )

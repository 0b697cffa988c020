"""Load-test steps from files, validated: wrk2-style summaries, Locust's stats and
stats_history files and JMeter's aggregate reports (CSV), and k6's and Vegeta's JSON summaries.

A CSV has one row per step and API (Locust's stats_history one row per second, cut into steps
by exporter.locust_history); column names are matched ignoring case and punctuation; the latency
column is the one of the objective's statistic (`latency_p99_ms`, `p99_ms`, `99%`, ...). A JSON
summary is one step (exporter.summaries).
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from estimator.errors import DataWarning, InputError, not_utf8
from estimator.importers.common import find_column, open_binary
from estimator.latency import Step
from exporter.locust_history import is_history, read_history
from exporter.objective import Objective, number, parse_objective
from exporter.summaries import read_summary

__all__ = ["Labels", "Objective", "parse_objective", "read_steps", "run_files"]

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
OVER_OFFERED = 1.1
"""A step that served this many times what it was offered has its columns swapped, likely."""


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


SIDE_FILES = ("_failures.csv", "_exceptions.csv")
"""Ends of the names of Locust's `--csv` files that hold no steps, passed over in a folder."""
STEP_FILES = (".csv", ".json", ".csv.gz", ".json.gz")


STEP_TABLE = "steps.csv"
"""The table `python -m loadgen.steps` writes in its folder, beside the Locust CSVs it sums."""


def run_files(paths: Sequence[Path]) -> list[Path]:
    """The files that `paths` name: a folder stands for its load-test files (CSV and JSON, in
    name order, Locust's failures and exceptions files left out), as k6 and Vegeta write one
    summary per run and so one file per step; a folder of `loadgen.steps` (it holds STEP_TABLE)
    for that table alone, not the per-step Locust files it was summed from."""
    files: list[Path] = []
    for path in paths:
        if not path.is_dir():
            files.append(path)
            continue
        if (path / STEP_TABLE).is_file():
            files.append(path / STEP_TABLE)
            continue
        found = sorted(
            p
            for p in path.iterdir()
            if p.is_file()
            and not p.name.startswith(".")
            and p.name.lower().endswith(STEP_FILES)
            and not p.name.lower().endswith(SIDE_FILES)
        )
        if not found:
            raise InputError(
                f"a folder with no load-test files ({', '.join(STEP_FILES)})", source=str(path)
            )
        files.extend(found)
    return files


Labels = dict[tuple[str, str], list[dict[str, str]]]
"""Per (group, API), each step's columns that a table holds beside those read (`read_steps`)."""


def read_steps(
    paths: Sequence[Path],
    objective: Objective,
    group_by: Sequence[str],
    labels: Labels | None = None,
) -> dict[tuple[str, str], list[Step]]:
    """Steps per (group, API) from every file (a folder: its files), validated; the latency in
    seconds. Given `labels`, a table's other columns are kept there, step by step (to tell what
    sets apart steps that `group_by` pools)."""
    steps: dict[tuple[str, str], list[Step]] = {}
    labels = {} if labels is None else labels
    for path in run_files(paths):
        source = str(path)
        try:
            raw = open_binary(path)  # a .gz file is read gunzipped
        except OSError as exc:
            raise InputError(f"cannot open: {exc.strerror}", source=source) from exc
        try:
            _read_file(raw, source, objective, group_by, steps, labels)
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
    labels: Labels,
) -> None:
    """Add the steps of one open file to `steps`: a JSON summary, a Locust stats_history file
    or a table of steps."""
    with raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as handle:
        text_start = handle.read(4096).lstrip()
        handle.seek(0)
        if text_start.startswith("{"):
            read_summary(handle.read(), source, objective, group_by, steps)
            return
        reader = csv.DictReader(handle, delimiter=_delimiter(handle))
        header = reader.fieldnames or []
        if is_history(header):
            read_history(reader, source, objective, group_by, steps)
        else:
            _read_table(reader, source, objective, group_by, steps, labels)


def _read_table(
    reader: csv.DictReader[str],
    source: str,
    objective: Objective,
    group_by: Sequence[str],
    steps: dict[tuple[str, str], list[Step]],
    labels: Labels,
) -> None:
    """Add the steps of a table, one row per step and API, to `steps`, and their other columns
    to `labels`."""
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
    read = {achieved, offered, failures, latency[0], api, kind, count, *groups}
    others = [c for c in header if c not in read]
    first_over: tuple[int, float, float] | None = None  # a step serving more than asked
    for row in reader:
        line = reader.line_num  # blank lines skipped by the reader still count
        if None in row or any(v is None for v in row.values()):
            raise InputError(f"expected {len(header)} columns", source=source, line=line)
        if count and number(row[count], source, line, count) == 0:
            continue
        seconds = number(row[latency[0]], source, line, latency[0]) * latency[1]
        asked = number(row[offered], source, line, offered) if offered else math.nan
        served = number(row[achieved], source, line, achieved) if achieved else asked
        if failures:  # what was sent is offered, what did not fail served
            asked = served if math.isnan(asked) else asked
            served = max(0.0, served - number(row[failures], source, line, failures))
        group = "/".join(row[str(name)] for name in groups)
        name = row[api] if api else "all"
        if not name.strip():
            raise InputError("no API name", source=source, line=line, field=api)
        if kind and row[kind].strip():  # Locust: GET and POST of one name are two APIs
            name = f"{row[kind].strip()} {name}"
        key = (group, name)
        steps.setdefault(key, []).append(Step(asked, served, seconds))
        labels.setdefault(key, []).append({c: row[c] for c in others})
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

"""Span CSV in the Train-Ticket layout: TraceID, SpanID, ParentID ('root'), PodName, OperationName,
StartTimeUnixNano, EndTimeUnixNano, Duration (one row per span, any number of files).

Column names are matched ignoring case and punctuation, and common other spellings are accepted
(trace_id, span_id, parent_span_id, service_name or service for the component, span_name or name
for the operation, end_time), so exports of other tracing back ends read as they are.

Files are read in the time order of their first span (a name order such as HH_MM would put
00_00 before 23_59 in a recording that crosses midnight). Times in microseconds, milliseconds or
seconds are recognized by their magnitude and read as such, with a warning. Blank lines are
skipped; an empty file is skipped with a warning, and one whose gzip stream is cut short is
read up to the cut (skipped in the HH_MM_trace.csv layout: its minute shows as a gap); any other
unreadable content is an error naming the line.
"""

from __future__ import annotations

import csv
import io
import math
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from estimator.errors import DataWarning, InputError, count_of, utc_time
from estimator.importers.common import (
    MAX_UNIX_NS,
    RECENT_SECONDS,
    OnFile,
    expand_inputs,
    far_from,
    find_column,
    in_time_order,
    is_recent,
    no_parent,
    open_binary,
    read_csv_or_skip,
    service_of_pod,
    shown_cell,
    unix_unit,
    windows_of_files,
)
from estimator.spans import UNKNOWN_NS, SpanColumns, Tally
from estimator.windows import Pair, Window

SUFFIXES = (".csv", ".csv.gz")
ID_COLUMNS = ("TraceID", "SpanID", "ParentID")
NAME_COLUMNS = ("PodName", "OperationName")
TIME_COLUMN = "EndTimeUnixNano"
START_COLUMN = "StartTimeUnixNano"
REQUIRED = (*ID_COLUMNS, *NAME_COLUMNS, TIME_COLUMN)
OPTIONAL = (START_COLUMN,)
"""Read where present: with start times, windows keep each API's request latency."""
ALIASES: dict[str, tuple[str, ...]] = {
    "TraceID": ("traceid",),
    "SpanID": ("spanid",),
    "ParentID": ("parentid", "parentspanid"),
    "PodName": ("podname", "pod", "servicename", "service", "component"),
    "OperationName": ("operationname", "operation", "spanname", "name"),
    "EndTimeUnixNano": ("endtimeunixnano", "endtime", "endtimenano"),
    "StartTimeUnixNano": ("starttimeunixnano", "starttime", "starttimenano"),
}
"""Accepted spellings of each column, normalized (lower case, letters and digits only)."""

ENGINE: Literal["c", "pyarrow"] = "c"
try:  # the pyarrow engine is faster where it is installed
    import pyarrow  # noqa: F401

    ENGINE = "pyarrow"
except ImportError:
    pass


def _read_frame(path: Path, salvage: bool) -> tuple[pd.DataFrame, dict[str, str]] | None:
    """The needed columns of one CSV file, as read by pandas (blank lines dropped, the index
    keeping each row's place), named as REQUIRED and OPTIONAL name them, and the file's own
    name of each; None for a file to skip (empty, or its gzip cut short: see
    `read_csv_or_skip` for `salvage`)."""
    source = str(path)
    with warnings.catch_warnings():  # the whole file's read says what it lacks
        warnings.simplefilter("ignore", DataWarning)
        header = read_csv_or_skip(path, salvage, nrows=0)
    if header is None:
        read_csv_or_skip(path)  # None again, now with its warning
        return None
    columns = _match_columns([str(c) for c in header.columns], source)
    dtypes = {columns[c]: str for c in (*ID_COLUMNS, *NAME_COLUMNS)}
    usecols = [columns[c] for c in (*REQUIRED, *OPTIONAL) if c in columns]
    # Only an empty cell is missing: a span named None or NA is so named (pandas would read
    # either as missing), and a parent id so written marks a root (`no_parent`).
    literal = {"keep_default_na": False, "na_values": [""]}
    if ENGINE == "pyarrow":
        frame = read_csv_or_skip(
            path, salvage, usecols=usecols, dtype=dtypes, engine="pyarrow", **literal
        )
    else:  # blank lines are kept (as empty rows) so that row numbers stay line numbers; every
        # column is read, so that a row longer than the header is refused, not read shifted
        frame = read_csv_or_skip(
            path,
            salvage,
            dtype=dtypes,
            engine="c",
            skip_blank_lines=False,
            low_memory=False,
            **literal,
        )
    if frame is None:
        return None
    frame = frame[usecols].rename(columns={found: name for name, found in columns.items()})
    return frame.dropna(how="all"), columns  # blank lines


def _match_columns(header: list[str], source: str) -> dict[str, str]:
    """The file's column for each required one, by name or an accepted spelling."""
    out: dict[str, str] = {}
    for name in (*REQUIRED, *OPTIONAL):
        found = find_column(header, ALIASES[name])
        if found is not None:
            out[name] = found
        elif name in REQUIRED:
            found_text = ", ".join(header)
            if len(found_text) > 200:  # not a CSV header (JSON, say): its start says enough
                found_text = f"{found_text[:200]}... ({count_of(len(header), 'column')})"
            raise InputError(
                f"missing column (found {found_text})", source=source, line=1, field=name
            )
    return out


def _first_bad(mask: pd.Series) -> int:
    """CSV line number (the header is line 1) of the first row flagged in a boolean mask (the
    frame's index is each row's place among the file's lines after the header)."""
    return int(mask.index[mask.to_numpy()][0]) + 2


def _refuse_rows(mask: pd.Series, message: Callable[[int], str], source: str, field: str) -> None:
    """An InputError naming the line of the first row flagged in `mask`, if any; `message`
    says what is wrong given that row's position in the frame."""
    if mask.any():
        row = int(np.argmax(mask.to_numpy()))
        raise InputError(message(row), source=source, line=_first_bad(mask), field=field)


def _times(
    frame: pd.DataFrame, source: str, name: str = TIME_COLUMN, spelt: str | None = None
) -> list[int]:
    """A time column as Unix nanoseconds (integers), or an InputError naming the first bad row.
    Times in microseconds, milliseconds or seconds are told by their magnitude and converted,
    with a warning that names the column as the file spells it (`spelt`)."""
    column = frame[name]
    numbers = column if pd.api.types.is_integer_dtype(column.dtype) else None
    if numbers is None:
        numbers = pd.to_numeric(column, errors="coerce")
    _refuse_rows(
        numbers.isna() | ~numbers.ge(0),
        lambda row: f"expected a non-negative number, got {shown_cell(column.iloc[row])}",
        source,
        name,
    )
    if numbers.empty:
        return []
    typical = float(numbers.median())
    factor, unit_name = unix_unit(typical, 1)
    if factor != 1:
        shown = name if spelt in (None, name) else f"{spelt} (read as {name})"
        warnings.warn(
            DataWarning(f"{shown} holds {unit_name}, not nanoseconds: read as {unit_name}"),
            stacklevel=2,
        )
        numbers = numbers.astype("float64") * factor
    _refuse_rows(
        numbers.astype("float64") > float(MAX_UNIX_NS),  # would overflow 64-bit nanoseconds
        lambda row: f"{shown_cell(column.iloc[row])} is past the year 2262: not a time",
        source,
        name,
    )
    seconds = numbers.astype("float64") / 1e9
    typical_s = typical * factor / 1e9
    if is_recent(typical_s):  # and some time not: another unit than the rest
        _refuse_rows(
            ~seconds.between(*RECENT_SECONDS, inclusive="left"),
            lambda row: (
                f"{shown_cell(column.iloc[row])} reads as {utc_time(seconds.iloc[row])}, "
                f"{far_from(typical_s)}"
            ),
            source,
            name,
        )
    out: list[int] = numbers.round().astype("int64").tolist()
    _warn_rounded(out, source, name)
    return out


ROUNDED_STEP_S = 10.0
"""Times of a file that differ by this much at least, and never less, have been rounded."""


def _warn_rounded(ns: list[int], source: str, name: str) -> None:
    """Warn where a file's times come in coarse steps only (1.67508E+18, as a spreadsheet
    writes a number of 19 digits): its spans' windows and latency are then made up."""
    if len(ns) < 100:
        return
    distinct = np.unique(np.asarray(ns, dtype=np.int64))
    step = float(np.diff(distinct).min()) / 1e9 if len(distinct) > 1 else math.inf
    if step < ROUNDED_STEP_S:
        return
    held = (
        f"one time for all {len(ns)} spans"
        if len(distinct) == 1
        else f"{len(distinct)} distinct times for {len(ns)} spans, none closer than {step:g} s"
    )
    warnings.warn(
        DataWarning(
            f"{source}: {name} holds {held}: rounded (as a spreadsheet writes 1.67508E+18)? "
            "Spans are then counted in windows they did not end in, and latency reads 0"
        ),
        stacklevel=3,
    )


def _columns(
    frame: pd.DataFrame, source: str, columns: dict[str, str] | None = None
) -> SpanColumns:
    """The spans of one CSV file's rows as columns; InputError names the file, line and field.
    `columns`: each column's name as the file spells it, for warnings."""
    spelt = columns or {}
    for name in (*ID_COLUMNS, *NAME_COLUMNS):
        if name == "ParentID":
            continue
        _refuse_rows(frame[name].isna(), lambda _: "empty value", source, name)
    ends = _times(frame, source, TIME_COLUMN, spelt.get(TIME_COLUMN))
    starts = (
        _times(frame, source, START_COLUMN, spelt.get(START_COLUMN))
        if START_COLUMN in frame
        else [UNKNOWN_NS] * len(ends)
    )
    if START_COLUMN in frame:
        _refuse_rows(
            pd.Series(np.asarray(starts) > np.asarray(ends), index=frame.index),
            lambda row: f"the span ends {(starts[row] - ends[row]) / 1e9:g} s before it starts",
            source,
            TIME_COLUMN,
        )
    parents: list[str | None] = [
        None if p is None or p != p or no_parent(p) else p for p in frame["ParentID"].tolist()
    ]
    services: dict[str, str] = {}
    pairs: list[Pair] = []
    cache: dict[Pair, Pair] = {}
    for pod, operation in zip(
        frame["PodName"].tolist(), frame["OperationName"].tolist(), strict=True
    ):
        service = services.get(pod)
        if service is None:
            service = services[pod] = service_of_pod(pod)
        pair = (service, operation)
        pairs.append(cache.setdefault(pair, pair))
    return SpanColumns(
        trace_ids=frame["TraceID"].tolist(),
        span_ids=frame["SpanID"].tolist(),
        parent_ids=parents,
        pairs=pairs,
        end_ns=ends,
        start_ns=starts,
    )


def _columns_of_file(path: Path, frame: pd.DataFrame, columns: dict[str, str]) -> SpanColumns:
    """`_columns` of a file's frame; an error names the column as the file spells it, and the
    line a row starts on where quoted fields hold line breaks (pandas counts rows)."""
    try:
        return _columns(frame, str(path), columns)
    except InputError as exc:
        spelt = columns.get(exc.field or "", exc.field)
        shown = spelt if spelt == exc.field else f"{spelt} (read as {exc.field})"
        line = _physical_line(path, exc.line) if exc.line is not None else None
        if (shown, line) == (exc.field, exc.line):
            raise
        raise InputError(exc.bare_message, source=exc.source, line=line, field=shown) from exc


def _physical_line(path: Path, line: int) -> int:
    """The line of a file that the row pandas numbers `line` (the header's is 1) starts on:
    the same unless a quoted field above it holds a line break."""
    try:
        with io.TextIOWrapper(open_binary(path), "utf-8", errors="replace", newline="") as text:
            reader = csv.reader(text)
            starts = 1
            for row_line, _ in enumerate(reader, start=1):
                if row_line == line:
                    return starts
                starts = reader.line_num + 1
    except (OSError, EOFError, csv.Error):
        pass
    return line


def span_batches(
    paths: Sequence[Path],
    on_file: OnFile | None = None,
    unreadable: Callable[[int], None] | None = None,
    salvage: bool = True,
) -> Iterator[SpanColumns]:
    """The spans of several CSV files, a batch per file, read as they are asked for; a file
    skipped as unreadable (empty, or cut short) is an empty batch, told to `unreadable` (its
    index) before it is yielded. With `salvage`, a gzip file cut short gives the rows before
    the cut (where files of a minute each skip it: a minute lacking part is no minute)."""
    for i, path in enumerate(paths):
        read = _read_frame(path, salvage)
        if read is None and unreadable is not None:
            unreadable(i)
        yield SpanColumns.empty() if read is None else _columns_of_file(path, *read)
        if on_file is not None:
            on_file(path)


def read_span_csv(paths: Sequence[Path], on_file: OnFile | None = None) -> SpanColumns:
    """All spans of several CSV files in one batch (traces may cross files)."""
    out = SpanColumns.empty()
    for batch in span_batches(paths, on_file):
        out.extend(batch)
    return out


def import_span_csv(
    spec: str | Path,
    window_seconds: int = 60,
    on_file: OnFile | None = None,
    fold_gateway: bool = True,
    sampling_ratio: float = 1.0,
    tally: Tally | None = None,
) -> list[Window]:
    """Windows of call-path counts from span CSV files (a file, a directory or a glob), read and
    assembled file by file in the time order of their first span (`tally`: see
    `windows_of_batches`)."""
    paths = expand_inputs(spec, SUFFIXES)
    return import_span_files(paths, window_seconds, on_file, fold_gateway, sampling_ratio, tally)


def import_span_files(
    paths: Sequence[Path],
    window_seconds: int = 60,
    on_file: OnFile | None = None,
    fold_gateway: bool = True,
    sampling_ratio: float = 1.0,
    tally: Tally | None = None,
) -> list[Window]:
    """`import_span_csv` of a list of files."""
    paths = in_time_order(paths, first_time)
    names = [MINUTE_FILE.match(p.name) for p in paths]
    if len(paths) < 2 or not all(names):
        batches = span_batches(paths, on_file)
        return windows_of_files(
            batches, window_seconds, fold_gateway, None, sampling_ratio, tally=tally
        )
    clock = [(int(m.group(1)), int(m.group(2))) for m in names if m is not None]
    minutes: list[int | None] = [hour * 60 + minute for hour, minute in clock]
    valid = all(hour < 24 and minute < 60 for hour, minute in clock)

    def says_nothing(i: int) -> None:
        """An unreadable file says nothing of its minute, where a file with a header and no
        spans says it had no traffic."""
        minutes[i] = None

    return windows_of_files(
        span_batches(paths, on_file, says_nothing, salvage=False),  # a file cut short: a gap
        window_seconds,
        fold_gateway,
        60,
        sampling_ratio,
        minutes if valid else None,
        tally,
    )


MINUTE_FILE = re.compile(r"^(\d{1,2})_(\d{2})_trace\.csv(?:\.gz)?$", re.IGNORECASE)
"""A file of the HH_MM_trace.csv layout: the spans of one minute."""


def first_time(path: Path) -> float | None:
    """The end time (ns) of the first span of a CSV file, read cheaply; None if unreadable."""
    try:
        raw = open_binary(path)
        with raw, io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace") as text:
            rows = csv.reader(text)
            header = next(rows, None)
            row = next((r for r in rows if any(cell.strip() for cell in r)), None)
    except (OSError, EOFError, csv.Error):
        return None
    if not header or row is None:
        return None
    column = find_column(header, ALIASES[TIME_COLUMN])
    if column is None or header.index(column) >= len(row):
        return None
    try:
        value = float(row[header.index(column)])
    except ValueError:
        return None
    return value * unix_unit(value, 1)[0]

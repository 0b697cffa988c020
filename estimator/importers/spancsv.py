"""Span CSV in the Train-Ticket layout: TraceID, SpanID, ParentID ('root'), PodName, OperationName,
StartTimeUnixNano, EndTimeUnixNano, Duration (one row per span, any number of files).

Column names are matched ignoring case and punctuation, and common other spellings are accepted
(trace_id, span_id, parent_span_id, service_name or service for the component, span_name or name
for the operation, end_time), so exports of other tracing back ends read as they are.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import pandas as pd

from estimator.errors import InputError
from estimator.importers.common import (
    OnFile,
    expand_inputs,
    find_column,
    service_of_pod,
    windows_of_files,
)
from estimator.spans import UNKNOWN_NS, SpanColumns
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
ROOT_PARENTS = frozenset({"root", ""})
"""ParentID values that mark a root span (an empty cell too)."""

ENGINE: Literal["c", "pyarrow"] = "c"
try:  # the pyarrow engine is faster where it is installed
    import pyarrow  # noqa: F401

    ENGINE = "pyarrow"
except ImportError:
    pass


def _read_frame(path: Path) -> pd.DataFrame:
    """The needed columns of one CSV file, as read by pandas."""
    source = str(path)
    try:
        header = pd.read_csv(path, nrows=0)
    except (OSError, EOFError, ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"cannot read as CSV: {exc}", source=source, line=1) from exc
    columns = _match_columns([str(c) for c in header.columns], source)
    dtypes = {columns[c]: str for c in (*ID_COLUMNS, *NAME_COLUMNS)}
    usecols = [columns[c] for c in (*REQUIRED, *OPTIONAL) if c in columns]
    try:
        if ENGINE == "pyarrow":
            frame = pd.read_csv(path, usecols=usecols, dtype=dtypes, engine="pyarrow")
        else:  # blank lines are kept (as empty rows) so that row numbers stay line numbers
            frame = pd.read_csv(
                path, usecols=usecols, dtype=dtypes, engine="c", skip_blank_lines=False
            )
    except (OSError, EOFError, ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"cannot read as CSV: {exc}", source=source) from exc
    return frame.rename(columns={found: name for name, found in columns.items()})


def _match_columns(header: list[str], source: str) -> dict[str, str]:
    """The file's column for each required one, by name or an accepted spelling."""
    out: dict[str, str] = {}
    for name in (*REQUIRED, *OPTIONAL):
        found = find_column(header, ALIASES[name])
        if found is not None:
            out[name] = found
        elif name in REQUIRED:
            raise InputError(
                f"missing column (found {', '.join(header)})", source=source, line=1, field=name
            )
    return out


def _first_bad(mask: pd.Series) -> int:
    """CSV line number (the header is line 1) of the first row flagged in a boolean mask."""
    return int(mask.to_numpy().nonzero()[0][0]) + 2


def _times(frame: pd.DataFrame, source: str, name: str = TIME_COLUMN) -> list[int]:
    """A time column (Unix nanoseconds) as integers, or an InputError naming the first bad row."""
    column = frame[name]
    if not pd.api.types.is_integer_dtype(column.dtype):
        numbers = pd.to_numeric(column, errors="coerce")
        bad = numbers.isna() | ~numbers.ge(0)
        if bad.any():
            value = column.iloc[_first_bad(bad) - 2]
            raise InputError(
                f"expected a non-negative integer, got {value!r}",
                source=source,
                line=_first_bad(bad),
                field=name,
            )
        column = numbers.round().astype("int64")
    elif (column < 0).any():
        raise InputError(
            "expected a non-negative integer",
            source=source,
            line=_first_bad(column < 0),
            field=name,
        )
    out: list[int] = column.tolist()
    return out


def read_columns(path: Path) -> SpanColumns:
    """The spans of one CSV file as columns; InputError names the file, line and field."""
    source = str(path)
    frame = _read_frame(path)
    for name in (*ID_COLUMNS, *NAME_COLUMNS):
        if name == "ParentID":
            continue
        empty = frame[name].isna()
        if empty.any():
            raise InputError("empty value", source=source, line=_first_bad(empty), field=name)
    ends = _times(frame, source)
    starts = (
        _times(frame, source, START_COLUMN) if START_COLUMN in frame else [UNKNOWN_NS] * len(ends)
    )
    parents: list[str | None] = [
        None if p is None or p != p or p in ROOT_PARENTS else p for p in frame["ParentID"].tolist()
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


def span_batches(paths: Sequence[Path], on_file: OnFile | None = None) -> Iterator[SpanColumns]:
    """The spans of several CSV files, a batch per file, read as they are asked for."""
    for path in paths:
        yield read_columns(path)
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
) -> list[Window]:
    """Windows of call-path counts from span CSV files (a file, a directory or a glob), read and
    assembled file by file in name order (time order for the HH_MM_trace.csv layout)."""
    batches = span_batches(expand_inputs(spec, SUFFIXES), on_file)
    return windows_of_files(batches, window_seconds, fold_gateway)

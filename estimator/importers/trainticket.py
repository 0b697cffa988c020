"""The Train-Ticket recording: span CSVs under trace/, per-pod metric CSVs under metric/.

Metric files are `<pod>_metric.csv[.gz]` with one row per minute: TimeStamp (Unix seconds),
CpuUsage(m) (millicores, read as `cpu` in cores) and MemoryUsage(Mi) (read as `memory` in bytes).
Other files (front_service.csv.gz holds front-end latency, not a pod) are skipped. A file may
hold only one of the two usage columns: the other resource is then unknown for that pod. A row
joins the window its TimeStamp falls in. Rows of one pod in one window are averaged (usage
rates), and the pods of one service are summed (replicas add up). A value that is empty is
unknown and left out, never zero; only windows that have traces are kept. Metrics that meet no
window with traces (times in milliseconds, or another day's files) are an error, not a dataset
without usage.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from estimator.errors import DataWarning, InputError, first_few
from estimator.importers.common import (
    OnFile,
    check_window_seconds,
    find_column,
    read_csv_or_skip,
    service_of_pod,
    unix_unit,
)
from estimator.importers.spancsv import SUFFIXES, import_span_files
from estimator.spans import NS_PER_S
from estimator.windows import SeriesKey, Window

METRIC_SUFFIXES = ("_metric.csv.gz", "_metric.csv")
TIME_COLUMN = "TimeStamp"
RESOURCES: dict[str, tuple[str, float]] = {
    "CpuUsage(m)": ("cpu", 1e-3),
    "MemoryUsage(Mi)": ("memory", float(2**20)),
}
"""Metric CSV column -> (resource name, factor to base units)."""


def metric_files(directory: str | Path) -> list[Path]:
    """The per-pod metric files of a directory and its subfolders (a folder per day, say),
    sorted (front_service and others skipped); a directory without any is an error, not a
    recording without usage."""
    root = Path(directory)
    if not root.is_dir():
        raise InputError("not a directory of metric CSV files", source=str(root))
    found = sorted(
        p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith(METRIC_SUFFIXES)
    )
    if not found:
        raise InputError(
            f"no metric files: expected <pod>{METRIC_SUFFIXES[1]} or <pod>{METRIC_SUFFIXES[0]}",
            source=str(root),
        )
    return found


def _pod_of(path: Path) -> str:
    for suffix in METRIC_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.name


def _numbers(frame: pd.DataFrame, column: str, source: str) -> pd.Series:
    """A numeric column (empty cells are NaN), or an InputError naming the first bad row."""
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = (values.isna() & raw.notna()) | (values < 0) | values.isin([float("inf")])
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise InputError(
            f"expected a finite non-negative number, got {raw.iloc[row]!r}",
            source=source,
            line=int(raw.index[row]) + 2,
            field=column,
        )
    return values


@dataclass
class PodMetrics:
    """One pod's metric file: mean value per (window start, resource) in base units, the
    windows it has a row in (whatever the row's values), and the resources it has columns for."""

    values: dict[tuple[int, str], float] = field(default_factory=dict)
    rows: set[int] = field(default_factory=set)
    resources: set[str] = field(default_factory=set)


def read_pod_metrics(path: Path, window_seconds: int = 60) -> PodMetrics:
    """One pod's metric file (`PodMetrics`). Column names are matched ignoring case and
    punctuation; blank lines are skipped; times in milliseconds (or micro-, nanoseconds) are recognized by their magnitude, with a warning. An
    empty file, or one whose gzip stream is cut short, is skipped with a warning."""
    source = str(path)
    frame = read_csv_or_skip(path, dtype=str, keep_default_na=True, skip_blank_lines=False)
    if frame is None:
        return PodMetrics()
    frame = frame.dropna(how="all")  # blank lines; the index keeps each row's line
    header = [str(c) for c in frame.columns]
    time_column = find_column(header, [TIME_COLUMN])
    if time_column is None:
        raise InputError("missing column", source=source, line=1, field=TIME_COLUMN)
    present = {found: column for column in RESOURCES if (found := find_column(header, [column]))}
    if not present:
        raise InputError(
            f"no usage column: expected one of {', '.join(RESOURCES)}", source=source, line=1
        )
    times = _numbers(frame, time_column, source)
    if times.isna().any():
        row = int(times.index[times.isna().to_numpy()][0])
        raise InputError("empty value", source=source, line=row + 2, field=time_column)
    if not times.empty:
        to_ns, unit_name = unix_unit(float(times.median()), NS_PER_S)
        if to_ns != NS_PER_S:
            warnings.warn(
                DataWarning(f"{TIME_COLUMN} holds {unit_name}, not seconds: read as {unit_name}"),
                stacklevel=2,
            )
            times = times * to_ns / NS_PER_S
    starts = (times // window_seconds * window_seconds).astype("int64")
    out: dict[tuple[int, str], float] = {}
    for found, column in present.items():
        resource, factor = RESOURCES[column]
        values = _numbers(frame, found, source) * factor
        means = values.groupby(starts).mean().dropna()
        out.update(
            ((int(start), resource), float(v))
            for start, v in zip(means.index.tolist(), means.tolist(), strict=True)
        )
    resources = {RESOURCES[column][0] for column in present.values()}
    return PodMetrics(out, {int(s) for s in starts.unique().tolist()}, resources)


def join_metrics(
    windows: Sequence[Window],
    paths: Sequence[Path],
    window_seconds: int = 60,
    on_file: OnFile | None = None,
) -> None:
    """Add per-service usage from metric files to the windows (in place) that have traces.

    The pods of one service add up. Within a pod's lifetime (its first to its last row) a window
    it has no value for makes the service's value unknown there, not the sum of the others;
    outside it the pod did not run and adds nothing. A file none of whose rows meets a window
    with traces is named in a warning; when no file's does, it is an error.
    """
    by_start = {int(w.start): w for w in windows}
    totals: dict[int, dict[SeriesKey, float]] = {}
    unknown: set[tuple[int, SeriesKey]] = set()
    first, last = float("inf"), float("-inf")  # metric windows of all files
    missed = []
    for path in paths:
        service = service_of_pod(_pod_of(path))
        pod = read_pod_metrics(path, window_seconds)
        values = pod.values
        met = False
        lived = (min(pod.rows), max(pod.rows)) if pod.rows else (0, -1)  # first and last row
        first, last = min(first, lived[0]), max(last, lived[1])
        for resource in pod.resources:
            key = (service, resource)
            for start in by_start:
                if not lived[0] <= start <= lived[1]:
                    continue
                value = values.get((start, resource))
                if value is None:
                    unknown.add((start, key))
                    continue
                met = True
                series = totals.setdefault(start, {})
                series[key] = series.get(key, 0.0) + value
        if values and not met:
            missed.append(path.name)
        if on_file is not None:
            on_file(path)
    if first <= last and by_start and not totals:
        raise InputError(
            f"no metric row falls in a window with traces: metrics span {_utc(first)} to "
            f"{_utc(last)}, traces {_utc(min(by_start))} to {_utc(max(by_start))} "
            f"({TIME_COLUMN} must be unix seconds)",
            source=str(Path(paths[0]).parent),
        )
    if missed:
        warnings.warn(
            DataWarning(
                f"{len(missed)} metric files have no row in a window with traces "
                f"(another time range or unit?): {first_few(missed)}"
            ),
            stacklevel=2,
        )
    for start, key in unknown:
        totals.get(start, {}).pop(key, None)
    for start, series in totals.items():
        by_start[start].metrics.update(series)


def _utc(seconds: float) -> str:
    """A unix time as ISO 8601 UTC, or the number itself when it is out of calendar range."""
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{seconds:g}"


def load_trainticket(
    root: Path,
    window_seconds: int = 60,
    on_file: OnFile | None = None,
    fold_gateway: bool = True,
    metrics: str | Path | None = None,
) -> list[Window]:
    """Windows of the Train-Ticket recording at `root` (trace/ and metric/ below it).

    Raises InputError when `root` or its trace/ folder is absent (a wrong path is a mistake to
    report, not an empty dataset); a missing metric/ folder gives traffic-only windows.
    `metrics` names another metric folder to use instead of root/metric.
    """
    root = Path(root)
    check_window_seconds(window_seconds)
    if not (root / "trace").is_dir():
        raise InputError(
            "no trace/ folder: expected the Train-Ticket layout (trace/*.csv.gz, metric/)",
            source=str(root),
        )
    traces = sorted(
        p for p in (root / "trace").rglob("*") if p.is_file() and p.name.lower().endswith(SUFFIXES)
    )
    if not traces:
        raise InputError(f"no span files ({', '.join(SUFFIXES)})", source=str(root / "trace"))
    windows = import_span_files(traces, window_seconds, on_file, fold_gateway)
    folder = Path(metrics) if metrics is not None else root / "metric"
    if metrics is not None or folder.is_dir():
        join_metrics(windows, metric_files(folder), window_seconds, on_file)
    return windows

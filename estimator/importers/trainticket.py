"""The Train-Ticket recording: span CSVs under trace/, per-pod metric CSVs under metric/.

Metric files are `<pod>_metric.csv[.gz]` with one row per minute: TimeStamp (Unix seconds),
CpuUsage(m) (millicores, read as `cpu` in cores) and MemoryUsage(Mi) (read as `memory` in bytes),
or usage columns of other names and units (`usage_column`).
Other files (front_service.csv.gz holds front-end latency, not a pod) are skipped. A file may
hold only one of the two usage columns: the other resource is then unknown for that pod, and for
its service while the pod runs where the service's other pods measure it. A row
stands for the interval before its TimeStamp (a rate over the last minute, as Prometheus and
cAdvisor stamp it; `stamp="start"` reads it as the interval after) and joins the window that
holds that interval's middle: a row stamped 12:00:28 joins the window of 11:59, one stamped
12:00:52 the window of 12:00. Rows of one pod in one window are averaged (usage rates), also
when they come from several files of that pod, and the pods of one service are summed (replicas
add up). A value that is empty is
unknown and left out, never zero; only windows that have traces are kept. Metrics that meet no
window with traces (times in milliseconds, or another day's files) are an error, not a dataset
without usage.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from estimator.errors import DataWarning, InputError, count_of, first_few, utc_time
from estimator.importers.common import (
    OnFile,
    check_window_seconds,
    files_below,
    find_column,
    read_csv_or_skip,
    service_of_pod,
    shown_cell,
    suffix_of,
    unix_unit,
)
from estimator.importers.spancsv import SUFFIXES, import_span_files
from estimator.spans import NS_PER_S, Tally
from estimator.windows import ORPHAN_ROOT, SeriesKey, Window

METRIC_SUFFIXES = ("_metric.csv.gz", "_metric.csv")
TIME_COLUMN = "TimeStamp"
STAMPS = ("end", "start")
"""What a metric row's time marks of the interval its usage was measured over (see
`_row_windows`): its end, as Prometheus, cAdvisor and this recording stamp rates, or its start."""
RESOURCES: dict[str, tuple[str, float]] = {
    "CpuUsage(m)": ("cpu", 1e-3),
    "MemoryUsage(Mi)": ("memory", float(2**20)),
}
"""The recording's own metric columns -> (resource name, factor to base units)."""

USAGE_NAMES: dict[str, tuple[str, ...]] = {
    "cpu": ("cpuusage", "cpu"),
    "memory": ("memoryusage", "memusage", "memory", "mem", "memoryworkingset", "workingset"),
}
"""Other spellings of a usage column, normalized (lower case, letters and digits only), that
`usage_column` reads with the unit that follows the name."""
UNITS: dict[str, dict[str, float]] = {
    "cpu": {"m": 1e-3, "millicores": 1e-3, "mcores": 1e-3, "cores": 1.0, "core": 1.0, "": 1.0},
    "memory": {
        "b": 1.0, "bytes": 1.0, "": 1.0,
        "ki": 2.0**10, "kib": 2.0**10, "mi": 2.0**20, "mib": 2.0**20, "gi": 2.0**30, "gib": 2.0**30,
        "kb": 1e3, "mb": 1e6, "gb": 1e9,
    },
}  # fmt: skip
"""Per resource: unit -> factor to base units (cores, bytes); no unit is the base unit."""
_USAGE = re.compile(
    r"^\s*(?P<name>.*?)[\s_]*(?:\((?P<paren>[^)]*)\)|[\s_](?P<unit>[A-Za-z]+))?\s*$"
)


def usage_column(column: str) -> tuple[str, float] | None:
    """(resource, factor to base units) of a metric column: the recording's own names
    (`RESOURCES`), or a usage name of `USAGE_NAMES` followed by a unit in parentheses or after an
    underscore (`MemoryUsage(B)`, `cpu_usage_cores`, `memory_usage_bytes`). None for any other
    column, a rate in % among them, and (with a DataWarning) a usage name with a unit it does not
    know (`cpu_limit`, `cpu_seconds`: a counter is no usage) or another cpu or memory column
    (`cpu_usage_seconds_total`). A leading `container_` (cAdvisor's names) is no part of the
    name."""
    if column in RESOURCES:
        return RESOURCES[column]
    match = _USAGE.match(column)
    if match is None:
        return None
    unit = (match.group("paren") or match.group("unit") or "").strip()
    name = "".join(ch for ch in match.group("name").lower() if ch.isalnum())
    name = name.removeprefix("container")  # cAdvisor's container_memory_working_set_bytes
    for resource, names in USAGE_NAMES.items():
        if name in names or name + unit.lower() in names:
            if name + unit.lower() in names:  # no unit: 'cpu_usage' split as ('cpu', 'usage')
                unit = ""
            factor = UNITS[resource].get(unit.lower())
            if factor is None:
                known = ", ".join(u for u in UNITS[resource] if u)
                warnings.warn(
                    DataWarning(
                        f"column {column!r} is not read: {unit!r} is no unit of {resource} "
                        f"usage ({known})"
                    ),
                    stacklevel=3,
                )
                return None
            return resource, factor
    for resource, names in USAGE_NAMES.items():
        if unit != "%" and name.startswith(names):
            warnings.warn(
                DataWarning(
                    f"column {column!r} is not read: no {resource} usage name with a known unit, "
                    "such as cpu_usage_cores or memory_usage_bytes (a counter of cpu seconds is "
                    "no usage: give its rate as cpu_usage_cores)"
                ),
                stacklevel=3,
            )
            return None
    return None


def usage_columns(header: Sequence[str], source: str) -> dict[str, tuple[str, float]]:
    """The usage columns of a metric file's header: column -> (resource, factor), the first
    column of each resource (a DataWarning names any later one, which is not read); an
    InputError when there is none."""
    out: dict[str, tuple[str, float]] = {}
    for column in header:
        found = usage_column(column)
        if found is None:
            continue
        first = next((c for c, (r, _) in out.items() if r == found[0]), None)
        if first is None:
            out[column] = found
        else:
            warnings.warn(
                DataWarning(
                    f"column {column!r} is not read: the {found[0]} usage is read from "
                    f"{first!r}, the first {found[0]} usage column of the file"
                ),
                stacklevel=2,
            )
    if not out:
        raise InputError(
            f"no usage column: expected {', '.join(RESOURCES)} or a cpu or memory usage column "
            f"with its unit, such as cpu_usage_cores or MemoryUsage(B); the header has "
            f"{first_few([str(c) for c in header], 8)}",
            source=source,
            line=1,
        )
    return out


def check_metric_headers(paths: Sequence[Path]) -> None:
    """Refuse, before any span is read, metric files whose header has no time or usage column."""
    for path in paths:
        header = read_csv_or_skip(path, nrows=0)
        if header is None:
            continue
        columns = [str(c) for c in header.columns]
        if find_column(columns, [TIME_COLUMN]) is None:
            raise InputError("missing column", source=str(path), line=1, field=TIME_COLUMN)
        with warnings.catch_warnings():  # a column's warning comes once, when the file is read
            warnings.simplefilter("ignore", DataWarning)
            usage_columns(columns, str(path))


def metric_files(directory: str | Path) -> list[Path]:
    """The per-pod metric files of a directory and its subfolders (a folder per day, say),
    sorted (front_service and others skipped); a directory without any is an error, not a
    recording without usage."""
    root = Path(directory)
    if not root.exists():
        raise InputError("no such directory (of metric CSV files)", source=str(root))
    if not root.is_dir():
        raise InputError("not a directory of metric CSV files", source=str(root))
    found = files_below(root, METRIC_SUFFIXES)
    if not found:
        raise InputError(
            f"no metric files: expected <pod>{METRIC_SUFFIXES[1]} or <pod>{METRIC_SUFFIXES[0]}",
            source=str(root),
        )
    return found


def _pod_of(path: Path) -> str:
    suffix = suffix_of(path, METRIC_SUFFIXES)
    return path.name[: -len(suffix)] if suffix else path.name


def _numbers(frame: pd.DataFrame, column: str, source: str) -> pd.Series:
    """A numeric column (empty cells are NaN), or an InputError naming the first bad row."""
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = (values.isna() & raw.notna()) | (values < 0) | values.isin([float("inf")])
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise InputError(
            f"expected a finite non-negative number, got {shown_cell(raw.iloc[row])}",
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


def _row_windows(times: pd.Series, window_seconds: int, stamp: str) -> pd.Series:
    """The windows each metric row joins, by the row's index (repeated where a row joins
    several): the one holding the middle of the interval the row measures. That interval ends
    at the row's time (`stamp` "end": a rate over the last minute, as Prometheus and cAdvisor
    stamp it) or starts there ("start"); it is as long as the file's usual spacing of rows (a
    window for a file of one time). Rows spaced more than a window apart (in a file of three
    rows or more) join each window whose middle their interval holds, with a warning where one
    joins several: a minute's rate is the mean rate of each of its half-minutes, no better
    known, and a window between two rows' middles (a row a minute, windows of 45 s) is no gap."""
    check_stamp(stamp)
    steps = np.diff(np.unique(times.to_numpy(dtype=float)))
    spacing = float(np.median(steps)) if steps.size else float(window_seconds)
    interval = min(spacing, window_seconds)
    middle = times - interval / 2 if stamp == "end" else times + interval / 2
    starts = (middle // window_seconds * window_seconds).astype("int64")
    if spacing <= window_seconds or steps.size < 2:  # two rows far apart: a gap, as likely
        return starts
    first = times - spacing if stamp == "end" else times  # where each row's interval starts
    lowest = (np.ceil((first - window_seconds / 2) / window_seconds) * window_seconds).astype(
        "int64"
    )  # the first window whose middle the interval holds
    windows = int(np.ceil(spacing / window_seconds))  # the most an interval holds middles of
    candidates = (lowest + k * window_seconds for k in range(windows))
    joined = pd.concat(
        [start[start + window_seconds / 2 < first + spacing] for start in candidates]
    )
    counts = sorted(set(joined.index.value_counts().tolist()))
    if counts[-1] > 1:
        warnings.warn(
            DataWarning(
                f"metric rows come every {spacing:g} s, and windows are of {window_seconds} s: "
                f"each row's value is given to each of the {' or '.join(map(str, counts))} "
                "windows it measures"
            ),
            stacklevel=3,
        )
    return joined.sort_index()


def check_stamp(stamp: str, flag: str = "stamp") -> str:
    """`stamp` if it is one of `STAMPS`, else an InputError."""
    if stamp not in STAMPS:
        raise InputError(f"{stamp!r} is not one of {', '.join(STAMPS)}", field=flag)
    return stamp


def read_pod_metrics(path: Path, window_seconds: int = 60, stamp: str = "end") -> PodMetrics:
    """One pod's metric file (`PodMetrics`). Column names are matched ignoring case and
    punctuation; blank lines are skipped; times in milliseconds (or micro-, nanoseconds) are
    recognized by their magnitude, with a warning. A row joins the window that holds the middle
    of the interval it measures (`_row_windows`). An empty file, or one whose gzip stream is cut
    short, is skipped with a warning."""
    source = str(path)
    frame = read_csv_or_skip(
        path, salvage=True, dtype=str, keep_default_na=True, skip_blank_lines=False
    )
    if frame is None:
        return PodMetrics()
    frame = frame.dropna(how="all")  # blank lines; the index keeps each row's line
    header = [str(c) for c in frame.columns]
    time_column = find_column(header, [TIME_COLUMN])
    if time_column is None:
        raise InputError("missing column", source=source, line=1, field=TIME_COLUMN)
    present = usage_columns(header, source)
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
    starts = _row_windows(times, window_seconds, stamp)
    out: dict[tuple[int, str], float] = {}
    empty = frame[list(present)].isna()
    if empty.to_numpy().any():
        row, col = (int(k[0]) for k in empty.to_numpy().nonzero())
        warnings.warn(
            DataWarning(
                f"{source}: {count_of(int(empty.to_numpy().sum()), 'usage cell')} empty or "
                f"not available (blank, NA, n/a, null, NaN; the first at line "
                f"{int(empty.index[row]) + 2}, field {list(present)[col]!r}): read as missing, "
                "so a window with no value of its own lacks that usage"
            ),
            stacklevel=2,
        )
    for found, (resource, factor) in present.items():
        values = (_numbers(frame, found, source) * factor).reindex(starts.index)
        means = values.groupby(starts.to_numpy()).mean().dropna()
        out.update(
            ((int(start), resource), float(v))
            for start, v in zip(means.index.tolist(), means.tolist(), strict=True)
        )
    resources = {resource for resource, _ in present.values()}
    return PodMetrics(out, {int(s) for s in starts.unique().tolist()}, resources)


def _one_pod(parts: Sequence[PodMetrics]) -> tuple[PodMetrics, bool]:
    """The metrics of one pod read from several files (days in folders of their own, or one file
    twice, as .csv and .csv.gz): a window's value is the mean of the files' values, never their
    sum, which is for replicas; and whether the files hold some of the same windows."""
    if len(parts) == 1:
        return parts[0], False
    merged = PodMetrics()
    values: dict[tuple[int, str], list[float]] = {}
    for part in parts:
        for key, value in part.values.items():
            values.setdefault(key, []).append(value)
        merged.rows |= part.rows
        merged.resources |= part.resources
    merged.values = {key: float(np.mean(v)) for key, v in values.items()}
    return merged, sum(len(part.rows) for part in parts) > len(merged.rows)


def _warn_same_minutes(overlapping: Sequence[tuple[str, Sequence[Path]]], root: Path) -> None:
    """Name, in one warning, the pods whose several metric files hold the same minutes."""
    if not overlapping:
        return
    shown = [
        f"{pod} ({', '.join(_shown_path(f, root) for f in files[:2])}"
        f"{', ...' if len(files) > 2 else ''})"
        for pod, files in overlapping
    ]
    one = len(overlapping) == 1
    warnings.warn(
        DataWarning(
            f"{count_of(len(overlapping), 'pod')} {'has' if one else 'have'} several metric files "
            f"that hold the same minutes: read as one pod, their values of a window averaged, not "
            f"added up: {first_few(shown)}"
        ),
        stacklevel=3,
    )


def _shown_path(path: Path, root: Path) -> str:
    """`path` as a warning names it: below the metric folder `root` where it is there."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def join_metrics(
    windows: Sequence[Window],
    paths: Sequence[Path],
    window_seconds: int = 60,
    on_file: OnFile | None = None,
    stamp: str = "end",
) -> None:
    """Add per-service usage from metric files to the windows (in place) that have traces.

    The pods of one service add up; the files of one pod (by name) are one pod (`_one_pod`).
    Within a pod's lifetime (its first to its last row) a window it has no value for makes the
    service's value unknown there, not the sum of the others; outside it the pod did not run and
    adds nothing. A file none of whose rows meets a window with traces is named in a warning;
    when no file's does, it is an error. `stamp`: see `STAMPS`.
    """
    check_stamp(stamp)
    by_start = {int(w.start): w for w in windows}
    totals: dict[int, dict[SeriesKey, float]] = {}
    unknown: set[tuple[int, SeriesKey]] = set()
    first, last = float("inf"), float("-inf")  # metric windows of all files
    missed = []
    root = Path(os.path.commonpath([str(Path(p).parent) for p in paths])) if paths else Path()
    of_pod: dict[str, list[Path]] = {}
    for path in paths:
        of_pod.setdefault(_pod_of(path), []).append(path)
    pods: list[tuple[str, PodMetrics]] = []
    overlapping: list[tuple[str, list[Path]]] = []
    for pod_name, files in of_pod.items():
        parts = []
        for path in files:
            part = read_pod_metrics(path, window_seconds, stamp)
            if part.values and not any(start in by_start for start, _ in part.values):
                missed.append(_shown_path(path, root))
            parts.append(part)
            if on_file is not None:
                on_file(path)
        pod, overlap = _one_pod(parts)
        pods.append((pod_name, pod))
        if overlap:
            overlapping.append((pod_name, files))
    _warn_same_minutes(overlapping, root)
    measured = _measured(pods)
    for pod_name, pod in pods:
        service = service_of_pod(pod_name)
        values = pod.values
        lived = (min(pod.rows), max(pod.rows)) if pod.rows else (0, -1)  # first and last row
        first, last = min(first, lived[0]), max(last, lived[1])
        for resource in sorted(measured[service]):  # one the pod lacks is unknown while it runs
            key = (service, resource)
            for start in by_start:
                if not lived[0] <= start <= lived[1]:
                    continue
                value = values.get((start, resource))
                if value is None:
                    unknown.add((start, key))
                    continue
                series = totals.setdefault(start, {})
                series[key] = series.get(key, 0.0) + value
    if first <= last and by_start and not totals:
        raise InputError(
            f"no metric row falls in a window with traces: metrics span {utc_time(first)} to "
            f"{utc_time(last)}, traces {utc_time(min(by_start))} to {utc_time(max(by_start))} "
            f"({TIME_COLUMN} must be unix seconds)",
            source=str(Path(paths[0]).parent),
        )
    if missed:
        warnings.warn(
            DataWarning(
                f"{count_of(len(missed), 'metric file')} "
                f"{'has' if len(missed) == 1 else 'have'} no row in a window with traces "
                f"(another time range or unit?): {first_few(missed)}"
            ),
            stacklevel=2,
        )
    traced = {step[0] for w in windows for path in w.calls for step in path if step != ORPHAN_ROOT}
    without = sorted(traced - {service_of_pod(_pod_of(path)) for path in paths})
    if without:
        warnings.warn(
            DataWarning(
                f"{count_of(len(without), 'traced component')} without a metric file, so without "
                f"usage series: {first_few(without)}"
            ),
            stacklevel=2,
        )
    for start, key in unknown:
        totals.get(start, {}).pop(key, None)
    _warn_gaps(sorted(by_start), totals)
    for start, series in totals.items():
        by_start[start].metrics.update(series)


def _measured(pods: Sequence[tuple[str, PodMetrics]]) -> dict[str, set[str]]:
    """The resources each service's pods have columns for, with a warning naming the pods that
    lack one their service's other pods have: the service's usage of it is unknown while such a
    pod runs, not the sum of the other replicas alone."""
    measured: dict[str, set[str]] = {}
    for pod_name, pod in pods:
        measured.setdefault(service_of_pod(pod_name), set()).update(pod.resources)
    lacking = [
        f"{pod_name} ({', '.join(sorted(measured[service_of_pod(pod_name)] - pod.resources))})"
        for pod_name, pod in pods
        if pod.rows and measured[service_of_pod(pod_name)] - pod.resources
    ]
    if lacking:
        warnings.warn(
            DataWarning(
                f"{count_of(len(lacking), 'pod')} {'has' if len(lacking) == 1 else 'have'} no "
                "column of a resource that other pods of its service have, so the service's "
                "usage of it is unknown while the pod runs, not the others' sum: "
                f"{first_few(lacking)}"
            ),
            stacklevel=3,
        )
    return measured


def _warn_gaps(starts: Sequence[int], totals: dict[int, dict[SeriesKey, float]]) -> None:
    """Name the series without usage in some windows with traces between their first and last
    window with usage (a metric row missing, a pod's restart): unknown there, not zero, so
    training and scores leave those windows out of the series."""
    seen: dict[SeriesKey, list[int]] = {}
    for start in starts:
        for key in totals.get(start, {}):
            seen.setdefault(key, []).append(start)
    position = {start: i for i, start in enumerate(starts)}
    gaps = {
        key: position[have[-1]] - position[have[0]] + 1 - len(have) for key, have in seen.items()
    }
    gapped = sorted((key for key, n in gaps.items() if n), key=lambda key: (-gaps[key], key))
    if gapped:
        shown = [f"{c}/{r} ({count_of(gaps[(c, r)], 'window')})" for c, r in gapped]
        one = len(gapped) == 1
        warnings.warn(
            DataWarning(
                f"{count_of(len(gapped), 'usage series')} {'has' if one else 'have'} no value in "
                f"some windows with traces between {'its' if one else 'their'} first and last (no "
                "metric row there, or between a pod and the next): unknown there, not zero: "
                f"{first_few(shown)}"
            ),
            stacklevel=3,
        )


def _layout_hint(root: Path) -> str:
    """Where the recording may be when `root` has no trace/ folder, nor any below it: above it
    (`root` is trace/ or metric/ itself)."""
    if root.name in ("trace", "metric") and (root.parent / "trace").is_dir():
        return f"; {root} is one of its folders: name the one above, {root.parent}"
    return ""


def recordings_below(root: Path) -> list[Path]:
    """The recordings in `root`: itself where it holds trace/, else every folder below it that
    holds one (a folder per batch or per day), sorted; none for another folder."""
    if (root / "trace").is_dir():
        return [root]
    if not root.is_dir():
        return []
    return sorted(p.parent for p in root.rglob("trace") if p.is_dir())


def _warn_without_metrics(recordings: Sequence[Path], folders: Sequence[Path]) -> None:
    """Name the recordings (those with span files) without a metric/ folder where others have
    one: their windows have traces and no usage, which training leaves out, and a batch whose
    metrics were not copied would otherwise go unnoticed."""
    lacking = [str(r) for r in recordings if r / "metric" not in folders]
    if folders and lacking:
        one = len(lacking) == 1
        warnings.warn(
            DataWarning(
                f"{count_of(len(lacking), 'recording')} {'has' if one else 'have'} no metric/ "
                f"folder, so {'its' if one else 'their'} windows have traffic and no usage: "
                f"{first_few(lacking)}"
            ),
            stacklevel=3,
        )


def load_trainticket(
    root: Path,
    window_seconds: int = 60,
    on_file: OnFile | None = None,
    fold_gateway: bool = True,
    metrics: str | Path | None = None,
    sampling_ratio: float = 1.0,
    stamp: str = "end",
    tally: Tally | None = None,
) -> list[Window]:
    """Windows of the Train-Ticket recording at `root` (trace/ and metric/ below it), or of
    every recording in folders below `root` (a folder per batch or day, each with its trace/
    and metric/), read as one: spans of all in the time order of their files, each pod's rows
    of all (`join_metrics`), so a time gap between recordings is a gap in the windows.

    Raises InputError when `root` is absent or holds no trace/ folder (a wrong path is a
    mistake to report, not an empty dataset); a missing metric/ folder gives traffic-only
    windows. `metrics` names another metric folder to use instead of the recordings' metric/
    folders; `tally`, where given, counts what the spans met (see `windows_of_batches`).
    """
    root = Path(root)
    check_window_seconds(window_seconds)
    check_stamp(stamp)
    if not root.exists():
        raise InputError(
            "no such directory (the Train-Ticket recording: the folder holding trace/ and metric/)",
            source=str(root),
        )
    recordings = recordings_below(root)
    if not recordings:
        raise InputError(
            "no trace/ folder: expected the Train-Ticket layout (trace/*.csv[.gz], metric/), "
            "or folders holding it" + _layout_hint(root),
            source=str(root),
        )
    of_recording = {r: files_below(r / "trace", SUFFIXES) for r in recordings}
    traces = [path for files in of_recording.values() for path in files]
    if not traces:
        shown = [str(r / "trace") for r in recordings]
        raise InputError(
            f"no span files ({', '.join(SUFFIXES)}) in {first_few(shown)}", source=str(root)
        )
    if metrics is not None:
        paths: list[Path] | None = metric_files(metrics)
    else:
        folders = [r / "metric" for r in recordings if (r / "metric").is_dir()]
        paths = [path for folder in folders for path in metric_files(folder)] or None
        traced = [r for r, files in of_recording.items() if files]
        _warn_without_metrics(traced, folders)
    if paths is not None:
        check_metric_headers(paths)  # before the spans: a bad metric file fails fast
    windows = import_span_files(
        traces, window_seconds, on_file, fold_gateway, sampling_ratio, tally
    )
    if paths is not None:
        join_metrics(windows, paths, window_seconds, on_file, stamp)
    return windows

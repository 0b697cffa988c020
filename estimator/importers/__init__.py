"""Importers: other trace and metric formats into windows of call-path counts (contract 1).

Every importer takes a file, a directory or a glob and returns list[Window], bucketed by the end
time of each tree's root span into windows aligned to multiples of `window_seconds` since the
epoch. How spans become trees (duplicates, orphans, gateway folding) is described in
`estimator.spans`. Bad input raises InputError naming the file, the line and the field.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from estimator.errors import InputError
from estimator.importers.common import OnFile, service_of_pod
from estimator.importers.jaeger import import_jaeger, spans_from_jaeger
from estimator.importers.otlp import import_otlp_json, spans_from_otlp_json
from estimator.importers.raw import import_raw, traces_from_raw
from estimator.importers.spancsv import import_span_csv
from estimator.importers.trainticket import (
    STAMPS,
    check_metric_headers,
    check_stamp,
    join_metrics,
    load_trainticket,
    metric_files,
)
from estimator.spans import Tally, check_sampling_ratio
from estimator.windows import Window

Importer = Callable[..., list[Window]]

FORMATS: dict[str, Importer] = {
    "span-csv": import_span_csv,
    "jaeger": import_jaeger,
    "otlp-json": import_otlp_json,
    "raw": import_raw,
    "trainticket": load_trainticket,
}
"""Format name (as the `deeprest import --format` flag spells it) -> importer."""


def import_windows(
    fmt: str,
    source: str | Path,
    metrics: str | Path | None = None,
    window_seconds: int = 60,
    on_file: OnFile | None = None,
    fold_gateway: bool = True,
    sampling_ratio: float = 1.0,
    stamp: str = "end",
    tally: Tally | None = None,
) -> list[Window]:
    """Windows from `source` in format `fmt`, joined with Train-Ticket style metric files if given.
    A trace whose spans do not say how it was sampled (OTLP's `ot=th:` tracestate, Jaeger's
    probabilistic sampler tags) stands for 1 / `sampling_ratio` traces. `stamp` says what a metric
    row's time marks of the interval it measures (`STAMPS`). `tally`, where given, counts the
    spans read, the traces and the spans skipped or left out, for the import's summary."""
    check_sampling_ratio(sampling_ratio)  # before any file is read
    check_stamp(stamp)
    importer = FORMATS.get(fmt)
    if importer is None:
        raise InputError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}", field="format")
    if fmt == "trainticket":
        return load_trainticket(
            Path(source),
            window_seconds,
            on_file,
            fold_gateway,
            metrics,
            sampling_ratio,
            stamp,
            tally,
        )
    paths = None if metrics is None else metric_files(metrics)
    if paths is not None:
        check_metric_headers(paths)  # before the spans: a bad metric file fails fast
    windows = importer(source, window_seconds, on_file, fold_gateway, sampling_ratio, tally=tally)
    if paths is not None:
        join_metrics(windows, paths, window_seconds, on_file, stamp)
    return windows


__all__ = [
    "FORMATS",
    "STAMPS",
    "import_jaeger",
    "import_otlp_json",
    "import_raw",
    "import_span_csv",
    "import_windows",
    "join_metrics",
    "load_trainticket",
    "metric_files",
    "service_of_pod",
    "spans_from_jaeger",
    "spans_from_otlp_json",
    "traces_from_raw",
]

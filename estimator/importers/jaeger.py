"""Jaeger JSON, as the Jaeger UI and query API export it: {"data": [trace, ...]}.

A trace is {"traceID", "spans": [...], "processes": {processID: {"serviceName"}}}; a span has
spanID, operationName, references ([{"refType": "CHILD_OF", "spanID"}]), startTime and duration
in microseconds, and processID (or an inline "process"). The parent is the first CHILD_OF
reference, else the first FOLLOWS_FROM one; none means a root. A file may also hold one such
document per line. A span tagged `sampler.type: probabilistic` (Jaeger clients tag a trace's root
so) stands, with its trace, for 1 / `sampler.param` traces.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from estimator.importers.common import (
    MAX_UNIX_NS,
    OnFile,
    Where,
    is_recent,
    json_span_batches,
    no_parent,
    windows_of_files,
)
from estimator.spans import Span, Tally
from estimator.windows import Window

SUFFIXES = (".json", ".json.gz", ".jsonl", ".jsonl.gz")
FIRST_TIME = re.compile(r'"startTime"\s*:\s*"?(\d+)')
"""A span's start time (microseconds) in a file's text: files are read in the order of their
first span's."""


def _parent(span: dict[str, Any], where: Where, fld: str) -> str | None:
    """The parent span id named by a span's references, if any."""
    refs = where.items(span.get("references") or [], f"{fld}.references")
    found: dict[str, str] = {}
    for k, ref in enumerate(refs):
        ref = where.obj(ref, f"{fld}.references[{k}]")
        kind = str(ref.get("refType", "CHILD_OF")).upper()
        found.setdefault(kind, where.text(ref.get("spanID"), f"{fld}.references[{k}].spanID"))
    parent = found.get("CHILD_OF") or found.get("FOLLOWS_FROM") or span.get("parentSpanID")
    return None if parent is None or no_parent(str(parent)) else str(parent)


def _adjusted_count(span: dict[str, Any], where: Where, fld: str) -> float | None:
    """1 / the probability of a probabilistic sampler, from a span's tags; None if untagged."""
    tags: dict[str, Any] = {}
    for k, tag in enumerate(where.items(span.get("tags") or [], f"{fld}.tags")):
        tag = where.obj(tag, f"{fld}.tags[{k}]")
        if tag.get("key") in ("sampler.type", "sampler.param"):
            tags[str(tag["key"])] = (k, tag.get("value"))
    if "sampler.type" not in tags or tags["sampler.type"][1] != "probabilistic":
        return None
    if "sampler.param" not in tags:
        return None
    k, value = tags["sampler.param"]
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not 0.0 < number <= 1.0:  # NaN too
        raise where.fail(
            f"a probabilistic sampler's probability must be in (0, 1], got {value!r}",
            f"{fld}.tags[{k}].value",
        )
    return 1.0 / number


def _service(span: dict[str, Any], processes: dict[str, Any], where: Where, fld: str) -> str:
    """The service name of a span's process."""
    process = span.get("process")
    if process is None:
        pid = where.text(span.get("processID"), f"{fld}.processID")
        if pid not in processes:
            raise where.fail(f"process {pid!r} is not in the trace's processes", f"{fld}.processID")
        process = processes[pid]
    process = where.obj(process, f"{fld}.process")
    return where.text(process.get("serviceName"), f"{fld}.process.serviceName")


def spans_from_jaeger(doc: Any, source: str = "<input>", line: int | None = 1) -> list[Span]:
    """Validate one decoded Jaeger JSON document and return its spans."""
    where = Where(source, line)
    doc = where.obj(doc, None)
    if "data" not in doc:
        other = " (this looks like OTLP JSON: --format otlp-json)" if "resourceSpans" in doc else ""
        keys = ", ".join(sorted(map(str, doc))[:5]) or "none"
        raise where.fail(
            f"no 'data' list of traces, as Jaeger JSON has (its keys: {keys}){other}", "data"
        )
    errors = doc.get("errors")
    if doc["data"] is None and isinstance(errors, list) and errors:  # the query API's failure
        said = "; ".join(
            str(e.get("msg", e)) if isinstance(e, dict) else str(e) for e in errors[:3]
        )
        raise where.fail(f"no traces: the query that wrote this file failed ({said})", "errors")
    data = where.items(doc["data"], "data")
    out: list[Span] = []
    for t, trace in enumerate(data):
        out.extend(trace_spans(trace, where, f"data[{t}]"))
    return out


def trace_spans(trace: Any, where: Where, tfld: str) -> list[Span]:
    """Validate one trace of a Jaeger JSON document (the field `tfld`) and return its spans."""
    trace = where.obj(trace, tfld)
    trace_id = trace.get("traceID")
    processes = where.obj(trace.get("processes") or {}, f"{tfld}.processes")
    out: list[Span] = []
    for s, span in enumerate(where.items(trace.get("spans"), f"{tfld}.spans")):
        fld = f"{tfld}.spans[{s}]"
        span = where.obj(span, fld)
        start = where.integer(span.get("startTime"), f"{fld}.startTime")
        if is_recent(start / 1e9):
            raise where.fail(
                f"{start} is a time in nanoseconds, where Jaeger JSON gives microseconds "
                "(an export of another tool? OTLP JSON: --format otlp-json)",
                f"{fld}.startTime",
            )
        start_ns = where.unix_ns(start, f"{fld}.startTime", 1000)
        end_ns = start_ns + where.integer(span.get("duration"), f"{fld}.duration") * 1000
        if end_ns > MAX_UNIX_NS:
            raise where.fail("the span ends past the year 2262: not a time", f"{fld}.duration")
        out.append(
            Span(
                trace_id=where.text(span.get("traceID", trace_id), f"{fld}.traceID"),
                span_id=where.text(span.get("spanID"), f"{fld}.spanID"),
                parent_id=_parent(span, where, fld),
                component=_service(span, processes, where, fld),
                operation=where.text(span.get("operationName"), f"{fld}.operationName"),
                start_ns=start_ns,
                end_ns=end_ns,
                weight=_adjusted_count(span, where, fld),
            )
        )
    return out


def import_jaeger(
    spec: str | Path,
    window_seconds: int = 60,
    on_file: OnFile | None = None,
    fold_gateway: bool = True,
    sampling_ratio: float = 1.0,
    tally: Tally | None = None,
) -> list[Window]:
    """Windows of call-path counts from Jaeger JSON (`tally`: see `windows_of_batches`)."""
    batches = json_span_batches(
        spec, SUFFIXES, spans_from_jaeger, on_file, FIRST_TIME, (("data",), trace_spans)
    )
    return windows_of_files(
        batches, window_seconds, fold_gateway, sampling_ratio=sampling_ratio, tally=tally
    )

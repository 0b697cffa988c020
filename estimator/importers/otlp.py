"""OTLP JSON: an ExportTraceServiceRequest per file, or one request per line.

{"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value":
{"stringValue": ...}}]}, "scopeSpans": [{"spans": [{"traceId", "spanId", "parentSpanId", "name",
"startTimeUnixNano", "endTimeUnixNano"}]}]}]}. Ids are taken as given (hex in OTLP JSON); an empty
or absent parentSpanId marks a root; times are integers or decimal strings. A resource without
service.name is "unknown_service", as OpenTelemetry SDKs name it. The older
"instrumentationLibrarySpans" key is read like "scopeSpans". A span's "traceState" holding
OpenTelemetry's sampling threshold (`ot=th:...`) says how many traces its trace stands for.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from estimator.errors import DataWarning, count_of
from estimator.importers.common import (
    OnFile,
    Where,
    json_span_batches,
    no_parent,
    windows_of_files,
)
from estimator.spans import Span, SpanColumns, Tally, adjusted_count
from estimator.windows import Window

SUFFIXES = (".json", ".json.gz", ".jsonl", ".jsonl.gz")
FIRST_TIME = re.compile(r'"endTimeUnixNano"\s*:\s*"?(\d+)')
"""A span's end time in a file's text: files are read in the order of their first span's."""
UNKNOWN_SERVICE = "unknown_service"


def _service_name(resource: Any, where: Where, fld: str) -> str:
    """The service.name attribute of a resource, or UNKNOWN_SERVICE."""
    if resource is None:
        return UNKNOWN_SERVICE
    attributes = where.items(where.obj(resource, fld).get("attributes") or [], f"{fld}.attributes")
    for a, attribute in enumerate(attributes):
        afld = f"{fld}.attributes[{a}]"
        attribute = where.obj(attribute, afld)
        if attribute.get("key") == "service.name":
            value = where.obj(attribute.get("value"), f"{afld}.value")
            if value.get("stringValue") == "":  # said empty: no name, as where it is missing
                return UNKNOWN_SERVICE
            return where.text(value.get("stringValue"), f"{afld}.value.stringValue")
    return UNKNOWN_SERVICE


def _span(span: Any, service: str, where: Where, fld: str) -> Span:
    """One OTLP JSON span."""
    span = where.obj(span, fld)
    parent = span.get("parentSpanId") or None
    if parent is not None:
        parent = _hex_id(where, parent, 8, f"{fld}.parentSpanId", zero=True)
        parent = None if no_parent(parent) else parent
    start_ns = where.unix_ns(span.get("startTimeUnixNano"), f"{fld}.startTimeUnixNano")
    end_ns = where.unix_ns(span.get("endTimeUnixNano"), f"{fld}.endTimeUnixNano")
    where.span_times(start_ns, end_ns, f"{fld}.endTimeUnixNano")
    return Span(
        trace_id=_hex_id(where, span.get("traceId"), 16, f"{fld}.traceId"),
        span_id=_hex_id(where, span.get("spanId"), 8, f"{fld}.spanId"),
        parent_id=parent,
        component=service,
        operation=where.text(span.get("name"), f"{fld}.name"),
        start_ns=start_ns,
        end_ns=end_ns,
        weight=_adjusted_count(span.get("traceState"), where, f"{fld}.traceState"),
    )


def _hex_id(where: Where, value: Any, size: int, fld: str, zero: bool = False) -> str:
    """An OTLP JSON id: `size` bytes as hex, not all zero (an invalid id, as the receiver
    rejects it) unless `zero` (a parent id of zeros says there is none)."""
    text = where.text(value, fld)
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != size or len(text) != 2 * size:
        raise where.fail(
            f"expected {2 * size} hex digits ({'an' if size == 8 else 'a'} {size}-byte id), got {json.dumps(text)}",
            fld,
        )
    if not zero and not any(raw):
        raise where.fail("an id of zeros is invalid (OTLP)", fld)
    return text.lower()


def _adjusted_count(state: Any, where: Where, fld: str) -> float | None:
    """The traces a span's trace stands for, where its tracestate says (see adjusted_count)."""
    if state is None or state == "":
        return None
    return adjusted_count(where.text(state, fld))


def spans_from_otlp_json(doc: Any, source: str = "<input>", line: int | None = 1) -> list[Span]:
    """Validate one decoded ExportTraceServiceRequest (JSON mapping) and return its spans."""
    where = Where(source, line)
    out: list[Span] = []
    doc = where.obj(doc, None)
    if "resourceSpans" not in doc and "resource_spans" not in doc:
        other = " (this looks like Jaeger JSON: --format jaeger)" if "data" in doc else ""
        keys = ", ".join(sorted(map(str, doc))[:5]) or "none"
        raise where.fail(
            f"no 'resourceSpans' list, as OTLP JSON has (its keys: {keys}){other}",
            "resourceSpans",
        )
    resource_spans = doc.get("resourceSpans", doc.get("resource_spans"))
    for r, item in enumerate(where.items(resource_spans, "resourceSpans")):
        out.extend(resource_spans_of(item, where, f"resourceSpans[{r}]"))
    return out


def resource_spans_of(item: Any, where: Where, rfld: str) -> list[Span]:
    """Validate one ResourceSpans of a document (the field `rfld`) and return its spans."""
    item = where.obj(item, rfld)
    service = _service_name(item.get("resource"), where, f"{rfld}.resource")
    key = "scopeSpans" if "scopeSpans" in item else "instrumentationLibrarySpans"
    out: list[Span] = []
    for s, scope in enumerate(where.items(item.get(key) or [], f"{rfld}.{key}")):
        sfld = f"{rfld}.{key}[{s}]"
        spans = where.items(where.obj(scope, sfld).get("spans") or [], f"{sfld}.spans")
        out.extend(
            _span(span, service, where, f"{sfld}.spans[{k}]") for k, span in enumerate(spans)
        )
    return out


def import_otlp_json(
    spec: str | Path,
    window_seconds: int = 60,
    on_file: OnFile | None = None,
    fold_gateway: bool = True,
    sampling_ratio: float = 1.0,
    tally: Tally | None = None,
) -> list[Window]:
    """Windows of call-path counts from OTLP JSON; a warning counts the spans whose resource
    names no service (their component is UNKNOWN_SERVICE, as the OpenTelemetry SDK names it).
    `tally`: see `windows_of_batches`."""
    batches = json_span_batches(
        spec,
        SUFFIXES,
        spans_from_otlp_json,
        on_file,
        FIRST_TIME,
        (("resourceSpans", "resource_spans"), resource_spans_of),
    )
    unnamed = [0]

    def counted(batches: Iterator[SpanColumns]) -> Iterator[SpanColumns]:
        for cols in batches:
            unnamed[0] += sum(1 for component, _ in cols.pairs if component == UNKNOWN_SERVICE)
            yield cols

    windows = windows_of_files(
        counted(batches), window_seconds, fold_gateway, sampling_ratio=sampling_ratio, tally=tally
    )
    if unnamed[0]:
        warnings.warn(
            DataWarning(
                f"{spec}: {count_of(unnamed[0], 'span')} without a service name (no "
                f"service.name resource attribute): counted as component {UNKNOWN_SERVICE!r}"
            ),
            stacklevel=2,
        )
    return windows

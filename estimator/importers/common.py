"""Helpers shared by the importers: input files, JSON documents, typed field checks, pod names."""

from __future__ import annotations

import csv
import glob
import gzip
import io
import json
import math
import re
import statistics
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import ijson
import pandas as pd

from estimator.errors import DataWarning, InputError, count_of, first_few, utc_time
from estimator.spans import UNKNOWN_NS, Span, SpanColumns, Tally, windows_of_batches
from estimator.windows import Window

OnFile = Callable[[Path], None]
"""Called after each input file is read (progress reporting)."""

_K8S_RANDOM = "[bcdfghjklmnpqrstvwxz2456789]"
"""The alphabet of the random suffixes Kubernetes gives pod names (no vowels, no 0, 1 or 3)."""

_POD_SUFFIXES = (
    # Deployment: the template hash (all digits before Kubernetes 1.8), then the pod's own suffix
    re.compile(rf"^(?P<service>.+)-(?:{_K8S_RANDOM}{{5,10}}|\d{{5,10}})-{_K8S_RANDOM}{{5}}$"),
    re.compile(r"^(?P<service>.+)-\d{1,4}$"),  # StatefulSet: ordinal
    re.compile(rf"^(?P<service>.+)-{_K8S_RANDOM}{{5}}$"),  # DaemonSet, Job: one random suffix
)


ROOT_MARKS = ("root", "-", "none", "null", "nil", "nan", "na", "n/a", "#n/a", "<na>")
"""Parent ids, besides empty and all zeros, that mark a span as its trace's root: a missing
parent as writers spell it."""


def no_parent(parent: str) -> bool:
    """Whether a parent span id marks a root: empty, all zeros (an unset id written out, as
    conversions from protobuf or Zipkin give), or one of `ROOT_MARKS`."""
    text = parent.strip()
    return not text.strip("0") or text.lower() in ROOT_MARKS


def service_of_pod(pod: str) -> str:
    """A Kubernetes pod name without what its controller appended: a Deployment's two hash
    suffixes, a StatefulSet's ordinal, a DaemonSet's or Job's random suffix. Other names are
    unchanged, so the replicas of one workload share a name."""
    for pattern in _POD_SUFFIXES:
        match = pattern.match(pod)
        if match:
            return match.group("service")
    return pod


def read_csv_or_skip(path: Path, salvage: bool = False, **options: Any) -> pd.DataFrame | None:
    """pandas.read_csv of an input file; None, with a DataWarning, for a file to skip: an empty
    one, or one whose gzip stream is cut short (with `salvage`, its rows up to its last whole
    line before the cut are read, with a warning). Other unreadable content is an InputError, a row
    with more fields than the header among it: its values would be read shifted (an unquoted
    comma) or under the wrong names. A trailing comma on every line is only an empty last field,
    and is read as such."""
    try:
        # pandas only warns where the first row is longer than the header
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            if options.get("engine") != "pyarrow":  # which reads no index and refuses long rows
                options = {"index_col": False, **options}
            return pd.read_csv(path, **options)
    except pd.errors.EmptyDataError:
        why = "empty file"
    except pd.errors.ParserWarning as exc:
        counts = _first_field_counts(path)
        said = f"{counts[1]} fields where the header has {counts[0]}" if len(counts) == 2 else ""
        raise InputError(
            said or "the first row has more fields than the header", source=str(path), line=2
        ) from exc
    except (EOFError, OSError, ValueError, pd.errors.ParserError) as exc:
        if not (
            isinstance(exc, EOFError)
            or "end-of-stream" in str(exc)
            or "truncated" in str(exc).lower()
        ):
            match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
            if match:
                expected, line, saw = match.groups()
                raise InputError(
                    f"{saw} fields where the header has {expected}",
                    source=str(path),
                    line=int(line),
                ) from exc
            raise InputError(f"cannot read as CSV: {exc}", source=str(path)) from exc
        why = f"cut short ({exc})"
        salvaged = _read_to_the_cut(path, options) if salvage else None
        if salvaged is not None:
            warnings.warn(
                DataWarning(
                    f"{path}: {why}; read up to its last whole line before the cut "
                    f"({count_of(len(salvaged), 'row')})"
                ),
                stacklevel=3,
            )
            return salvaged
    warnings.warn(DataWarning(f"{path}: {why}; skipped"), stacklevel=3)
    return None


def _read_to_the_cut(path: Path, options: dict[str, Any]) -> pd.DataFrame | None:
    """The rows of a gzip file cut short, up to its last whole line before the cut; None where
    none is whole or they do not read."""
    try:  # a gzip stream (wbits 32 + 15: its header told apart) decompressed as far as it goes
        text = zlib.decompressobj(wbits=47).decompress(path.read_bytes())
    except (OSError, zlib.error):
        return None
    whole = text[: text.rfind(b"\n") + 1]
    if whole.count(b"\n") < 2:  # the header alone, or not even it
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(io.BytesIO(whole), **options)
    except (ValueError, pd.errors.ParserError, pd.errors.ParserWarning):
        return None


def _first_field_counts(path: Path) -> list[int]:
    """Fields of a CSV file's header and first row (fewer where it has fewer lines)."""
    try:
        with io.TextIOWrapper(open_binary(path), "utf-8", errors="replace", newline="") as text:
            return [len(row) for _, row in zip(range(2), csv.reader(text), strict=False)]
    except (OSError, EOFError, csv.Error):
        return []


def find_column(header: Sequence[str], spellings: Sequence[str]) -> str | None:
    """The first of the header's columns spelled like one of `spellings` (in their order),
    ignoring case and punctuation ('Latency P99 (ms)' is 'latency_p99_ms'); None if none is."""
    by_normal: dict[str, str] = {}
    for column in header:
        by_normal.setdefault(_normal(column), column)
    return next((by_normal[_normal(s)] for s in spellings if _normal(s) in by_normal), None)


def _normal(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


UNIX_UNITS = {1: "nanoseconds", 1_000: "microseconds", 1_000_000: "milliseconds", 1_000_000_000: "seconds"}  # fmt: skip
"""Factor to nanoseconds -> name of the units a unix time may come in."""
RECENT_SECONDS = (978_307_200, 4_102_444_800)
"""Unix seconds of 2001-01-01 and 2100-01-01: a recording's times lie between them in one unit
only, since the units lie 1000x apart."""


MAX_UNIX_NS = 2**63 - 1
"""The latest time that Unix nanoseconds in 64 bits hold (2262-04-11)."""


def is_recent(seconds: float) -> bool:
    """Whether unix seconds are a time of this century (see RECENT_SECONDS)."""
    return RECENT_SECONDS[0] <= seconds < RECENT_SECONDS[1]


def far_from(typical_s: float) -> str:
    """What a message says of a time far from the rest, all of this century near `typical_s`."""
    return (
        f"where the file's other times are around {utc_time(typical_s)}: a time in another "
        "unit than the rest?"
    )


def check_times_agree(cols: SpanColumns, source: str, typical: float | None = None) -> float | None:
    """Refuse a batch of spans whose times are mostly of this century and some not: a time in
    another unit (milliseconds among nanoseconds) would count its request decades away. The
    typical time (s) is the batch's median, or `typical` where given (that of a file's first
    batch, for the batches after it); it is returned."""
    ends = cols.end_ns
    if not ends:
        return typical
    if typical is None:
        typical = statistics.median_low(ends) / 1e9
    if not is_recent(typical):
        return typical
    for i, end in enumerate(ends):
        start = cols.start_ns[i]
        for name, t in (("ends", end), ("starts", start)):
            if t != UNKNOWN_NS and not is_recent(t / 1e9):
                raise InputError(
                    f"span {cols.span_ids[i]} of trace {cols.trace_ids[i]} {name} at "
                    f"{utc_time(t / 1e9)}, {far_from(typical)}",
                    source=source,
                )
    return typical


def unix_unit(typical: float, default: int) -> tuple[int, str]:
    """(factor to nanoseconds, unit name) of unix times like `typical`: the unit in which it is
    a time of this century, else `default` (times near 1970 are kept as they are, as in tests)."""
    for factor, name in UNIX_UNITS.items():
        if is_recent(typical * factor / 1e9):
            return factor, name
    return default, UNIX_UNITS[default]


def expand_inputs(spec: str | Path, suffixes: Sequence[str]) -> list[Path]:
    """Sorted input files of a file, a directory (its files with one of `suffixes`, in any case;
    subfolders are not searched) or a glob (the files it matches, and those of the directories
    it matches, as a directory's)."""
    text = str(spec)
    path = Path(text)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = _files_of(path, suffixes)
        folders = [path]
    elif any(ch in text for ch in "*?["):
        matches = [Path(p) for p in glob.glob(text)]
        found = [p for p in matches if p.is_file()]
        folders = [p for p in matches if p.is_dir()]
        found += [f for p in folders for f in _files_of(p, suffixes)]
    else:
        raise InputError("no such file, directory or glob match", source=text)
    _warn_unread(folders, suffixes)
    if not found:
        wanted = ", ".join(suffixes)
        below = sorted({f.parent for f in files_below(path, suffixes)}) if path.is_dir() else []
        traced = [b for b in below if b.name.lower() in ("trace", "traces")]
        below = traced or below  # not the metric/ folders beside them
        hint = ""
        if len(below) == 1:
            hint = f"; subfolders are not searched, and {below[0]} holds some: name it"
        elif below:
            hint = (
                f"; subfolders are not searched, and {len(below)} hold some: "
                f"{first_few([str(b) for b in below])} (name one, or all with the quoted glob "
                f"'{_glob_of(path, below)}')"
            )
        raise InputError(f"no input files found (looked for {wanted}){hint}", source=text)
    return sorted(set(found))


LIKE_DATA = re.compile(r"\.(csv|tsv|json|jsonl|ndjson)(\.[a-z0-9]+)?$|\.(bz2|xz|zst|zip|7z)$")
"""Names of files that hold data, likely, in a form the importers may not read."""


def _warn_unread(folders: Sequence[Path], suffixes: Sequence[str]) -> None:
    """Name, in a warning, the files of `folders` that look like data but have none of the
    `suffixes` read (a .csv.bz2, a .tsv): skipped silently, they would be lost traffic."""
    unread = sorted(
        p
        for folder in folders
        for p in folder.iterdir()
        if p.is_file() and not suffix_of(p, suffixes) and LIKE_DATA.search(p.name.lower())
    )
    if unread:
        warnings.warn(
            DataWarning(
                f"{count_of(len(unread), 'file')} skipped, of a name this format does not read "
                f"(it reads {', '.join(suffixes)}): {first_few([str(p) for p in unread])}"
            ),
            stacklevel=3,
        )


def _glob_of(root: Path, folders: Sequence[Path]) -> str:
    """A glob below `root` that matches every one of `folders`: a `*` where they differ."""
    parts = [f.relative_to(root).parts for f in folders]
    if len({len(p) for p in parts}) != 1:
        return str(root / "*")
    return str(
        root.joinpath(
            *("*" if len({p[i] for p in parts}) > 1 else parts[0][i] for i in range(len(parts[0])))
        )
    )


def suffix_of(path: Path, suffixes: Sequence[str]) -> str | None:
    """The first of `suffixes` that a name ends in, in any case; None if none."""
    name = path.name.lower()
    return next((s for s in suffixes if name.endswith(s.lower())), None)


def files_below(root: Path, suffixes: Sequence[str]) -> list[Path]:
    """Sorted files of a folder and its subfolders whose names end in one of `suffixes`."""
    return sorted(p for p in root.rglob("*") if p.is_file() and suffix_of(p, suffixes))


def _files_of(folder: Path, suffixes: Sequence[str]) -> list[Path]:
    """A folder's own files (not its subfolders') whose names end in one of `suffixes`."""
    return [p for p in folder.iterdir() if p.is_file() and suffix_of(p, suffixes)]


def read_text(path: Path) -> str:
    """A text file's content, gunzipped when its name ends in .gz."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                return handle.read()
        return path.read_text(encoding="utf-8")
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read: {exc}", source=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text: {exc.reason}", source=str(path)) from exc


def json_documents(
    path: Path, whole: Callable[[Path], Iterator[tuple[int | None, Any]]] | None = None
) -> Iterator[tuple[int | None, Any]]:
    """(line, object) of a file holding one JSON document, or one document per line. A document
    written over several lines has no line of its own (None): its errors name the field path;
    `whole` reads such a document (`streamed_items`, say; by default it is read whole).
    A file whose first line is a whole document is read line by line as it is asked for (an
    OpenTelemetry Collector's file of gigabytes is never held whole). A gzip file of a document
    per line cut short is read up to its last whole line before the cut, with a warning (a file
    of one document so cut is an error)."""
    source = str(path)
    done, read = 0, 0  # the last line yielded while reading line by line, and their number
    try:
        with _open_text(path) as handle:
            number, first = 0, ""
            while not first.strip():
                first = handle.readline(LONG_LINE)
                if not first:
                    break
                number += 1
            if len(first) >= LONG_LINE and not first.endswith("\n") and not _last_line(handle):
                handle.seek(0)  # documents on long lines: read the first one whole, as the rest
                first = next(line for line in handle if line.strip())
            lines = enumerate(handle, start=number + 1)
            try:
                if len(first) >= LONG_LINE and not first.endswith("\n"):
                    raise json.JSONDecodeError("a document longer than a line is read", "", 0)
                doc = json.loads(first)
            except json.JSONDecodeError:
                doc = _NOT_ONE_LINE  # over several lines, or one too long, or not JSON: whole
            if doc is not _NOT_ONE_LINE:
                yield number, doc
                done, read = number, 1
                for number, line in lines:
                    if not line.strip():
                        continue
                    try:
                        doc = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise InputError(
                            f"not valid JSON ({exc.msg}, column {exc.colno})",
                            source=source,
                            line=number,
                        ) from exc
                    yield number, doc
                    done, read = number, read + 1
                return
    except EOFError as exc:
        if not done:
            raise InputError(f"cannot read: {exc}", source=source) from exc
        rest = [(n, doc) for n, doc in _json_lines_to_the_cut(path) or [] if (n or 0) > done]
        warnings.warn(
            DataWarning(
                f"{path}: cut short ({exc}); read up to its last whole line before the cut "
                f"({count_of(read + len(rest), 'line')})"
            ),
            stacklevel=2,
        )
        yield from rest
        return
    except OSError as exc:
        raise InputError(f"cannot read: {exc}", source=source) from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text: {exc.reason}", source=source) from exc
    yield from (whole or _whole_documents)(path)


_NOT_ONE_LINE = object()


def _last_line(handle: io.TextIOBase) -> bool:
    """Whether the line being read from `handle` is its last with any text: read on in chunks,
    never holding the line (a one-line document of gigabytes), to its end and past blank
    space."""
    ended = False
    while chunk := handle.read(1 << 20):
        if not ended:
            end = chunk.find("\n")
            if end < 0:
                continue
            ended, chunk = True, chunk[end + 1 :]
        if chunk.strip():
            return False
    return True


LONG_LINE = 1 << 24
"""Characters of a first line beyond which a file that holds no other line of text is read as
one document (`whole`): a Jaeger UI export of gigabytes is one line, streamed, never held whole.
Documents on long lines, one per line, are read a line at a time as any others."""


@dataclass(frozen=True)
class StreamedItem:
    """One element of the list under a document's top-level `key`, read as the file streams by
    (`streamed_items`): its errors name the field `key[index]`."""

    key: str
    index: int
    value: Any


def streamed_items(path: Path, keys: Sequence[str]) -> Iterator[tuple[int | None, Any]]:
    """The elements of the list under the first of `keys` that holds one in a document written
    over several lines (Jaeger's `data`, OTLP's `resourceSpans`), as StreamedItems, parsed as
    the file is read, so a file of gigabytes is never held whole. Where no key holds a list
    with an element, the document as `json_documents` reads it whole (whose errors name what is
    missing); where the streaming parser stops (a file of several documents, or one it
    refuses), the file read whole, whose errors name the line (the elements already given are
    not given again)."""
    given = 0
    try:
        for key in keys:
            with open_binary(path) as handle:
                for index, value in enumerate(ijson.items(handle, f"{key}.item", use_float=True)):
                    yield None, StreamedItem(key, index, value)
                    given += 1
            if given:
                return
    except (ijson.JSONError, OSError, EOFError, zlib.error, UnicodeDecodeError):
        pass  # reading it whole says where, or reads what the streaming parser refused
    for k, (line, doc) in enumerate(_whole_documents(path)):
        if k or not given:  # the elements given were the first document's
            yield line, doc
            continue
        key = next((n for n in keys if isinstance(doc, dict) and isinstance(doc.get(n), list)), "")
        for index, value in enumerate(doc[key] if key else []):
            if index >= given:
                yield None, StreamedItem(key, index, value)


def _open_text(path: Path) -> io.TextIOBase:
    """A text file opened for reading, gunzipped when its name ends in .gz (as `read_text`)."""
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")  # type: ignore[return-value]
    return open(path, encoding="utf-8")  # noqa: SIM115 - the caller closes it


def _whole_documents(path: Path) -> Iterator[tuple[int | None, Any]]:
    """`json_documents` of a file read whole: one document over several lines, or what does
    not read as JSON (the error names where)."""
    source = str(path)
    text = read_text(path)  # cut short, it is an error: its first line is no whole document
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg != "Extra data":
            raise InputError(
                f"not valid JSON ({exc.msg}, column {exc.colno})", source=source, line=exc.lineno
            ) from exc
    else:
        yield (1 if "\n" not in text.strip() else None), doc
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"not valid JSON ({exc.msg}, column {exc.colno})", source=source, line=number
            ) from exc


def _json_lines_to_the_cut(path: Path) -> list[tuple[int | None, Any]] | None:
    """(line, object) of the whole lines of a gzip file cut short, a JSON document each; None
    where none is whole or one does not read (a document over several lines, say)."""
    try:  # a gzip stream (wbits 32 + 15: its header told apart) decompressed as far as it goes
        data = zlib.decompressobj(wbits=47).decompress(path.read_bytes())
        text = data[: data.rfind(b"\n") + 1].decode("utf-8")
    except (OSError, zlib.error, UnicodeDecodeError):
        return None
    out: list[tuple[int | None, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append((number, json.loads(line)))
        except json.JSONDecodeError:
            return None
    return out or None


class Where:
    """A JSON location (file, line) that builds InputErrors naming a field path."""

    def __init__(self, source: str, line: int | None) -> None:
        self.source = source
        self.line = line

    def fail(self, message: str, fld: str | None = None) -> InputError:
        return InputError(message, source=self.source, line=self.line, field=fld)

    def obj(self, value: Any, fld: str | None) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(f"expected an object, got {_shown(value)}", fld)
        return value

    def items(self, value: Any, fld: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(f"expected a list, got {_shown(value)}", fld)
        return value

    def text(self, value: Any, fld: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(f"expected a non-empty string, got {_shown(value)}", fld)
        return value

    def integer(self, value: Any, fld: str) -> int:
        """A non-negative integer, given as a JSON number or a decimal string."""
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                raise self.fail(f"expected an integer, got {_shown(value)}", fld) from None
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(f"expected a non-negative integer, got {_shown(value)}", fld)
        return value

    def unix_ns(self, value: Any, fld: str, unit_ns: int = 1) -> int:
        """A time given as a non-negative integer of `unit_ns` nanoseconds, in nanoseconds;
        one past MAX_UNIX_NS (2262) is a corrupted value, not a time."""
        ns = self.integer(value, fld) * unit_ns
        if ns > MAX_UNIX_NS:
            raise self.fail(f"{_shown(value)} is past the year 2262: not a time", fld)
        return ns

    def span_times(self, start_ns: int, end_ns: int, fld: str) -> None:
        """A span cannot end before it starts (both times come from one clock)."""
        if start_ns > end_ns:
            raise self.fail(f"the span ends {(start_ns - end_ns) / 1e9:g} s before it starts", fld)

    def seconds(self, value: Any, fld: str) -> float:
        """A finite non-negative number of seconds."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(f"expected a number of seconds, got {_shown(value)}", fld)
        if not math.isfinite(value) or value < 0:
            raise self.fail(f"expected a finite non-negative number, got {_shown(value)}", fld)
        return float(value)


def shown_cell(value: Any) -> str:
    """A CSV cell's value as a message shows it: text quoted, numbers as written (no numpy
    reprs), and a cell pandas read as missing (blank, NA, n/a, null) said to be so."""
    if isinstance(value, str):
        return repr(value)
    if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
        return "an empty or not-available cell"
    return str(value.item() if hasattr(value, "item") else value)


def _shown(value: Any) -> str:
    """A JSON value as a message shows it: scalars as JSON writes them (null, true, "", "x",
    1.5), containers by their kind."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def check_window_seconds(window_seconds: int) -> int:
    """The window width, checked to be a positive whole number of seconds."""
    if (
        isinstance(window_seconds, bool)
        or not isinstance(window_seconds, int)
        or window_seconds <= 0
    ):
        raise InputError(
            f"must be a positive whole number of seconds, got {window_seconds!r}", field="window"
        )
    return window_seconds


PEEK_BYTES = 1 << 16
"""How much of a JSON file is read to find its first span's time."""


def open_binary(path: Path) -> gzip.GzipFile | BinaryIO:
    """A file opened for reading bytes, gunzipped when its name ends in .gz (in any case)."""
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")  # noqa: SIM115 - the caller closes it


def peek_time(path: Path, pattern: re.Pattern[str]) -> float | None:
    """The first time (ns, by magnitude) that `pattern`'s group 1 matches in the first
    PEEK_BYTES of a file; None where none does or the file cannot be read."""
    try:
        with open_binary(path) as raw:
            head = raw.read(PEEK_BYTES).decode("utf-8", errors="replace")
    except (OSError, EOFError):
        return None
    match = pattern.search(head)
    if match is None:
        return None
    value = float(match.group(1))
    return value * unix_unit(value, 1)[0]


def in_time_order(paths: Sequence[Path], first_time: Callable[[Path], float | None]) -> list[Path]:
    """Files ordered by the time of their first span (name order among equals; files whose
    first span cannot be read last, in name order): names need not sort by time."""
    keyed = [(first_time(path), path) for path in paths]
    timed = sorted((t, p) for t, p in keyed if t is not None)
    return [p for _, p in timed] + [p for t, p in keyed if t is None]


ItemParser = Callable[[Any, "Where", str], Iterable[Span]]
"""The spans of one element of a document's top-level list: (element, where, its field)."""


def json_span_batches(
    spec: str | Path,
    suffixes: Sequence[str],
    parse: Callable[[Any, str, int | None], Iterable[Span]],
    on_file: Callable[[Path], None] | None = None,
    time_key: re.Pattern[str] | None = None,
    items: tuple[Sequence[str], ItemParser] | None = None,
) -> Iterator[SpanColumns]:
    """The spans of JSON trace files, a batch per file (per BATCH_SPANS spans of a file of a
    document per line, or of one document whose list under one of `items`' keys its parser
    reads element by element, so that a file of gigabytes is never held whole), read as they
    are asked for; with `time_key` (a pattern whose group 1 is a span's time), in the time order
    of their first span."""
    paths = expand_inputs(spec, suffixes)
    if time_key is not None:
        paths = in_time_order(paths, lambda path: peek_time(path, time_key))
    whole = None if items is None else (lambda path: streamed_items(path, items[0]))
    for path in paths:
        cols, typical = SpanColumns.empty(), None
        for line, doc in json_documents(path, whole):
            if isinstance(doc, StreamedItem) and items is not None:
                spans = items[1](doc.value, Where(str(path), None), f"{doc.key}[{doc.index}]")
            else:
                spans = parse(doc, str(path), line)
            for span in spans:
                cols.append(span)
            if len(cols) >= BATCH_SPANS:
                typical = check_times_agree(cols, str(path), typical)
                yield cols
                cols = SpanColumns.empty()
        check_times_agree(cols, str(path), typical)
        yield cols
        if on_file is not None:
            on_file(path)


BATCH_SPANS = 20_000
"""Spans of one file after which a batch is assembled (`windows_of_batches` holds a few batches'
spans at a time); a file of fewer, as most are, is one batch."""


def windows_of_files(
    batches: Iterable[SpanColumns],
    window_seconds: int,
    fold_gateway: bool,
    file_seconds: int | None = None,
    sampling_ratio: float = 1.0,
    file_minutes: Sequence[int | None] | None = None,
    tally: Tally | None = None,
) -> list[Window]:
    """Assemble spans read file by file into trees and count their paths into windows (with
    `file_seconds`, files of one period each, and `file_minutes`, the minute of the day each
    one's name says; `sampling_ratio`, the share of traces kept where spans do not say;
    `tally`, what the spans met: see `windows_of_batches`)."""
    check_window_seconds(window_seconds)
    return windows_of_batches(
        batches,
        window_seconds,
        fold_gateway,
        file_seconds=file_seconds,
        sampling_ratio=sampling_ratio,
        file_minutes=file_minutes,
        tally=tally,
    )

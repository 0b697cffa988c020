"""Window store: closed windows persist in SQLite in the data directory, and the windows a
stopping exporter leaves open are kept there for the next start to resume."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from estimator.errors import DeepRestError, InputError
from estimator.importers.common import MAX_UNIX_NS
from estimator.windows import Pair, Window, window_from_json, window_to_json

OpenWindow = tuple[Window, dict[Pair, list[float]]]
"""A window not closed yet and its requests' durations (seconds) per API."""
SpanRow = tuple[bytes, str, str, int, int, float]
"""A buffered span: parent id, component, operation, end and start (ns), weight."""
OpenTrace = dict[bytes, SpanRow]
"""The spans of a trace not closed yet, by span id."""

log = logging.getLogger("deeprest.store")

FILENAME = "windows.sqlite"
LOCKFILE = "serve.lock"
"""Held by the exporter serving from the data dir (see WindowStore.claim)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS windows (
    start REAL PRIMARY KEY,
    end REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS open_windows (
    start REAL PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS open_traces (
    trace TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS notes (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class StoreError(DeepRestError):
    """The window store cannot be opened or written."""


def existing_store(data_dir: str | Path, source: str) -> WindowStore:
    """The store of `data_dir` for reading; InputError where there is none (a read does not
    create one, as a typo'd data_dir would otherwise get)."""
    if not (Path(data_dir) / FILENAME).is_file():
        raise InputError(
            f"no window store ({FILENAME}) in {data_dir}: has deeprest serve run with it?",
            source=source,
        )
    return WindowStore(data_dir)


def _kept_span(row: Any) -> tuple[bytes, SpanRow]:
    """One span of a kept open trace, as `save_open` wrote it; ValueError where it is not: the
    ids hex, the names non-empty text, the times whole nanoseconds before 2262 (a start of -1:
    unknown), the weight a positive finite number."""
    sid, parent, component, operation, end, start, weight = row
    if not all(isinstance(x, str) and x for x in (component, operation)):
        raise ValueError(f"span {sid}: component and operation must be non-empty text")
    times_ok = all(type(t) is int for t in (end, start)) and 0 < end <= MAX_UNIX_NS
    if not times_ok or not -1 <= start <= end:
        raise ValueError(f"span {sid}: times {start!r}, {end!r} are not nanoseconds")
    if type(weight) not in (int, float) or not (math.isfinite(weight) and weight > 0):
        raise ValueError(f"span {sid}: weight {weight!r} is not a positive number")
    return bytes.fromhex(sid), (bytes.fromhex(parent), component, operation, end, start, weight)


def holder(data_dir: str | Path) -> str | None:
    """The pid of the running exporter that holds `data_dir` (see WindowStore.claim), or None
    where none does."""
    path = Path(data_dir) / LOCKFILE
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError:
        return None  # no lock file: never served from, or not readable (then claim says so)
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return handle.read().strip() or "unknown"
    return None


class WindowStore:
    """Closed windows in contract-1 JSON, keyed by start time; safe to share between threads."""

    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / FILENAME
        if self.path.parent.exists() and not self.path.parent.is_dir():
            raise StoreError(f"{self.path.parent} is not a directory")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.path}: cannot open the window store ({exc})") from exc
        self._lock = threading.Lock()
        self._claim: IO[str] | None = None

    def claim(self) -> None:
        """Hold the data dir for one exporter (an advisory lock, released on close or exit):
        two exporters on one data dir would each overwrite the other's windows. Readers
        (training, capacity) need no claim."""
        path = self.path.parent / LOCKFILE
        try:
            handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - kept open until close
        except OSError as exc:
            raise StoreError(f"{path}: cannot open ({exc.strerror})") from exc
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise StoreError(
                f"{self.path.parent} is in use by another running exporter (pid {holder}): two "
                "exporters on one data_dir would overwrite each other's windows; give each its "
                "own data_dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._claim = handle

    def close(self) -> None:
        with self._lock:
            self._db.close()
            if self._claim is not None:
                self._claim.close()  # releases the lock
                self._claim = None

    def put(self, windows: Sequence[Window]) -> None:
        """Insert or replace windows (one transaction)."""
        rows = [
            (w.start, w.end, json.dumps(window_to_json(w), separators=(",", ":"))) for w in windows
        ]
        self._transaction(
            "windows",
            lambda db: db.executemany("INSERT OR REPLACE INTO windows VALUES (?, ?, ?)", rows),
        )

    def _transaction(self, what: str, work: Callable[[sqlite3.Connection], object]) -> None:
        """Run `work` on the database in one transaction; a StoreError naming `what` if it
        cannot be written (nothing of it is then)."""
        with self._lock:
            try:
                self._db.execute("BEGIN")
                work(self._db)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:  # a failed COMMIT has rolled back already
                    with contextlib.suppress(sqlite3.Error):  # the error to say is the first
                        self._db.execute("ROLLBACK")
                raise StoreError(f"{self.path}: cannot write {what} ({exc})") from exc

    def save_open(
        self, windows: Sequence[OpenWindow], traces: Mapping[bytes, OpenTrace] | None = None
    ) -> None:
        """Keep the windows and traces a stopping exporter leaves open (replacing any kept
        before), for the next start to resume with `take_open` and `take_open_traces`."""
        trace_rows = [
            (
                tid.hex(),
                json.dumps(
                    [
                        [sid.hex(), p.hex(), c, o, e, s, w]
                        for sid, (p, c, o, e, s, w) in spans.items()
                    ],
                    separators=(",", ":"),
                ),
            )
            for tid, spans in (traces or {}).items()
        ]
        rows = [
            (
                w.start,
                json.dumps(
                    {
                        "window": window_to_json(w),
                        "durations": [[c, o, d] for (c, o), d in durations.items()],
                    },
                    separators=(",", ":"),
                ),
            )
            for w, durations in windows
        ]

        def replace_open(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM open_windows")
            db.executemany("INSERT INTO open_windows VALUES (?, ?)", rows)
            db.execute("DELETE FROM open_traces")
            db.executemany("INSERT INTO open_traces VALUES (?, ?)", trace_rows)

        self._transaction("the open windows and traces", replace_open)

    def take_open(self) -> list[OpenWindow]:
        """The open windows a stopped exporter kept, oldest first; they are removed (a second
        start does not resume them again)."""
        rows = self._select("SELECT start, body FROM open_windows ORDER BY start")
        out: list[OpenWindow] = []
        for start, body in rows:
            try:
                data = json.loads(body)
                window = window_from_json(data["window"], str(self.path))
                durations = {(c, o): [float(x) for x in d] for c, o, d in data["durations"]}
            except (ValueError, TypeError, KeyError, OverflowError, InputError) as exc:
                # what a stop kept to resume: dropped, not a reason to refuse the start
                log.warning(
                    "%s: open window at %s is corrupted, dropped (%s)", self.path, start, exc
                )
                continue
            out.append((window, durations))
        self._transaction("the open windows", lambda db: db.execute("DELETE FROM open_windows"))
        return out

    def take_open_traces(self) -> dict[bytes, OpenTrace]:
        """The open traces a stopped exporter kept; they are removed, as by `take_open`."""
        rows = self._select("SELECT trace, body FROM open_traces")
        out: dict[bytes, OpenTrace] = {}
        for trace, body in rows:
            try:
                out[bytes.fromhex(trace)] = dict(_kept_span(row) for row in json.loads(body))
            except (ValueError, TypeError, OverflowError) as exc:
                log.warning("%s: open trace %s is corrupted, dropped (%s)", self.path, trace, exc)
        self._transaction("the open traces", lambda db: db.execute("DELETE FROM open_traces"))
        return out

    def _decode(self, rows: list[tuple[float, str]]) -> list[Window]:
        out = []
        shared: dict[Any, Any] = {}  # one copy of each path for all the windows
        for start, body in rows:
            try:
                out.append(window_from_json(json.loads(body), str(self.path), shared=shared))
            except (ValueError, InputError) as exc:
                raise StoreError(
                    f"{self.path}: window at {start} is corrupted ({exc}); delete it (sqlite3 "
                    f"{self.path} 'DELETE FROM windows WHERE start = {start!r}') or move the "
                    "data_dir aside"
                ) from exc
        return out

    def _select(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple]:
        """Rows of a query; a damaged database file is a StoreError naming it."""
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: cannot read the window store ({exc})") from exc

    def range(self, start: float, end: float) -> list[Window]:
        """Windows with start in [start, end), oldest first."""
        return self._decode(
            self._select(
                "SELECT start, body FROM windows WHERE start >= ? AND start < ? ORDER BY start",
                (start, end),
            )
        )

    def recent(self, n: int) -> list[Window]:
        """The newest `n` windows, oldest first."""
        rows = self._select("SELECT start, body FROM windows ORDER BY start DESC LIMIT ?", (n,))
        return self._decode(rows[::-1])

    def prune(self, before: float) -> int:
        """Delete the windows that ended before `before`; how many were."""
        deleted = 0

        def work(db: sqlite3.Connection) -> None:
            nonlocal deleted
            deleted = db.execute("DELETE FROM windows WHERE end < ?", (before,)).rowcount

        self._transaction("the pruning of old windows", work)
        return deleted

    def ended_before(self, before: float) -> tuple[int, float | None]:
        """How many stored windows ended before `before`, and the start of the oldest."""
        rows = self._select("SELECT COUNT(*), MIN(start) FROM windows WHERE end < ?", (before,))
        count, oldest = rows[0] if rows else (0, None)
        return int(count), None if oldest is None else float(oldest)

    def note(self, key: str) -> str | None:
        """A value the exporter noted in the store for its next starts (see `set_note`)."""
        rows = self._select("SELECT value FROM notes WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_note(self, key: str, value: str | None) -> None:
        """Note a value for later starts; None deletes it."""

        def work(db: sqlite3.Connection) -> None:
            if value is None:
                db.execute("DELETE FROM notes WHERE key = ?", (key,))
            else:
                db.execute("INSERT OR REPLACE INTO notes (key, value) VALUES (?, ?)", (key, value))

        self._transaction(f"the note {key!r}", work)

    def has(self, start: float) -> bool:
        """Whether a window starting at `start` is stored."""
        return bool(self._select("SELECT 1 FROM windows WHERE start = ?", (start,)))

    def last_end(self) -> float | None:
        """End of the newest stored window."""
        rows = self._select("SELECT MAX(end) FROM windows")
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    def count(self) -> int:
        return int(self._select("SELECT COUNT(*) FROM windows")[0][0])

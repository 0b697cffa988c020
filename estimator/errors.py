"""Error hierarchy: every message says what is wrong, where, and how to fix it."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime


class DeepRestError(Exception):
    """Base of every error DeepRest raises on purpose."""


class InputError(DeepRestError):
    """Bad input from a user: a file, line, field, flag or request body (exit status 2, HTTP 4xx)."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.source = source
        self.line = line
        self.field = field
        where = []
        if source is not None:
            where.append(str(source))
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.bare_message = message


class BundleError(DeepRestError):
    """A model bundle that is missing, corrupted, truncated or does not match its manifest."""


class ModelError(DeepRestError):
    """A model asked to do something it cannot (predict before fit, wrong shapes)."""


class DataWarning(UserWarning):
    """Input that was read, but not all of it as it stands: a unit guessed, a file skipped, a
    window dropped. Importers warn with it (`warnings.warn`); the CLI prints each one."""


def data_warning(text: str) -> None:
    """Warn with a DataWarning that the CLI prints as `deeprest CMD: warning: text`, once."""
    warnings.warn(DataWarning(text), stacklevel=3)


def count_of(n: int, noun: str) -> str:
    """'1 window', '3 windows': a count with its noun (plural by an 's', but 'series')."""
    return f"{n} {noun}" if n == 1 or noun.endswith("series") else f"{n} {noun}s"


def first_few(names: list[str], shown: int = 5) -> str:
    """The first `shown` names, comma-separated, with " ..." where more were left out."""
    return ", ".join(names[:shown]) + (" ..." if len(names) > shown else "")


def utc_time(seconds: float) -> str:
    """A unix time as ISO 8601 UTC, or the number itself when it is out of calendar range."""
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{seconds:g}"


def not_utf8(exc: UnicodeDecodeError) -> str:
    """What a text input that is not UTF-8 says: where its first bad byte is (counted from 1)."""
    return f"not UTF-8 text (byte {exc.start + 1})"

"""Progress on long work, to standard error, quiet when it is not a terminal unless asked."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def bar(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """A tqdm bar over items on standard error."""
    from tqdm import tqdm

    yield from tqdm(items, desc=desc, total=total, file=sys.stderr, leave=False, mininterval=0.5)


class Phases:
    """Prints one line per phase of a command with the time it took."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[{self.command} {elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)

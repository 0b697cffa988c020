"""Shared pieces of the benchmark scripts: timing, model runs, Markdown sections."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from estimator.windows import Window

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
SHARED_DATA = Path(
    os.environ.get("DEEPREST_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)
"""The real datasets' folder: `DEEPREST_DATA` where set, else `shared/data` beside the checkout."""


@dataclass
class Timed:
    """Result of a timed call."""

    value: object
    seconds: float


def timed(fn: Callable[[], object]) -> Timed:
    started = time.perf_counter()
    value = fn()
    return Timed(value, time.perf_counter() - started)


def write_section(name: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    """Replace (or append) the section between `<!-- name:begin -->` and `<!-- name:end -->`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text(encoding="utf-8") if path.exists() else "# DeepRest benchmarks\n"
    block = f"<!-- {name}:begin -->\n{body.strip()}\n<!-- {name}:end -->"
    pattern = re.compile(
        rf"<!-- {re.escape(name)}:begin -->.*?<!-- {re.escape(name)}:end -->", re.S
    )
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + block + "\n"
    )
    path.write_text(text, encoding="utf-8")


TRAIN_SHARE = "60%"
"""The share of a real recording, from its start, the benchmarks train on; the rest tests."""


def train_cut(windows: Sequence[Window], share: str = TRAIN_SHARE) -> int:
    """How many windows, from the start, `deeprest train --to SHARE` trains on: the benchmarks
    split a recording where the README's commands (`train --to 60%`, `evaluate --from 60%`)
    split it, so their figures are those a user reproduces."""
    from exporter.commands.ranges import span

    return span(windows, None, share, "recording").stop


def median_or_nan(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(np.median(values)) if len(values) else float("nan")

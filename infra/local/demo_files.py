"""What the demo writes in its --out folder, so that a new run removes an earlier run's files.

The demo records every name it writes at the top of --out in `.deeprest-demo` (one a line) and
removes exactly those at its next start: the report of a run never sits beside plots of another.
Files it did not record are never removed; where one bears a name the demo writes (a file of the
user's, or the output of a demo from before the record was kept), the demo refuses to start.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from pathlib import Path

RECORD = ".deeprest-demo"
"""In --out: the names the demo wrote there, one a line."""
OUTPUTS = ("run", "index.html", "summary.json")
PLOTS = re.compile(r"(normal|3x|crypto|ransomware)-[A-Za-z0-9_-]+\.png")
"""The names of the report's plots: PHASE-COMPONENT.png."""


def recorded(out: Path) -> list[str]:
    """The names an earlier demo recorded in `out` (plain names only, nothing outside `out`)."""
    try:
        lines = (out / RECORD).read_text().splitlines()
    except FileNotFoundError:
        return []
    return [n for n in lines if n and n not in (".", "..", RECORD) and "/" not in n]


def unrecorded(out: Path) -> list[str]:
    """Entries of `out` the demo would write over, though no earlier demo recorded them."""
    if not out.is_dir():
        return []
    known = set(recorded(out))
    names = [p.name for p in out.iterdir() if p.name in OUTPUTS or PLOTS.fullmatch(p.name)]
    return sorted(n for n in names if n not in known)


def clear_earlier(out: Path) -> list[str]:
    """Remove what an earlier demo recorded in `out`; the names removed."""
    removed = []
    for name in recorded(out):
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(name)
    (out / RECORD).unlink(missing_ok=True)
    return removed


def record(out: Path, names: Iterable[str]) -> None:
    """Add names (relative to `out`, at its top) to the record, before or as they are written."""
    out.mkdir(parents=True, exist_ok=True)
    known = recorded(out)
    new = [n for n in names if n not in known]
    (out / RECORD).write_text("".join(f"{n}\n" for n in [*known, *new]))

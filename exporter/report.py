"""Evaluation reports: text tables, PNG plots of actual against the band, an HTML page."""

from __future__ import annotations

import hashlib
import html
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from estimator.evaluation import Evaluation

UNITS = {"cpu": "cores", "memory": "bytes", "write_iops": "ops/s", "write_throughput": "bytes/s"}


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files, no display), imported on first use. A name
    with characters the font lacks (CJK, emoji) draws them as boxes, without a warning a glyph.
    Text from the data goes through `plain`, so that a `$` in it is not read as TeX."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    warnings.filterwarnings("ignore", r"Glyph \d+ .* missing from font", UserWarning)
    return plt


def plain(text: object) -> str:
    """Text for a plot, drawn as written: a `$` escaped, since matplotlib reads `$...$` as TeX
    (its own labels, such as a log axis's 10^k ticks, need TeX on, so it cannot be turned off)."""
    return str(text).replace("$", r"\$")


BYTES = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def quantity(value: float, resource: str) -> str:
    """A usage or limit in its resource's unit, for a sentence: bytes in binary multiples
    (`286 MiB`, `1.5 GiB/s`), other units with 3 significant digits (`0.5 cores`)."""
    unit = UNITS.get(resource, "")
    if not unit.startswith("bytes") or not math.isfinite(value):
        return f"{value:.3g} {unit}".strip()
    step = 0
    while abs(value) >= 1024 and step < len(BYTES) - 1:
        value, step = value / 1024, step + 1
    return f"{value:.3g} {BYTES[step]}{unit[len('bytes') :]}"


def _cell(value: object, missing: str) -> str:
    """A table cell: floats with 3 decimals (3 significant digits where those would show a value
    that is not zero as 0.000: a few bytes' worth of disk, millicores), `missing` for NaN."""
    if isinstance(value, float):
        if np.isnan(value):
            return missing
        if value == 0.0:
            return "0.000"  # -0.0 too
        return f"{value:.3g}" if abs(value) < 5e-4 else f"{value:.3f}"
    return str(value)


def latency_ms(seconds: float) -> str:
    """A latency for tables, in ms: 'saturated' past a capacity, '>100s' for a backlog."""
    if np.isinf(seconds):
        return "saturated"
    return ">100s" if seconds > 100.0 else f"{1e3 * seconds:.1f}"


def format_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> str:
    """A plain aligned text table (floats with 3 decimals)."""
    body = [[_cell(r.get(c, ""), "nan") for c in columns] for r in rows]
    widths = [
        max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(columns)
    ]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(lines)


def markdown_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> str:
    """The same table in Markdown, for docs/benchmarks.md."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c, ""), "n/a") for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def plot_component(evaluation: Evaluation, component: str, path: Path, title: str) -> None:
    """One PNG per component: actual, median and band for each resource, and the anomaly score."""
    plt = pyplot()

    index = [j for j, (c, _) in enumerate(evaluation.series) if c == component]
    fig, axes = plt.subplots(len(index) + 1, 1, figsize=(10, 2.2 * (len(index) + 1)), sharex=True)
    t = (evaluation.starts - evaluation.starts[0]) / 60.0
    scores = evaluation.anomaly
    for ax, j in zip(axes, index, strict=False):
        resource = evaluation.series[j][1]
        ax.fill_between(
            t, evaluation.pred[:, j, 0], evaluation.pred[:, j, 2], alpha=0.3, label="90% band"
        )
        ax.plot(t, evaluation.pred[:, j, 1], lw=1, label="expected (median)")
        ax.plot(t, evaluation.actual[:, j], lw=0.8, color="black", label="actual")
        ax.set_ylabel(plain(f"{resource}\n({UNITS.get(resource, resource)})"))
    axes[0].legend(loc="upper right", fontsize=7)
    for j in index:
        axes[-1].plot(t, scores[:, j], lw=1, label=plain(evaluation.series[j][1]))
    axes[-1].set_ylabel("anomaly score")
    axes[-1].set_xlabel("minutes since start")
    axes[-1].legend(loc="upper right", fontsize=7)
    fig.suptitle(plain(title))
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def html_table(rows: Sequence[Mapping[str, object]]) -> str:
    """An HTML table of rows (floats with 3 decimals)."""
    if not rows:
        return "<p>no series</p>"
    columns = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(r[c], 'nan'))}</td>" for c in columns) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def component_images(
    directory: Path, name: str, evaluation: Evaluation, components: Sequence[str]
) -> list[str]:
    """Plot each component of `evaluation` to a PNG in `directory`; the <img> tags to show them."""
    tags = []
    present = {c for c, _ in evaluation.series}
    for component in components:
        if component not in present:
            continue
        png = f"{slug(name)}-{slug(component)}.png"
        plot_component(evaluation, component, directory / png, f"{name}: {component}")
        tags.append(f'<img src="{png}" alt="{html.escape(component)}" width="800">')
    return tags


def write_page(directory: Path, title: str, parts: Sequence[str]) -> Path:
    """index.html in `directory` from HTML parts; returns its path."""
    page = f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
    page += "<style>body{font-family:sans-serif}td,th{padding:2px 8px}</style>" + "\n".join(parts)
    out = directory / "index.html"
    out.write_text(page, encoding="utf-8")
    return out


def write_report(
    directory: Path,
    evaluations: Mapping[str, Evaluation],
    model_description: str,
    progress: Callable[[str], None] = lambda _: None,
) -> Path:
    """HTML report with a table and per-component plots for each scenario; returns index.html."""
    directory.mkdir(parents=True, exist_ok=True)
    parts = [f"<h1>DeepRest evaluation</h1><p>{html.escape(model_description)}</p>"]
    for scenario, evaluation in evaluations.items():
        progress(f"plots of {scenario}: {len({c for c, _ in evaluation.series})} components")
        summary = evaluation.summary()
        parts.append(f"<h2>{html.escape(scenario)}</h2><p>")
        parts.append(", ".join(f"{k} {v:.3f}" for k, v in summary.items()) + "</p>")
        parts.append(html_table(evaluation.rows()))
        components = sorted({c for c, _ in evaluation.series})
        parts += component_images(directory, scenario, evaluation, components)
    return write_page(directory, "DeepRest evaluation", parts)


def slug(text: str) -> str:
    """A file-name-safe form of a name; names that differ only where the safe form replaced a
    character (`api/v1`, `api.v1`) keep apart by a short hash of the name."""
    safe = "".join(ch if (ch.isascii() and ch.isalnum()) or ch in "-_" else "_" for ch in text)
    if safe == text:
        return safe
    return f"{safe}-{hashlib.sha256(text.encode()).hexdigest()[:6]}"

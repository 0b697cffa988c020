"""Evaluation reports: text tables, PNG plots of actual against the band, an HTML page."""

from __future__ import annotations

import hashlib
import html
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    (`286 MiB`, `0.978 GiB`, `1.5 GiB/s`; whole bytes under 1 KiB), other units with 3
    significant digits (`0.5 cores`) and whole ones from 1000 on (`12345 ops/s`), never with an
    exponent such as `1.01e+03 MiB`."""
    unit = UNITS.get(resource, "")
    if not unit.startswith("bytes") or not math.isfinite(value):
        shown = f"{value:.0f}" if abs(value) >= 999.5 else f"{value:.3g}"
        return f"{shown} {unit}".strip()
    step = _binary_step(value)
    value /= 1024.0**step
    shown = f"{round(value)}" if step == 0 else f"{value:.3g}"  # a byte is the smallest
    return f"{shown} {BYTES[step]}{unit[len('bytes') :]}"


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


def scale_of(values: np.ndarray, resource: str) -> tuple[float, str]:
    """The divisor and unit a plot of a resource's `values` reads in: bytes in the binary multiple
    the table's figures use (MiB, GiB), other resources in their base unit."""
    unit = UNITS.get(resource, resource)
    if not unit.startswith("bytes"):
        return 1.0, unit
    finite = np.abs(values[np.isfinite(values)])
    step = _binary_step(float(finite.max()) if finite.size else 0.0)
    return 1024.0**step, BYTES[step] + unit[len("bytes") :]


def _binary_step(value: float) -> int:
    """The index in BYTES of the binary multiple a byte count reads in: the largest under which
    it stays below 1000 (1001 MiB as 0.978 GiB)."""
    step = 0
    while abs(value) >= 1000 and step < len(BYTES) - 1:
        value, step = value / 1024, step + 1
    return step


NO_DATA, NO_USAGE = "no data", "no usage"
"""What the tables show for a series' scores where it has none: no usage value in the range at
all, or usage of 0 throughout (WAPE divides by it); never a number that reads as a score."""


def unscored(evaluation: Evaluation, j: int) -> str | None:
    """NO_DATA or NO_USAGE where series `j` has no accuracy, else None."""
    actual = evaluation.actual[:, j]
    if np.isnan(actual).all():
        return NO_DATA
    return NO_USAGE if np.nanmax(np.abs(actual)) == 0 else None


def series_verdict(evaluation: Evaluation, j: int) -> str:
    """`accuracy 0.951, coverage 0.900` for a panel's title, or why the series has no score."""
    why = unscored(evaluation, j)
    if why == NO_DATA:
        return "no usage data in the range: not scored"
    if why == NO_USAGE:
        return "no usage (0 throughout): not scored"
    return figures(
        {"accuracy": float(evaluation.accuracy[j]), "coverage": float(evaluation.coverage[j])}
    )


def component_figure(evaluation: Evaluation, component: str, title: str) -> Any:
    """One component's figure: actual, median and band of each resource, in the table's units,
    with its scores above, then the anomaly score; against the windows' start times in UTC."""
    plt = pyplot()

    index = [j for j, (c, _) in enumerate(evaluation.series) if c == component]
    fig, axes = plt.subplots(len(index) + 1, 1, figsize=(10, 2.4 * (len(index) + 1)), sharex=True)
    t = evaluation.starts.astype("datetime64[s]")
    for ax, j in zip(axes, index, strict=False):
        resource = evaluation.series[j][1]
        shown = np.concatenate([evaluation.pred[:, j].ravel(), evaluation.actual[:, j]])
        divisor, unit = scale_of(shown, resource)
        pred = evaluation.pred[:, j] / divisor
        ax.fill_between(t, pred[:, 0], pred[:, 2], alpha=0.3, label="90% band")
        ax.plot(t, pred[:, 1], lw=1, label="expected (median)")
        ax.plot(t, evaluation.actual[:, j] / divisor, lw=0.8, color="black", label="actual")
        ax.set_ylabel(plain(f"{resource}\n({unit})"))
        ax.ticklabel_format(axis="y", useOffset=False)  # not `1e-6+1.138688e6`
        _no_zoom_on_rounding(ax, shown / divisor)
        ax.set_title(plain(f"{resource}: {series_verdict(evaluation, j)}"), fontsize=9, loc="left")
    axes[0].legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=3, fontsize=7)  # off the data
    scores = evaluation.anomaly
    for j in index:
        axes[-1].plot(t, scores[:, j], lw=1, label=plain(evaluation.series[j][1]))
    axes[-1].set_ylabel("anomaly score")
    axes[-1].set_xlabel("window start (UTC)")
    axes[-1].legend(loc="upper right", fontsize=7)
    locator = matplotlib_dates().AutoDateLocator()
    axes[-1].xaxis.set_major_locator(locator)
    axes[-1].xaxis.set_major_formatter(matplotlib_dates().ConciseDateFormatter(locator))
    fig.suptitle(plain(title))
    fig.tight_layout()
    return fig


def _no_zoom_on_rounding(ax: Any, values: np.ndarray) -> None:
    """A flat series (memory that never moved) drawn flat: its y-range widened to 5% of its level
    where the values differ by rounding only, which the axis would otherwise fill."""
    finite = values[np.isfinite(values)]
    if finite.size and np.ptp(finite) <= 1e-6 * float(np.abs(finite).max()):
        level = float(np.abs(finite).max())
        if level > 0:
            ax.set_ylim(float(finite.min()) - 0.05 * level, float(finite.max()) + 0.05 * level)


def matplotlib_dates() -> Any:
    """matplotlib.dates, imported on first use as pyplot is."""
    import matplotlib.dates

    return matplotlib.dates


def plot_component(evaluation: Evaluation, component: str, path: Path, title: str) -> None:
    """One PNG per component (`component_figure`)."""
    fig = component_figure(evaluation, component, title)
    fig.savefig(path, dpi=80)
    pyplot().close(fig)


def html_table(
    rows: Sequence[Mapping[str, object]],
    columns: Sequence[str] | None = None,
    missing: str = "nan",
) -> str:
    """An HTML table of rows (floats with 3 decimals), of `columns` or the first row's keys."""
    if not rows:
        return "<p>no series</p>"
    columns = list(rows[0]) if columns is None else columns
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(_cell(r.get(c, ''), missing))}</td>" for c in columns)
        + "</tr>"
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


@dataclass(frozen=True)
class Baseline:
    """A baseline's scores on a dataset's range, and how long it took to train."""

    evaluation: Evaluation
    seconds: float = math.nan


@dataclass(frozen=True)
class Scored:
    """One dataset's scores: the model's, and those of the baselines trained on the `trained_on`
    windows before the range (none without --baselines)."""

    evaluation: Evaluation
    baselines: Mapping[str, Baseline] = field(default_factory=dict)
    trained_on: int = 0
    kinds: Sequence[str] = ()
    """The model kind of each series, where `auto` chose among several."""
    notes: Sequence[str] = ()
    """What the command warned of while scoring the dataset, for the report's reader."""
    end: float = math.nan
    """The end of the last window scored (unix seconds)."""


@dataclass(frozen=True)
class ModelAbout:
    """What the report says of the model: its kind, a line about it, its training time."""

    kind: str
    description: str
    seconds: float = math.nan


def series_table(scored: Scored) -> tuple[list[dict[str, object]], list[str]]:
    """Rows and columns of the per-series table: the model's figures (MAE in its unit, as
    `quantity` writes it) and each baseline's accuracy beside them."""
    evaluation = scored.evaluation
    columns = ["component", "resource", "accuracy", "coverage", "mae"]
    if evaluation.oracle is not None:
        columns.append("oracle_accuracy")
    rows = [
        {**row, "mae": quantity(float(v), r)}
        for row, v, (_, r) in zip(evaluation.rows(), evaluation.mae, evaluation.series, strict=True)
    ]
    for j, row in enumerate(rows):
        why = unscored(evaluation, j)
        if why is not None:
            row.update({c: why for c in ("accuracy", "coverage", "oracle_accuracy") if c in row})
    if len(set(scored.kinds)) > 1:
        columns.insert(2, "model")
        for row, kind in zip(rows, scored.kinds, strict=True):
            row["model"] = kind
    for kind, baseline in scored.baselines.items():
        columns.append(f"{kind}_accuracy")
        for row, value in zip(rows, baseline.evaluation.accuracy, strict=True):
            row[f"{kind}_accuracy"] = float(value)
    return rows, columns


def figures(values: Mapping[str, float]) -> str:
    """`mean_accuracy 0.959, worst_accuracy 0.950, ...`, leaving out what is not known (the
    coverage of a baseline without bands)."""
    return ", ".join(f"{k} {v:.3f}" for k, v in values.items() if not math.isnan(v))


def worst_named(evaluation: Evaluation) -> str:
    """` (worst: component/resource)`, the series of the summary's worst_accuracy, or nothing."""
    worst = evaluation.worst_series()
    return f" (worst: {worst[0]}/{worst[1]})" if worst is not None else ""


def resource_lines(evaluation: Evaluation) -> list[str]:
    """`cpu (20 series): mean_accuracy 0.960, ...`: the summary of each resource."""
    return [
        f"{resource} ({values['series']:.0f} series): "
        + figures({k: v for k, v in values.items() if k != "series"})
        for resource, values in evaluation.by_resource().items()
    ]


def baselines_heading(scored: Scored) -> str:
    """The line that introduces the baselines' summaries."""
    return (
        f"baselines, trained on the {scored.trained_on} windows before the range and scored on "
        "the same windows:"
    )


def _summary_html(name: str, evaluation: Evaluation) -> str:
    """A summary line and the per-resource lines under it."""
    lines = "".join(f"<li>{html.escape(line)}</li>" for line in resource_lines(evaluation))
    text = f"{name}: {figures(evaluation.summary())}{worst_named(evaluation)}"
    return f"<p>{html.escape(text)}</p>" + (f"<ul>{lines}</ul>" if lines else "")


def _side_by_side(scored: Scored, model: ModelAbout) -> str:
    """The model and each baseline in one table: their summaries and training time."""
    rows: list[dict[str, object]] = [
        {
            "model": f"{model.kind} (model)",
            **scored.evaluation.summary(),
            "training_seconds": model.seconds,
        }
    ]
    for kind, baseline in scored.baselines.items():
        rows.append(
            {"model": kind, **baseline.evaluation.summary(), "training_seconds": baseline.seconds}
        )
    columns = list(dict.fromkeys(k for row in rows for k in row))
    columns.append(columns.pop(columns.index("training_seconds")))
    return html_table(rows, columns, missing="n/a")


DEFINITIONS = (
    "accuracy = 1 - WAPE of the median estimate (1 - sum|median - actual| / sum|actual| over the "
    "windows); coverage = the share of windows whose actual usage lies inside the 90% band (the "
    "5% to 95% quantiles; 0.90 is the target); mae = mean |median - actual|, in the resource's "
    f"unit (cores, bytes as KiB/MiB/GiB, ops/s, bytes/s); {NO_USAGE} = usage 0 throughout and "
    f"{NO_DATA} = no usage recorded in the range: such series have no score and the means leave "
    "them out."
)
WORST_SHOWN = 5
"""Series the report lists first, lowest accuracy first."""


def range_line(scored: Scored) -> str:
    """`296 windows, 2023-01-30 19:05 to 2023-01-31 00:01 UTC`: what the scores are of."""
    starts = scored.evaluation.starts
    if not len(starts):
        return "no windows"
    first = datetime.fromtimestamp(float(starts[0]), UTC)
    end = scored.end if math.isfinite(scored.end) else float(starts[-1])
    last = datetime.fromtimestamp(end, UTC)
    shown = f"{last:%H:%M}" if last.date() == first.date() else f"{last:%Y-%m-%d %H:%M}"
    return f"{len(starts)} windows, {first:%Y-%m-%d %H:%M} to {shown} UTC"


def worst_table(scored: Scored) -> str:
    """The series of the lowest accuracy, as the per-series table shows them."""
    rows, columns = series_table(scored)
    acc = scored.evaluation.accuracy
    order = [int(j) for j in np.argsort(np.where(np.isnan(acc), np.inf, acc), kind="stable")]
    shown = [rows[j] for j in order[:WORST_SHOWN] if not np.isnan(acc[j])]
    if not shown:
        return ""
    return "<p>series to look at first (lowest accuracy):</p>" + html_table(shown, columns)


def dataset_section(scored: Scored, model: ModelAbout) -> list[str]:
    """The HTML of one dataset's scores, as `evaluate` prints them, with what it warned of, and
    without its plots."""
    parts = [f"<p>{html.escape(range_line(scored))}</p>"]
    parts.append(_summary_html("summary", scored.evaluation))
    parts.append(worst_table(scored))
    if scored.notes:
        items = "".join(f"<li>{html.escape(note)}</li>" for note in scored.notes)
        parts.append(f"<p>read with care:</p><ul>{items}</ul>")
    if scored.baselines:
        parts.append(f"<p>{html.escape(baselines_heading(scored))}</p>")
        parts.append(_side_by_side(scored, model))
        parts += [_summary_html(k, b.evaluation) for k, b in scored.baselines.items()]
    parts.append(html_table(*series_table(scored)))
    return parts


def write_report(
    directory: Path,
    datasets: Mapping[str, Scored],
    model: ModelAbout,
    progress: Callable[[str], None] = lambda _: None,
) -> Path:
    """HTML report with the scores and per-component plots of each dataset; returns index.html."""
    directory.mkdir(parents=True, exist_ok=True)
    about = model.description
    if not math.isnan(model.seconds):
        about += f"; trained in {model.seconds:.1f} s"
    parts = [f"<h1>DeepRest evaluation</h1><p>{html.escape(about)}</p>"]
    parts.append(f"<p><small>{html.escape(DEFINITIONS)}</small></p>")
    for name, scored in datasets.items():
        evaluation = scored.evaluation
        progress(f"plots of {name}: {len({c for c, _ in evaluation.series})} components")
        parts.append(f"<h2>{html.escape(name)}</h2>")
        parts += dataset_section(scored, model)
        components = sorted({c for c, _ in evaluation.series})
        parts += component_images(directory, name, evaluation, components)
    return write_page(directory, "DeepRest evaluation", parts)


def slug(text: str) -> str:
    """A file-name-safe form of a name; names that differ only where the safe form replaced a
    character (`api/v1`, `api.v1`) keep apart by a short hash of the name."""
    safe = "".join(ch if (ch.isascii() and ch.isalnum()) or ch in "-_" else "_" for ch in text)
    if safe == text:
        return safe
    return f"{safe}-{hashlib.sha256(text.encode()).hexdigest()[:6]}"

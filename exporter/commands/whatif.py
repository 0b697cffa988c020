"""`deeprest whatif`: expected usage for 3x users or a new API mix, as a table, CSV and plot."""

from __future__ import annotations

import argparse
import csv
import math
import sys
import textwrap
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from estimator.bundle import Bundle, load_bundle
from estimator.errors import DataWarning, InputError, count_of, first_few, not_utf8
from estimator.importers.common import MAX_UNIX_NS
from estimator.latency import latency_at_loads, window_load
from estimator.models.costbase import SAY_EVERY
from estimator.synthesizer import Synthesizer, traffic_of
from estimator.whatif import (
    CEILING,
    LOWEST,
    MAX_RATE,
    Allowed,
    WhatIf,
    add_paths,
    estimate,
    max_scales,
    reference_windows,
    scale_shortfall,
    scaled_traffic,
    search_ceiling,
    split_unseen,
)
from estimator.windows import (
    LATENCY_STATISTICS,
    CallPath,
    Pair,
    SeriesKey,
    Window,
    api_counts,
    load_windows,
    targets,
)
from exporter.commands.outputs import output_dir
from exporter.commands.ranges import check_window_length, parse_time
from exporter.config import CONFIG_KEYS, load_yaml, parse_limits
from exporter.progress import Phases
from exporter.report import format_table, latency_ms, plain, pyplot, quantity


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="model bundle directory")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--scale", type=float, help="multiply the base traffic by K (3 = 3x users)")
    which.add_argument(
        "--traffic",
        type=Path,
        help="per-API calls per window: CSV with a 'start' column and one column per API "
        "('component:operation' or the operation), or a window dataset",
    )
    parser.add_argument(
        "--data", type=Path, help="base traffic (window dataset); default: the bundle's last day"
    )
    parser.add_argument("--sample", action="store_true", help="sample call trees, not expectations")
    parser.add_argument("--seed", type=int, help="seed of --sample's call trees (default 0)")
    parser.add_argument(
        "--limits",
        type=Path,
        help="YAML or JSON of limits, {component: {resource: limit}} in base units or as "
        "Kubernetes quantities (500m, 4Gi), or a serve config with a limits section: adds "
        "headroom and the traffic scale each limit allows",
    )
    parser.add_argument(
        "--latency",
        choices=LATENCY_STATISTICS,
        help="with --data windows that carry API latency: the statistic to estimate at the "
        "what-if load (default p95)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("whatif"),
        help="directory for CSV and PNG (default ./whatif)",
    )


def _nested(value: Any) -> bool:
    """A mapping holding mappings: a section of some file, not one component's limits."""
    return isinstance(value, dict) and any(isinstance(v, dict) for v in value.values())


def load_limits(path: Path) -> dict[tuple[str, str], float]:
    """Limits from a YAML (or JSON) file: the mapping itself, or a config's `limits` section."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", source=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise InputError(not_utf8(exc), source=str(path)) from None
    raw = load_yaml(text, str(path), "YAML or JSON")
    if isinstance(raw, dict) and isinstance(raw.get("limits"), dict):
        raw = raw["limits"]
    elif isinstance(raw, dict) and (config_keys := sorted(set(map(str, raw)) & CONFIG_KEYS)):
        raise InputError(
            f"a deeprest config (keys {', '.join(config_keys[:3])}) without a `limits` section "
            "of component -> {resource: limit}",
            source=str(path),
        )
    elif isinstance(raw, dict) and any(_nested(v) for v in raw.values()):
        found = ", ".join(str(k) for k, v in raw.items() if _nested(v))
        raise InputError(
            f"no `limits` section, and {found} holds mappings where a limit goes: give "
            "component -> {resource: limit}, or `limits:` above it (a misspelt section?)",
            source=str(path),
        )
    try:
        limits = parse_limits(raw)
    except InputError as exc:
        raise InputError(exc.bare_message, source=str(path), field=exc.field) from None
    if not limits:
        raise InputError("holds no limits", source=str(path))
    return limits


def traffic_reach(bundle: Bundle, traffic: Sequence[Mapping[Pair, float]]) -> str:
    """Where the what-if traffic lies against the training windows: its busiest and quietest
    window over the busiest and quietest seen (bundles trained before the range was kept: over
    those of the reference windows, the last day's); empty where neither is known."""
    seen = bundle.training.get("calls_range")
    which = "training windows"
    if not seen:
        ref = bundle.training.get("reference_traffic", {}).get("counts", [])
        seen = [min(map(sum, ref)), max(map(sum, ref))] if ref else None
        which = "training's reference windows"
    asked = [sum(counts.values()) for counts in traffic]
    if not seen or not asked or seen[1] <= 0:
        return ""
    busiest = max(asked) / seen[1]
    line = f"what-if traffic: its busiest window is {busiest:.2f}x the busiest of the {which}"
    if busiest >= 1.005:  # past what rounds to 1.00x
        line += " (beyond 1x the estimates extrapolate)"
    quiet = seen[0]
    if min(asked) < 0.995 * quiet:
        line += f"; its quietest is {min(asked) / quiet:.2f}x the quietest (below: extrapolated)"
    return line + _api_reach(bundle, traffic)


API_PAST = 1.5
"""An API's what-if peak over its busiest window in training's reference day, past which the
mix itself is named as beyond training (a new mix at the same total still extrapolates)."""


def _api_reach(bundle: Bundle, traffic: Sequence[Mapping[Pair, float]]) -> str:
    """The APIs whose busiest what-if window is API_PAST times their busiest in the bundle's
    reference windows (training's last day) or more, largest first; empty where none is."""
    ref = bundle.training.get("reference_traffic", {})
    apis, counts = ref.get("apis", []), ref.get("counts", [])
    if not apis or not counts:
        return ""
    busiest = np.max(np.asarray(counts, dtype=float), axis=0)
    past = []
    for (component, operation), top in zip(apis, busiest, strict=True):
        asked = max((c.get((component, operation), 0.0) for c in traffic), default=0.0)
        if top > 0 and asked >= API_PAST * top:
            past.append((asked / top, f"{component}:{operation} {asked / top:.2f}x"))
    if not past:
        return ""
    shown = [text for _, text in sorted(past, reverse=True)]
    return (
        f"; per API, past its busiest window of training's last day: {first_few(shown)} (more "
        "of these APIs than training showed: the estimates extrapolate)"
    )


PAST_PEAK = 1.1
"""What-if peak over a series' training peak past which memory's projection is flagged."""


def past_training(
    bundle: Bundle, series: Sequence[tuple[str, str]], rows: list[dict[str, object]]
) -> bool:
    """Add to each row its what-if peak over the series' highest usage in training
    (`vs_training_peak`); False (nothing added) for bundles trained before peaks were kept."""
    peaks = bundle.training.get("usage_peaks")
    if not peaks:
        return False
    by_series = dict(zip(bundle.series, peaks, strict=True))
    for row, key in zip(rows, series, strict=True):
        peak = by_series.get(key)
        whatif = float(row["whatif_peak"])  # type: ignore[arg-type]
        row["vs_training_peak"] = whatif / peak if peak else math.nan
    return True


def add_actual(
    rows: list[dict[str, object]], series: Sequence[SeriesKey], windows: Sequence[Window]
) -> bool:
    """`base_actual_mean` on each row: the mean usage the --data windows recorded, beside the
    model's estimate of them (`base_mean`), so a model already off at today's traffic shows;
    False (nothing added) where the windows carry no usage."""
    if not any(w.metrics for w in windows):
        return False
    actual = targets(list(windows), list(series))
    for j, row in enumerate(rows):
        known = actual[:, j][~np.isnan(actual[:, j])]
        row["base_actual_mean"] = float(known.mean()) if len(known) else math.nan
    return True


OFF_TODAY = 2.0
"""A model whose mean estimate of the base windows is this many times off the mean usage they
recorded (either way) is named: its what-if answers inherit that error."""


def off_today_note(rows: Sequence[Mapping[str, object]]) -> str:
    """A warning naming the series whose estimate of the base windows is OFF_TODAY times or more
    off what those windows recorded, furthest first; "" where none (or no usage recorded)."""
    off = []
    for row in rows:
        actual, estimate = row.get("base_actual_mean"), float(row["base_mean"])  # type: ignore[arg-type]
        if not isinstance(actual, float) or math.isnan(actual) or actual <= 0 or estimate <= 0:
            continue
        ratio = actual / estimate
        if max(ratio, 1 / ratio) >= OFF_TODAY:
            key = f"{row['component']}/{row['resource']}"
            off.append((max(ratio, 1 / ratio), f"{key} (recorded {ratio:.2g}x the estimate)"))
    if not off:
        return ""
    named = [text for _, text in sorted(off, reverse=True)]
    return (
        f"the model's estimate of the --data windows is {OFF_TODAY:g} times or more off the "
        f"usage they recorded for {count_of(len(off), 'series')}: {first_few(named)}; their "
        "what-if answers carry that error (whatif.csv: base_actual_mean beside base_mean)"
    )


USAGE_COLUMNS = (
    "base_actual_mean",
    "base_mean",
    "whatif_mean",
    "base_peak",
    "whatif_peak",
    "whatif_peak_upper",
    "limit",
)
"""Columns of whatif.csv in base units that the printed table shows in readable ones."""


COLUMN_MEANINGS = {
    "base_actual_mean": "the mean usage the --data windows recorded",
    "base_mean": "the median estimate's mean over the base windows",
    "whatif_mean": "the same over the what-if windows",
    "base_peak": "the median estimate's highest base window",
    "whatif_peak": "the same of the what-if windows",
    "whatif_peak_upper": "the upper band's (95% quantile: the top of the 90% band) highest "
    "what-if window",
    "ratio": "whatif_mean / base_mean (of means, not peaks)",
    "vs_training_peak": "whatif_peak / the highest usage in training (over 1: extrapolated)",
    "limit": "the limit given",
    "headroom": "1 - whatif_peak_upper / limit",
    "max_scale": "the traffic multiple at which the upper band's peak reaches the limit",
    "max_scale_median": "the same for the median",
}
"""What each figure of the what-if table is, printed under it."""


def legend(columns: Sequence[str]) -> str:
    """The lines under the table that say what its columns are and in what unit."""
    said = "; ".join(f"{c}: {COLUMN_MEANINGS[c]}" for c in columns if c in COLUMN_MEANINGS)
    text = (
        f"columns: {said}. Usage in cores, bytes as KiB/MiB/GiB, ops/s or bytes/s per series, as "
        "shown; whatif.csv holds the same figures in base units (cores, bytes, ops/s, bytes/s)."
    )
    return textwrap.fill(text, width=100, break_long_words=False, break_on_hyphens=False)


def readable(rows: Sequence[Mapping[str, object]]) -> list[dict[str, object]]:
    """Rows for the printed table: usage in its resource's unit (`383 MiB`, `0.0021 cores`)
    instead of bytes with three decimals; whatif.csv keeps base units."""
    out = []
    for row in rows:
        shown = dict(row)
        resource = str(row.get("resource", ""))
        for column in USAGE_COLUMNS:
            value = row.get(column)
            if isinstance(value, float) and math.isfinite(value):
                shown[column] = quantity(value, resource)
        out.append(shown)
    return out


def past_training_note(rows: Sequence[Mapping[str, object]]) -> str:
    """A warning naming the memory series projected past their training peak: a cache or a
    pool stops growing at its capacity, which training never showed, while the model goes on
    (upper bounds there, not estimates)."""
    past = []
    for row in rows:
        ratio = row.get("vs_training_peak")
        if row["resource"] == "memory" and isinstance(ratio, float) and ratio > PAST_PEAK:
            past.append((ratio, f"{row['component']} {ratio:.2f}x"))
    if not past:
        return ""
    named = [text for _, text in sorted(past, reverse=True)]  # the furthest first
    return (
        f"memory projected past its training peak for {count_of(len(past), 'component')} "
        f"({first_few(named)}): a cache or pool stops growing at its capacity, which training "
        "never reached, so where the memory is one these are upper bounds"
    )


UNDER_LOW = 0.9
"""What-if low over a series' training low under which memory's projection is flagged."""


def under_training_note(bundle: Bundle, result: WhatIf) -> str:
    """A warning naming the memory series projected under their lowest usage in training: a
    process keeps its base memory (runtime, heap, caches) at any traffic, while a model fitted
    where traffic never went so low may have charged it to calls (lower bounds there); "" for
    bundles trained before lows were kept."""
    lows = bundle.training.get("usage_lows")
    if not lows:
        return ""
    low_of = dict(zip(bundle.series, lows, strict=True))
    under = []
    for j, key in enumerate(result.series):
        low = low_of.get(key)
        if key[1] != "memory" or not low or low <= 0:
            continue
        ratio = float(result.hypothetical[:, j, 1].min()) / low
        if ratio < UNDER_LOW:
            under.append((ratio, f"{key[0]} {ratio:.2f}x"))
    if not under:
        return ""
    named = [text for _, text in sorted(under)]  # the furthest first
    return (
        f"memory projected under its lowest in training for {count_of(len(under), 'component')} "
        f"({first_few(named)}): an extrapolation either way: a process keeps its base memory "
        "(runtime, heap) at any traffic, which a model fitted where traffic never went so low "
        "may have charged to calls (then a lower bound), while a cache that empties at low "
        "traffic may go lower still"
    )


MORE_TRAFFIC = 1.05
"""What-if traffic this many times the base's (mean calls per window) or more is more traffic."""
LESS_MEMORY = 0.98
"""A memory series whose what-if mean is under this share of its base mean answers less."""


def less_under_more_note(
    rows: Sequence[Mapping[str, object]], base: Sequence[Window], hypothetical: Sequence[Window]
) -> str:
    """A warning naming the memory series that a what-if of more traffic than the base answers
    with less (a new mix or shape: `--scale` answers are monotone already): the model read part
    of that memory as time (a heap that crept up all day), not as traffic; "" where none."""

    def calls(windows: Sequence[Window]) -> float:
        return float(np.mean([sum(api_counts(w.calls).values()) for w in windows]))

    if not base or not hypothetical:
        return ""
    asked, today = calls(hypothetical), calls(base)  # mean calls per window, each once
    if asked < MORE_TRAFFIC * today:
        return ""
    less = []
    for row in rows:
        mean, whatif = float(row["base_mean"]), float(row["whatif_mean"])  # type: ignore[arg-type]
        if row["resource"] == "memory" and mean > 0 and whatif < LESS_MEMORY * mean:
            less.append((whatif / mean, f"{row['component']} {whatif / mean:.2f}x"))
    if not less:
        return ""
    named = [text for _, text in sorted(less)]  # the furthest first
    return (
        f"memory lower than at the base for {count_of(len(less), 'component')} ({first_few(named)}) "
        f"though the what-if traffic is {asked / today:.2f}x the base's: the "
        "model reads part of that memory as time (a heap that crept up while the day went on), "
        "not traffic; more traffic seldom needs less, so read the base's as the answer there"
    )


def unseen_paths(
    windows: Sequence[Window],
    traffic: list[dict[Pair, float]],
    synthesizer: Synthesizer,
    source: Path,
    kept: str = "as they are (times --scale)",
) -> tuple[list[dict[Pair, float]], list[dict[CallPath, float]]]:
    """Traffic (the windows' own, `traffic_of`) split into the APIs the bundle saw, which the
    synthesizer expands, and the recorded call paths of those it never saw (`split_unseen`;
    kept `kept`, they count in the model's features of paths unseen, as `predict` counts
    them). Warns naming the latter."""
    unseen = {api for counts in traffic for api in counts if api not in synthesizer.mean}
    if not unseen:
        return traffic, [{} for _ in windows]
    total = sum(sum(counts.values()) for counts in traffic)
    new = sum(n for counts in traffic for api, n in counts.items() if api in unseen)
    share = new / total if total > 0 else 0.0
    if new > 0 and share >= 1.0:
        raise InputError("holds no call of an API the bundle was trained on", source=str(source))
    names = sorted(f"{c}:{o}" for c, o in unseen)
    warnings.warn(
        DataWarning(
            f"{source}: {count_of(len(names), 'API')} never seen in training "
            f"({first_few(names)}: {share:.1%} of the calls): their recorded call paths are kept "
            f"{kept}"
        ),
        stacklevel=2,
    )
    return split_unseen(windows, synthesizer)


def traffic_is_csv(path: Path) -> bool:
    """Whether a --traffic file is a CSV of calls per window, not a window dataset: a name
    ending in .csv in any case, or a first line that starts with the CSV's 'start' column (a CSV
    named .txt). Another file that does not start with a JSON object (a YAML or JSON mapping, a
    gzipped or tab-separated file) is refused naming both forms, not read as JSON lines. A pipe
    (/dev/stdin, a shell's <(...)) is read once: its first bytes would be gone from the reader,
    so it is a window dataset, as any name but .csv was before its content was looked at."""
    if path.suffix.lower() == ".csv":
        return True
    if path.exists() and not path.is_file():
        return False  # a pipe or a device (a directory: the dataset's reader says so)
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False  # the dataset's reader says why it cannot be opened
    first = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if not first or first.startswith(b"{"):
        return False
    if first.split(b"\n", 1)[0].split(b",", 1)[0].strip() == b"start":
        return True
    raise InputError(
        "neither a CSV of calls per window (a header 'start,API,...', comma-separated; name it "
        ".csv) nor a window dataset (a JSON object per line)",
        source=str(path),
    )


def read_traffic_csv(
    path: Path, synthesizer: Synthesizer, window_seconds: float
) -> tuple[list[dict[Pair, float]], np.ndarray]:
    """Wide CSV: start, then one column of calls per window for each API (at most MAX_RATE
    calls per second)."""
    try:
        return _read_traffic_csv(path, synthesizer, window_seconds)
    except UnicodeDecodeError as exc:
        raise InputError(not_utf8(exc), source=str(path)) from None


def _read_traffic_csv(
    path: Path, synthesizer: Synthesizer, window_seconds: float
) -> tuple[list[dict[Pair, float]], np.ndarray]:
    most = MAX_RATE * window_seconds
    try:
        # utf-8-sig: a spreadsheet's export starts with a byte order mark
        handle = open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InputError(f"cannot open: {exc.strerror}", source=str(path)) from exc
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or (not header and not handle.read().strip()):  # blank lines only
            raise InputError(
                "empty file: expected a header 'start,API,...' and a row of calls per window",
                source=str(path),
                line=1,
            )
        if not header or header[0].strip() != "start":
            separator = next((s for s in ";\t" if header and header[0].startswith(f"start{s}")), "")
            if separator:  # a spreadsheet of another locale, or a TSV
                raise InputError(
                    f"columns separated by {separator!r}: separate them with commas "
                    "('start,API,...')",
                    source=str(path),
                    line=1,
                )
            raise InputError("first column must be 'start'", source=str(path), line=1)
        header[0] = "start"
        if len(header) < 2:
            raise InputError(
                "no API column after 'start' (one column of calls per window for each API)",
                source=str(path),
                line=1,
            )
        apis: list[Pair] = []
        for name in header[1:]:
            try:
                api = synthesizer.resolve_api(name.strip())
            except InputError as exc:
                raise InputError(exc.bare_message, source=str(path), line=1, field=name) from None
            if api in apis:
                first = header[1 + apis.index(api)]
                raise InputError(
                    f"names the same API as column '{first}'", source=str(path), line=1, field=name
                )
            apis.append(api)
        traffic: list[dict[Pair, float]] = []
        starts: list[float] = []
        for line, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):  # a blank line (a trailing one, say)
                continue
            if len(row) != len(header):
                raise InputError(f"expected {len(header)} columns", source=str(path), line=line)
            values = []
            for name, cell in zip(header, row, strict=True):
                if name == "start":  # Unix seconds or ISO 8601, as --from and --to take
                    try:
                        values.append(parse_time(cell.strip(), name))
                    except InputError as exc:
                        raise InputError(
                            exc.bare_message, source=str(path), line=line, field=name
                        ) from None
                    continue
                try:
                    value = float(cell)
                except ValueError:
                    value = math.nan
                if not math.isfinite(value) or value < 0:
                    raise InputError(
                        f"expected a finite non-negative number, got {cell!r}",
                        source=str(path),
                        line=line,
                        field=name,
                    )
                if name != "start" and value > most:
                    raise InputError(
                        f"{cell} calls a window is over {MAX_RATE:g} a second: a typo?",
                        source=str(path),
                        line=line,
                        field=name,
                    )
                values.append(value)
            if starts and values[0] == starts[-1]:
                raise InputError(
                    "the same start as the row before (a row written twice?)",
                    source=str(path),
                    line=line,
                    field="start",
                )
            if starts and values[0] < starts[-1]:
                raise InputError(
                    "rows must be in time order", source=str(path), line=line, field="start"
                )
            if starts and values[0] - starts[-1] < 0.99 * window_seconds:
                raise InputError(
                    f"{values[0] - starts[-1]:g} s after the row before: each row is a window of "
                    f"the model's {window_seconds:g} s, so they would overlap",
                    source=str(path),
                    line=line,
                    field="start",
                )
            if values[0] > MAX_UNIX_NS / 1e9:
                raise InputError(
                    f"{row[0]} is past the year 2262: not a time in Unix seconds (milliseconds?)",
                    source=str(path),
                    line=line,
                    field="start",
                )
            starts.append(values[0])
            traffic.append(dict(zip(apis, values[1:], strict=True)))
    if not traffic:
        raise InputError("holds no rows", source=str(path))
    gaps = int(np.count_nonzero(np.diff(starts) > 1.01 * window_seconds))
    if gaps:
        warnings.warn(
            DataWarning(
                f"{path}: {count_of(gaps, 'row')} further than a window ({window_seconds:g} s) "
                "after the row before: the rows are read as consecutive windows, the time "
                "between them as if it had not passed (no calls are assumed there)"
            ),
            stacklevel=2,
        )
    return traffic, np.asarray(starts)


def plot(result: WhatIf, path: Path, label: str) -> None:
    """Per component and resource: the what-if peak and its upper band over the base peak
    (relative, so a 5% change of a 400 MB heap shows as well as one of a few millicores)."""
    plt = pyplot()

    resources = sorted({r for _, r in result.series})
    width = max(10.0, 0.22 * len({c for c, _ in result.series}))  # room for every name
    fig, axes = plt.subplots(
        len(resources), 1, figsize=(width, 2.6 * len(resources)), squeeze=False
    )
    for ax, resource in zip(axes[:, 0], resources, strict=True):
        idx = [j for j, (_, r) in enumerate(result.series) if r == resource]
        names = [plain(result.series[j][0]) for j in idx]
        x = np.arange(len(idx))
        base = result.base[:, idx, 1].max(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):  # a series without usage: no bar
            peak = np.where(base > 0, result.hypothetical[:, idx, 1].max(axis=0) / base, np.nan)
            upper = np.where(base > 0, result.hypothetical[:, idx, 2].max(axis=0) / base, np.nan)
        ax.bar(x, peak, 0.6, label=plain(f"{label} peak"))
        ax.errorbar(x, upper, fmt="_", color="k", label="upper band")
        ax.axhline(1.0, color="grey", linewidth=0.8, label="base peak")
        shown = np.concatenate([peak, upper])
        shown = shown[np.isfinite(shown)]
        top = max(2.0, 1.2 * float(np.percentile(shown, 90))) if shown.size else 2.0
        off = np.flatnonzero(np.nan_to_num(np.fmax(peak, upper)) > top)
        if off.size:  # a near-idle series' band would flatten the rest: marked at the top
            ax.plot(x[off], np.full(off.size, 0.97 * top), "^", color="r", label="off the scale")
        ax.set_ylim(0, top)
        ax.set_xticks(x, names, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel(plain(f"{resource}: x base peak"))
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    say = Phases("whatif")
    output_dir(args.out, "--out")
    limits = load_limits(args.limits) if args.limits is not None else {}
    bundle = load_bundle(args.model)
    synthesizer = Synthesizer.from_json(bundle.synthesizer)
    if args.latency is not None and args.data is None:
        raise InputError("needs --data windows that carry API latency", field="--latency")
    if args.seed is not None and not args.sample:
        raise InputError("applies with --sample only (expectations need no seed)", field="--seed")
    rng = np.random.default_rng(args.seed or 0) if args.sample else None
    # the recorded call paths, per window, of APIs the bundle never saw: of the base, of --traffic
    unseen: list[dict[CallPath, float]] | None = None
    traffic_unseen: list[dict[CallPath, float]] | None = None
    observed_base: list[Window] | None = None
    if args.data is not None:
        observed = observed_base = load_windows(args.data)
        check_window_length(bundle, observed, str(args.data))
        if args.latency is not None and not any(w.latency for w in observed):
            raise InputError("holds no API latency for --latency", source=str(args.data))
        base_traffic, starts = traffic_of(observed), np.array([w.start for w in observed])
        base_traffic, unseen = unseen_paths(observed, base_traffic, synthesizer, args.data)
    else:
        base_traffic, starts = reference_windows(bundle, synthesizer)
    if args.scale is not None:
        new_traffic, new_starts, label = (
            scaled_traffic(base_traffic, args.scale),
            starts,
            f"{args.scale:g}x",
        )
    elif traffic_is_csv(args.traffic):
        (new_traffic, new_starts), label = (
            read_traffic_csv(args.traffic, synthesizer, bundle.window_seconds),
            args.traffic.stem,
        )
    else:
        given = load_windows(args.traffic)
        check_window_length(bundle, given, str(args.traffic))
        new_traffic, new_starts = traffic_of(given), np.array([w.start for w in given])
        new_traffic, traffic_unseen = unseen_paths(
            given, new_traffic, synthesizer, args.traffic, "as they are"
        )
        label = args.traffic.stem
    base: list[Window] = synthesizer.windows(base_traffic, starts, bundle.window_seconds, rng)
    hypothetical = synthesizer.windows(new_traffic, new_starts, bundle.window_seconds, rng)
    if unseen is not None:
        add_paths(base, unseen, 1.0)
        if args.scale is not None:
            add_paths(hypothetical, unseen, args.scale)
    if traffic_unseen is not None:
        add_paths(hypothetical, traffic_unseen, 1.0)
    say(f"estimating {len(base)} base and {len(hypothetical)} what-if windows")
    reach = traffic_reach(bundle, traffic_of(hypothetical))  # with the calls of APIs unseen
    if reach:
        say(reach)
    shortfall = None
    if args.scale is not None:  # more of the same traffic never needs less
        shortfall = scale_shortfall(bundle, synthesizer, base_traffic, starts, args.scale, unseen)
    result = estimate(bundle, base, hypothetical, shortfall)
    columns = [
        "component",
        "resource",
        "base_mean",
        "whatif_mean",
        "base_peak",
        "whatif_peak",
        "whatif_peak_upper",
        "ratio",
    ]
    rows = result.rows()
    if past_training(bundle, result.series, rows):
        columns.append("vs_training_peak")
    if observed_base is not None and add_actual(rows, result.series, observed_base):
        columns.insert(columns.index("base_mean"), "base_actual_mean")
    if limits:
        # Scales are multiples of the traffic the answer is about: the base for --scale (so 3x
        # and the capacity read on one axis), the given traffic for --traffic.
        reference, reference_starts, reference_unseen = (
            (base_traffic, starts, unseen)
            if args.scale is not None
            else (new_traffic, new_starts, traffic_unseen)
        )
        ceiling = search_ceiling(args.scale)
        say(f"searching the traffic scale each of {len(limits)} limits allows")
        with tqdm(  # quiet where stderr is no terminal (a log), as the other bars
            desc="traffic scales estimated",
            unit="scale",
            file=sys.stderr,
            leave=False,
            disable=None,
        ) as tried:
            estimated, said = [0], [time.monotonic()]  # a disabled bar counts nothing

            def progress(k: float) -> None:
                estimated[0] += 1
                tried.set_postfix_str(f"{k:.3g}x", refresh=False)
                tried.update()
                if tried.disable and time.monotonic() - said[0] >= SAY_EVERY:  # a log: a line
                    said[0] = time.monotonic()
                    say(f"{count_of(estimated[0], 'traffic scale')} estimated (the last {k:.3g}x)")

            try:
                scales = max_scales(
                    bundle,
                    synthesizer,
                    reference,
                    reference_starts,
                    limits,
                    ceiling,
                    extra=reference_unseen,
                    progress=progress,
                )
            except InputError as exc:  # a limit of a series the model does not estimate
                raise InputError(
                    exc.bare_message, source=str(args.limits), field=exc.field
                ) from None
        say(f"{count_of(estimated[0], 'traffic scale')} estimated")
        add_capacity(rows, limits, scales)
        columns += ["limit", "headroom", "max_scale", "max_scale_median"]
    print(format_table(readable(rows), columns))
    print(legend(columns))
    notes = (
        past_training_note(rows),
        under_training_note(bundle, result),
        less_under_more_note(rows, base, hypothetical),
        off_today_note(rows),
    )
    for note in notes:
        if note:
            warnings.warn(DataWarning(note), stacklevel=2)
    if limits:
        what = "the base traffic" if args.scale is not None else f"the traffic of {label}"
        if any(calls > 0 for counts in reference for calls in counts.values()):
            peaks = dict(zip(bundle.series, bundle.training.get("usage_peaks") or [], strict=False))
            known = {k: float(v) for k, v in peaks.items() if v is not None}
            print(capacity_line(scales, limits, what, ceiling, known))
        else:
            print(f"capacity: {what} holds no API calls, so no multiple of it reaches a limit")
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "whatif.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    plot(result, args.out / "whatif.png", label)
    written = [args.out / "whatif.csv", args.out / "whatif.png"]
    stale = args.out / "latency.csv"  # an earlier run's table must not pass for this one's
    stale.unlink(missing_ok=True)
    if args.data is not None and any(w.latency for w in observed):
        statistic = args.latency or "p95"
        if latency_table(observed, base, hypothetical, statistic, args.out / "latency.csv"):
            written.append(args.out / "latency.csv")
        else:
            say(
                f"no latency table: no API of {args.data} has a latency curve to read at the "
                "what-if load (too few windows with its latency, or latency that does not rise "
                "with load)"
            )
    say(f"wrote {', '.join(map(str, written[:-1]))} and {written[-1]}")
    return 0


def latency_table(
    recorded: list[Window],
    base: list[Window],
    hypothetical: list[Window],
    statistic: str,
    path: Path,
) -> bool:
    """Each API's latency at the base and the what-if peak load, from its recorded curve,
    printed and written to `path`; False where no API has a curve (nothing written)."""
    base_load = max(window_load(w) for w in base)
    peak_load = max(window_load(w) for w in hypothetical)
    why: dict[Pair, str] = {}
    curves = latency_at_loads(recorded, statistic, [base_load, peak_load], why)
    asked = {api for w in hypothetical for api, n in api_counts(w.calls).items() if n > 0}
    missing = sorted(asked - set(curves))
    if not curves:
        _no_curves(missing, why)
        return False
    rows: list[dict[str, object]] = []
    shown: list[dict[str, object]] = []
    for (component, operation), (at_base, (low, best, high)) in sorted(curves.items()):
        api, base_value = f"{component}:{operation}", at_base[1]
        rows.append(
            {"api": api, f"base_{statistic}_s": base_value, f"whatif_{statistic}_s": best,
             "whatif_low_s": low, "whatif_high_s": high}
        )  # fmt: skip
        shown.append(
            {"api": api, f"base_{statistic}": latency_ms(base_value),
             f"whatif_{statistic}": f"{latency_ms(best)} ({latency_ms(low)}-{latency_ms(high)})"}
        )  # fmt: skip
    print(
        f"latency at the peak load ({base_load:.3g} requests/s of all APIs at base, "
        f"{peak_load:.3g} what-if), from the recorded latency curves, in ms (range):"
    )
    print(format_table(shown, list(shown[0])))
    _no_curves(missing, why)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return True


def no_curve_note(missing: Sequence[Pair], why: Mapping[Pair, str]) -> str:
    """The APIs of the what-if traffic without a latency curve, each with its reason ("" where
    none); `POST /api/v1/whatif` gives it among its warnings."""
    if not missing:
        return ""
    reasons = [
        f"{c}:{o} ({why.get((c, o), 'too few recorded windows with its latency')})"
        for c, o in missing
    ]
    return (
        f"no latency curve for {count_of(len(missing), 'API')} of the what-if traffic: "
        + "; ".join(reasons[:5])
        + (f"; and {len(reasons) - 5} more" if len(reasons) > 5 else "")
    )


def _no_curves(missing: Sequence[Pair], why: Mapping[Pair, str]) -> None:
    note = no_curve_note(missing, why)
    if note:
        print(note)


def add_capacity(
    rows: list[dict[str, object]],
    limits: dict[tuple[str, str], float],
    scales: dict[tuple[str, str], Allowed],
) -> None:
    """Limit, headroom (1 - peak upper band / limit) and allowed scale on the limited rows."""
    for row in rows:
        key = (str(row["component"]), str(row["resource"]))
        if key in limits:
            upper = float(row["whatif_peak_upper"])  # type: ignore[arg-type]
            row["limit"] = limits[key]
            row["headroom"] = 1.0 - upper / limits[key]
            row["max_scale"] = scales[key].upper
            row["max_scale_median"] = scales[key].median


def _times(scale: float) -> str:
    """A traffic multiple: 2 decimals, 2 significant digits under 0.1 (not `0.00x`)."""
    return f"{scale:.2f}x" if scale >= 0.1 else f"{scale:.2g}x"


def capacity_line(
    scales: dict[tuple[str, str], Allowed],
    limits: dict[tuple[str, str], float],
    what: str,
    ceiling: float = CEILING,
    peaks: Mapping[tuple[str, str], float] | None = None,
) -> str:
    """Which limit traffic reaches first, and at what multiple of `what` (searched up to
    `ceiling` times it); with the series' training `peaks`, whether the limit lies past
    anything training saw (the answer is then an extrapolation)."""
    key = min(scales, key=lambda k: scales[k].upper)
    allowed = scales[key]
    if not np.isfinite(allowed.upper):
        return f"capacity: no limit is reached up to {ceiling:g}x {what}"
    limit = quantity(limits[key], key[1])
    expected = _times(allowed.median) if np.isfinite(allowed.median) else f"over {ceiling:g}x"
    if allowed.upper <= 0:
        median = (
            "; its median is too, so the limit is under what it needs"
            if allowed.median <= 0
            else f"; its median reaches it at {expected} {what}, so the band's spread (noise or "
            "spikes in training) is what leaves no room: a limit to read with max_scale_median"
        )
        return (
            f"capacity: {key[0]}/{key[1]} is over its limit ({limit}) already: its upper band "
            f"is over it even at 1/{1 / LOWEST:g} of {what}{median}"
        )
    over = f": {what} is over it already" if allowed.upper < 1 else ""
    peak = (peaks or {}).get(key, math.nan)
    why = (
        "a cache, pool or heap may stop short of it"
        if key[1] == "memory"
        else "a saturated resource (a lock, a disk, a full core) may cost more per call there"
    )
    beyond = (
        f" (the limit is {limits[key] / peak:.2f}x the most it used in training: an "
        f"extrapolation, where {why})"
        if peak > 0 and limits[key] > peak
        else ""
    )
    return (
        f"capacity: {key[0]}/{key[1]} reaches its limit ({limit}) first, at "
        f"{_times(allowed.upper)} {what} by the upper band ({expected} by the median){over}"
        f"{beyond}"
    )

"""Real faults: does CPU that traffic does not explain stand out? Train-Ticket's injected faults.

    python bench/bench_faults.py [--root DIR] [--models xgboost,linear] [--no-write]

The Train-Ticket recording's label.json lists the faults injected while it ran (CPU contention and
network delay, about three minutes each), all in its first three hours. Each model is trained on
the windows after the last fault has ended, and estimates the windows before, with the traffic
they served. The excess of actual CPU over the band (`estimator.anomaly.excess` with no floor,
as the alert rules' recording rule computes it; the exporter's published score divides by at
least 10 millicores) is then measured:

- at each CPU-contention fault, on the faulted service's CPU: the highest excess in the windows
  from its injection to five minutes later, and how many of those windows pass the threshold of
  DeepRestCPUNotExplainedByTraffic (read from the shipped rules);
- everywhere else (CPU series of services with no fault nearby): the share of windows past that
  threshold, and the alerts the rule's full condition (averaged excess, absolute floor, `for:`)
  would have fired there, each paging someone for nothing.

The history-only baseline (exponential smoothing on past usage) is measured the same way, with its
one-step-ahead band. Then each model is trained over the faults (the first 60% of the recording)
and its CPU band's width after them is compared between the services that had a CPU-contention
fault in training and the others. Results go to docs/benchmarks.md (section "faults"); skips
(exit 0) when the data folder is absent.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import SHARED_DATA, TRAIN_SHARE, train_cut, write_section  # noqa: E402
from estimator.anomaly import excess  # noqa: E402
from estimator.features import Vocabulary  # noqa: E402
from estimator.importers.common import service_of_pod  # noqa: E402
from estimator.models import make_model  # noqa: E402
from estimator.models.history import HistoryForecaster  # noqa: E402
from estimator.windows import Window, series_of, targets  # noqa: E402
from exporter.report import format_table, markdown_table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = SHARED_DATA / "trainticket-2023-01-30"
RULES = ROOT / "grafana-dashboards" / "rules" / "deeprest-alerts.yaml"
ALERT = "DeepRestCPUNotExplainedByTraffic"
FAULT_WINDOWS = 5
"""Windows from an injection that count as the fault (about three minutes, plus the lag of
one-minute averages)."""
QUIET_MARGIN = 10
"""Windows before an injection and after a fault in which a faulted service's CPU is left out of
the false-flag count (the faults of one service come every few minutes)."""
SETTLE = 30
"""Windows after the last fault's end before training starts."""


@dataclass(frozen=True)
class Fault:
    service: str
    kind: str
    start: float  # unix seconds of the injection


def load_faults(path: Path) -> list[Fault]:
    """The faults of a label.json: {hour: [{inject_timestamp, inject_pod, inject_type}, ...]}."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    faults = [
        Fault(service_of_pod(f["inject_pod"]), f["inject_type"], float(f["inject_timestamp"]))
        for hour in doc.values()
        for f in hour
    ]
    return sorted(faults, key=lambda f: f.start)


@dataclass(frozen=True)
class CpuRule:
    """The CPU alert as the shipped rules state it, in minutes: the excess over the band averaged
    over `fast` minutes above `threshold`, or over `slow` minutes (holding more than `seen`
    samples) above `slow_threshold`; and `floor` cores above the band over `fast` minutes; held
    for `for_minutes`."""

    threshold: float
    fast: int
    slow_threshold: float
    slow: int
    seen: int
    floor: float
    for_minutes: int


_MINUTES = {"m": 1, "h": 60}


def alert_rule(path: Path = RULES) -> CpuRule:
    """The CPU alert's conditions, read from the shipped rules (so the benchmark follows them)."""
    groups = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    rule = next(r for g in groups for r in g["rules"] if r.get("alert") == ALERT)
    expr = " ".join(rule["expr"].split())
    averages = re.findall(
        r"avg_over_time\(component_resource:deeprest_usage_excess:(ratio|abs)\{[^}]*\}"
        r"\[(\d+)([mh])\]\) > ([0-9.]+)",
        expr,
    )
    seen = re.search(r"count_over_time\([^)]*\[\d+[mh](?::\d+[mh])?\]\) > (\d+)", expr)
    duration = re.fullmatch(r"(\d+)([mh])", str(rule.get("for", "")))
    ratios = [(int(n) * _MINUTES[u], float(v)) for k, n, u, v in averages if k == "ratio"]
    floors = [(int(n) * _MINUTES[u], float(v)) for k, n, u, v in averages if k == "abs"]
    if len(ratios) != 2 or len(floors) != 1 or seen is None or duration is None:
        raise SystemExit(f"{path}: cannot read the conditions of {ALERT}")
    (fast, threshold), (slow, slow_threshold) = sorted(ratios)
    return CpuRule(
        threshold,
        fast,
        slow_threshold,
        slow,
        int(seen.group(1)),
        floors[0][1],
        int(duration.group(1)) * _MINUTES[duration.group(2)],
    )


def alert_condition(over: np.ndarray, above: np.ndarray, rule: CpuRule, width: float) -> np.ndarray:
    """[windows, series] where the alert's condition holds, from each window's relative excess
    `over` and absolute excess `above` (NaN: unknown, left out of the averages)."""
    import pandas as pd

    def windows(minutes: int) -> int:
        return max(1, int(round(minutes * 60 / width)))

    ratio, amount = pd.DataFrame(over), pd.DataFrame(above)
    fast = ratio.rolling(windows(rule.fast), min_periods=1).mean()
    slow = ratio.rolling(windows(rule.slow), min_periods=1)
    held = (slow.mean() > rule.slow_threshold) & (slow.count() > rule.seen)
    floor = amount.rolling(windows(rule.fast), min_periods=1).mean() > rule.floor
    return (((fast > rule.threshold) | held) & floor).to_numpy()


def _runs(flags: np.ndarray, length: int) -> int:
    """Runs of at least `length` consecutive True values in each column, summed over columns."""
    total = 0
    for column in flags.T:
        run = 0
        for flag in column:
            run = run + 1 if flag else 0
            total += run == length
    return total


def measure(
    name: str,
    pred: np.ndarray,
    actual: np.ndarray,
    starts: np.ndarray,
    series: list[tuple[str, str]],
    faults: list[Fault],
    rule: CpuRule,
    width: float,
) -> tuple[dict, list[dict]]:
    """One model's summary row and its per-fault rows."""
    threshold = rule.threshold
    for_windows = max(1, int(round(rule.for_minutes * 60 / width)))
    over = excess(actual, pred[..., 0], pred[..., 2])  # [windows, series], NaN where unknown
    above = np.where(np.isnan(over), np.nan, np.maximum(actual - pred[..., 2], 0.0))
    cpu = [j for j, s in enumerate(series) if s[1] == "cpu"]
    quiet = np.zeros_like(over, dtype=bool)
    quiet[:, cpu] = ~np.isnan(over[:, cpu])
    per_fault: list[dict] = []
    index = {key: j for j, key in enumerate(series)}
    for fault in faults:
        j = index.get((fault.service, "cpu"))
        if j is None:
            continue
        near = (starts >= fault.start - QUIET_MARGIN * width) & (
            starts < fault.start + (FAULT_WINDOWS + QUIET_MARGIN) * width
        )
        quiet[near, j] = False
        if fault.kind != "cpu_contention":
            continue
        during = (starts >= fault.start - width) & (starts < fault.start + FAULT_WINDOWS * width)
        values = over[during, j]
        per_fault.append(
            {
                "model": name,
                "service": fault.service,
                "injected": _utc(fault.start),
                "max_excess": float(np.nanmax(values)) if np.isfinite(values).any() else np.nan,
                "windows_over": int(np.sum(values > threshold)),
            }
        )
    flags = np.where(quiet, over > threshold, False)

    def alerts(variant: CpuRule) -> int:
        holds = np.where(quiet, alert_condition(over, above, variant, width), False)
        return _runs(holds[:, cpu], for_windows + 1)  # pending for `for:`, then firing

    unfloored = replace(rule, floor=0.0)
    row = {
        "model": name,
        "faults_flagged": sum(int(r["windows_over"]) > 0 for r in per_fault),
        "faults": len(per_fault),
        "false_flag_share": float(flags[:, cpu].sum() / max(quiet[:, cpu].sum(), 1)),
        "false_alerts": alerts(rule),
        "without_floor": alerts(unfloored),
        "fast_average_only": alerts(replace(unfloored, slow_threshold=math.inf)),
    }
    return row, per_fault


def over_faults(
    windows: list[Window], faults: list[Fault], kinds: list[str]
) -> list[dict[str, object]]:
    """Per model trained on the first TRAIN_SHARE of the recording, which holds every fault: how
    wide its CPU band is on the windows after (the upper band over the median, per service the
    median over windows) for the services with a CPU-contention fault in training, and for the
    others. A band that learned an incident as normal variation is too wide to flag its repeat."""
    cut = train_cut(windows)
    train = windows[:cut]
    series = [s for s in series_of(train) if s[1] == "cpu"]
    vocab = Vocabulary.build(train)
    X, _ = vocab.transform(windows)  # the windows after training keep its traffic history
    faulted = {f.service for f in faults if f.kind == "cpu_contention"}
    rows = []
    for kind in kinds:
        print(f"  fitting {kind} over the faults", flush=True)
        model = make_model(kind).fit(
            X[:cut], targets(train, series), vocab.layout.for_series(series)
        )
        pred = model.predict(X)[cut:]
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a series never above 0: NaN
            ratio = np.nanmedian(pred[..., 2] / np.where(pred[..., 1] > 0, pred[..., 1], np.nan), 0)
        hit = np.array([c in faulted for c, _ in series])
        widest = int(np.nanargmax(np.where(hit, ratio, np.nan)))
        rows.append(
            {
                "model": kind,
                "faulted_services": int(hit.sum()),
                "faulted_upper_over_median": float(np.nanmedian(ratio[hit])),
                "widest_faulted": f"{series[widest][0]} {ratio[widest]:.2f}",
                "others_upper_over_median": float(np.nanmedian(ratio[~hit])),
            }
        )
    return rows


def _utc(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).strftime("%H:%M:%S")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--models", default="xgboost,linear,ols-api")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    labels = args.root / "label.json"
    if not labels.is_file():
        print(f"skipped: {labels} is absent")
        return 0
    from estimator.importers.trainticket import load_trainticket

    faults = load_faults(labels)
    rule = alert_rule()
    threshold = rule.threshold
    windows: list[Window] = [w for w in load_trainticket(args.root) if w.metrics]
    width = windows[1].start - windows[0].start
    for_windows = max(1, int(round(rule.for_minutes * 60 / width)))
    last_end = faults[-1].start + FAULT_WINDOWS * width
    first_train = next(i for i, w in enumerate(windows) if w.start >= last_end + SETTLE * width)
    train, test = windows[first_train:], windows[:first_train]
    series = [s for s in series_of(train) if s[1] in ("cpu", "memory")]
    vocab = Vocabulary.build(train)
    X_train, _ = vocab.transform(train)
    X_test, _ = vocab.transform(test)
    Y_train, actual = targets(train, series), targets(test, series)
    starts = np.array([w.start for w in test])
    print(
        f"{len(faults)} faults from {_utc(faults[0].start)} to {_utc(faults[-1].start)}; "
        f"training on {len(train)} windows from {_utc(train[0].start)}, "
        f"estimating the {len(test)} before; alert: {rule}",
        flush=True,
    )
    preds: dict[str, np.ndarray] = {}
    for kind in args.models.split(","):
        print(f"  fitting {kind}", flush=True)
        model = make_model(kind).fit(X_train, Y_train, vocab.layout.for_series(series))
        preds[kind] = model.predict(X_test)
    history = HistoryForecaster(lookback=60).fit(Y_train)
    name = "history-ets (previous hour, sees actual)"
    preds[name] = history.forecast(np.zeros((0, len(series))), actual)
    rows, fault_rows = [], []
    for kind, pred in preds.items():
        row, per_fault = measure(kind, pred, actual, starts, series, faults, rule, width)
        rows.append(row)
        fault_rows.extend(per_fault)
    columns = [
        "model",
        "faults_flagged",
        "faults",
        "false_flag_share",
        "false_alerts",
        "without_floor",
        "fast_average_only",
    ]
    fault_columns = ["model", "service", "injected", "max_excess", "windows_over"]
    print(format_table(rows, columns))
    print(format_table(fault_rows, fault_columns))
    wide_rows = over_faults(windows, faults, args.models.split(","))
    wide_columns = [
        "model",
        "faulted_services",
        "faulted_upper_over_median",
        "widest_faulted",
        "others_upper_over_median",
    ]
    print(format_table(wide_rows, wide_columns))
    if not args.no_write:
        kinds = sum(f.kind == "cpu_contention" for f in faults)
        write_section(
            "faults",
            "## Real faults: Train-Ticket's injected CPU contention\n\n"
            f"`python bench/bench_faults.py`. The recording's label.json lists {len(faults)} "
            f"faults ({kinds} CPU contention, the rest network delay), all between "
            f"{_utc(faults[0].start)} and {_utc(faults[-1].start)} UTC. Models train on the "
            f"{len(train)} windows from {_utc(train[0].start)} on (after the last fault) and "
            f"estimate the {len(test)} windows before it from their traffic. A window is flagged "
            f"where actual CPU exceeds the band's top by more than {threshold:g} of it (the "
            f"threshold of {ALERT}). *faults_flagged*: CPU-contention faults with a flagged "
            f"window of the faulted service within {FAULT_WINDOWS} windows of the injection. "
            "*false_flag_share*: flagged share of the CPU windows of services with no fault "
            f"within {QUIET_MARGIN} windows. *false_alerts*: alerts {ALERT} would have fired "
            f"on those windows, each for nothing: its condition (the excess averaged over "
            f"{rule.fast} minutes above {threshold:g}, or over {rule.slow} minutes above "
            f"{rule.slow_threshold:g}, and {rule.floor:g} cores above the band) held for its "
            f"`for:` of {for_windows} windows. *without_floor*: the same without its absolute "
            "floor; *fast_average_only*: without the floor and the hour's average (the "
            "10-minute average alone). Services here use a few millicores: the floor is what "
            "keeps a noisy band from paging.\n\n"
            + markdown_table(rows, columns)
            + "\n\nPer CPU-contention fault: the highest excess on the faulted service's CPU and "
            "the flagged windows.\n\n"
            + markdown_table(fault_rows, fault_columns)
            + f"\n\nTrained over the faults: each model trained on the first "
            f"{TRAIN_SHARE} of the recording (the estimator benchmark's split, every fault "
            "inside), its CPU band on the windows after. *faulted_upper_over_median*: the "
            "upper band over the median (per service, the median over windows) of the services "
            "with a CPU-contention fault in training, their median; *others_upper_over_median*: "
            "that of the other services. A band that learned an incident as normal variation "
            "is too wide to flag it again.\n\n" + markdown_table(wide_rows, wide_columns),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

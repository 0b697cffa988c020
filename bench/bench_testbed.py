"""Figures of one full `deeprest demo` run on the local testbed, written to docs/benchmarks.md.

    python -m bench.bench_testbed [--out DIR] [--summary SUMMARY.json]

Runs the full demo flow (real services under Locust load, real Prometheus, Alertmanager and
`deeprest serve`) with the crypto and the ransomware attack and with the linear and API-OLS
baselines trained on the same windows; or, with --summary, writes the section from the
summary.json of an earlier run. Takes about 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

from bench.common import write_section
from exporter.report import markdown_table


def run(out: Path) -> dict[str, Any]:
    """One full demo with both attacks and the baselines; its summary."""
    from infra.local.demo import DemoOptions, run_demo

    options = DemoOptions(
        out=out, attacks=("crypto", "ransomware"), baselines=("linear", "ols-api"), install=False
    )
    code = run_demo(options)
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text())
    summary["exit_status"] = code
    return summary


def _series_rows(summary: dict[str, Any]) -> list[dict[str, object]]:
    accuracy = summary["accuracy"]
    keys = sorted({k for phase in accuracy.values() for k in phase["series"]})
    rows = []
    for key in keys:
        component, resource = key.rsplit("/", 1)
        row: dict[str, object] = {"component": component, "resource": resource}
        for phase, figures in accuracy.items():
            row[phase] = figures["series"].get(key, float("nan"))
        rows.append(row)
    return rows


def body(summary: dict[str, Any]) -> str:
    """The Markdown section."""
    window = summary["window_s"]
    phases = summary["phases"]
    span = {n: round(p["end"] - p["start"]) for n, p in phases.items()}
    lines = [
        "## Local testbed: `deeprest demo` (real processes)",
        "",
        f"One run of the full demo on {platform.machine()} with {_cores()} cores: 7 traced "
        "services and Redis under Locust load, the resource exporter, Prometheus with the shipped "
        f"rules (durations scaled by {window:g}/60), Alertmanager and `deeprest serve` with "
        f"{window:g} s windows. Training: {span.get('train', 0)} s of diurnal traffic "
        f"({summary.get('training_windows', '?')} windows); test phases: normal "
        f"{span.get('normal', 0)} s, 3x users {span.get('3x', 0)} s. Whole run "
        f"{summary.get('elapsed_s', 0):.0f} s. Reproduce: `python -m bench.bench_testbed`.",
        "",
        "Accuracy (1 - WAPE) per series, live: the exporter's expected median against the "
        "observed usage, both read back from Prometheus over each phase. Redis is near idle: "
        "its CPU reads in steps of 2.5 millicores (its process's clock ticks), mostly 0, so its "
        "CPU accuracy swings from run to run.",
        "",
        markdown_table(_series_rows(summary), ["component", "resource", *summary["accuracy"]]),
        "",
    ]
    offline = summary.get("offline")
    if offline:
        lines += [
            "Model and baselines trained on the same windows, evaluated offline on the "
            "exporter's stored windows of each phase (mean and worst series):",
            "",
        ]
        rows = [{"model": kind, **figures} for kind, figures in offline.items()]
        columns = ["model", "normal", "normal_worst", "3x", "3x_worst"]
        lines += [markdown_table(rows, columns), ""]
    rows = [
        {
            "attack": kind,
            "target": r["target"],
            "alert": r["alert"],
            "detection delay (s)": "not detected"
            if r["detection_delay_s"] is None
            else f"{r['detection_delay_s']:.0f}",
            "windows": "-"
            if r["detection_delay_s"] is None
            else f"{r['detection_delay_s'] / window:.1f}",
            "in Alertmanager": "yes" if r["alertmanager"] else "no",
        }
        for kind, r in summary["attacks"].items()
    ]
    lines += [
        "Detection delay: from the injection to the alert seen firing in Prometheus; the "
        "compressed `for:` is part of it (CPU 10 windows, disk writes 5 windows).",
        "",
        markdown_table(rows, list(rows[0]) if rows else ["attack"]),
        "",
        "Alerts firing during attack-free traffic with a model loaded (normal, 3x): "
        + (", ".join(summary["false_alerts"]) or "none")
        + ".",
    ]
    if "training_alerts" in summary:
        lines.append(
            "While training (the exporter runs without a model yet): "
            + (", ".join(summary["training_alerts"]) or "none")
            + "."
        )
    return "\n".join(lines)


def _cores() -> int:
    import os

    return os.cpu_count() or 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_testbed")
    parser.add_argument("--out", type=Path, default=Path("deeprest-bench-testbed"))
    parser.add_argument("--summary", type=Path, help="write from an earlier run's summary.json")
    args = parser.parse_args(argv)
    summary = json.loads(args.summary.read_text()) if args.summary else run(args.out)
    write_section("testbed", body(summary))
    print(body(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

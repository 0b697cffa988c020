"""Capacity answers against the simulator's truth: how far can traffic grow before a limit?

    python bench/bench_capacity.py [--seed 1] [--days 3] [--models xgboost,linear] [--no-write]

Each model is trained on simulated normal days. The base is one more normal day. For each true
scale s (1.5x, 2x, 3x users), the simulator runs that day's traffic times s, and every series'
limit is set to its noise-free peak there. So the true answer to "how many times today's traffic
does this limit allow?" is s.

`deeprest whatif --limits` (`estimator.whatif.max_scales`) answers it from the base day's
traffic alone, twice: where the upper band's peak reaches the limit (`max_scale`, the safe answer)
and where the median's does (`max_scale_median`, the expected one). Each is compared with s:
- *ratio*: answer / s, median over series;
- *safe*: share of series answered at or under s (an answer above s promises traffic the limit
  cannot take);
- *within 20%*: share of series answered within 20% of s.

Beside it is the rule operators use without a model: the limit over the base day's measured
peak ("usage scales with traffic"). Results go to docs/benchmarks.md (section "capacity").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import write_section  # noqa: E402
from estimator.simulator import SimulationConfig, run_simulation, to_windows  # noqa: E402
from estimator.synthesizer import Synthesizer, traffic_of  # noqa: E402
from estimator.training import TrainConfig, train_bundle  # noqa: E402
from estimator.whatif import max_scales  # noqa: E402
from estimator.windows import targets  # noqa: E402
from exporter.report import format_table, markdown_table  # noqa: E402

TRUE_SCALES = (1.5, 2.0, 3.0)
WITHIN = 0.2
COLUMNS = ["method", "true_scale", "resources", "series", "ratio_median", "ratio_p10"]
COLUMNS += ["ratio_p90", "safe", "within_20pct"]
GROUPS = {"cpu, disk": ("cpu", "write_iops", "write_throughput"), "memory": ("memory",)}
"""Resources reported apart: memory mostly grows little with traffic, so its limits at 1.5x to 3x
lie close to today's usage, within the band's noise."""


def summaries(method: str, scale: float, answers: np.ndarray, series) -> list[dict[str, object]]:
    """One row per resource group."""
    return [
        summary(method, scale, name, answers[[j for j, s in enumerate(series) if s[1] in kinds]])
        for name, kinds in GROUPS.items()
    ]


def summary(method: str, scale: float, group: str, answers: np.ndarray) -> dict[str, object]:
    ratio = answers / scale
    finite = np.where(np.isfinite(ratio), ratio, 100.0)  # not reached by 100x: far too high
    return {
        "method": method,
        "true_scale": scale,
        "resources": group,
        "series": len(ratio),
        "ratio_median": float(np.median(finite)),
        "ratio_p10": float(np.quantile(finite, 0.1)),
        "ratio_p90": float(np.quantile(finite, 0.9)),
        "safe": float(np.mean(finite <= 1.0)),
        "within_20pct": float(np.mean(np.abs(finite - 1.0) <= WITHIN)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--models", default="xgboost,linear")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    day = 1440
    train_config = SimulationConfig(scenario="normal", seed=args.seed, windows=args.days * day)
    base_config = SimulationConfig(scenario="normal", seed=10 * args.seed + 1, windows=day)
    train_sim, base_sim = run_simulation(train_config), run_simulation(base_config)
    train, base = to_windows(train_sim), to_windows(base_sim)
    series = train_sim.series
    measured_peak = np.nanmax(targets(base, list(series)), axis=0)
    truths = {}
    for scale in TRUE_SCALES:
        scaled = run_simulation(base_config, traffic_scale=scale)
        truths[scale] = scaled.oracle.max(axis=0)  # noise-free peak at s times the traffic
    rows = []
    for scale in TRUE_SCALES:
        naive = truths[scale] / np.maximum(measured_peak, 1e-12)
        rows += summaries("today's peak scaled (no model)", scale, naive, series)
    for kind in args.models.split(","):
        print(f"  training {kind} on {args.days} simulated days", flush=True)
        bundle = train_bundle(train, TrainConfig(model=kind))
        synthesizer = Synthesizer.from_json(bundle.synthesizer)
        starts = np.array([w.start for w in base])
        for scale in TRUE_SCALES:
            print(f"  {kind}: searching the scale each limit allows (truth {scale:g}x)", flush=True)
            limits = {key: float(truths[scale][j]) for j, key in enumerate(series)}
            found = max_scales(bundle, synthesizer, traffic_of(base), starts, limits)
            upper = np.array([found[key].upper for key in series])
            median = np.array([found[key].median for key in series])
            rows += summaries(f"{kind}, upper band", scale, upper, series)
            rows += summaries(f"{kind}, median", scale, median, series)
    print(format_table(rows, COLUMNS))
    if not args.no_write:
        write_section(
            "capacity",
            "## Capacity answers against the simulator's truth\n\n"
            f"`python bench/bench_capacity.py` (seed {args.seed}): trained on {args.days} "
            f"simulated normal days; the base is one more normal day. For each true scale s, "
            "the simulator runs the base day's traffic times s, and each of the "
            f"{len(series)} series gets the limit of its noise-free peak there. So the true "
            "answer to *how many times today's traffic does this limit allow* is s. "
            "`deeprest whatif --limits` answers it from the base day alone: where the upper "
            "band's peak reaches the limit (`max_scale`) and where the median's does "
            "(`max_scale_median`). *ratio*: answer / s, over series. *safe*: share answered at "
            "or under s (an answer above s promises traffic the limit cannot take). "
            "*within_20pct*: share within "
            f"{WITHIN:.0%} of s. The first rows are the rule without a model: the limit over "
            "the base day's measured peak. Memory is reported apart: most of it grows little with "
            "traffic (base memory, full caches), so its limit at s lies close to today's usage, "
            "within the band's noise: an answer read off the upper band is near 0 (the limit "
            "leaves no room the band can promise), one read off the median is the expected "
            "scale.\n\n" + markdown_table(rows, COLUMNS),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

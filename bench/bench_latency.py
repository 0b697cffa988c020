"""Latency capacity on real load tests: DeathStarBench step runs (wrk2, latency against rate).

    python bench/bench_latency.py [--runs FILE] [--no-write]

The runs are grouped by deployment (application, runtime, placement, experiment); steps of one
deployment differ only in the offered rate. Two questions a capacity planner asks of a step test,
each answered from the lower steps only and checked against the higher ones:

1. *Next step*: from the m lowest unsaturated steps, the latency at the next tested rate (and the
   one after), for p50, p90 and p99. Error factor = exp |log(predicted / measured)|.
2. *Objective*: the highest rate within an objective (p50, p90 or p99 at or under 25, 50, 100, 200
   or 500 ms) from the steps below the first one that breaks it. The truth is the crossing read
   between the two steps that bracket it, from all steps.

Methods, all fitted on the same steps: the queueing curve of `estimator.latency` (DeepRest), and
the learned models of the latency capacity study on the one feature that varies here (requests
per second): linear regression of latency on rate, linear regression of log latency on rate,
boosted trees (XGBoost) and a small neural network (PyTorch) of log latency on rate; plus the naive readings, the last step's latency
and, for objectives, the highest step that met it.

3. *Recorded traffic*: the Train-Ticket day imported with its per-API latency and binned by load
   (`estimator.latency.load_steps`, as `deeprest capacity --data` does); question 1 on those
   steps, per API.

Results go to docs/benchmarks.md (section "latency"); each part skips when its data is absent.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import SHARED_DATA, write_section  # noqa: E402
from estimator.importers import load_trainticket  # noqa: E402
from estimator.latency import (  # noqa: E402
    CurveFit,
    Step,
    fit_curve,
    load_steps,
    measured_max_rate,
)
from exporter.loadtests import parse_objective, read_steps  # noqa: E402
from exporter.report import format_table, markdown_table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RUNS = SHARED_DATA / "dsb-latency" / "runs.csv"
DEFAULT_TRAINTICKET = SHARED_DATA / "trainticket-2023-01-30"
GROUP_BY = ("application", "runtime", "placement", "experiment")
"""Columns that tell deployments apart, where the runs file has them."""
STATISTICS = ("p50", "p90", "p99")
OBJECTIVES_MS = (25, 50, 100, 200, 500)
MIN_STEPS = 3

Curve = Callable[[np.ndarray], np.ndarray]  # rate -> latency (seconds)


def _linear(rates: np.ndarray, latency: np.ndarray) -> Curve:
    slope, intercept = np.polyfit(rates, latency, 1)
    return lambda r: np.maximum(intercept + slope * r, 1e-6)


def _loglinear(rates: np.ndarray, latency: np.ndarray) -> Curve:
    slope, intercept = np.polyfit(rates, np.log(latency), 1)
    return lambda r: np.exp(intercept + slope * r)


def _trees(rates: np.ndarray, latency: np.ndarray) -> Curve:
    import xgboost as xgb

    params = {"max_depth": 2, "eta": 0.3, "nthread": 1, "min_child_weight": 0.0}
    booster = xgb.train(params, xgb.DMatrix(rates[:, None], label=np.log(latency)), 50)
    return lambda r: np.exp(booster.predict(xgb.DMatrix(np.asarray(r, dtype=float).reshape(-1, 1))))


def _network(rates: np.ndarray, latency: np.ndarray) -> Curve:
    """A small multilayer perceptron of log latency on rate (one hidden layer of 16, tanh)."""
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(1)
    x_mean, x_std = rates.mean(), rates.std() or 1.0
    y = np.log(latency)
    y_mean, y_std = y.mean(), y.std() or 1.0
    net = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    inputs = torch.tensor((rates - x_mean) / x_std, dtype=torch.float32).reshape(-1, 1)
    targets = torch.tensor((y - y_mean) / y_std, dtype=torch.float32).reshape(-1, 1)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(300):
        optimizer.zero_grad()
        loss = torch.mean((net(inputs) - targets) ** 2)
        loss.backward()
        optimizer.step()

    def curve(r: np.ndarray) -> np.ndarray:
        grid = np.asarray(r, dtype=float).reshape(-1, 1)
        with torch.no_grad():
            out = net(torch.tensor((grid - x_mean) / x_std, dtype=torch.float32)).numpy()
        return np.exp(out.reshape(-1) * y_std + y_mean)

    return curve


def _last(rates: np.ndarray, latency: np.ndarray) -> Curve:
    top = float(latency[np.argmax(rates)])
    return lambda r: np.full(np.shape(r), top)


LEARNED: dict[str, Callable[[np.ndarray, np.ndarray], Curve]] = {
    "linear regression": _linear,
    "log-linear regression": _loglinear,
    "boosted trees (xgboost)": _trees,
    "neural network (torch MLP)": _network,
    "last step's latency": _last,
}


QUEUE = "queueing curve (DeepRest)"
PROFILE_ONLY = "queueing curve, range of the capacity profile only"
"""The same best curve with the range of the profile over capacity and servers alone (each at
its best scale), without the steepest curves each capacity allows (`fit_curve(steepest=False)`)."""


def curves(steps: Sequence[Step], fit: CurveFit) -> dict[str, Curve]:
    """Every method fitted on the same steps: the queueing curve `fit` (which saturated steps
    inform) and the learned ones on the unsaturated steps."""
    calm = [s for s in steps if not s.saturated]
    rates = np.array([s.achieved for s in calm])
    latency = np.array([s.latency for s in calm])
    fitted: dict[str, Curve] = {QUEUE: fit.best.latency}
    fitted.update({name: make(rates, latency) for name, make in LEARNED.items()})
    return fitted


def crossing(curve: Curve, objective: float, start: float, stop: float) -> float:
    """The first rate on a fine grid from `start` to `stop` whose latency passes `objective`."""
    grid = np.linspace(start, stop, 4001)
    over = np.nonzero(curve(grid) > objective)[0]
    return float(grid[over[0]]) if len(over) else math.inf


def next_step_errors(groups: dict[str, list[Step]]) -> list[dict[str, object]]:
    """One record per (group, statistic, fitted steps, steps ahead, method)."""
    records: list[dict[str, object]] = []
    for group, steps in groups.items():
        calm = sorted((s for s in steps if not s.saturated), key=lambda s: s.rate)
        for m in range(MIN_STEPS, len(calm)):
            fit = fit_curve(calm[:m])
            ranges = {QUEUE: fit, PROFILE_ONLY: fit_curve(calm[:m], steepest=False)}
            fitted = curves(calm[:m], fit)
            fitted[PROFILE_ONLY] = fitted[QUEUE]
            for ahead, target in enumerate(calm[m : m + 2], start=1):
                for name, curve in fitted.items():
                    predicted = float(curve(np.array([target.achieved]))[0])
                    error = abs(math.log(predicted / target.latency))
                    low, _, high = (
                        ranges[name].latency(target.achieved) if name in ranges else (0, 0, 0)
                    )
                    records.append(
                        {"group": group, "ahead": ahead, "method": name, "log_error": error,
                         "under": predicted < target.latency,
                         "covered": low <= target.latency <= high if name in ranges else None}
                    )  # fmt: skip
    return records


def objective_answers(groups: dict[str, list[Step]], threshold: float) -> list[dict[str, object]]:
    """Per group with a bracketed crossing: each method's answer from the steps under it."""
    records: list[dict[str, object]] = []
    for group, steps in groups.items():
        truth, lo, hi = measured_max_rate(steps, threshold)
        if not lo < truth < hi:
            continue
        below = [s for s in steps if s.rate < hi]
        if sum(not s.saturated for s in below) < MIN_STEPS:
            continue
        fit = fit_curve(below)
        low, best, high = fit.max_rate(threshold)  # the answer `deeprest capacity` gives
        answers = {QUEUE: best}
        answers.update(
            {name: crossing(c, threshold, lo, 20 * lo) for name, c in curves(below, fit).items()
             if name != QUEUE}
        )  # fmt: skip
        answers["highest step within it"] = lo
        answers["queueing curve, low end of its range"] = low
        answers["queueing curve, low end of the capacity profile's range"] = fit_curve(
            below, steepest=False
        ).max_rate(threshold)[0]
        for name, value in answers.items():
            records.append(
                {"group": group, "method": name, "ratio": value / truth,
                 "covered": low <= truth <= high if name == QUEUE else None}
            )  # fmt: skip
    return records


def summarize_next(records: list[dict[str, object]]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for method in dict.fromkeys(str(r["method"]) for r in records):
        for ahead in (1, 2):
            mine = [r for r in records if r["method"] == method and r["ahead"] == ahead]
            errors = np.array([float(r["log_error"]) for r in mine])  # type: ignore[arg-type]
            covered = [bool(r["covered"]) for r in mine if r["covered"] is not None]
            rows.append(
                {"method": method, "steps_ahead": ahead, "cases": len(mine),
                 "median_error_factor": float(np.exp(np.median(errors))),
                 "p90_error_factor": float(np.exp(np.quantile(errors, 0.9, method="inverted_cdf"))),
                 "within_1.5x": float(np.mean(errors <= math.log(1.5))),
                 "under_predicted": float(np.mean([bool(r["under"]) for r in mine])),
                 "range_holds_truth": float(np.mean(covered)) if covered else math.nan}
            )  # fmt: skip
    return rows


def summarize_objective(records: list[dict[str, object]]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for method in dict.fromkeys(str(r["method"]) for r in records):
        ratios = np.array([float(r["ratio"]) for r in records if r["method"] == method])  # type: ignore[arg-type]
        finite = ratios[np.isfinite(ratios)]
        covered = [
            bool(r["covered"])
            for r in records
            if r["method"] == method and r["covered"] is not None
        ]
        rows.append(
            {"method": method, "cases": len(ratios),
             "median_answer_over_truth": float(np.median(ratios)),
             "within_20%": float(np.mean(np.abs(ratios - 1.0) <= 0.2)),
             "safe (<= truth)": float(np.mean(ratios <= 1.0)),
             "no_answer": float(np.mean(~np.isfinite(ratios))),
             "range_holds_truth": float(np.mean(covered)) if covered else math.nan,
             "spread_p10_p90": f"{np.quantile(finite, 0.1):.2f}-{np.quantile(finite, 0.9):.2f}"
             if len(finite) else "n/a"}
        )  # fmt: skip
    return rows


def dsb_section(runs: Path) -> str:
    """Questions 1 and 2 on the step runs (one group per deployment and API)."""
    with open(runs, newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle), [])
    by = [c for c in GROUP_BY if c in header]
    next_records: list[dict[str, object]] = []
    objective_records: list[dict[str, object]] = []
    for statistic in STATISTICS:
        objective = parse_objective(f"{statistic}=1s")
        groups = {f"{g}/{api}": s for (g, api), s in read_steps([runs], objective, by).items()}
        next_records += [dict(r, statistic=statistic) for r in next_step_errors(groups)]
        for ms in OBJECTIVES_MS:
            objective_records += objective_answers(groups, ms / 1e3)
    next_rows, objective_rows = summarize_next(next_records), summarize_objective(objective_records)
    next_columns = list(next_rows[0])
    objective_columns = list(objective_rows[0])
    print(format_table(next_rows, next_columns))
    print()
    print(format_table(objective_rows, objective_columns))
    deployments = len({str(r["group"]) for r in next_records})
    crossed = len({str(r["group"]) for r in objective_records})
    return f"""### Step load tests

On `{runs.parent.name}/{runs.name}` (wrk2 step runs of DeathStarBench's hotel reservation,
social network and media apps; {deployments} deployments with at least {MIN_STEPS + 1}
unsaturated steps). Every method is fitted on the same lower steps of one deployment and checked
against its higher steps; nothing is fitted across deployments.

Next step: latency (p50, p90, p99) at the next tested rate (and two steps ahead) from the steps
below it. Error factor = exp |log(predicted / measured)|; under_predicted = share of cases
predicted below the measurement; range_holds_truth = share of cases whose measured latency lies
in the queueing curve's plausible latency range at that rate. The curve's range is that of the
profile likelihood over capacity and servers plus, for each capacity, the steepest curve the
steps allow within the same cut; the "capacity profile only" row (the same best curve) shows the
range without those.

{markdown_table(next_rows, next_columns)}

Objective: the highest rate with p50, p90 or p99 at or under {", ".join(map(str, OBJECTIVES_MS))}
ms, from the steps below the first step that breaks it; truth = the crossing between the two
steps that bracket it. The cases come from {crossed} deployments (one case per statistic and
objective whose crossing is bracketed, with at least {MIN_STEPS} unsaturated steps below it).
safe = share of answers at or under the truth; no_answer = the method's latency never reaches
the objective (the curve's answer is the one `deeprest capacity` prints; the learned models'
latency is searched up to 20x the highest step); range_holds_truth = share of cases whose truth lies
in the queueing curve's plausible range. Every case has, by construction, a knee right after
its last step, so a method that always puts a knee just past the data scores well here; the
curve does so only where the steps show it beyond their noise (otherwise it answers "no knee
seen", counted as no_answer, and its range's low end is the highest step).

{markdown_table(objective_rows, objective_columns)}
"""


def recorded_section(folder: Path) -> str:
    """Question 1 on the Train-Ticket day's load-binned steps, per API."""
    windows = load_trainticket(folder)
    records: list[dict[str, object]] = []
    for statistic in STATISTICS:
        groups = {f"{c}:{o}": s for (c, o), s in load_steps(windows, statistic).items()}
        records += [dict(r, statistic=statistic) for r in next_step_errors(groups)]
    rows = summarize_next(records)
    columns = list(rows[0])
    print(format_table(rows, columns))
    apis = len({str(r["group"]) for r in records})
    return f"""### Recorded traffic

The Train-Ticket day (`{folder.name}`), imported with its per-API latency; each of {apis} APIs'
windows binned by load into 8 steps (the load being all APIs' requests per second, about 0.3 to
1.1 here), as `deeprest capacity --data` does. Next step, as above, from the lower bins. The load
is light and varies little, so this measures how the methods behave on noisy recorded steps
more than near a knee.

{markdown_table(rows, columns)}
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=DEFAULT_RUNS)
    parser.add_argument("--trainticket", type=Path, default=DEFAULT_TRAINTICKET)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    parts = ["## Latency capacity (real load tests and recorded traffic)"]
    parts.append("Command: `python bench/bench_latency.py`.")
    if args.runs.exists():
        parts.append(dsb_section(args.runs))
    else:
        print(f"skipped the step runs: {args.runs} is absent")
    if (args.trainticket / "trace").is_dir():
        parts.append(recorded_section(args.trainticket))
    else:
        print(f"skipped the recorded traffic: {args.trainticket} is absent")
    if len(parts) > 2 and not args.no_write:
        write_section("latency", "\n\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())

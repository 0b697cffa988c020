"""Estimator benchmark: simulator scenarios and the real Train-Ticket day, every model and baseline.

    python bench/bench_estimator.py                 # simulator + Train-Ticket + timing
    python bench/bench_estimator.py --skip-timing   # accuracy only

Prints tables and writes them into docs/benchmarks.md (section "estimator").
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    SHARED_DATA,
    TRAIN_SHARE,
    median_or_nan,
    timed,
    train_cut,
    write_section,
)
from estimator.bundle import Bundle  # noqa: E402
from estimator.features import Vocabulary  # noqa: E402
from estimator.metrics import accuracy, mae, scored_coverage  # noqa: E402
from estimator.models import make_model  # noqa: E402
from estimator.models.history import HistoryForecaster  # noqa: E402
from estimator.simulator import (  # noqa: E402
    Simulation,
    SimulationConfig,
    run_simulation,
    simulate,
    to_windows,
)
from estimator.synthesizer import scale_windows  # noqa: E402
from estimator.training import TrainConfig, validate_tail, window_seconds_of  # noqa: E402
from estimator.windows import Window, series_of, targets  # noqa: E402
from exporter.report import format_table, markdown_table  # noqa: E402

TEST_SCENARIOS = ("normal", "scale", "shape", "composition")
DEFAULT_MODELS = ("xgboost", "qrnn", "auto", "linear", "ols-api")
INNER_COLUMNS = [
    "model",
    "median_cpu_wape",
    "cpu_coverage",
    "memory_coverage",
    "memory_coverage_unaged",
]
PREDICT_SAMPLES = 500
"""Timed one-window estimates per model: enough that the p99 is not just the slowest one."""
XGBOOST_CHOICES = {
    "xgboost-all (history costs of every component)": {"history_costs": "all"},
    "xgboost-leaf1 (leaves of 1 window)": {"min_child_weight": 1.0},
}
"""xgboost with one default set back, measured on the real recording beside the default."""
TT_ROOT = SHARED_DATA / "trainticket-2023-01-30"


def fit_predict(
    kind: str,
    vocab: Vocabulary,
    train: list[Window],
    tests: dict[str, list[Window]],
    series,
    **params,
):
    """Fit one model kind (with hyperparameters `params`) on train; predict every test set.
    Returns fit seconds, predictions, predict seconds."""
    X, _ = vocab.transform(train)
    Y = targets(train, series)
    model = make_model(kind, **params)
    fit = timed(lambda: model.fit(X, Y, vocab.layout.for_series(series)))
    preds, predict_seconds = {}, 0.0
    for name, windows in tests.items():
        Xt, _ = vocab.transform(windows)
        run = timed(lambda Xt=Xt: model.predict(Xt))
        preds[name] = run.value
        predict_seconds += run.seconds / len(windows)
    return fit.seconds, preds, predict_seconds / len(tests), model


def history_predict(train: list[Window], tests: dict[str, list[Window]], series, lookback: int):
    """History-only baseline: one-step-ahead exponential smoothing on past actual usage."""
    Y = targets(train, series)
    model = HistoryForecaster(lookback=lookback)
    fit = timed(lambda: model.fit(Y))
    preds = {name: model.forecast(Y[-lookback:], targets(w, series)) for name, w in tests.items()}
    return fit.seconds, preds


def summarize(pred: np.ndarray, windows: list[Window], series, select=None) -> dict:
    actual = targets(windows, series)
    oracle = targets(windows, series, oracle=True)
    cols = np.arange(len(series)) if select is None else np.asarray(select)
    acc = accuracy(pred[..., 1], actual)[cols]
    out = {
        "mean_acc": float(np.nanmean(acc)),
        "worst_acc": float(np.nanmin(acc)),
        "worst_series": "/".join(series[cols[int(np.nanargmin(acc))]]),
        "coverage": float(np.nanmean(scored_coverage(pred, actual)[cols])),
    }
    if not np.isnan(oracle).all():
        ratio = mae(pred[..., 1], actual)[cols] / mae(oracle, actual)[cols]
        out["worst_mae_ratio"] = float(np.nanmax(ratio))
        out["mean_mae_ratio"] = float(np.nanmean(ratio))
    return out


ORACLE_AS_SHOWN = "oracle of what training shows (capacities never reached unknown)"


def shown_capacity(run: Simulation) -> np.ndarray:
    """The caches' capacities as far as a run's recorded windows show them: a cache that filled
    keeps its capacity; one that never did has none that any model of those windows could learn
    (inf). The truth under these capacities bounds what a model trained on the run can know."""
    cap = run.cache_capacity
    filled = run.cache_bytes.max(axis=0) >= cap * (1 - 1e-9)
    return np.where((cap > 0) & ~filled, np.inf, cap)


def _seed_rows(args: argparse.Namespace, seed: int) -> list[dict]:
    """Every model, the history-only baseline and the oracle on one training seed's run."""
    day = 1440
    print(
        f"seed {seed}: train normal {args.days} days, test {', '.join(TEST_SCENARIOS)} 1 day each",
        flush=True,
    )
    train_run = run_simulation(
        SimulationConfig(scenario="normal", seed=seed, windows=args.days * day)
    )
    train = to_windows(train_run)
    configs = {
        name: SimulationConfig(scenario=name, seed=10 * seed + i, windows=day)
        for i, name in enumerate(TEST_SCENARIOS)
    }
    tests = {name: simulate(config) for name, config in configs.items()}
    series = series_of(train)
    shown = {}  # the truth of each test day under the capacities training shows
    for name, config in configs.items():
        run = run_simulation(config, capacity=shown_capacity(train_run))
        shown[name] = np.repeat(targets(to_windows(run), series, oracle=True)[..., None], 3, axis=2)
    vocab = Vocabulary.build(train)
    rows = []
    for kind in args.models:
        print(f"  fitting {kind}", flush=True)
        fit_s, preds, pred_s, _ = fit_predict(kind, vocab, train, tests, series)
        for name, windows in tests.items():
            figures = summarize(preds[name], windows, series)
            worst = series.index(tuple(figures["worst_series"].split("/")))
            bound = accuracy(shown[name][:, :, 1], targets(windows, series))[worst]
            rows.append(
                {
                    "model": kind,
                    "scenario": name,
                    **figures,
                    "worst_series_as_shown": float(bound),
                    "fit_s": fit_s,
                    "predict_ms_per_window": 1000 * pred_s,
                }
            )
    fit_s, preds = history_predict(train, tests, series, lookback=60)
    for name, windows in tests.items():
        rows.append(
            {
                "model": "history-ets (1-step, sees actual)",
                "scenario": name,
                **summarize(preds[name], windows, series),
                "fit_s": fit_s,
            }
        )
    for name, windows in tests.items():
        oracle = targets(windows, series, oracle=True)
        pred = np.repeat(oracle[..., None], 3, axis=2)
        figures = summarize(pred, windows, series)
        figures["coverage"] = float("nan")  # a point estimate has no band
        rows.append({"model": "oracle (noise-free truth)", "scenario": name, **figures})
        figures = summarize(shown[name], windows, series)
        figures["coverage"] = float("nan")
        rows.append({"model": ORACLE_AS_SHOWN, "scenario": name, **figures})
    for row in rows:
        row["seed"] = seed
    return rows


def _combine(rows: list[dict]) -> list[dict]:
    """Per model and scenario over seeds: mean of means, worst of worsts, mean fit time."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["scenario"]), []).append(row)
    out = []
    for (model, scenario), runs in groups.items():

        def over(key: str, how=np.mean, runs=runs) -> float:
            values = [r[key] for r in runs if key in r]
            return float(how(values)) if values else float("nan")

        out.append(
            {
                "scenario": scenario,
                "model": model,
                "mean_acc": over("mean_acc"),
                "worst_acc": over("worst_acc", np.min),
                "coverage": over("coverage"),
                "mean_mae_ratio": over("mean_mae_ratio"),
                "worst_mae_ratio": over("worst_mae_ratio", np.max),
                "fit_s": over("fit_s"),
                "predict_ms_per_window": over("predict_ms_per_window"),
            }
        )
    out.sort(key=lambda r: (TEST_SCENARIOS.index(r["scenario"]), str(r["model"])))
    return out


def simulator_section(args: argparse.Namespace) -> str:
    rows = [row for seed in args.seeds for row in _seed_rows(args, seed)]
    combined = _combine(rows)
    cols = [
        "scenario",
        "model",
        "mean_acc",
        "worst_acc",
        "coverage",
        "mean_mae_ratio",
        "worst_mae_ratio",
        "fit_s",
        "predict_ms_per_window",
    ]
    print(format_table(combined, cols))
    focus = [r for r in rows if r["model"] == args.models[0]]
    focus.sort(key=lambda r: (TEST_SCENARIOS.index(r["scenario"]), r["seed"]))
    seed_cols = [
        "scenario",
        "seed",
        "mean_acc",
        "worst_acc",
        "worst_series",
        "worst_series_as_shown",
        "coverage",
        "mean_mae_ratio",
    ]
    print(format_table(focus, seed_cols))
    seeds = ", ".join(str(s) for s in args.seeds)
    return (
        f"### Simulator: train on normal ({args.days} days of 1-minute windows), test one day per "
        f"scenario; training seeds {seeds}\n\n"
        "Each training seed draws its own traffic (test days their own), so a series whose cache "
        "fills in one run's training may not in another's. accuracy = 1 - WAPE per series; "
        "mean_acc is the mean over series, averaged over seeds; worst_acc the worst series of any "
        "seed; coverage = share of actual inside the 90% band; mean_mae_ratio and worst_mae_ratio "
        "= each series' MAE over the oracle's MAE (the noise floor), averaged over series and "
        "seeds, and at the worst series of any seed. The second oracle is the noise-free truth "
        "of the same test day with every cache that never filled in the training windows given "
        "no capacity: a cache fills and evicts as it did, but a capacity those windows never "
        "reached is no part of them, so no model trained on them can know it; where a test day "
        "fills such a cache (3x users), this is what the training windows allow at best, short "
        "of a guess.\n\n"
        + markdown_table(combined, cols)
        + f"\n\n{args.models[0]} per seed, with its worst series; worst_series_as_shown is the "
        "second oracle's accuracy on that series:\n\n" + markdown_table(focus, seed_cols)
    )


def trainticket_section(args: argparse.Namespace) -> str:
    root: Path = args.trainticket
    if not root.is_dir():
        print(f"Train-Ticket data not found at {root}; skipping", flush=True)
        return "### Train-Ticket\n\nskipped: data folder absent"
    from estimator.importers.trainticket import load_trainticket

    load = timed(lambda: load_trainticket(root))
    windows: list[Window] = load.value  # type: ignore[assignment]
    windows = [w for w in windows if w.metrics]
    cut = train_cut(windows)
    train, test, series, cpu, memory, vocab, actual = _split(windows, cut)
    rows = []
    per_series: dict[str, np.ndarray] = {}  # model -> WAPE per series

    def add(
        name: str,
        pred: np.ndarray,
        fit_s: float | None,
        unaged: np.ndarray,
        ratio_2x: np.ndarray | None = None,
    ) -> None:
        wape = 1 - accuracy(pred[..., 1], actual)
        nan = float("nan")
        lower_at_2x = nan if ratio_2x is None else float(np.mean(ratio_2x < 0.999))
        memory_2x = nan if ratio_2x is None else float(np.mean(ratio_2x[memory] > 1.3))
        per_series[name.split(" ")[0]] = wape
        rows.append(
            {
                "model": name,
                "median_cpu_wape": median_or_nan(wape[cpu]),
                "mean_cpu_acc": float(np.nanmean(1 - wape[cpu])),
                "mean_memory_acc": float(np.nanmean(1 - wape[memory])),
                **band_coverages(pred, unaged, actual, cpu, memory),
                "lower_at_2x": lower_at_2x,
                "memory_over_1.3x_at_2x": memory_2x,
                "fit_s": fit_s if fit_s is not None else float("nan"),
            }
        )

    for kind in args.models:
        print(f"  Train-Ticket: fitting {kind}", flush=True)
        add(kind, *_fit_predict_after(kind, vocab, train, test, series))
    if "xgboost" in args.models:  # what the robust, shrunk cost base brings, in the same run
        print("  Train-Ticket: fitting xgboost with a least-squares cost base", flush=True)
        estimates = _fit_predict_after("xgboost", vocab, train, test, series, robust=False)
        add("xgboost-lsq (least-squares cost base)", *estimates)
        print("  Train-Ticket: fitting xgboost with unshrunk costs", flush=True)
        estimates = _fit_predict_after("xgboost", vocab, train, test, series, shrinkage=0.0)
        add("xgboost-unshrunk (costs never shrunk)", *estimates)
        print("  Train-Ticket: fitting xgboost with free saturating trees", flush=True)
        estimates = _fit_predict_after("xgboost", vocab, train, test, series, monotone=False)
        add("xgboost-free (saturating trees not monotone)", *estimates)
        for name, params in XGBOOST_CHOICES.items():
            print(f"  Train-Ticket: fitting {name}", flush=True)
            add(name, *_fit_predict_after("xgboost", vocab, train, test, series, **params))
    fit_s, preds = history_predict(train, {"test": test}, series, lookback=60)
    add("history-ets (previous hour, sees actual)", preds["test"], fit_s, preds["test"])
    cols = [
        "model",
        "median_cpu_wape",
        "mean_cpu_acc",
        "mean_memory_acc",
        "cpu_coverage",
        "memory_coverage",
        "cpu_coverage_unaged",
        "memory_coverage_unaged",
        "lower_at_2x",
        "memory_over_1.3x_at_2x",
        "fit_s",
    ]
    print(format_table(rows, cols))
    inner = _inner_split(windows[:cut], args.models)
    services = _per_service(series, per_series, actual)
    if services:
        print(format_table(services, list(services[0])))
    return (
        f"### {root.name} (real, Train-Ticket layout): first {TRAIN_SHARE} ({cut}) of "
        f"{len(windows)} one-minute windows to train, the rest to test; {len(cpu)} services, "
        "CPU and memory; "
        f"import {load.seconds:.1f}s\n\n"
        "cpu_coverage and memory_coverage are those of the band a bundle serves: widened, where "
        "the validation tail showed drift, for the windows since the training end "
        "(`estimator/drift.py`); the `_unaged` columns are the models' bands as they come. "
        "lower_at_2x: the share of series whose mean estimate of the test windows is lower at "
        "twice their traffic (every call count doubled, its history too) than at their own: "
        "more traffic that costs less. memory_over_1.3x_at_2x: the share of memory series whose "
        "mean estimate at twice the traffic is over 1.3 times that at their own (JVM heaps here "
        "are mostly a base, so twice the light traffic adds a few percent).\n\n"
        + markdown_table(rows, cols)
        + "\n\nInside the training part only, a split for comparing model choices without the "
        "test windows: train on its first two thirds (the first 40% of the recording), test on the "
        "last third (40% to 60%). `xgboost+qrnn` is the blend `auto` may choose, the mean of the "
        "two models' quantiles; the xgboost variants set one default back (`history_costs=all`, "
        "`min_child_weight=1`), the split on which those defaults were chosen.\n\n"
        + markdown_table(inner, INNER_COLUMNS)
        + "\n\nPer service: WAPE of each model on the test windows (lower is better; `-`: no "
        "usage in the test windows), and mean actual usage (CPU in millicores, memory in MiB).\n\n"
        + markdown_table(services, list(services[0]) if services else [])
    )


def _fit_predict_after(
    kind: str, vocab: Vocabulary, train: list[Window], test: list[Window], series, **params
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Fit on train; estimate the test windows that follow it, as they would be live: the
    training windows feed the traffic history and the models' look-back. Returns the test
    windows' estimates with their bands widened for drift as a bundle widens them, the fit
    seconds, the estimates as the model gives them, and per series the ratio of the mean
    estimate at twice the traffic (every count doubled, history too) to that at the traffic
    seen (under 1: more traffic that costs less, which no application does)."""
    doubled = scale_windows(train + test, 2.0)  # twice the traffic, its history too
    fit_s, preds, _, model = fit_predict(
        kind, vocab, train, {"test": train + test, "double": doubled}, series, **params
    )
    pred = preds["test"][len(train) :]
    at_2x = preds["double"][len(train) :, :, 1].mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_2x = at_2x / pred[:, :, 1].mean(axis=0)
    validation = getattr(model, "validation_", None)
    if validation is None:  # what `deeprest train` measures for every kind but auto
        X, _ = vocab.transform(train)
        config = TrainConfig(model=kind, model_params=params)
        validation = validate_tail(
            config, X, targets(train, series), vocab.layout.for_series(series)
        )
    bundle = Bundle(
        vocabulary=vocab,
        series=series,
        model=model,
        window_seconds=window_seconds_of(train),
        training={"end": train[-1].end, "windows": len(train)},
        validation=validation,
    )
    starts = np.array([w.start for w in test], dtype=float)
    return bundle.age_band(pred, starts), fit_s, pred, ratio_2x


def band_coverages(
    pred: np.ndarray, unaged: np.ndarray, actual: np.ndarray, cpu: list[int], memory: list[int]
) -> dict[str, float]:
    """Mean band coverage of the CPU and of the memory series, of the bands a bundle serves and
    of the models' own (unaged), over the series `deeprest evaluate` scores: a series that used
    nothing in the test windows has no accuracy, and a band at 0 that covers it is no evidence."""
    cover, plain = scored_coverage(pred, actual), scored_coverage(unaged, actual)
    with warnings.catch_warnings():  # a resource without scored series: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return {
            "cpu_coverage": float(np.nanmean(cover[cpu])),
            "memory_coverage": float(np.nanmean(cover[memory])),
            "cpu_coverage_unaged": float(np.nanmean(plain[cpu])),
            "memory_coverage_unaged": float(np.nanmean(plain[memory])),
        }


def _split(windows: list[Window], cut: int):
    """Training and test windows of a recording cut at `cut`, with its CPU and memory series,
    their columns, the training vocabulary and the test windows' actual usage."""
    train, test = windows[:cut], windows[cut:]
    series = [s for s in series_of(train) if s[1] in ("cpu", "memory")]
    cpu = [j for j, s in enumerate(series) if s[1] == "cpu"]
    memory = [j for j, s in enumerate(series) if s[1] == "memory"]
    return train, test, series, cpu, memory, Vocabulary.build(train), targets(test, series)


def _inner_split(windows: list[Window], models: tuple[str, ...]) -> list[dict]:
    """Each model, the xgboost+qrnn blend and history-ets on a split of the training windows."""
    train, test, series, cpu, memory, vocab, actual = _split(windows, int(len(windows) * 2 / 3))
    preds: dict[str, np.ndarray] = {}
    unaged: dict[str, np.ndarray] = {}
    for kind in models:
        print(f"  Train-Ticket, inside the training part: fitting {kind}", flush=True)
        preds[kind], _, unaged[kind], _ = _fit_predict_after(kind, vocab, train, test, series)
    if "xgboost" in models:
        for name, params in XGBOOST_CHOICES.items():
            print(f"  Train-Ticket, inside the training part: fitting {name}", flush=True)
            preds[name], _, unaged[name], _ = _fit_predict_after(
                "xgboost", vocab, train, test, series, **params
            )
    if "xgboost" in preds and "qrnn" in preds:
        preds["xgboost+qrnn"] = (preds["xgboost"] + preds["qrnn"]) / 2
        unaged["xgboost+qrnn"] = (unaged["xgboost"] + unaged["qrnn"]) / 2
    _, out = history_predict(train, {"test": test}, series, lookback=60)
    preds["history-ets (previous hour, sees actual)"] = out["test"]
    unaged["history-ets (previous hour, sees actual)"] = out["test"]
    rows = []
    for name, pred in preds.items():
        rows.append(
            {
                "model": name,
                "median_cpu_wape": median_or_nan(1 - accuracy(pred[..., 1], actual)[cpu]),
                **band_coverages(pred, unaged[name], actual, cpu, memory),
            }
        )
    print(format_table(rows, INNER_COLUMNS))
    return rows


def _per_service(series, per_series: dict[str, np.ndarray], actual: np.ndarray) -> list[dict]:
    """One row per service: each model's CPU and memory WAPE, and the mean usage."""
    index = {key: j for j, key in enumerate(series)}
    rows = []
    for component in sorted({c for c, _ in series}):
        row: dict[str, object] = {"service": component}
        for resource, unit in (("cpu", 1e3), ("memory", 2.0**-20)):
            j = index.get((component, resource))
            for name, wape in per_series.items():
                value = float("nan") if j is None else float(wape[j])
                row[f"{resource} {name}"] = "-" if np.isnan(value) else f"{value:.3f}"
            mean = float("nan") if j is None else float(np.nanmean(actual[:, j])) * unit
            row[f"{resource} mean"] = "-" if np.isnan(mean) else f"{mean:.1f}"
        rows.append(row)
    return rows


def timing_section(args: argparse.Namespace) -> str:
    n = 14 * 1440
    print(f"timing: {n} windows (14 days)", flush=True)
    train = simulate(SimulationConfig(scenario="normal", seed=5, windows=n))
    next_day = simulate(SimulationConfig(scenario="normal", seed=51, windows=1440))
    series = series_of(train)
    vocab = Vocabulary.build(train)
    X, _ = vocab.transform(train)
    Y = targets(train, series)
    Xt, _ = vocab.transform(next_day)
    rows = []
    # The tree model's boosters learn from at most max_tree_rows windows; the second xgboost row
    # trains them on every window, to show what the bound costs in accuracy.
    variants = [
        ("xgboost", "xgboost", {}),
        ("xgboost (trees on every window)", "xgboost", {"max_tree_rows": n}),
        ("qrnn", "qrnn", {}),
        ("auto (default of deeprest train)", "auto", {}),
    ]
    for name, kind, params in variants:
        if kind not in args.models:
            continue
        model = make_model(kind, **params)
        fit = timed(lambda model=model: model.fit(X, Y, vocab.layout.for_series(series)))
        next_acc = float(np.nanmean(accuracy(model.predict(Xt)[..., 1], targets(next_day, series))))
        rows_needed = model.context + 1
        window = X[-rows_needed:]
        model.predict_last(window)
        samples = []
        for _ in range(PREDICT_SAMPLES):
            started = time.perf_counter()
            model.predict_last(window)
            samples.append(time.perf_counter() - started)
        rows.append(
            {
                "model": name,
                "windows": n,
                "series": len(series),
                "features": X.shape[1],
                "fit_s": fit.seconds,
                "next_day_mean_acc": next_acc,
                "predict_one_window_ms_median": 1000 * float(np.median(samples)),
                "predict_one_window_ms_p99": 1000 * float(np.quantile(samples, 0.99)),
            }
        )
    cols = [
        "model",
        "windows",
        "series",
        "features",
        "fit_s",
        "next_day_mean_acc",
        "predict_one_window_ms_median",
        "predict_one_window_ms_p99",
    ]
    print(format_table(rows, cols))
    return (
        "### Training and prediction time, 14 days of 1-minute windows\n\n"
        "next_day_mean_acc: mean accuracy over series on one more simulated normal day.\n\n"
        + markdown_table(rows, cols)
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--days", type=int, default=3, help="training days of the simulator section"
    )
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument(
        "--seeds", default="1,2,3", help="training seeds of the simulator section (comma-separated)"
    )
    parser.add_argument(
        "--trainticket",
        type=Path,
        default=TT_ROOT,
        help="a recording in the Train-Ticket layout (trace/ and metric/ folders)",
    )
    parser.add_argument("--skip-simulator", action="store_true")
    parser.add_argument("--skip-trainticket", action="store_true")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument(
        "--no-write", action="store_true", help="print only; leave docs/benchmarks.md"
    )
    args = parser.parse_args()
    args.models = tuple(m for m in args.models.split(",") if m)
    args.seeds = tuple(int(s) for s in args.seeds.split(",") if s)
    command = "python bench/bench_estimator.py " + " ".join(sys.argv[1:])
    parts = [
        "## Estimator",
        f"Command: `{command.strip()}` on {platform.machine()} with {__import__('os').cpu_count()} cores.",
    ]
    if not args.skip_simulator:
        parts.append(simulator_section(args))
    if not args.skip_trainticket:
        parts.append(trainticket_section(args))
    if not args.skip_timing:
        parts.append(timing_section(args))
    if not args.no_write:
        write_section("estimator", "\n\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())

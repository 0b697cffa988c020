"""`deeprest train`: a model bundle from a window dataset, or from stored windows and Prometheus."""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from estimator.bundle import check_bundle_target, save_bundle
from estimator.errors import InputError, count_of, data_warning, first_few
from estimator.models import MODEL_KINDS
from estimator.training import TrainConfig, check_trainable, train_bundle
from estimator.windows import SeriesKey, Window, load_windows
from exporter.commands.outputs import output_dir
from exporter.commands.ranges import select, time_range
from exporter.progress import Phases


def configure(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("training data (a dataset, or the exporter's store)")
    source.add_argument("--data", type=Path, help="window dataset (JSON Lines, contract 1)")
    source.add_argument("--config", type=Path, help="exporter configuration (store + Prometheus)")
    source.add_argument(
        "--from",
        dest="start",
        help="start of the range: unix seconds, ISO 8601, or with --data a share such as 60%%",
    )
    source.add_argument(
        "--to",
        dest="end",
        help="end of the range (exclusive): unix seconds, ISO 8601, or with --data a share",
    )
    parser.add_argument("--out", type=Path, required=True, help="model bundle directory to write")
    parser.add_argument("--model", default="auto", choices=MODEL_KINDS, help="model kind (auto)")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model hyperparameter (JSON value), repeatable: with --model xgboost e.g. "
        "--param n_estimators=100; with auto, per kind: "
        """--param 'params={"xgboost": {"n_estimators": 100}}'""",
    )
    parser.add_argument(
        "--max-paths",
        type=int,
        default=512,
        help="call-path vocabulary cap; rarer paths fold into their API's 'other' (default 512)",
    )
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=0.2,
        help="share of the newest windows held out to score the models, in (0, 0.9) (default 0.2)",
    )


def parse_params(items: list[str]) -> dict[str, object]:
    """KEY=VALUE pairs with JSON values (bare words stay strings)."""
    params: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"expected KEY=VALUE, got '{item}'", field="--param")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _windows(args: argparse.Namespace) -> tuple[list[Window], str]:
    if args.data is not None and args.config is not None:
        raise InputError("give --data FILE or --config FILE, not both", field="--config")
    if args.data is not None:
        return select(load_windows(args.data), args.start, args.end, str(args.data)), str(args.data)
    if args.config is None or args.start is None or args.end is None:
        raise InputError("give --data FILE, or --config FILE with --from T1 --to T2")
    from exporter.config import load_config
    from exporter.trainset import collect_training_windows

    config = load_config(args.config)
    start, end = time_range(args.start, args.end)
    return collect_training_windows(config, start, end), str(args.config)


def run(args: argparse.Namespace) -> int:
    say = Phases("train")
    output_dir(args.out, "--out")
    check_bundle_target(args.out)  # before the training, not after it
    if args.max_paths < 1:
        raise InputError("must be at least 1", field="--max-paths")
    if not 0.0 < args.validation_fraction < 0.9:
        raise InputError("must be between 0 and 0.9", field="--validation-fraction")
    config = TrainConfig(
        model=args.model,
        model_params=parse_params(args.param),
        max_paths=args.max_paths,
        validation_fraction=args.validation_fraction,
    )
    say("reading windows")
    windows, source = _windows(args)
    # the tail is held out of every window, those without usage too: enough with usage is
    # enough in all, and the fit keeps MIN_FIT_WINDOWS before its tail
    check_trainable(windows, source, args.validation_fraction, "--validation-fraction")
    started = time.monotonic()
    bundle = train_bundle(windows, config, progress=say)
    bundle.training["seconds"] = round(time.monotonic() - started, 3)
    save_bundle(bundle, args.out)
    accuracy = [a for a in bundle.validation.get("accuracy", []) if a is not None]
    mean = sum(accuracy) / len(accuracy) if accuracy else float("nan")
    say(
        f"wrote {args.out} (model {bundle.model.kind}, {len(bundle.series)} series, "
        f"validation accuracy mean {mean:.3f}, trained in {bundle.training['seconds']:.1f}s)"
    )
    kinds = Counter(bundle.model.series_kinds())
    if set(kinds) != {bundle.model.kind}:
        say("series per model kind: " + ", ".join(f"{k} {n}" for k, n in kinds.most_common()))
    drifting = [
        f"{c}/{r}" for (c, r), rate in zip(bundle.series, bundle.drift(), strict=True) if rate
    ]
    if drifting:
        shown = ", ".join(drifting[:5]) + (
            f" and {len(drifting) - 5} more" if len(drifting) > 5 else ""
        )
        say(
            f"usage drifted away from traffic in the validation tail of {len(drifting)} series "
            f"({shown}): their bands widen with the time since training; retrain to narrow them"
        )
    missed = _missed(bundle.series, bundle.validation.get("coverage", []), set(drifting))
    if missed:
        data_warning(
            f"the 90% band of {count_of(len(missed), 'series')} covered under "
            f"{MISSED_BELOW:.0%} of the validation tail's windows ({first_few(missed)}): on new "
            "windows expect bands to miss more often than 1 in 10, in these series and others "
            "like them; a longer recording, or one with the traffic to come, narrows the gap"
        )
    return 0


MISSED_BELOW = 0.5
"""Validation coverage of a 90% band under which a series is named at the end of training."""


def _missed(
    series: Sequence[SeriesKey], coverage: Sequence[float | None], named: set[str]
) -> list[str]:
    """Series (not already `named`) whose band covered under MISSED_BELOW of the validation
    tail, lowest first, with their coverage."""
    low = sorted(
        (c, f"{component}/{resource}")
        for (component, resource), c in zip(series, coverage, strict=False)
        if c is not None and c < MISSED_BELOW and f"{component}/{resource}" not in named
    )
    return [f"{name} {c:.0%}" for c, name in low]

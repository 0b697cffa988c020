"""`deeprest demo`: the whole story on a local testbed (or `--quick`, on the simulator)."""

from __future__ import annotations

import argparse
from pathlib import Path

from estimator.errors import InputError
from estimator.models import MODEL_KINDS
from estimator.training import TrainConfig, min_train_windows


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the simulator instead of real services (real Prometheus, Alertmanager and exporter; ~2 minutes)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("deeprest-demo"), help="report folder (./deeprest-demo)"
    )
    parser.add_argument("--window", type=float, help="window seconds (default 2 quick, 5 full)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of traffic and simulation (default 0)"
    )
    parser.add_argument(
        "--train-seconds", type=float, default=270.0, help="full demo: training traffic (270)"
    )
    parser.add_argument(
        "--phase-seconds", type=float, default=75.0, help="full demo: normal and 3x phases (75)"
    )
    parser.add_argument(
        "--model", choices=MODEL_KINDS, help="model kind (default: linear quick, xgboost full)"
    )
    parser.add_argument(
        "--no-install", action="store_true", help="never apt-get install missing binaries"
    )


FULL_WINDOW = 5.0
"""The full demo's window when --window is not given (seconds)."""
MAX_SECONDS = 86400.0
"""The longest training or test phase a demo runs (a day)."""


def run(args: argparse.Namespace) -> int:
    """Check the flags, then run the quick or the full demo."""
    from infra.local.demo import DemoOptions, run_demo

    if args.window is not None and not 1.0 <= args.window <= 60.0:
        raise InputError("must be between 1 and 60 seconds", field="--window")
    if not 60 <= args.train_seconds <= MAX_SECONDS:
        raise InputError(f"must be between 60 and {MAX_SECONDS:g} s", field="--train-seconds")
    if not 20 <= args.phase_seconds <= MAX_SECONDS:
        raise InputError(f"must be between 20 and {MAX_SECONDS:g} s", field="--phase-seconds")
    window = args.window if args.window is not None else FULL_WINDOW
    need = min_train_windows(TrainConfig.validation_fraction)  # the fraction the demo trains at
    if not args.quick and args.train_seconds / window < need + 1:
        raise InputError(
            f"{args.train_seconds:g} s of {window:g} s windows give under {need + 1} windows "
            f"(training needs {need} with usage, its validation tail counted, and the first "
            "may be partial): give more seconds, or a shorter --window",
            field="--train-seconds",
        )
    options = DemoOptions(
        out=args.out,
        quick=args.quick,
        window_s=args.window,
        seed=args.seed,
        train_s=args.train_seconds,
        phase_s=args.phase_seconds,
        model=args.model,
        install=not args.no_install,
    )
    return run_demo(options)

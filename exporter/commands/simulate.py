"""`deeprest simulate`: write the windows of a simulated scenario as a contract-1 dataset."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from estimator.errors import InputError
from estimator.simulator import SCENARIOS, SimulationConfig, run_simulation, to_windows
from estimator.simulator.config import DEFAULT_ATTACK_COMPONENT
from estimator.windows import write_windows
from exporter.commands.outputs import output_file, prepare_parent
from exporter.commands.ranges import parse_time


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", required=True, choices=SCENARIOS)
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--windows", type=int, help="windows to record (default: one day)")
    length.add_argument("--days", type=float, help="days to record")
    parser.add_argument(
        "--window-seconds", type=float, default=60.0, help="window length in seconds (default 60)"
    )
    parser.add_argument("--day-windows", type=int, help="windows per day (default: 24 h of them)")
    parser.add_argument("--seed", type=int, default=0, help="traffic seed (default 0)")
    parser.add_argument(
        "--app-seed", type=int, default=0, help="application seed: costs, caches (default 0)"
    )
    parser.add_argument(
        "--scale", type=float, help="users multiplier of the 'scale' scenario (default 3)"
    )
    parser.add_argument(
        "--users", type=float, default=1000.0, help="users at the daily peak (default 1000)"
    )
    parser.add_argument(
        "--attack-component",
        help="component the attack scenarios target (default: "
        + ", ".join(f"{c} for {s}" for s, c in DEFAULT_ATTACK_COMPONENT.items())
        + ")",
    )
    parser.add_argument(
        "--attack-start", type=int, help="first attacked window index (default: the middle)"
    )
    parser.add_argument(
        "--attack-length", type=int, help="attacked windows (default: a tenth of the run)"
    )
    parser.add_argument(
        "--start",
        help="start of the first window: Unix seconds or ISO 8601, UTC without a zone (default "
        "2023-01-01T00:00:00Z); a test day after the training days' end ages the bands as serve does",
    )
    parser.add_argument("--out", required=True, type=Path, help="dataset to write (JSON Lines)")


def config_from_args(args: argparse.Namespace) -> SimulationConfig:
    """The frozen simulation config of the command line."""
    probe = SimulationConfig(window_seconds=args.window_seconds, day_windows=args.day_windows)
    if args.days is not None:
        if not args.days > 0:
            raise InputError(f"must be positive, got {args.days}", field="--days")
        windows = max(1, round(args.days * probe.day))
    else:
        windows = probe.day if args.windows is None else args.windows
    if args.scale is not None and args.scenario != "scale":
        raise InputError(
            f"applies to the scale scenario only (not {args.scenario}); for more users on any "
            "scenario give --users",
            field="--scale",
        )
    return SimulationConfig(
        scenario=args.scenario,
        seed=args.seed,
        app_seed=args.app_seed,
        windows=windows,
        window_seconds=args.window_seconds,
        day_windows=args.day_windows,
        users=args.users,
        **({} if args.scale is None else {"scale": args.scale}),
        attack_component=args.attack_component,
        attack_start=args.attack_start,
        attack_length=args.attack_length,
        **({} if args.start is None else {"start": parse_time(args.start, "--start")}),
    )


def attack_sidecar(out: Path) -> Path:
    """Where the attack interval of a dataset is written: DATA.attack.json beside DATA.jsonl."""
    return out.with_suffix(".attack.json")


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    output_file(args.out, "--out")
    sim = run_simulation(config)
    windows = to_windows(sim)
    progress = tqdm(windows, desc="writing windows", unit="window", file=sys.stderr,
                    disable=len(windows) < 2000)  # fmt: skip
    try:
        written = write_windows(prepare_parent(args.out), progress)
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror}", source=str(args.out)) from exc
    interval = config.attack_interval()
    if interval is None:
        attack_sidecar(args.out).unlink(missing_ok=True)  # a dataset written before, with one
    else:
        first, end = interval
        sidecar = {
            "scenario": config.scenario,
            "component": config.target,
            "first_window": first,
            "end_window": end,
            "start": config.start + first * config.window_seconds,
            "end": config.start + end * config.window_seconds,
        }
        attack_sidecar(args.out).write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    print(
        f"wrote {written} windows of scenario {config.scenario} ({len(sim.series)} series, "
        f"{len(sim.paths)} call paths) to {args.out}",
        file=sys.stderr,
    )
    return 0

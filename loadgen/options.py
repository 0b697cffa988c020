"""The load shape's command-line options (shared by the locustfile; no Locust import here)."""

from __future__ import annotations

import math
from typing import Any

from estimator.errors import InputError
from loadgen.shapes import DiurnalSpec, LoadPlan, build

SHAPE_NAMES = ("diurnal", "scale", "shape", "composition", "constant")


def add_arguments(parser: Any) -> None:
    """Declare the shape options on an argparse-like parser."""
    group = parser.add_argument_group("DeepRest load shape")
    group.add_argument(
        "--shape",
        default="diurnal",
        choices=SHAPE_NAMES,
        help="diurnal, scale, shape, composition or constant (peak users throughout)",
    )
    group.add_argument("--period", type=float, default=120.0, help="nominal seconds per cycle")
    group.add_argument("--step", type=float, default=5.0, help="nominal seconds per stage")
    group.add_argument("--cycles", type=int, default=1, help="cycles to play")
    group.add_argument("--base-users", type=int, default=2, help="users between peaks")
    group.add_argument("--peak-users", type=int, default=20, help="users at the highest peak")
    group.add_argument("--noise", type=float, default=0.05, help="relative noise of users")
    group.add_argument("--seed", type=int, default=0, help="seed of peak heights and noise")
    group.add_argument("--compression", type=float, default=1.0, help="nominal s per real s")
    group.add_argument("--scale-k", type=float, default=3.0, help="peak factor of --shape scale")
    group.add_argument(
        "--rate-per-user",
        type=float,
        default=0.0,
        help="requests per second each user keeps pace with (0: think 0.2 to 1 s between requests)",
    )


def plan_from_options(options: Any) -> LoadPlan:
    """The LoadPlan described by parsed options; InputError naming the option that is wrong."""
    for name in ("base_users", "rate_per_user", "peak_users", "noise"):
        value = getattr(options, name, 0)
        if not (value >= 0 and math.isfinite(value)):
            raise InputError(f"must be >= 0, got {value}", field="--" + name.replace("_", "-"))
    for name in ("period", "step", "cycles", "compression"):
        value = getattr(options, name, 1)
        if not (value > 0 and math.isfinite(value)):
            raise InputError(f"must be > 0, got {value}", field="--" + name)
    if not (options.scale_k > 0 and math.isfinite(options.scale_k)):  # checked for any shape
        raise InputError(f"must be a finite number > 0, got {options.scale_k}", field="--scale-k")
    if options.base_users > options.peak_users:
        raise InputError(
            f"{options.base_users} is more than --peak-users {options.peak_users}: the peaks "
            "would be troughs",
            field="--base-users",
        )
    spec = DiurnalSpec(
        cycles=options.cycles,
        period_s=options.period,
        step_s=options.step,
        base_users=options.base_users,
        peak_users=options.peak_users,
        noise=options.noise,
        seed=options.seed,
        compression=options.compression,
    )
    return build(options.shape, spec, options.scale_k)

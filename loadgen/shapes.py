"""Load shapes as data: stage tables and API-mix schedules driven only by elapsed time."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from estimator.errors import InputError

API_NAMES: tuple[str, ...] = (
    "compose_post",
    "read_home_timeline",
    "read_user_timeline",
    "register",
    "follow",
    "upload_media",
)

DEFAULT_MIX: Mapping[str, float] = {
    "compose_post": 0.15,
    "read_home_timeline": 0.40,
    "read_user_timeline": 0.30,
    "register": 0.03,
    "follow": 0.07,
    "upload_media": 0.05,
}

# Mixes the composition scenario rotates through (weights are normalised on use).
COMPOSITION_MIXES: tuple[Mapping[str, float], ...] = (
    DEFAULT_MIX,
    {"compose_post": 0.45, "read_home_timeline": 0.15, "read_user_timeline": 0.15,
     "register": 0.05, "follow": 0.10, "upload_media": 0.10},
    {"compose_post": 0.10, "read_home_timeline": 0.20, "read_user_timeline": 0.20,
     "register": 0.05, "follow": 0.05, "upload_media": 0.40},
    {"compose_post": 0.05, "read_home_timeline": 0.60, "read_user_timeline": 0.30,
     "register": 0.02, "follow": 0.03, "upload_media": 0.0},
)  # fmt: skip


@dataclass(frozen=True)
class Stage:
    """Users and spawn rate until `end` nominal seconds after the start."""

    end: float
    users: int
    spawn_rate: float


def normalize_mix(mix: Mapping[str, float], source: str = "mix") -> dict[str, float]:
    """Weights scaled to sum to 1; negative, unknown or all-zero weights are an InputError."""
    for api, weight in mix.items():
        if api not in API_NAMES:
            raise InputError(f"unknown API {api!r}; expected one of {API_NAMES}", source=source)
        if not math.isfinite(weight) or weight < 0:
            raise InputError(f"weight of {api!r} must be a finite number >= 0", source=source)
    total = sum(mix.values())
    if total <= 0:
        raise InputError("weights must not all be zero", source=source)
    return {api: float(mix.get(api, 0.0)) / total for api in API_NAMES}


@dataclass(frozen=True)
class LoadPlan:
    """A stage table plus an API-mix schedule; `compression` nominal seconds pass per real second."""

    name: str
    stages: tuple[Stage, ...]
    mixes: tuple[tuple[float, Mapping[str, float]], ...] = ((math.inf, DEFAULT_MIX),)
    compression: float = 1.0
    _normalized: tuple[dict[str, float], ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        """Validate the tables once so that tick() and mix() cannot fail later."""
        if not self.stages:
            raise InputError("a load plan needs at least one stage", field="stages")
        if not (self.compression > 0 and math.isfinite(self.compression)):
            raise InputError("must be a finite number > 0", field="compression")
        ends = [s.end for s in self.stages]
        if any(b <= a for a, b in zip(ends, ends[1:], strict=False)) or ends[0] <= 0:
            raise InputError("stage ends must be positive and increasing", field="stages")
        if any(s.users < 0 or s.spawn_rate <= 0 for s in self.stages):
            raise InputError("users must be >= 0 and spawn_rate > 0", field="stages")
        if not self.mixes:
            raise InputError("a load plan needs at least one mix", field="mixes")
        normalized = tuple(normalize_mix(m, f"mixes[{i}]") for i, (_, m) in enumerate(self.mixes))
        object.__setattr__(self, "_normalized", normalized)

    @property
    def duration(self) -> float:
        """Real seconds the plan lasts."""
        return self.stages[-1].end / self.compression

    def tick(self, elapsed: float) -> tuple[int, float] | None:
        """(users, spawn_rate) at `elapsed` real seconds, or None once the plan is over."""
        nominal = max(elapsed, 0.0) * self.compression
        for stage in self.stages:
            if nominal < stage.end:
                return stage.users, stage.spawn_rate
        return None

    def mix(self, elapsed: float) -> dict[str, float]:
        """API weights (summing to 1) at `elapsed` real seconds; the last mix holds after the end."""
        nominal = max(elapsed, 0.0) * self.compression
        for (end, _), weights in zip(self.mixes, self._normalized, strict=True):
            if nominal < end:
                return dict(weights)
        return dict(self._normalized[-1])

    def scaled(self, k: float) -> LoadPlan:
        """The same plan with every stage's users (and spawn rate) multiplied by k."""
        if not (k > 0 and math.isfinite(k)):
            raise InputError("scale factor must be a finite number > 0", field="k")
        stages = tuple(Stage(s.end, int(round(s.users * k)), s.spawn_rate * k) for s in self.stages)
        return LoadPlan(f"{self.name}-x{k:g}", stages, self.mixes, self.compression)


@dataclass(frozen=True)
class DiurnalSpec:
    """Parameters of the diurnal generator (nominal seconds; peaks at 1/4 and 3/4 of each cycle)."""

    cycles: int = 1
    period_s: float = 86400.0
    step_s: float = 900.0
    base_users: int = 2
    peak_users: int = 20
    peak_low: float = 0.6
    noise: float = 0.05
    spawn_rate: float = 5.0
    seed: int = 0
    compression: float = 1.0


def _peak_heights(spec: DiurnalSpec) -> list[float]:
    """Two random peak heights per cycle, as fractions of peak_users, from the seed."""
    rng = random.Random(spec.seed)
    return [rng.uniform(spec.peak_low, 1.0) for _ in range(2 * spec.cycles)]


def _bump(t: float, center: float, width: float) -> float:
    """A Gaussian bump of height 1."""
    return math.exp(-0.5 * ((t - center) / width) ** 2)


def _trapezoid(t: float, center: float, half_hold: float, ramp: float) -> float:
    """A flat-topped bump of height 1: flat within half_hold of center, linear ramps outside."""
    d = abs(t - center)
    return 1.0 if d <= half_hold else max(0.0, 1.0 - (d - half_hold) / ramp)


def _profile(spec: DiurnalSpec, flat: bool) -> tuple[Stage, ...]:
    """Discretise the two-peak curve (Gaussian or flat-topped) into stages with seeded noise."""
    if spec.cycles < 1 or spec.period_s <= 0 or spec.step_s <= 0 or spec.peak_users < 0:
        raise InputError("cycles, period_s, step_s must be > 0 and peak_users >= 0", field="spec")
    heights = _peak_heights(spec)
    noise_rng = random.Random(spec.seed + 1)
    amplitude = spec.peak_users - spec.base_users
    total = spec.cycles * spec.period_s
    n_steps = int(math.ceil(total / spec.step_s - 1e-9))
    stages = []
    for i in range(n_steps):
        end = min((i + 1) * spec.step_s, total)  # a step that does not divide: the last cut short
        t = (i * spec.step_s + end) / 2
        cycle, phase = divmod(t, spec.period_s)
        cycle = min(cycle, spec.cycles - 1)
        level = 0.0
        for j, frac in enumerate((0.25, 0.75)):
            center, height = frac * spec.period_s, heights[2 * int(cycle) + j]
            if flat:
                shape = _trapezoid(phase, center, spec.period_s / 10, spec.period_s / 10)
            else:
                shape = _bump(phase, center, spec.period_s / 12)
            level = max(level, height * shape)
        jitter = 0.0 if flat and level >= 1.0 - 1e-9 else noise_rng.gauss(0.0, spec.noise)
        users = spec.base_users + amplitude * level * (1.0 + jitter)
        stages.append(Stage(end, max(0, int(round(users))), spec.spawn_rate))
    return tuple(stages)


def diurnal(spec: DiurnalSpec | None = None) -> LoadPlan:
    """Two peaks per cycle with random heights from the seed, plus noise."""
    spec = spec or DiurnalSpec()
    return LoadPlan("diurnal", _profile(spec, flat=False), compression=spec.compression)


def scale(k: float, spec: DiurnalSpec | None = None) -> LoadPlan:
    """The diurnal plan with peaks (and every stage) k times higher."""
    return diurnal(spec).scaled(k)


def shape(spec: DiurnalSpec | None = None) -> LoadPlan:
    """A different traffic shape: each peak is flat at the full peak_users for a while."""
    spec = spec or DiurnalSpec()
    flat_spec = DiurnalSpec(**{**spec.__dict__, "peak_low": 1.0})
    return LoadPlan("shape", _profile(flat_spec, flat=True), compression=spec.compression)


def composition(
    spec: DiurnalSpec | None = None,
    mixes: tuple[Mapping[str, float], ...] = COMPOSITION_MIXES,
    phase_s: float | None = None,
) -> LoadPlan:
    """The diurnal plan whose API mix rotates through `mixes`, one per phase of phase_s seconds."""
    spec = spec or DiurnalSpec()
    base = diurnal(spec)
    total = base.stages[-1].end
    phase_s = phase_s or total / len(mixes)
    if phase_s <= 0:
        raise InputError("must be > 0", field="phase_s")
    n = int(math.ceil(total / phase_s))
    table = tuple(((i + 1) * phase_s, mixes[i % len(mixes)]) for i in range(n))
    return LoadPlan("composition", base.stages, table, spec.compression)


def constant(spec: DiurnalSpec | None = None) -> LoadPlan:
    """peak_users for cycles * period_s: one step of a step load test. Every user starts within
    the first second (or at spawn_rate, if faster), so the step's load is its load throughout."""
    spec = spec or DiurnalSpec()
    if spec.cycles < 1 or spec.period_s <= 0 or spec.peak_users < 0:
        raise InputError("cycles, period_s must be > 0 and peak_users >= 0", field="spec")
    spawn = max(spec.spawn_rate, float(spec.peak_users))
    stage = Stage(spec.cycles * spec.period_s, spec.peak_users, spawn)
    return LoadPlan("constant", (stage,), compression=spec.compression)


def build(name: str, spec: DiurnalSpec, k: float = 3.0) -> LoadPlan:
    """The plan called `name` (diurnal, scale, shape, composition or constant)."""
    builders = {
        "constant": lambda: constant(spec),
        "diurnal": lambda: diurnal(spec),
        "scale": lambda: scale(k, spec),
        "shape": lambda: shape(spec),
        "composition": lambda: composition(spec),
    }
    if name not in builders:
        raise InputError(
            f"unknown shape {name!r}; expected one of {sorted(builders)}", field="shape"
        )
    return builders[name]()

"""Parameters of one simulation run: the scenario, its traffic and its attack, as one frozen object."""

from __future__ import annotations

import math
from dataclasses import dataclass

from estimator.errors import InputError

SCENARIOS: tuple[str, ...] = ("normal", "scale", "shape", "composition", "crypto", "ransomware")
"""Scenario names, after the DeepRest load generator (plus the two attacks)."""

ATTACKS: tuple[str, ...] = ("crypto", "ransomware")
"""Scenarios with an attack interval."""

DEFAULT_ATTACK_COMPONENT: dict[str, str] = {
    "crypto": "user-timeline",
    "ransomware": "post-storage-mongodb",
}
"""The component each attack scenario targets unless told otherwise."""

NOISE_SIGMA = 0.05
"""Measurement noise: each value is its oracle times (1 + NOISE_SIGMA * N(0, 1)), independently."""

DAY_SECONDS = 86400.0


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate; traffic is seeded by `seed`, the application by `app_seed`."""

    scenario: str = "normal"
    seed: int = 0
    windows: int = 1440
    window_seconds: float = 60.0
    day_windows: int | None = None  # windows per "day"; default: a day of real time
    users: float = 1000.0  # users at the day's nominal peak
    user_rate: float = 0.3  # requests per second per user
    scale: float = 3.0  # users multiplier of the `scale` scenario
    warmup_days: float = 1.0  # simulated before the first recorded window
    attack_component: str | None = None  # default per scenario, DEFAULT_ATTACK_COMPONENT
    attack_start: int | None = None  # recorded window index; default: the middle
    attack_length: int | None = None  # windows; default: a tenth of the run
    attack_cpu: float = 0.5  # extra cores while attacked
    attack_iops: float = 300.0  # extra write operations/s (ransomware)
    attack_io_bytes: float = 65536.0  # bytes per extra write operation (ransomware)
    noise: float = NOISE_SIGMA
    app_seed: int = 0
    start: float = 1_672_531_200.0  # start of the first recorded window, seconds since the epoch

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise InputError(
                f"unknown scenario {self.scenario!r}; choose one of {', '.join(SCENARIOS)}",
                field="scenario",
            )
        _positive_int(self.windows, "windows")
        _positive(self.window_seconds, "window_seconds")
        if self.day_windows is not None:
            _positive_int(self.day_windows, "day_windows")
        for name in ("users", "user_rate", "scale"):
            _positive(getattr(self, name), name)
        for name in ("warmup_days", "attack_cpu", "attack_iops", "attack_io_bytes", "noise"):
            _non_negative(getattr(self, name), name)
        if self.attack_start is not None and not 0 <= self.attack_start < self.windows:
            raise InputError(f"must be in [0, {self.windows})", field="attack_start")
        if self.attack_length is not None:
            _positive_int(self.attack_length, "attack_length")
        if self.scenario not in ATTACKS:
            for name in ("attack_component", "attack_start", "attack_length"):
                if getattr(self, name) is not None:
                    raise InputError(
                        f"applies to the attack scenarios ({', '.join(ATTACKS)}) only", field=name
                    )
        elif (
            self.attack_start is not None
            and self.attack_length is not None
            and self.attack_start + self.attack_length > self.windows
        ):
            raise InputError(
                f"the attack from window {self.attack_start} would run past the "
                f"{self.windows} windows recorded",
                field="attack_length",
            )

    @property
    def day(self) -> int:
        """Windows per simulated day."""
        if self.day_windows is not None:
            return self.day_windows
        return max(1, round(DAY_SECONDS / self.window_seconds))

    @property
    def warmup(self) -> int:
        """Windows simulated before recording, so caches are in their steady state."""
        return round(self.warmup_days * self.day)

    @property
    def target(self) -> str | None:
        """The attacked component, or None for a scenario without an attack."""
        if self.scenario not in ATTACKS:
            return None
        return self.attack_component or DEFAULT_ATTACK_COMPONENT[self.scenario]

    def attack_interval(self) -> tuple[int, int] | None:
        """[first, end) recorded window indices of the attack, or None without one."""
        if self.target is None:
            return None
        first = self.windows // 2 if self.attack_start is None else self.attack_start
        length = max(1, self.windows // 10) if self.attack_length is None else self.attack_length
        return first, min(self.windows, first + length)


def _positive(value: float, name: str) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InputError(f"must be a finite positive number, got {value!r}", field=name)


def _non_negative(value: float, name: str) -> None:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise InputError(f"must be a finite non-negative number, got {value!r}", field=name)


def _positive_int(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(f"must be a positive integer, got {value!r}", field=name)

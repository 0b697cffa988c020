"""A latency objective (`--slo p99=100ms`) and the number check every load-test reader shares."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from estimator.errors import InputError

UNIT_SECONDS = {"ms": 1e-3, "s": 1.0}


@dataclass(frozen=True)
class Objective:
    """A latency objective: the percentile (or 'mean') must stay at or under `seconds`."""

    statistic: str  # "p99", "p50", "mean"
    seconds: float

    def columns(self) -> list[tuple[str, float]]:
        """Column names that may hold the statistic, with the factor from their unit to seconds."""
        s = self.statistic
        names = [(f"latency_{s}_ms", 1e-3), (f"{s}_ms", 1e-3), (f"latency_{s}_s", 1.0)]
        names.append((f"{s}_s", 1.0))
        if s == "mean":
            names.append(("Average Response Time", 1e-3))
        else:
            names.append((f"{s[1:]}%", 1e-3))  # Locust: "99%", in milliseconds
            names.append((f"{s[1:]}% Line", 1e-3))  # JMeter: "99% Line", in milliseconds
        return names

    def __str__(self) -> str:
        return f"{self.statistic} <= {self.seconds * 1e3:g} ms"


def parse_objective(text: str) -> Objective:
    """'p99=100ms', 'p95=0.25s' or 'mean=40ms'."""
    match = re.fullmatch(
        r"\s*(p\d{1,2}(?:\.\d+)?|p99\d+|mean)\s*=\s*(-?(?:\d+\.?\d*|\.\d+))\s*(ms|s)\s*", text
    )
    if match is None:
        raise InputError(
            f"bad objective {text!r}: write it as p99=100ms, p95=0.25s, p99.9=1s or mean=40ms",
            field="slo",
        )
    seconds = float(match.group(2)) * UNIT_SECONDS[match.group(3)]
    if not seconds > 0:
        raise InputError(f"bad objective {text!r}: the latency must be positive", field="slo")
    statistic = match.group(1)
    if statistic != "mean" and not float(statistic[1:]) > 0:
        raise InputError(
            f"bad objective {text!r}: the percentile must be above 0 (p50, p99)", field="slo"
        )
    if re.fullmatch(r"p99\d+", statistic):  # p999 is p99.9, as wrk2 summaries name columns
        statistic = f"p99.{statistic[3:]}"
    return Objective(statistic, seconds)


def number(text: str, source: str, line: int, field: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"not a number: {text!r}", source=source, line=line, field=field) from None
    if not math.isfinite(value) or value < 0:
        raise InputError(
            f"must be finite and non-negative, is {text!r}", source=source, line=line, field=field
        )
    return value

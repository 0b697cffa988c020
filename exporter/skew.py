"""Spans timed far from the exporter's clock, found on arrival: the client hears of its clock in
the response (refused spans or a warning), the operator in one log line, not in counters only."""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field

from estimator.errors import count_of
from estimator.spans import NS_PER_S
from exporter.receiver import Decoded

log = logging.getLogger("deeprest.receiver")

MAX_LATENESS = 3600.0
"""Seconds before the oldest open window within which a span is merely late (a retry, a
restart's catch-up): it is taken, and its trace counted `late` when it closes. A span older
than that tells of a client's clock (unset, in 1970; microseconds written as nanoseconds)."""
MAX_AHEAD = 60.0
"""Seconds after the exporter's clock (or one window, where longer) a span may end before the
client is told that its clock runs ahead."""
LOG_SECONDS = 600.0
"""Seconds between two log lines of clients' skew at least."""
SHOWN = 3
"""Services a message names, at most."""

Key = tuple[bytes, bytes]  # trace id, span id


@dataclass(frozen=True)
class Reach:
    """Span end times in ns, as the exporter places them at one moment."""

    now: int
    earliest: int  # ends before it land in no window
    ahead: int  # ends after it come from a clock ahead
    latest: int  # ends from it on land in no window

    @classmethod
    def of(cls, now: float, oldest: float, horizon: float, window: float) -> Reach:
        """`oldest`: the start of the oldest open window; `horizon`: the end of the furthest
        window a span may open (see WindowAggregator.reach)."""
        return cls(
            round(now * NS_PER_S),
            round((oldest - MAX_LATENESS) * NS_PER_S),
            round((now + max(MAX_AHEAD, window)) * NS_PER_S),
            round(horizon * NS_PER_S),
        )


@dataclass
class Skew:
    """What one request showed of its clients' clocks."""

    offsets: dict[str, float] = field(default_factory=dict)  # seconds, the nearest per service
    refused: int = 0
    kept: int = 0
    micro: bool = False  # some spans would be on time read as microseconds

    def describe(self) -> str:
        """'spans from SERVICE end N s before (or after) the exporter's clock', per service."""
        parts = []
        for service, seconds in sorted(self.offsets.items())[:SHOWN]:
            side = "before" if seconds < 0 else "after"
            parts.append(
                f"spans from {service} end {_seconds(seconds)} s {side} the exporter's clock"
            )
        more = len(self.offsets) - SHOWN
        text = "; ".join(parts) + (f"; and {count_of(more, 'service')} more" if more > 0 else "")
        if self.micro:
            text += " (times in microseconds? OTLP's are in nanoseconds since 1970)"
        return text


def _seconds(value: float) -> str:
    """1.8e9, 7200: few digits, no exponent's plus sign and padding."""
    value = abs(value)
    if value < 1e5:
        return f"{value:.0f}"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def check_times(decoded: Decoded, reach: Reach) -> Skew:
    """Refuse as `bad_time` the spans whose end lands in no window and whose way up to their
    trace's root lies among such spans of this request: a trace counts in its root's window, so
    it would be dropped as `late` once closed. Keep the other spans far off, with a warning: a
    span ahead within the horizon opens a window of its time, and one below a root from another
    client (a clock of its own) counts in that root's window."""
    skew = Skew()
    nowhere: dict[Key, bytes] = {}
    for tid, sid, parent, component, _, end, _, _ in decoded.spans:
        lost = end < reach.earliest or end >= reach.latest
        if lost:
            nowhere[(tid, sid)] = parent
            skew.micro = skew.micro or reach.earliest <= end * 1000 < reach.latest
        if lost or end > reach.ahead:
            seconds = (end - reach.now) / NS_PER_S
            if abs(seconds) < abs(skew.offsets.get(component, math.inf)):
                skew.offsets[component] = seconds
    if not skew.offsets:
        return skew
    dropped = _rooted_among(nowhere)
    n = len(decoded.spans)
    if dropped:
        decoded.spans = [s for s in decoded.spans if (s[0], s[1]) not in dropped]
        skew.refused = n - len(decoded.spans)
        decoded.rejected["bad_time"] = decoded.rejected.get("bad_time", 0) + skew.refused
    # far behind below a root sent elsewhere, or ahead
    kept = skew.kept = sum(1 for s in decoded.spans if not reach.earliest <= s[5] <= reach.ahead)
    text = skew.describe()
    if skew.refused:
        text += f": {count_of(skew.refused, 'span')} in no window the exporter keeps open"
    if kept:
        text += f"{',' if skew.refused else ':'} {count_of(kept, 'span')} kept, counted in the "
        text += "window of their trace root's end"
    decoded.warnings.append(f"{text}; check the client's clock")
    return skew


def _rooted_among(spans: dict[Key, bytes]) -> set[Key]:
    """The spans whose chain of parents up to a root (no parent) lies wholly in `spans`."""
    known: dict[Key, bool] = {}
    for key in spans:
        chain: list[Key] = []
        at = key
        rooted = False
        while at in spans and at not in known:
            known[at] = False  # until shown otherwise: a parent cycle reaches no root
            chain.append(at)
            parent = spans[at]
            if not parent:
                rooted = True
                break
            at = (at[0], parent)
        else:
            rooted = known.get(at, False)
        for step in chain:
            known[step] = rooted
    return {key for key, rooted in known.items() if rooted}


class SkewLog:
    """One warning at most every LOG_SECONDS naming the skew of clients' clocks, with the
    spans far off since the last one."""

    def __init__(self) -> None:
        self._at = -math.inf
        self._since = 0
        self._lock = threading.Lock()

    def note(self, skew: Skew, now: float) -> None:
        if not skew.offsets:
            return
        with self._lock:
            self._since += skew.refused + skew.kept
            if now - self._at < LOG_SECONDS:
                return
            self._at, since, self._since = now, self._since, 0
        log.warning(
            "%s: %d refused as bad_time, %d kept in this request, %s since the last such line; "
            "check the clients' clocks (NTP) and that they write nanoseconds",
            skew.describe(),
            skew.refused,
            skew.kept,
            count_of(since, "such span"),
        )

"""`--from` / `--to` of the commands that read windows: a time, or a share of a dataset.

A bound is unix seconds, an ISO 8601 time (UTC when no zone is given) or, on a dataset, a
percentage of its windows in time order: `--to 60%` keeps the first 60%, `--from 60%` the rest,
which is how a single recording is split into training and test windows. A window belongs to the
range when its start is at or after `--from` and before `--to`; the windows before `--from` still
feed the estimates' traffic history, as they would have fed the live exporter.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from estimator.bundle import Bundle
from estimator.errors import InputError, count_of, data_warning, first_few, utc_time
from estimator.importers.common import RECENT_SECONDS
from estimator.training import ODD_WINDOWS, window_seconds_of
from estimator.windows import Pair, Window, api_counts, api_depth, api_of


@dataclass(frozen=True)
class Bound:
    """A range end: unix seconds, or a share (0 to 1) of a dataset's windows."""

    seconds: float | None = None
    share: float | None = None


def parse_time(text: str, flag: str) -> float:
    """Unix seconds or an ISO 8601 time (UTC when no zone is given)."""
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise InputError(f"'{text}' is not a time", field=flag)
        return value
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"'{text}' is neither unix seconds nor ISO 8601", field=flag) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_bound(text: str, flag: str) -> Bound:
    """A time (see `parse_time`) or a percentage such as `60%`."""
    if text.strip().endswith("%"):
        try:
            percent = float(text.strip()[:-1])
        except ValueError:
            percent = math.nan
        if not 0.0 <= percent <= 100.0:
            raise InputError(f"'{text}' is not a percentage from 0% to 100%", field=flag)
        return Bound(share=percent / 100.0)
    return Bound(seconds=parse_time(text, flag))


def span(windows: Sequence[Window], start: str | None, end: str | None, source: str) -> slice:
    """The positions of a dataset's windows inside `--from start --to end` (either may be None);
    a `--from` at or after `--to` is refused as such."""
    lo, hi = 0, len(windows)
    first = last = None
    if start is not None:
        first = (start, _bound_of(windows, start, "--from", source))
        lo = _index(windows, first[1])
    if end is not None:
        last = (end, _bound_of(windows, end, "--to", source))
        hi = _index(windows, last[1])
    if first is not None and last is not None and windows:
        _check_bounds_order(windows, first, last, source)
    if hi <= lo:
        bounds = " and ".join(f"{flag} {v}" for flag, v in (("--from", start), ("--to", end)) if v)
        raise InputError(
            f"no windows within {bounds} ({len(windows)} in the dataset)", source=source
        )
    return slice(lo, hi)


def select(
    windows: Sequence[Window], start: str | None, end: str | None, source: str
) -> list[Window]:
    """The windows of a dataset inside `--from start --to end` (either may be None)."""
    return list(windows[span(windows, start, end, source)])


def check_order(start: str, first: float, end: str, last: float, source: str | None = None) -> None:
    """Refuse `--from start` at or after `--to end` (`first`, `last`: their times, resolved):
    the range would hold no window, by no fault of the data."""
    if first >= last:
        raise _out_of_order(start, first, end, last, source)


def _out_of_order(
    start: str, first: float, end: str, last: float, source: str | None
) -> InputError:
    return InputError(
        f"--from {start} ({utc_time(first)}) is not before --to {end} ({utc_time(last)})",
        source=source,
    )


def time_range(start: str, end: str) -> tuple[float, float]:
    """`--from start --to end` as unix seconds (times only: no dataset to take a share of)."""
    first, last = parse_time(start, "--from"), parse_time(end, "--to")
    check_order(start, first, end, last)
    return first, last


def add_range_arguments(parser: argparse.ArgumentParser, verb: str) -> None:
    """`--from` and `--to` of a command that estimates the windows of a dataset."""
    parser.add_argument(
        "--from",
        dest="start",
        help=f"{verb} windows from here: unix seconds, ISO 8601 or a share such as 60%%",
    )
    parser.add_argument("--to", dest="end", help=f"{verb} windows before this (same forms)")


def predict_range(
    bundle: Bundle,
    windows: Sequence[Window],
    part: slice,
    source: str,
) -> tuple[list[Window], np.ndarray]:
    """The windows at `part` (see `span`) and their estimates [windows, series, 3].

    The windows before the range are read as the live exporter would have read them: they feed the
    traffic history and the models' look-back, so the first estimates of the range are not cold.
    The data is checked against the bundle first (`check_traffic`).
    """
    check_traffic(bundle, windows[: part.stop], source)
    pred, _ = bundle.predict(windows[: part.stop])
    return list(windows[part]), pred[part.start :]


UNSEEN_WARNING = 0.01
"""Share of a dataset's API calls, of APIs the model never saw, above which it says so."""


def check_window_length(bundle: Bundle, windows: Sequence[Window], source: str) -> None:
    """Refuse windows of another length than the bundle's: counts per window mean another
    thing, and so does the history's decay."""
    if not windows:
        return
    width = window_seconds_of(windows)
    if abs(width - bundle.window_seconds) > 0.01 * bundle.window_seconds:
        raise InputError(
            f"windows of {width:g} s; the model was trained on windows of "
            f"{bundle.window_seconds:g} s (import or simulate with that window)",
            source=source,
        )
    odd = [w for w in windows if abs((w.end - w.start) - width) > 0.01 * width]
    if len(odd) > ODD_WINDOWS * len(windows):  # as many as train refuses
        raise InputError(
            f"{len(odd)} of {len(windows)} windows are not of the model's {width:g} s, the "
            f"first from {utc_time(odd[0].start)} to {utc_time(odd[0].end)}: their calls per "
            "window mean another thing (choose a range of one length with --from and --to)",
            source=source,
        )


def check_traffic(bundle: Bundle, windows: Sequence[Window], source: str) -> None:
    """Refuse windows the bundle cannot read: another window length (counts per window mean
    another thing, and so does the history's decay), or traffic of none of its APIs (another
    application). Warn where part of the calls are of APIs never seen in training: the per-API
    "other" features they count in had few calls or none in training, so the model gives them
    little or no cost, and names the components whose estimates then fall short; and where
    components with spans in training have none (renamed, or no longer traced), whose estimates
    are then idle usage."""
    check_window_length(bundle, windows, source)
    calls: dict[tuple[str, str], float] = {}
    for window in windows:
        for api, n in api_counts(window.calls).items():
            calls[api] = calls.get(api, 0.0) + n
    total = sum(calls.values())
    if total <= 0:
        return
    known = set(bundle.vocabulary.apis)
    unseen = {api: n for api, n in calls.items() if api not in known}
    share = sum(unseen.values()) / total
    names = ", ".join(f"{c}:{o}" for c, o in sorted(unseen, key=lambda a: -unseen[a])[:3])
    if share >= 1.0 and known:  # a model that kept no API (all too rare) refuses nothing
        seen = ", ".join(f"{c}:{o}" for c, o in bundle.vocabulary.apis[:3])
        raise InputError(
            f"none of its {len(calls)} APIs ({names}, ...) was seen in training (the model knows "
            f"{len(known)}: {seen}, ...); is the model one of this application?",
            source=source,
        )
    if share > UNSEEN_WARNING:
        reached = _reached(windows, set(unseen))
        data_warning(
            f"{share:.0%} of the API calls in {source} are of {count_of(len(unseen), 'API')} never "
            f"seen in training, or too rare to keep ({names}); the model charges their calls what "
            "its 'other' features cost in training, little or nothing where training had few "
            "such calls, so the estimates of the components they reach may leave out their "
            f"work: {first_few(reached)}"
        )
    traced = {path[-1][0] for window in windows for path, n in window.calls.items() if n > 0}
    estimated = {component for component, _ in bundle.series}
    silent = [c for c in bundle.vocabulary.components if c in estimated and c not in traced]
    if silent:
        data_warning(
            f"{count_of(len(silent), 'component')} with spans in training but none in {source}, "
            f"estimated at their idle usage: {first_few(silent)} (renamed, or no longer traced?)"
        )


def _reached(windows: Sequence[Window], apis: set[Pair]) -> list[str]:
    """The components with spans in the calls of `apis`, those with the most spans first."""
    spans: dict[str, float] = {}
    for window in windows:
        for path, count in window.calls.items():
            if len(path) >= api_depth(path) and api_of(path) in apis:
                spans[path[-1][0]] = spans.get(path[-1][0], 0.0) + count
    return sorted(spans, key=lambda component: -spans[component])


LIKE_A_SHARE = 100.0
"""A bare number under this, given as a time of 1970 for a dataset of this century, is taken for
a share that lacks its %."""


def _bound_of(windows: Sequence[Window], text: str, flag: str, source: str) -> Bound:
    """The bound `text` of `flag`; a bare number that is a time before 2001, for windows of this
    century, is refused (as a time it would keep every window, or none): a number such as 60
    is taken for a share that lacks its '%'."""
    bound = parse_bound(text, flag)
    seconds = bound.seconds
    if (
        seconds is not None
        and windows
        and seconds < RECENT_SECONDS[0] <= windows[0].start
        and is_number(text)
    ):
        share = (
            f": for a share of the windows write {text.strip()}%"
            if 0 < seconds < LIKE_A_SHARE
            else " (write unix seconds, an ISO 8601 time, or a share such as 60%)"
        )
        raise InputError(
            f"{text} is read as unix seconds ({utc_time(seconds)}), before the first window "
            f"({utc_time(windows[0].start)}){share}",
            source=source,
            field=flag,
        )
    return bound


def is_number(text: str) -> bool:
    """Whether a text reads as a float (`inf` and `nan` too)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_bounds_order(
    windows: Sequence[Window], first: tuple[str, Bound], last: tuple[str, Bound], source: str
) -> None:
    """Refuse a `--from` (text, bound) at or after the `--to`, on a non-empty dataset: shares
    compared as shares (50.1% and 50.2% may fall on one window), else the times they stand for."""
    (start, low), (end, high) = first, last
    t0, t1 = _seconds(windows, low), _seconds(windows, high)
    if low.share is not None and high.share is not None:
        wrong = low.share >= high.share
    else:
        wrong = t0 >= t1
    if wrong:
        raise _out_of_order(start, t0, end, t1, source)


def _seconds(windows: Sequence[Window], bound: Bound) -> float:
    """The time a bound stands for on a (non-empty) dataset: a share's is the start of the
    window it falls on, or the last window's end."""
    if bound.seconds is not None:
        return bound.seconds
    i = _index(windows, bound)
    return windows[i].start if i < len(windows) else windows[-1].end


def _index(windows: Sequence[Window], bound: Bound) -> int:
    """The first window at or after the bound (windows are in time order)."""
    if bound.share is not None:
        return int(round(len(windows) * bound.share))
    assert bound.seconds is not None
    return next((i for i, w in enumerate(windows) if w.start >= bound.seconds), len(windows))


__all__ = [
    "Bound",
    "add_range_arguments",
    "check_order",
    "check_traffic",
    "parse_bound",
    "parse_time",
    "predict_range",
    "select",
    "span",
    "time_range",
]

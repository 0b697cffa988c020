"""`deeprest import`: convert traces (and Train-Ticket style metrics) into a window dataset."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from tqdm import tqdm

from estimator.errors import InputError, count_of, data_warning
from estimator.features import MAX_APIS
from estimator.importers import FORMATS, STAMPS, import_windows
from estimator.importers.common import check_window_seconds
from estimator.spans import MAX_PATH_DEPTH, Tally, check_sampling_ratio
from estimator.windows import Pair, Window, api_counts, write_windows
from exporter.commands.outputs import output_file, prepare_parent
from exporter.config import parse_duration
from exporter.progress import Phases

PROGRESS_SECONDS = 5.0
"""Without a terminal for the bar, a line of progress this often."""


def configure(parser: argparse.ArgumentParser) -> None:
    """Flags of `deeprest import`."""
    parser.add_argument("--format", required=True, choices=sorted(FORMATS), dest="fmt")
    parser.add_argument(
        "--input",
        required=True,
        help="a file, a directory (not its subfolders) or a quoted glob of files or folders "
        "(trainticket: the folder holding trace/, or a folder of such recordings, read as one)",
    )
    parser.add_argument(
        "--metrics", help="folder of <pod>_metric.csv[.gz] files to join (Train-Ticket layout)"
    )
    parser.add_argument(
        "--metrics-stamp",
        choices=STAMPS,
        default="end",
        help="what a metric row's time marks of the interval its usage was measured over: the "
        "end (Prometheus, cAdvisor) or the start; a row joins the window holding the interval's "
        "middle (default end)",
    )
    parser.add_argument(
        "--window",
        default="60",
        help="window width: seconds, or a duration such as 30s or 5m (default 60)",
    )
    parser.add_argument(
        "--keep-gateway-spans",
        action="store_true",
        help="keep the spans of a catch-all gateway root in the call paths (folded by default); "
        "they then stand where APIs do, and become the APIs",
    )
    parser.add_argument(
        "--sampling-ratio",
        type=float,
        default=1.0,
        help="share of traces the recording kept, for traces whose spans do not say (an OTLP "
        "`ot=th:` tracestate or Jaeger's probabilistic sampler tags say); each stands for "
        "1 / ratio requests (default 1: unsampled)",
    )
    parser.add_argument("--out", required=True, help="window dataset to write (JSON Lines)")


def _whole_seconds(text: str, flag: str) -> int:
    """A duration (`60`, `30s`, `5m`) as whole seconds, as windows are cut on the second."""
    seconds = parse_duration(text, flag)
    if not seconds.is_integer():
        raise InputError(f"must be a whole number of seconds, got {text!r}", field=flag)
    return int(seconds)


def run(args: argparse.Namespace) -> int:
    """Import, then write the windows; progress per file goes to stderr."""
    window = check_window_seconds(_whole_seconds(args.window, "--window"))
    check_sampling_ratio(args.sampling_ratio, "--sampling-ratio")
    out = output_file(args.out, "--out", [("--input", args.input), ("--metrics", args.metrics)])
    say = Phases("import")
    tally = Tally()
    with tqdm(desc="import", unit="file", file=sys.stderr, disable=None) as bar:
        files, last = [0], [time.monotonic()]

        def done(_path: Path) -> None:
            bar.update(1)
            files[0] += 1
            if bar.disable and time.monotonic() - last[0] >= PROGRESS_SECONDS:  # no terminal
                last[0] = time.monotonic()
                say(f"{files[0]} files read")

        windows = import_windows(
            args.fmt,
            args.input,
            metrics=args.metrics,
            window_seconds=window,
            on_file=done,
            fold_gateway=not args.keep_gateway_spans,
            sampling_ratio=args.sampling_ratio,
            stamp=args.metrics_stamp,
            tally=tally,
        )
    if not windows:
        raise InputError("holds no spans or traces", source=str(args.input))
    n = write_windows(prepare_parent(out), windows)
    calls = sum(sum(w.calls.values()) for w in windows)  # spans, each on its path (sampled: scaled)
    paths = {path for w in windows for path in w.calls}
    with_metrics = sum(1 for w in windows if w.metrics)
    with_latency = sum(1 for w in windows if w.latency)
    seen_in = Counter(api for w in windows for api in api_counts(w.calls))  # windows per API
    apis = set(seen_in)
    print(read_summary(tally), file=sys.stderr)
    print(
        f"wrote {count_of(n, 'window')} ({calls:.0f} calls on {count_of(len(paths), 'call path')}, "
        f"{count_of(len(apis), 'API')}, {with_metrics} with "
        f"metrics, {with_latency} with API latency) to {out}",
        file=sys.stderr,
    )
    single_api_note(windows, apis)
    rare_api_note(len(windows), seen_in)
    if not with_metrics:
        no_usage_note(args.fmt, args.metrics)
    return 0


def read_summary(tally: Tally) -> str:
    """What the import read, for a check that nothing was lost silently: spans read, traces
    assembled, spans skipped as given twice, spans left out (and why)."""
    why = [
        f"{tally.conflicts} of colliding ids" if tally.conflicts else "",
        f"{tally.too_deep} below call depth {MAX_PATH_DEPTH}" if tally.too_deep else "",
    ]
    reasons = ", ".join(w for w in why if w)
    return (
        f"read {count_of(tally.spans, 'span')} of {count_of(tally.traces, 'trace')} "
        f"({count_of(tally.duplicates, 'duplicate span')} skipped, "
        f"{count_of(tally.left_out, 'span')} left out{': ' + reasons if reasons else ''})"
    )


def no_usage_note(fmt: str, metrics: str | None) -> None:
    """Warn that no window carries usage: `train` refuses such a dataset."""
    if metrics is not None:
        how = "the files of --metrics gave no usage for any window"
    elif fmt == "trainticket":
        how = (
            "the recording has no metric/ folder: give the per-pod metric files with --metrics DIR"
        )
    else:
        how = "give the per-pod metric files (<pod>_metric.csv[.gz]) with --metrics DIR"
    data_warning(
        f"no window carries usage (CPU, memory), so `deeprest train` will refuse this dataset: "
        f"{how}"
    )


def rare_api_note(n_windows: int, seen_in: Mapping[Pair, int]) -> None:
    """Say so where many APIs are seen in one window only (`seen_in`: windows per API):
    operation names that carry ids make an API of every request, and training keeps only APIs
    seen in two windows or more."""
    once = sorted(api for api, n in seen_in.items() if n == 1)
    if n_windows >= 3 and len(once) > max(10, len(seen_in) // 2):
        shown = ", ".join(f"{c}:{o}" for c, o in once[:3])
        print(
            f"deeprest import: warning: {count_of(len(once), 'API')} of {len(seen_in)} "
            f"are seen in one window only ({shown}, ...): operation names that carry ids or "
            "raw URLs make an API of every request; training counts such APIs as one unknown "
            f"API (and keeps at most the {MAX_APIS} most called)",
            file=sys.stderr,
        )


def single_api_note(windows: list[Window], apis: set[Pair]) -> None:
    """Say so where every request is of one API that fans out to several operations: a gateway
    root that names no API (the API is then the step below it, see README)."""
    if len(apis) != 1:
        return
    (api,) = apis
    below = {p[1] for w in windows for p in w.calls if len(p) == 2 and p[0] == api}
    if len(below) >= 2:
        print(
            f"deeprest import: warning: every request is of one API, {api[0]}:{api[1]}, which "
            f"calls {len(below)} operations below it: if that root is a gateway, per-API "
            "traffic (what-if rates, capacity per API) sees one API only; a root operation "
            "ending in /* or /** is read as a gateway",
            file=sys.stderr,
        )

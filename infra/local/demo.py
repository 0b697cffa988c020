"""`deeprest demo`: the whole story on one machine, from traffic to a fired alert and a report.

Two stories share this module: the full demo drives the local testbed (real services under
Locust load, see `demo_full`), `--quick` drives the application simulator (see `demo_quick`).
Both run a real Prometheus with DeepRest's rules, a real Alertmanager and a real
`deeprest serve` as child processes, and stop every one of them on the way out, Ctrl-C included.

Time is compressed: windows last a few seconds instead of a minute, so the rules are loaded from a
temporary copy in which every `for:` and range-selector duration is multiplied by window / 60 s
(`compress_durations`): `for: 10m` becomes 50 s with 5 s windows. Expressions and thresholds are
untouched.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

from exporter.store import holder
from infra.local import demo_files
from infra.local.procs import Managed, TestbedError, http_ok, start, wait_ready

REPO_ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = REPO_ROOT / "grafana-dashboards" / "rules"
CPU_ALERT = "DeepRestCPUNotExplainedByTraffic"
DISK_ALERT = "DeepRestDiskWritesNotExplainedByTraffic"
BINARIES: dict[str, tuple[str, str]] = {
    "prometheus": ("/usr/bin/prometheus", "prometheus"),
    "alertmanager": ("/usr/bin/prometheus-alertmanager", "prometheus-alertmanager"),
    "redis": ("/usr/bin/redis-server", "redis-server"),
}
"""Part -> (binary the demo runs, Debian package that provides it)."""
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class DemoOptions:
    """What one demo run does; built once by the command."""

    out: Path = Path("deeprest-demo")
    quick: bool = False
    window_s: float | None = None  # default: 2 s quick, 5 s full
    seed: int = 0
    train_s: float = 270.0  # full demo: seconds of diurnal traffic collected for training
    phase_s: float = 75.0  # full demo: seconds of each of the normal and 3x phases
    attack_s: float = 120.0  # longest wait for an attack's alert
    model: str | None = None  # default: linear quick, auto full
    baselines: tuple[str, ...] = ()  # extra model kinds trained on the same windows (benchmarks)
    attacks: tuple[str, ...] = ("crypto",)  # the full demo may add "ransomware"
    install: bool = True

    @property
    def window(self) -> float:
        """Window length in seconds."""
        return self.window_s or (2.0 if self.quick else 5.0)

    @property
    def run_dir(self) -> Path:
        """Logs, generated configs, stored windows and bundles of this run."""
        return self.out / "run"


class Progress:
    """Prints one line per step, with the phase and the seconds since the demo started."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.phase = "setup"

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def __call__(self, message: str, phase: str | None = None) -> None:
        if phase is not None:
            self.phase = phase
        print(f"[demo {self.elapsed:6.1f}s] {self.phase}: {message}", file=sys.stderr, flush=True)


@dataclass
class Processes:
    """Every child process of the demo, stopped newest first."""

    items: list[Managed] = field(default_factory=list)
    stoppers: list[Callable[[], None]] = field(default_factory=list)

    def add(self, proc: Managed) -> Managed:
        self.items.append(proc)
        return proc

    def stop(self) -> None:
        """Stop everything started; errors of one never keep the others running."""
        for stopper in reversed(self.stoppers):
            try:
                stopper()
            except Exception as exc:  # noqa: BLE001 - keep stopping the rest
                print(f"deeprest demo: while stopping: {exc}", file=sys.stderr)
        self.stoppers.clear()
        for proc in reversed(self.items):
            proc.stop()
        self.items.clear()


# ---------------------------------------------------------------- installing what is missing


def missing_packages(parts: tuple[str, ...]) -> list[str]:
    """Debian packages whose binaries the demo needs and cannot find."""
    return [BINARIES[p][1] for p in parts if not Path(BINARIES[p][0]).exists()]


def ensure_binaries(parts: tuple[str, ...], install: bool, say: Progress) -> int:
    """0 when every binary is there or was installed; 2 with the exact command otherwise."""
    missing = missing_packages(parts)
    if not missing:
        return 0
    command = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    prefix: list[str] = []
    if os.geteuid() != 0:
        sudo = shutil.which("sudo")
        usable = sudo and subprocess.run([sudo, "-n", "true"], capture_output=True).returncode == 0
        prefix = [str(sudo), "-n"] if usable else []
        if not usable:
            install = False
    if not install:
        print(
            f"deeprest demo: missing {', '.join(missing)}; install them with:\n"
            f"  sudo apt-get update && sudo {' '.join(command)}",
            file=sys.stderr,
        )
        return 2
    say(f"installing {', '.join(missing)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in ([*prefix, "apt-get", "update", "-qq"], [*prefix, *command, "-qq"]):
        if subprocess.run(cmd, env=env).returncode != 0:
            print(f"deeprest demo: `{' '.join(cmd)}` failed", file=sys.stderr)
            return 2
    return 0 if not missing_packages(parts) else 2


# ---------------------------------------------------------------- rules on the demo's time scale


def compress_durations(text: str, factor: float) -> str:
    """Rule text with every duration multiplied by `factor`: `for:` and `keep_firing_for:`,
    ranges, subqueries (their steps too), offsets, the alerts' words ("over the last 10
    minutes") and the seconds the expressions count in (`3600 *`, per hour; `seconds > 300`,
    an age), so a rule means in the demo's windows what it means in 1-minute ones."""

    def scaled(number: str, unit: str) -> str:
        ms = max(1, round(float(number) * _SECONDS[unit] * factor * 1000))
        return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"

    def seconds(number: str) -> str:
        return f"{float(number) * factor:g}"

    text = re.sub(r"(for:\s*)(\d+)(ms|s|m|h|d)\b", lambda m: m[1] + scaled(m[2], m[3]), text)
    text = re.sub(r"(offset\s+)(\d+)(ms|s|m|h|d)\b", lambda m: m[1] + scaled(m[2], m[3]), text)
    text = re.sub(r"\b(3600)(\s*\*)", lambda m: seconds(m[1]) + m[2], text)
    text = re.sub(r"(seconds\s*>\s*)(\d+)\b", lambda m: m[1] + seconds(m[2]), text)
    text = re.sub(r"\b(\d+) minutes\b", lambda m: scaled(m[1], "m"), text)  # the alerts' words
    text = re.sub(
        r"(\[\d+(?:ms|s|m|h|d)):(\d+)(ms|s|m|h|d)\]",
        lambda m: f"{m[1]}:{scaled(m[2], m[3])}]",
        text,
    )
    return re.sub(r"\[(\d+)(ms|s|m|h|d)([\]:])", lambda m: f"[{scaled(m[1], m[2])}{m[3]}", text)


def compressed_rules(directory: Path, window_s: float) -> tuple[Path, ...]:
    """Copies of the shipped rule files with durations scaled from 1-minute to `window_s` windows."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for path in sorted(RULES_DIR.glob("*.yaml")):
        target = directory / path.name
        target.write_text(compress_durations(path.read_text(), window_s / 60.0))
        out.append(target)
    return tuple(out)


def alert_for_seconds(name: str, window_s: float) -> float:
    """The compressed `for:` of an alert of the shipped rules, in seconds."""
    text = (RULES_DIR / "deeprest-alerts.yaml").read_text()
    match = re.search(rf"alert: {name}\n(?:.*\n)*?\s*for:\s*(\d+)(ms|s|m|h|d)", text)
    if match is None:
        return 0.0
    return float(match[1]) * _SECONDS[match[2]] * window_s / 60.0


# ---------------------------------------------------------------- deeprest serve as a child


@dataclass(frozen=True)
class ServeSpec:
    """How to start `deeprest serve` for the demo."""

    port: int
    model: Path | None
    data_dir: Path
    window_s: float
    prometheus_url: str
    rate_range_s: float | None = None
    trace_grace_s: float | None = None  # None: serve's default


def start_serve(
    spec: ServeSpec, run_dir: Path, procs: Processes, extra_config: str = ""
) -> Managed:
    """`deeprest serve` on 127.0.0.1:port; waits for /readyz (a model) or /healthz (none)."""
    config = run_dir / "deeprest.yaml"
    lines = [f"prometheus:\n  url: {spec.prometheus_url}\n"]
    if spec.rate_range_s:
        lines.append(f"  rate_range: {spec.rate_range_s:g}s\n")
    # The demo fills the store before serve starts and restarts serve with a model: no client
    # retries a downtime there, so windows close at once rather than after a restart's catch-up.
    lines.append("receiver:\n  restart_catchup: 0s\n")
    config.write_text("".join(lines) + "smoothing_windows: 3\n" + extra_config)
    cmd = [sys.executable, "-m", "exporter.cli", "serve", "--config", str(config),
           "--host", "127.0.0.1", "--port", str(spec.port), "--data-dir", str(spec.data_dir),
           "--window", f"{spec.window_s:g}s", "--log-level", "WARNING"]  # fmt: skip
    if spec.model is not None:
        cmd += ["--model", str(spec.model)]
    if spec.trace_grace_s is not None:
        cmd += ["--trace-grace", f"{spec.trace_grace_s:g}s"]
    proc = procs.add(start("deeprest-serve", cmd, run_dir / "logs", REPO_ROOT, True))
    path = "/readyz" if spec.model is not None else "/healthz"
    wait_ready(proc, lambda: http_ok(f"http://127.0.0.1:{spec.port}{path}"), 60.0)
    return proc


def stop_managed(procs: Processes, proc: Managed) -> None:
    """Stop one child early (e.g. serve before a restart with a model)."""
    proc.stop()
    if proc in procs.items:
        procs.items.remove(proc)


# ---------------------------------------------------------------- signals and the entry point


@contextmanager
def interrupts_as_keyboard() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt, so every `finally` runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def write_summary(options: DemoOptions, summary: dict[str, Any]) -> Path:
    """summary.json beside the report (figures for scripts and benchmarks); a figure that is
    not a number (the accuracy of a series that stayed at 0) is null, as strict JSON wants."""
    path = options.out / "summary.json"
    demo_files.record(options.out, [path.name])
    path.write_text(json.dumps(_strict(summary), indent=2, allow_nan=False))
    return path


def _strict(value: Any) -> Any:
    """`value` with NaN and infinities as None, numpy numbers as Python ones, at any depth."""
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if isinstance(value, (bool, str)) or value is None:
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    if not math.isfinite(number):
        return None
    return int(value) if isinstance(value, numbers.Integral) else number


def run_demo(options: DemoOptions) -> int:
    """Run the quick or the full demo; exit status (0 when the story ran to its end)."""
    # Child processes run in other folders and read paths from generated configs: every path
    # they are given is absolute, whatever folder the demo was started from.
    options = replace(options, out=options.out.resolve())
    pid = holder(options.run_dir / "data")
    if pid is not None:  # its windows must not be deleted under it
        print(
            f"deeprest demo: error: {options.run_dir / 'data'} is in use by a running exporter "
            f"(pid {pid}): another demo in {options.out}? Stop it, or give --out another folder",
            file=sys.stderr,
        )
        return 2
    taken = demo_files.unrecorded(options.out)
    if taken:  # never written over, nor mixed with this run's
        print(
            f"deeprest demo: error: {options.out} holds {', '.join(taken)}, which the demo "
            f"writes but no earlier demo recorded there ({demo_files.RECORD}); move or remove "
            "them, or give --out another folder",
            file=sys.stderr,
        )
        return 2
    say = Progress()
    parts = ("prometheus", "alertmanager") if options.quick else tuple(BINARIES)
    code = ensure_binaries(parts, options.install, say)
    if code:
        return code
    removed = demo_files.clear_earlier(options.out)
    if removed:
        say(f"removed the earlier run's {', '.join(removed)} from {options.out}")
    demo_files.record(options.out, [options.run_dir.name])
    options.run_dir.mkdir(parents=True, exist_ok=True)
    (options.run_dir / "logs").mkdir(exist_ok=True)
    procs = Processes()
    with interrupts_as_keyboard():
        try:
            if options.quick:
                from infra.local.demo_quick import run_quick

                summary = run_quick(options, procs, say)
            else:
                from infra.local.demo_full import run_full

                summary = run_full(options, procs, say)
        except TestbedError as exc:
            print(f"deeprest demo: error: {exc}", file=sys.stderr)
            return 1
        finally:
            say("stopping every process the demo started", "stop")
            procs.stop()
    summary["elapsed_s"] = round(say.elapsed, 1)
    write_summary(options, summary)
    say(f"done in {say.elapsed:.0f}s; report: {summary.get('report')}", "done")
    return 0 if summary.get("ok") else 1

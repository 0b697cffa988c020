"""`deeprest demo`: the local testbed under Locust load, trained on, served, then attacked.

Phases: training traffic (time-compressed diurnal), training from the exporter's stored windows
joined with Prometheus usage, a hot reload of the bundle, normal traffic, 3x traffic, then each
attack (crypto, optionally ransomware) until its alert reaches Alertmanager.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import requests

from estimator.bundle import Bundle, save_bundle
from estimator.metrics import accuracy
from estimator.training import TrainConfig, check_trainable, train_bundle
from estimator.windows import Window, targets
from exporter.config import Config, PrometheusConfig
from exporter.store import WindowStore
from exporter.trainset import collect_training_windows
from infra.local.demo import DemoOptions, Processes, Progress, ServeSpec, start_serve
from infra.local.demo_report import AlertLog, Phase
from infra.local.demo_story import ALERT_OF, conclude
from infra.local.procs import TestbedError, free_port
from infra.local.testbed import Testbed, TestbedConfig
from loadgen.attacks import Attack
from loadgen.headless import HeadlessRun

TARGETS = {"crypto": ("user-timeline", 0.5), "ransomware": ("post-storage", 0.5)}
"""Attack -> (attacked service, intensity)."""
BASE_USERS, PEAK_USERS = 2, 6
WORK_SCALE = 3.0
"""CPU work per request, scaled up so that usage stands well above the 10 ms tick of /proc."""


def _locust(options: DemoOptions, bed: Testbed, name: str, period: float, **kw: Any) -> HeadlessRun:
    return HeadlessRun(bed.frontend_url, options.run_dir / f"locust-{name}", period_s=period,
                       step_s=options.window, base_users=BASE_USERS, peak_users=PEAK_USERS,
                       **kw)  # fmt: skip


def _drive(
    run: HeadlessRun, seconds: float, phase: str, alerts: AlertLog, procs: Processes
) -> Phase:
    """Run Locust for `seconds` (it stops by itself at the end of its shape), polling alerts."""
    log = run.csv_prefix.with_suffix(".log")
    popen = run.start(log)
    stop = _stopper(popen)
    procs.stoppers.append(stop)
    started = time.time()
    try:
        while popen.poll() is None and time.time() - started < seconds + 15:
            alerts.poll(phase)
            time.sleep(2.0)
    finally:
        stop()
        procs.stoppers.remove(stop)
    ran = time.time() - started
    if popen.returncode and ran < EARLY * seconds:  # Locust died: the phase has no traffic
        raise TestbedError(
            f"Locust of the {phase} phase ended with status {popen.returncode} after {ran:.0f}s "
            f"of {seconds:.0f}s: {_last_line(log)} (see {log})"
        )
    return Phase(phase, started, ran + started)


EARLY = 0.8
"""Share of a phase before which Locust ending with an error status is a failure of the demo."""


def _last_line(log: Path) -> str:
    """The last line of a log that says what went wrong, or that none is to be read."""
    try:
        lines = [x.strip() for x in log.read_text(errors="replace").splitlines() if x.strip()]
    except OSError:
        return "no log"
    said = [x for x in lines if "Error" in x or "error" in x]
    return (said or lines or ["an empty log"])[-1]


def _stopper(popen: subprocess.Popen[bytes]) -> Any:
    def stop() -> None:
        if popen.poll() is None:
            popen.terminate()
            try:
                popen.wait(10)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(5)

    return stop


def _train(
    options: DemoOptions, config: Config, phase: Phase, say: Progress
) -> tuple[list[Window], Bundle]:
    windows = collect_training_windows(config, phase.start, phase.end)
    windows = [w for w in windows if w.metrics and w.calls]
    check_trainable(windows, str(config.data_dir))
    kind = options.model or "xgboost"
    started = time.monotonic()
    bundle = train_bundle(windows, TrainConfig(model=kind), progress=lambda m: say(m, "train"))
    save_bundle(bundle, options.run_dir / "model")
    say(f"trained {kind} on {len(windows)} windows in {time.monotonic() - started:.1f}s", "train")
    return windows, bundle


def _reload(serve_url: str, token: str, model: Path) -> None:
    response = requests.post(f"{serve_url}/api/v1/model/reload", json={"path": str(model)},
                             headers={"Authorization": f"Bearer {token}"}, timeout=60)  # fmt: skip
    response.raise_for_status()


def _attack(
    options: DemoOptions, bed: Testbed, kind: str, alerts: AlertLog, procs: Processes, say: Progress
) -> tuple[str, float, Phase]:
    """Steady traffic plus one attack until its alert is in Alertmanager (or attack_s passes)."""
    target, intensity = TARGETS[kind]
    run = _locust(options, bed, kind, options.attack_s, seed=options.seed + 1)
    popen = run.start(run.csv_prefix.with_suffix(".log"))
    stop = _stopper(popen)
    procs.stoppers.append(stop)
    time.sleep(2 * options.window)
    started = time.time()
    pids = bed.inject(Attack(kind, target, 0.0, options.attack_s, intensity))
    say(f"{kind} injected into {target} (workers {pids}); waiting for {ALERT_OF[kind]}", kind)
    try:
        while time.time() - started < options.attack_s:
            alerts.poll(kind)
            if alerts.in_alertmanager(ALERT_OF[kind], target):
                break
            time.sleep(1.0)
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        stop()
        procs.stoppers.remove(stop)
    time.sleep(options.window)
    return target, started, Phase(kind, started, time.time())


def offline_accuracy(
    options: DemoOptions, train: Sequence[Window], data_dir: Path, phases: dict[str, Phase]
) -> dict[str, dict[str, float]]:
    """Mean accuracy per phase of the model and each baseline, on the exporter's stored windows."""
    store = WindowStore(data_dir)
    try:
        tests = {n: store.range(phases[n].start, phases[n].end) for n in ("normal", "3x")}
    finally:
        store.close()
    kinds = [options.model or "xgboost", *options.baselines]
    out: dict[str, dict[str, float]] = {}
    for kind in dict.fromkeys(kinds):
        bundle = train_bundle(train, TrainConfig(model=kind))
        out[kind] = {}
        for name, test in tests.items():
            test = [w for w in test if w.metrics]
            X, _ = bundle.vocabulary.transform([*train, *test])
            pred = bundle.model.predict(X)[len(train) :]
            acc = accuracy(pred[..., 1], targets(test, bundle.series))
            out[kind][name] = float(np.nanmean(acc))
            out[kind][f"{name}_worst"] = float(np.nanmin(acc))
    return out


def run_full(options: DemoOptions, procs: Processes, say: Progress) -> dict[str, Any]:
    """The full story on the testbed; returns the summary."""
    from infra.local.demo import compressed_rules

    window, run = options.window, options.run_dir
    serve_port, token = free_port(), secrets.token_hex(16)
    serve_url = f"http://127.0.0.1:{serve_port}"
    rules = compressed_rules(run / "rules", window)
    bed = Testbed(TestbedConfig(otlp_url=f"{serve_url}/v1/traces", workdir=run / "testbed",
                                prometheus=True, alertmanager=True,
                                deeprest_target=f"127.0.0.1:{serve_port}", rule_files=rules,
                                scrape_interval_s=1.0, work_scale=WORK_SCALE),
                  progress=lambda message: say(message, "start"))  # fmt: skip
    procs.stoppers.append(bed.stop)
    say("starting Redis, 7 services, the resource exporter, Prometheus, Alertmanager", "start")
    bed.start()
    prom_url = bed.prometheus_url
    data_dir = run / "data"
    (run / "token").write_text(token)
    # the testbed's services export their spans every second: a trace is whole 2 s after its last
    spec = ServeSpec(serve_port, None, data_dir, window, prom_url, trace_grace_s=2.0)
    start_serve(spec, run, procs, extra_config=f"api_token_file: {run / 'token'}\n")
    say(f"Prometheus {prom_url}  Alertmanager {bed.alertmanager_url}", "start")
    say(f"deeprest serve {serve_url}/metrics  frontend {bed.frontend_url}", "start")
    alerts = AlertLog(prom_url, bed.alertmanager_url)
    phases: dict[str, Phase] = {}
    say(f"{options.train_s:.0f}s of diurnal traffic (two peaks)", "train")
    training = _locust(options, bed, "train", options.train_s, seed=options.seed)
    phases["train"] = _drive(training, options.train_s, "train", alerts, procs)
    time.sleep(2 * window + 1)  # the last windows close and carry usage
    config = Config(data_dir=data_dir, window=window, prometheus=PrometheusConfig(url=prom_url))
    train, bundle = _train(options, config, phases["train"], say)
    _reload(serve_url, token, run / "model")
    say(f"bundle {bundle.version} hot-loaded into deeprest serve", "train")
    for name, shape in (("normal", "diurnal"), ("3x", "scale")):
        say(f"{options.phase_s:.0f}s of {name} traffic", name)
        plan = _locust(options, bed, name, options.phase_s, seed=options.seed + 1, shape=shape)
        phases[name] = _drive(plan, options.phase_s, name, alerts, procs)
    attacks: dict[str, tuple[str, float]] = {}
    for kind in options.attacks:
        target, started, phases[kind] = _attack(options, bed, kind, alerts, procs, say)
        attacks[kind] = (target, started)
    summary = conclude(options, say, phases, alerts, attacks)
    if options.baselines:
        say(f"baselines {', '.join(options.baselines)} on the same windows", "result")
        summary["offline"] = offline_accuracy(options, train, data_dir, phases)
    summary["training_windows"] = len(train)
    return summary

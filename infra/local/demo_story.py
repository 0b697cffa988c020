"""The end of both demos: accuracy per phase, the alerts, the report and the summary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from estimator.evaluation import Evaluation
from infra.local.demo import CPU_ALERT, DISK_ALERT, DemoOptions, Progress
from infra.local.demo_files import record
from infra.local.demo_report import (
    AlertLog,
    Phase,
    busiest,
    phase_summary,
    print_accuracy,
    read_phase,
    write_demo_report,
)

ALERT_OF = {"crypto": CPU_ALERT, "ransomware": DISK_ALERT}
ACCURACY_PHASES = ("normal", "3x")
ATTACK_FREE = ("normal", "3x")
"""Phases with a model loaded and no attack (training runs without a model)."""


def _attack_result(
    alerts: AlertLog, kind: str, target: str, started: float, say: Progress
) -> dict[str, Any]:
    """When the attack's alert fired, and whether Alertmanager holds it."""
    name = ALERT_OF[kind]
    fired = alerts.first(name, target, started)
    delivered = alerts.in_alertmanager(name, target)
    delay = None if fired is None else round(fired - started, 1)
    if delay is None:
        say(f"{name} did NOT fire for {target}", kind)
    else:
        say(
            f"{name} FIRING for {target} {delay:.1f}s after the attack started "
            f"(Prometheus /api/v1/alerts); in Alertmanager /api/v2/alerts: "
            f"{'yes' if delivered else 'no'}",
            kind,
        )
    return {"alert": name, "target": target, "fired": fired is not None,
            "detection_delay_s": delay, "alertmanager": delivered}  # fmt: skip


def conclude(
    options: DemoOptions,
    say: Progress,
    phases: Mapping[str, Phase],
    alerts: AlertLog,
    attacks: Mapping[str, tuple[str, float]],
) -> dict[str, Any]:
    """Read the phases back from Prometheus, print the figures, write the report; the summary."""
    say("reading expected and observed usage back from Prometheus", "result")
    window = options.window
    read = {
        n: read_phase(alerts.prometheus_url, p, window) for n, p in phases.items() if n != "train"
    }
    evaluations: dict[str, Evaluation] = {
        n: e for n, e in read.items() if e is not None and n in ACCURACY_PHASES
    }
    plots = {n: e for n, e in read.items() if e is not None}
    if evaluations:
        print_accuracy(evaluations)
    results = {k: _attack_result(alerts, k, t, s, say) for k, (t, s) in attacks.items()}
    false_alerts = alerts.during(ATTACK_FREE)
    say(f"alerts firing during attack-free traffic: {', '.join(false_alerts) or 'none'}", "result")
    facts = [f"window {window:g}s; rule durations scaled by {window:g}/60"]
    facts += [f"{k}: {r['alert']} fired for {r['target']} after {r['detection_delay_s']}s; "
              f"in Alertmanager: {r['alertmanager']}" for k, r in results.items()]  # fmt: skip
    facts.append(f"alerts during attack-free traffic: {', '.join(false_alerts) or 'none'}")
    targets = [t for t, _ in attacks.values()]
    normal = evaluations.get("normal")
    components = list(dict.fromkeys(targets + (busiest(normal, 3) if normal else [])))
    record(options.out, ["index.html"])
    report, images = write_demo_report(options.out, evaluations, plots, components, facts)
    record(options.out, images)
    say(f"report {report.resolve()}", "result")
    crypto = results.get("crypto", {})
    return {
        "mode": "quick" if options.quick else "full",
        "window_s": window,
        "phases": {n: {"start": p.start, "end": p.end} for n, p in phases.items()},
        "accuracy": {n: phase_summary(e) for n, e in evaluations.items()},
        "attacks": results,
        "false_alerts": false_alerts,
        "training_alerts": alerts.during(("train",)),
        "report": str(report),
        "ok": bool(crypto.get("fired")) and set(evaluations) == set(ACCURACY_PHASES),
    }

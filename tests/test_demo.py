"""`deeprest demo --quick` end to end, its interruption, and the pieces it is made of."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from estimator.simulator import SimulationConfig, run_simulation
from estimator.spans import Span, assemble
from exporter.receiver import extract_spans
from infra.local import demo, demo_files
from infra.local.demo_quick import span_request

ROOT = Path(__file__).resolve().parents[1]
NEEDS_BINARIES = pytest.mark.skipif(
    shutil.which("prometheus") is None or demo.missing_packages(("alertmanager",)) != [],
    reason="prometheus and prometheus-alertmanager are needed",
)


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that name `text` (the demo's folder)."""
    out = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            if text in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(f"{proc.pid}: {cmdline}")
        except psutil.Error:
            continue
    return out


NEEDS_TESTBED = pytest.mark.skipif(
    demo.missing_packages(tuple(demo.BINARIES)) != [],
    reason="prometheus, prometheus-alertmanager and redis-server are needed",
)


def _demo(out: Path, cwd: Path = ROOT, quick: bool = True) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "exporter.cli", "demo", "--out", str(out), "--no-install"]
    command += ["--quick"] if quick else []
    return subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # A test run started in the background (`make test &`) ignores SIGINT, and children
        # inherit that: give the demo Ctrl-C's default, as a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.mark.integration
@pytest.mark.slow
@NEEDS_BINARIES
def test_quick_demo_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    process = _demo(Path("demo"), cwd=tmp_path)  # relative, as `make demo` gives it
    try:
        output, _ = process.communicate(timeout=240)
    finally:
        process.kill()
    assert process.returncode == 0, output[-4000:]
    for phase in ("normal", "3x"):
        match = re.search(rf"accuracy {phase}: mean ([0-9.]+) worst ([0-9.]+)", output)
        assert match, output[-4000:]
        assert 0.5 < float(match[1]) <= 1.0, match[0]
    assert re.search(r"DeepRestCPUNotExplainedByTraffic FIRING for user-timeline", output)
    assert "in Alertmanager /api/v2/alerts: yes" in output
    assert re.search(r"Prometheus http://127\.0\.0\.1:\d+", output)
    assert re.search(r"deeprest serve http://127\.0\.0\.1:\d+/metrics", output)

    def refuse(constant: str) -> None:
        raise AssertionError(f"summary.json holds {constant}: not strict JSON")

    summary = json.loads((out / "summary.json").read_text(), parse_constant=refuse)
    crypto = summary["attacks"]["crypto"]
    assert crypto["fired"] and crypto["alertmanager"]
    for_s = demo.alert_for_seconds(demo.CPU_ALERT, summary["window_s"])
    assert crypto["detection_delay_s"] >= for_s, "fired before its compressed `for:`"
    assert summary["false_alerts"] == []
    assert len(summary["accuracy"]["normal"]["series"]) >= 40
    page = (out / "index.html").read_text()
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) >= 6
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert all(p.name in page for p in pngs)
    assert _processes_mentioning(str(out)) == []
    assert (out / "run" / "data").is_dir() and not (ROOT / "demo").exists()
    written = set(demo_files.recorded(out))  # what the next run in this folder removes
    assert {"run", "index.html", "summary.json", *(p.name for p in pngs)} == written


@pytest.mark.integration
@NEEDS_BINARIES
def test_quick_demo_stops_every_process_on_ctrl_c(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    process = _demo(out)
    try:
        assert process.stdout is not None
        for line in process.stdout:  # wait until serve runs, then interrupt
            if "deeprest serve http" in line:
                break
        assert _processes_mentioning(str(out)), "no child process to stop"
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, output[-3000:]
    assert "stopping every process" in output
    time.sleep(0.5)
    assert _processes_mentioning(str(out)) == []


@pytest.mark.integration
@NEEDS_TESTBED
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_full_demo_leaves_no_process_behind_when_killed(tmp_path: Path, sig: int) -> None:
    """Killed while Locust sends load, the demo takes every child with it, Locust included,
    even by SIGKILL, which it cannot catch."""
    out = tmp_path / "demo"
    process = _demo(out, quick=False)
    try:
        assert process.stdout is not None
        for line in process.stdout:  # wait until the training load runs
            if "of diurnal traffic" in line:
                break
        deadline = time.monotonic() + 30
        while not any("locust" in p for p in _processes_mentioning(str(out))):
            assert time.monotonic() < deadline, "Locust did not start"
            time.sleep(0.2)
        process.send_signal(sig)
        output, _ = process.communicate(timeout=60)
        deadline = time.monotonic() + 15
        while _processes_mentioning(str(out)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _processes_mentioning(str(out)) == [], output[-3000:]
    finally:
        process.kill()
        for line in _processes_mentioning(str(out)):  # not left to the rest of the test run
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line.split(":")[0]), signal.SIGKILL)


@pytest.mark.integration
@NEEDS_BINARIES
def test_a_demo_removes_the_files_of_the_earlier_run_in_its_folder(tmp_path: Path) -> None:
    """Plots of an earlier run never sit beside the new report; files of the user's stay."""
    out = tmp_path / "demo"
    (out / "run" / "logs").mkdir(parents=True)
    (out / "run" / "logs" / "prometheus.log").write_text("the earlier run's log\n")
    for name in ("index.html", "crypto-media.png", "ransomware-post-storage.png"):
        (out / name).write_text("from the earlier run")
    demo_files.record(out, ["run", "index.html", "crypto-media.png"])
    demo_files.record(out, ["ransomware-post-storage.png"])
    demo.write_summary(demo.DemoOptions(out=out), {"ok": True})
    (out / "notes.txt").write_text("mine")
    process = _demo(out)
    try:
        assert process.stdout is not None
        said = []
        for line in process.stdout:  # the earlier run's files go before anything starts
            said.append(line)
            if "deeprest serve http" in line:
                break
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
    finally:
        process.kill()
    assert "removed the earlier run's" in "".join(said)
    assert sorted(p.name for p in out.iterdir()) == [demo_files.RECORD, "notes.txt", "run"]
    assert "the earlier run's log" not in (out / "run" / "logs" / "prometheus.log").read_text()
    assert (out / "notes.txt").read_text() == "mine"
    assert demo_files.recorded(out) == ["run"]


@pytest.mark.parametrize("name", ["index.html", "run", "normal-frontend.png"])
def test_a_demo_will_not_write_over_files_it_did_not_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """A file the demo would write, in --out though no demo recorded it there (the user's, or
    the output of a demo from before the record was kept): a clear error, nothing touched."""
    from exporter.cli import main

    (tmp_path / name).write_text("mine")
    assert main(["demo", "--quick", "--out", str(tmp_path), "--no-install"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path} holds {name}, which the demo writes but no earlier demo recorded" in err
    assert "give --out another folder" in err
    assert [p.name for p in tmp_path.iterdir()] == [name]
    assert (tmp_path / name).read_text() == "mine"


def test_compressed_rules_scale_durations_to_the_window(tmp_path: Path) -> None:
    paths = demo.compressed_rules(tmp_path, 5.0)
    text = next(p for p in paths if p.name == "deeprest-alerts.yaml").read_text()
    assert "for: 50s" in text and "for: 10m" not in text
    assert "keep_firing_for: 50s" in text  # 10m in 5 s windows
    assert "seconds > 25" in text  # ModelStale's five windows
    assert "cores over the last 50s" in text and "10 minutes" not in text  # the alerts' words
    recording = next(p for p in paths if p.name == "deeprest-recording.yaml").read_text()
    assert "offset 50s" in recording and "offset 10m" not in recording  # the hour before a stop
    assert "300 * (deriv" in recording  # per hour of 5 s windows: the growth rule's unit
    if shutil.which("promtool"):
        checked = subprocess.run(["promtool", "check", "rules", *map(str, paths)], check=False)
        assert checked.returncode == 0
    assert demo.alert_for_seconds(demo.CPU_ALERT, 5.0) == pytest.approx(50.0)
    assert demo.alert_for_seconds(demo.DISK_ALERT, 2.0) == pytest.approx(10.0)
    assert demo.compress_durations("rate(x[5m])", 0.1) == "rate(x[30s])"
    # a subquery's step too: its count of steps means the same time on the demo's scale
    assert "[300s:5s]) > 45" in text
    assert (
        demo.compress_durations("count_over_time(x[1h:1m])", 0.5) == "count_over_time(x[1800s:30s])"
    )


def test_the_summary_is_strict_json(tmp_path: Path) -> None:
    import numpy as np

    options = demo.DemoOptions(out=tmp_path)
    figures = {"a": float("nan"), "b": [np.float64("inf"), np.int64(3), 0.5], "c": {"d": True}}
    path = demo.write_summary(options, figures)

    def refuse(constant: str) -> None:
        raise AssertionError(f"summary.json holds {constant}")

    assert json.loads(path.read_text(), parse_constant=refuse) == {
        "a": None,
        "b": [None, 3, 0.5],
        "c": {"d": True},
    }


def test_span_request_reproduces_the_simulated_path_counts() -> None:
    sim = run_simulation(
        SimulationConfig(windows=3, window_seconds=2.0, day_windows=10, users=100, seed=3)
    )
    rng = np.random.default_rng(0)
    request = span_request(sim.paths, sim.path_counts[1], 5_000_000_000_000, rng)
    decoded = extract_spans(request)
    assert decoded.rejected == {}
    spans = [
        Span(t.hex(), s.hex(), p.hex() or None, component, name, start, end)
        for t, s, p, component, name, end, start, _weight in decoded.spans
    ]
    counts: dict[tuple, int] = {}
    for trace in assemble(spans):
        for path in trace.paths:
            counts[path] = counts.get(path, 0) + 1
    expected = {p: int(c) for p, c in zip(sim.paths, sim.path_counts[1], strict=True) if c}
    assert counts == expected


def test_missing_binaries_print_the_install_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(demo.BINARIES, "redis", ("/nonexistent/redis-server", "redis-server"))
    assert demo.ensure_binaries(("redis",), install=False, say=demo.Progress()) == 2
    assert "apt-get install -y --no-install-recommends redis-server" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--train-seconds", "nan"], "--train-seconds"),
        (["--train-seconds", "30"], "--train-seconds"),
        (["--phase-seconds", "inf"], "--phase-seconds"),
        (["--train-seconds", "60", "--window", "10"], "--train-seconds"),  # 6 windows: too few
        # 12 windows, the first partial: 11 with usage, and 0.2 of them held out leaves 9
        (["--train-seconds", "120", "--window", "10"], "--train-seconds"),
    ],
)
def test_demo_phase_lengths_are_checked_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], named: str
) -> None:
    from exporter.cli import main

    assert main(["demo", *flags, "--out", str(tmp_path / "d"), "--no-install"]) == 2
    assert f"field '{named}'" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_step_test_length_is_finite() -> None:
    from estimator.errors import InputError
    from loadgen.steps import StepTest

    with pytest.raises(InputError, match="at most a day"):
        StepTest("http://127.0.0.1:1", Path("steps"), (1,), float("inf"))


def test_accuracy_headline_names_the_worst_series(capsys: pytest.CaptureFixture[str]) -> None:
    from estimator.evaluation import Evaluation
    from infra.local.demo_report import print_accuracy

    actual = np.array([[1.0, 1e-6], [2.0, 0.0], [3.0, 1e-6]])
    median = np.array([[1.0, 2.0004e-6], [2.0, 0.0], [3.0, 2.0004e-6]])  # idle: 100% off
    pred = np.stack([0.9 * median, median, 1.1 * median], axis=-1)
    series = [("front", "cpu"), ("store", "write_iops")]
    print_accuracy({"normal": Evaluation(series, np.arange(3.0), actual, pred, None)})
    line = capsys.readouterr().out.splitlines()[-1]
    assert "worst 0.000 (store/write_iops)" in line and "-0.000" not in line, line


def test_accuracy_table_says_no_usage_where_a_series_used_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from estimator.evaluation import Evaluation
    from infra.local.demo_report import print_accuracy

    actual = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])  # no disk writes at all
    pred = np.stack([0.9 * actual, actual, 1.1 * actual + 0.01], axis=-1)
    series = [("front", "cpu"), ("front", "write_iops")]
    print_accuracy({"normal": Evaluation(series, np.arange(3.0), actual, pred, None)})
    out = capsys.readouterr().out
    assert "no usage" in out and "nan" not in out
    assert "(1 series scored of 2, 3 windows)" in out


def test_a_demo_leaves_the_data_of_a_running_exporter_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from exporter.store import WindowStore

    options = demo.DemoOptions(out=tmp_path, quick=True)
    store = WindowStore(options.run_dir / "data")
    store.claim()  # an exporter serving from the demo's folder (an earlier demo, still running)
    try:
        assert demo.run_demo(options) == 2
        assert f"is in use by a running exporter (pid {os.getpid()})" in capsys.readouterr().err
        assert (options.run_dir / "data" / "windows.sqlite").exists()
    finally:
        store.close()


def test_a_locust_run_that_dies_early_fails_the_demo_naming_its_log(tmp_path: Path) -> None:
    """A phase whose load generator died has no traffic: the demo says so, with the log's
    error, rather than training or scoring on nothing."""
    import subprocess
    import sys
    from types import SimpleNamespace

    from infra.local.demo import Processes
    from infra.local.demo_full import _drive
    from infra.local.procs import TestbedError

    prefix = tmp_path / "locust-train"

    def start(log: Path) -> subprocess.Popen[bytes]:
        script = "import sys; print('IndexError: list index out of range'); sys.exit(3)"
        with open(log, "wb") as out:
            return subprocess.Popen([sys.executable, "-c", script], stdout=out)

    run = SimpleNamespace(csv_prefix=prefix, start=start)
    alerts = SimpleNamespace(poll=lambda phase: None)
    with pytest.raises(TestbedError) as caught:
        _drive(run, 60.0, "train", alerts, Processes())  # type: ignore[arg-type]
    said = str(caught.value)
    assert said.startswith("Locust of the train phase ended with status 3 after ")
    assert "IndexError: list index out of range" in said and str(prefix) in said

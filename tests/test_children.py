"""Children of the testbed and the demo end with their parent, also when it is killed (SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from infra.local.procs import free_port
from infra.local.testbed import leftover_pids

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal: Linux"),
]


def _parent(script: str) -> tuple[subprocess.Popen[str], list[int]]:
    """A real Python process running `script`, which prints its children's pids as JSON."""
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    line = parent.stdout.readline()
    assert line, f"the parent said nothing (status {parent.wait(10)})"
    pids: list[int] = json.loads(line)
    assert pids and leftover_pids(pids) == pids, "the children did not start"
    return parent, pids


def _gone_after_sigkill(parent: subprocess.Popen[str], pids: list[int], within_s: float) -> None:
    """SIGKILL the parent; every child must be gone within `within_s`."""
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    deadline = time.monotonic() + within_s
    while leftover_pids(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = leftover_pids(pids)
    for pid in left:  # do not leave them to the rest of the test run
        os.kill(pid, signal.SIGKILL)
    assert left == [], f"still running {within_s:g} s after their parent was killed: {left}"


def test_a_testbed_process_dies_with_its_parent(tmp_path: Path) -> None:
    parent, pids = _parent(f"""
        import json, sys, time
        from pathlib import Path
        from infra.local.procs import start
        proc = start("sleeper", [sys.executable, "-c", "import time; time.sleep(120)"],
                     Path({str(tmp_path)!r}), Path({str(tmp_path)!r}), True)
        print(json.dumps([proc.pid]), flush=True)
        time.sleep(120)
    """)
    _gone_after_sigkill(parent, pids, 5.0)


def test_a_locust_run_dies_with_its_parent(tmp_path: Path) -> None:
    """The demo's load: a headless Locust run with minutes of plan left stops with the demo."""
    host = f"http://127.0.0.1:{free_port()}"  # nothing listens: Locust keeps trying regardless
    parent, pids = _parent(f"""
        import json, time
        from pathlib import Path
        from loadgen.headless import HeadlessRun
        run = HeadlessRun({host!r}, Path({str(tmp_path / "locust")!r}), period_s=300.0)
        popen = run.start(Path({str(tmp_path / "locust.log")!r}))
        print(json.dumps([popen.pid]), flush=True)
        time.sleep(300)
    """)
    time.sleep(2.0)  # Locust is up and running its plan
    assert leftover_pids(pids) == pids, (tmp_path / "locust.log").read_text()
    _gone_after_sigkill(parent, pids, 10.0)


def test_attack_workers_die_with_the_service_that_started_them() -> None:
    """Workers are started from a request's thread, which ends at once: they outlive it, and
    end with the process (the service) instead."""
    parent, pids = _parent("""
        import json, threading, time
        from loadgen.attacks import Attack, spawn
        started = []
        attack = Attack("crypto", "user-timeline", 0.0, 120.0, 1.5)
        handler = threading.Thread(target=lambda: started.extend(spawn(attack, None)))
        handler.start()
        handler.join()
        print(json.dumps([p.pid for p in started]), flush=True)
        time.sleep(120)
    """)
    assert len(pids) == 2
    time.sleep(1.5)  # longer than a watch's period: the handler's end did not stop them
    assert leftover_pids(pids) == pids
    _gone_after_sigkill(parent, pids, 5.0)

"""The testbed resource exporter measures real process trees in cAdvisor names."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from infra.local.procs import free_port
from infra.local.resource_exporter import ProcessTreeCollector, measure_tree, parse_targets, serve

# A worker driven line by line over stdin; each command answers "ok" when done.
WORKER = textwrap.dedent(
    """
    import os, subprocess, sys, time
    def burn(seconds):
        end = time.process_time() + seconds
        while time.process_time() < end:
            sum(i * i for i in range(1000))
    keep = []
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "burn":
            burn(float(arg))
        elif cmd == "child":
            code = "import time\\nend = time.process_time() + %s\\nwhile time.process_time() < end: pass" % arg
            subprocess.run([sys.executable, "-c", code], check=True)
        elif cmd == "alloc":
            keep.append(bytearray(os.urandom(int(arg))))
        elif cmd == "write":
            with open(os.path.join(sys.argv[1], "blob"), "wb") as f:
                f.write(os.urandom(int(arg)))
                f.flush()
                os.fsync(f.fileno())
        print("ok", flush=True)
    """
)


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A live worker process, stopped at the end."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    yield proc
    proc.kill()
    proc.wait()


def ask(proc: subprocess.Popen[str], command: str) -> None:
    """Send one command and wait for its answer."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "ok"


def cpu_of(collector: ProcessTreeCollector, name: str) -> float:
    """The CPU counter of one container from a collect() pass."""
    for family in collector.collect():
        if family.name == "container_cpu_usage_seconds":
            for sample in family.samples:
                if sample.labels["container"] == name and sample.name.endswith("_total"):
                    return float(sample.value)
    raise AssertionError(f"no CPU sample for {name}")


def test_cpu_seconds_grow_by_the_time_burned(worker: subprocess.Popen[str]) -> None:
    collector = ProcessTreeCollector({"w": worker.pid})
    ask(worker, "burn 0.01")  # the interpreter has started
    before = cpu_of(collector, "w")
    ask(worker, "burn 1.0")
    after = cpu_of(collector, "w")
    assert after - before == pytest.approx(1.0, abs=0.15)


def test_cpu_of_a_reaped_child_is_kept(worker: subprocess.Popen[str]) -> None:
    collector = ProcessTreeCollector({"w": worker.pid})
    ask(worker, "burn 0.01")
    before = cpu_of(collector, "w")
    ask(worker, "child 0.6")  # the child is gone (and reaped) when this returns
    after = cpu_of(collector, "w")
    assert after - before == pytest.approx(0.6, abs=0.25)
    assert cpu_of(collector, "w") >= after, "a counter never goes down"


def test_memory_and_writes_follow_the_process(worker: subprocess.Popen[str]) -> None:
    ask(worker, "burn 0.01")
    base = measure_tree(worker.pid)
    assert base is not None and base.memory_bytes > 0
    ask(worker, f"alloc {64 << 20}")
    ask(worker, f"write {2 << 20}")
    grown = measure_tree(worker.pid)
    assert grown is not None
    assert grown.memory_bytes - base.memory_bytes >= 60 << 20
    if base.write_bytes is None or grown.write_bytes is None or base.write_ops is None:
        pytest.skip("io counters are not readable here; the exporter leaves the fs series out")
    assert grown.write_bytes - base.write_bytes >= 2 << 20
    assert grown.write_ops is not None and grown.write_ops > base.write_ops


def test_a_gone_process_is_left_out() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert measure_tree(proc.pid) is None
    assert ProcessTreeCollector({"gone": proc.pid}).sample() == {}


def test_served_exposition_uses_cadvisor_names(worker: subprocess.Popen[str]) -> None:
    ask(worker, "burn 0.2")
    port = free_port()
    server = serve(port, parse_targets([f"worker={worker.pid}"]))
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        server.shutdown()
    samples = {s.name: s for fam in text_string_to_metric_families(text) for s in fam.samples}
    cpu = samples["container_cpu_usage_seconds_total"]
    assert cpu.labels["container"] == "worker" and cpu.value >= 0.2
    assert samples["container_memory_working_set_bytes"].value > 1 << 20
    if "container_fs_writes_total" in samples:
        assert samples["container_fs_writes_bytes_total"].value >= 0


def test_bad_targets_are_refused() -> None:
    with pytest.raises(SystemExit, match="NAME=PID"):
        parse_targets(["frontend:12"])

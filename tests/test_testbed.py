"""The local testbed end to end: real services, Redis, OTLP spans, resources, attacks, Locust."""

from __future__ import annotations

import csv
import gzip
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client.parser import text_string_to_metric_families

from estimator.latency import SATURATED_RATIO
from exporter.cli import main as cli_main
from infra.local.apps import SERVICES
from infra.local.testbed import REPO_ROOT, Testbed, TestbedConfig, leftover_pids
from loadgen.attacks import Attack
from loadgen.headless import HeadlessRun, read_stats
from loadgen.steps import StepTest, run_steps

pytestmark = pytest.mark.integration

Span = dict[str, Any]


class Receiver:
    """A minimal OTLP/HTTP trace receiver that records every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.record(body)
                data = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def record(self, body: bytes) -> None:
        """Parse one export request into flat span records."""
        request = ExportTraceServiceRequest.FromString(body)
        with self.lock:
            for rs in request.resource_spans:
                attrs = {a.key: a.value.string_value for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        self.spans.append({"service": attrs.get("service.name"), "name": s.name,
                                           "trace": s.trace_id.hex(), "id": s.span_id.hex(),
                                           "parent": s.parent_span_id.hex()})  # fmt: skip

    def snapshot(self) -> list[Span]:
        """The spans so far."""
        with self.lock:
            return list(self.spans)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll until predicate() holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def resources(bed: Testbed) -> dict[tuple[str, str], float]:
    """(metric, container) -> value from the resource exporter."""
    text = requests.get(bed.resource_exporter_url + "/metrics", timeout=5).text
    return {(s.name, s.labels["container"]): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}  # fmt: skip


def cpu(bed: Testbed) -> dict[str, float]:
    """CPU seconds per container."""
    return {
        c: v for (n, c), v in resources(bed).items() if n == "container_cpu_usage_seconds_total"
    }


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.server.shutdown()


@pytest.fixture(scope="module")
def bed(receiver: Receiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    config = TestbedConfig(otlp_url=receiver.url, workdir=tmp_path_factory.mktemp("bed"),
                           prometheus=True, alertmanager=True, scrape_interval_s=1.0,
                           export_delay_ms=200)  # fmt: skip
    testbed = Testbed(config).start()
    yield testbed
    testbed.stop()


def drive_every_api(url: str) -> None:
    """A few requests of each API, all of which must succeed."""
    ok = []
    for uid in range(1, 4):
        ok.append(requests.post(f"{url}/api/user/register",
                                json={"user_id": uid, "username": f"u{uid}", "password": "pw"}))  # fmt: skip
        ok.append(
            requests.post(f"{url}/api/user/follow", json={"follower_id": uid, "followee_id": 1})
        )
    media = requests.post(f"{url}/api/media/upload", data=b"\x01" * 20000)
    ok.append(media)
    for i in range(4):
        body = {"user_id": 1, "text": f"post {i} @u2 https://example.org/{i}",
                "media_ids": [media.json()["media_id"]]}  # fmt: skip
        ok.append(requests.post(f"{url}/api/post/compose", json=body))
    for uid in range(1, 4):
        ok.append(requests.get(f"{url}/api/timeline/home", params={"user_id": uid}))
        ok.append(requests.get(f"{url}/api/timeline/user", params={"user_id": 1, "count": 3}))
    assert [r.status_code for r in ok] == [200] * len(ok), [
        r.text for r in ok if r.status_code != 200
    ]


def test_bad_requests_get_json_4xx(bed: Testbed) -> None:
    bad = requests.post(bed.frontend_url + "/api/post/compose", data=b"{not json")
    assert bad.status_code == 400 and "error" in bad.json()
    missing = requests.get(bed.frontend_url + "/api/timeline/home", params={"user_id": "x"})
    assert missing.status_code == 400 and "user_id" in missing.json()["error"]
    assert requests.get(bed.frontend_url + "/nope").status_code == 404


def _whole_compose_tree(spans: list[Span]) -> list[Span] | None:
    """The largest compose trace rooted at the front end whose every parent has arrived."""
    by_trace: dict[str, list[Span]] = defaultdict(list)
    for s in spans:
        by_trace[s["trace"]].append(s)
    whole = []
    for tree in by_trace.values():
        ids = {s["id"] for s in tree}
        roots = [s for s in tree if not s["parent"]]
        if (
            len(roots) == 1
            and roots[0]["name"] == "/api/post/compose"
            and all(s["parent"] in ids for s in tree if s["parent"])
        ):
            whole.append(tree)
    return max(whole, key=len) if whole else None


def test_traces_are_whole_trees_from_every_service(bed: Testbed, receiver: Receiver) -> None:
    before = cpu(bed)
    drive_every_api(bed.frontend_url)

    def arrived() -> bool:  # parents end after their children, so they may arrive later
        spans = receiver.snapshot()
        tree = _whole_compose_tree(spans)
        services = {s["service"] for s in spans}
        return (
            len(services) >= len(SERVICES)
            and tree is not None
            and len({s["service"] for s in tree}) >= 6
        )

    wait_for(arrived, 15, "spans from every service and a whole compose trace")
    spans = receiver.snapshot()
    assert {s["service"] for s in spans} == set(SERVICES)
    tree = _whole_compose_tree(spans)
    assert tree is not None, "a compose trace rooted at the front end"
    ids = {s["id"]: s for s in tree}
    roots = [s for s in tree if not s["parent"]]
    assert len(roots) == 1 and roots[0]["service"] == "frontend"

    def depth(span: Span) -> int:
        return 1 if not span["parent"] else 1 + depth(ids[span["parent"]])

    assert max(depth(s) for s in tree) >= 3
    assert len({s["service"] for s in tree}) >= 6
    wait_for(lambda: all(cpu(bed)[c] > before[c] for c in SERVICES), 10, "CPU grown everywhere")
    after = cpu(bed)
    grown = [c for c in SERVICES if after[c] > before[c]]
    assert len(grown) == len(SERVICES), f"CPU grew only for {grown}"


def test_headless_locust_run_writes_csv(bed: Testbed, tmp_path: Path) -> None:
    run = HeadlessRun(bed.frontend_url, tmp_path / "run", period_s=60, step_s=5,
                      compression=10, base_users=2, peak_users=6)  # fmt: skip
    before = cpu(bed)["frontend"]
    done = subprocess.run(run.command(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = read_stats(run.csv_prefix)
    total = rows.pop("Aggregated")
    assert int(total["Request Count"]) > 10 and int(total["Failure Count"]) == 0
    assert {"read_home_timeline", "read_user_timeline", "compose_post"} <= set(rows)
    assert cpu(bed)["frontend"] > before


def test_step_load_test_feeds_latency_capacity(
    bed: Testbed, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    test = StepTest(bed.frontend_url, tmp_path / "steps", (1, 3, 6), 6.0, rate_per_user=2.0)
    table = run_steps(test, say=print)
    with open(table, newline="") as handle:
        totals = [r for r in csv.DictReader(handle) if r["api"] == "Aggregated"]
    assert [float(r["offered_rps"]) for r in totals] == [2.0, 6.0, 12.0]
    served = [float(r["achieved_rps"]) for r in totals]
    assert served == sorted(served) and served[0] > 0, served
    # users keep pace: an unloaded testbed serves what the step offers
    assert served[0] == pytest.approx(2.0, rel=0.5), served  # counted over a few whole seconds
    out = tmp_path / "capacity"
    argv = ["capacity", "--runs", str(table), "--slo", "p95=5s", "--out", str(out)]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    with open(out / "capacity.csv", newline="") as handle:
        answers = {r["api"]: r for r in csv.DictReader(handle)}
    assert answers["Aggregated"]["steps"] == "3"
    # A busy machine may not keep pace with the last steps: the first step that served less
    # than it was offered ends the search at the rate it served, else none broke the objective.
    offered = [float(r["offered_rps"]) for r in totals]
    short = [i for i, rate in enumerate(served) if rate < SATURATED_RATIO * offered[i]]
    if not short:
        assert "Aggregated: at least 12 requests/s" in printed, printed
    else:
        first = short[0]
        expected = max(offered[first - 1] if first else served[first], served[first])
        assert float(answers["Aggregated"]["measured"]) == pytest.approx(expected, rel=0.01)
        if first:
            steps = f"between the steps at {offered[first - 1]:.3g} and {offered[first]:.3g}"
            assert steps in printed, printed
    assert {"GET read_home_timeline", "POST compose_post"} <= set(answers)  # type and name


def test_crypto_injector_raises_the_target_cpu(bed: Testbed) -> None:
    before = cpu(bed)
    attack = Attack("crypto", "social-graph", start_s=0.0, duration_s=2.0, intensity=2.0)
    pids = bed.inject(attack)
    assert len(pids) == 2 and set(pids) <= bed.all_pids(), "burners live in the service tree"
    wait_for(lambda: not set(pids) & bed.all_pids(), 10, "the burners to finish")
    after = cpu(bed)
    grown = {c: after[c] - before[c] for c in SERVICES}
    others = max(v for c, v in grown.items() if c != "social-graph")
    # The burners get what the shared machine gives them; idle services get almost nothing.
    assert grown["social-graph"] >= 0.5
    assert grown["social-graph"] >= 5 * others, grown


def test_ransomware_rewrites_the_store(bed: Testbed) -> None:
    posts = sorted((bed.workdir / "data" / "posts").rglob("*.json"))
    assert posts, "posts were stored by the earlier requests"
    original = posts[0].read_bytes()
    before = resources(bed)
    bed.inject(Attack("ransomware", "post-storage", start_s=0.0, duration_s=1.0))
    wait_for(lambda: posts[0].read_bytes() != original, 10, "an encrypted post")
    time.sleep(1.2)
    after = resources(bed)
    key = ("container_fs_writes_bytes_total", "post-storage")
    if key in before:
        assert after[key] > before[key]
    timeline = requests.get(bed.frontend_url + "/api/timeline/user", params={"user_id": 1}).json()
    assert timeline["unreadable"] > 0, "encrypted posts can no longer be read"


def test_prometheus_scrapes_the_testbed(bed: Testbed) -> None:
    def scraped() -> bool:
        answer = requests.get(bed.prometheus_url + "/api/v1/query",
                              params={"query": "container_cpu_usage_seconds_total"}, timeout=5)  # fmt: skip
        return len(answer.json()["data"]["result"]) == len(bed.pids())

    wait_for(scraped, 15, "Prometheus to scrape the resource exporter")
    assert requests.get(bed.alertmanager_url + "/-/ready", timeout=5).status_code == 200


def test_stop_leaves_no_process_behind(bed: Testbed) -> None:
    pids = bed.all_pids()
    assert len(pids) >= len(SERVICES) + 4
    bed.stop()
    assert leftover_pids(pids) == []
    assert bed.log_path("frontend").exists(), "a workdir given by the caller is kept"
    bed.stop()  # stopping twice is harmless


def test_the_testbed_command_prints_its_work_folder() -> None:
    """On stderr at start, before any service runs; a temporary one is gone after a stop."""
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.local.testbed"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stderr, stdout = process.stderr, process.stdout
        assert stderr is not None and stdout is not None
        said: list[str] = []
        reader = threading.Thread(target=lambda: said.append(stderr.readline()), daemon=True)
        reader.start()
        reader.join(30)
        first = said[0] if said else "nothing within 30 s"
        assert first.startswith("testbed: work folder /"), first
        workdir = Path(first.split()[3])
        assert (workdir / "logs").is_dir()
        assert "removed at stop" in first
        lines = iter(stdout.readline, "")
        urls = json.loads("".join(next(lines) for _ in range(4)))  # the URLs once all is up
        assert (workdir / "topology.json").exists() and urls["frontend"].startswith("http://")
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert not workdir.exists()


def test_a_part_that_fails_to_start_names_its_log_in_the_kept_work_folder() -> None:
    from infra.local.procs import TestbedError

    said: list[str] = []
    # a real program that exits with an error at once: Python, given Redis's options
    testbed = Testbed(TestbedConfig(redis_bin=sys.executable), progress=said.append)
    with pytest.raises(TestbedError) as caught:
        testbed.start()
    workdir = Path(said[0].split()[2])
    try:
        log = workdir / "logs" / "redis.log"
        assert f"redis exited with 2 (log {log})" in str(caught.value)
        assert "unknown option --port" in log.read_text(), "the log says why; it is kept"
    finally:
        shutil.rmtree(workdir)


def test_the_testbed_command_refuses_a_work_folder_that_is_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from infra.local.testbed import main

    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as caught:
        main(["--workdir", str(tmp_path / "file")])
    assert caught.value.code == 2
    assert f"argument --workdir: {tmp_path / 'file'} is not a folder" in capsys.readouterr().err

"""Window store persistence, configuration validation and the serve command line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import requests

from estimator.errors import DataWarning, InputError
from exporter.cli import main
from exporter.config import load_config, parse_duration, parse_limits, parse_size
from exporter.prom import UsageQueries
from exporter.store import StoreError, WindowStore
from tests.exporter_world import PATHS, train, world
from tests.servers import free_port, wait_until

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "deeprest.example.yaml"


def test_windows_persist_across_reopen(tmp_path: Path) -> None:
    windows = world(n=5)
    store = WindowStore(tmp_path)
    store.put(windows[:3])
    store.put(windows[2:])  # replacing an existing window is fine
    store.close()
    again = WindowStore(tmp_path)
    try:
        got = again.range(0, 1e9)
        assert [(w.start, w.calls, w.metrics) for w in got] == [
            (w.start, w.calls, w.metrics) for w in windows
        ]
        assert again.count() == 5 and again.last_end() == windows[-1].end
        assert [w.start for w in again.recent(2)] == [windows[3].start, windows[4].start]
        assert again.range(windows[1].start, windows[3].start)[0].calls[PATHS[0]] > 0
        # a long retraining range holds one copy of each path, not one per window
        assert len({id(p) for w in got for p in w.calls if p == PATHS[0]}) == 1
    finally:
        again.close()


def test_a_damaged_store_stops_serve_with_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = WindowStore(tmp_path / "data")
    store.put(world(n=400))
    store.close()
    path = tmp_path / "data" / "windows.sqlite"
    with open(path, "r+b") as handle:  # every page but the first (the schema) overwritten
        size = path.stat().st_size
        for offset in range(4096, size, 4096):
            handle.seek(offset)
            handle.write(b"\xde\xad" * 2048)
    train(tmp_path / "model")
    argv = ["serve", "--model", str(tmp_path / "model"), "--data-dir", str(tmp_path / "data")]
    assert main([*argv, "--port", str(free_port()), "--host", "127.0.0.1"]) == 2
    err = capsys.readouterr().err
    assert f"data_dir: {path}: cannot read the window store" in err and "Traceback" not in err


def test_durations_and_sizes() -> None:
    assert parse_duration("5s", "w") == 5 and parse_duration("1m", "w") == 60
    assert parse_duration("250ms", "w") == 0.25 and parse_duration(2, "w") == 2
    assert parse_size("4MiB", "s") == 4 << 20 and parse_size(100, "s") == 100
    assert parse_size("4MB", "s") == 4_000_000 and parse_size("1GB", "s") == 10**9
    for bad in ("5 parsecs", "-1s", "0s", True, None):
        with pytest.raises(InputError, match="field 'w'"):
            parse_duration(bad, "w")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("windoww: 5s\n", "windoww"),
        ("window: soon\n", "window"),
        ("port: 70000\n", "port"),
        ("prometheus: {url: localhost:9090}\n", "prometheus.url"),
        ("prometheus: {component_regex: '('}\n", "prometheus.component_regex"),
        ("receiver: {max_body_bytes: 4 parsecs}\n", "receiver.max_body_bytes"),
        ("traffic: {source: prometheus}\n", "traffic.apis"),
        ("limits: {front: {cpu: -1}}\n", "limits.front.cpu"),
        ("prometheus: {queries: {cpu: 'rate(x[{rnge}])'}}\n", "prometheus.queries.cpu"),
        (
            "prometheus: {limit_queries: {memory: 'x{a=\"b\"}'}}\n",
            "prometheus.limit_queries.memory",
        ),
        ("receiver: {max_pending_spans: 1000}\n", "receiver.max_pending_spans"),
        ("receiver: {max_spans_per_request: 100000000}\n", "receiver.max_spans_per_request"),
        ("- a list\n", None),
        ("port: 9464\nwindow: 60s\nport: 9465\n", None),  # a key given twice
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, field: str | None) -> None:
    path = tmp_path / "deeprest.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_config(path)
    assert info.value.source == str(path)
    assert info.value.field == field
    if "port: 9465" in text:
        assert "key 'port' is given twice" in str(info.value) and info.value.line == 3


def test_bad_yaml_is_one_line_naming_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "deeprest.yaml"
    path.write_text("receiver:\n  window: 5s\n  x: [1, 2\nport: 1\n")
    with pytest.raises(InputError) as info:
        load_config(path)
    message = str(info.value)
    assert info.value.line == 4 and "\n" not in message
    assert message.startswith(f"{path}, line 4: not valid YAML: expected ',' or ']'")
    assert message.endswith(", column 5")


def test_example_config_loads_and_flags_override() -> None:
    config = load_config(EXAMPLE, {"port": 9999, "window": "5s", "prometheus.url": "http://p:1"})
    assert config.port == 9999 and config.window == 5 and config.prometheus.url == "http://p:1"
    assert config.prometheus.component_label == "container"
    queries = UsageQueries(config.prometheus, config.window_seconds)
    assert "container_cpu_usage_seconds_total" in (queries.usage("cpu") or "")
    assert queries.component({"container": "compose-post-service"}) is not None
    # One application's containers: another's of the same name, in the same Prometheus, would
    # be summed with them.
    assert 'namespace="socialnetwork"' in (queries.usage("cpu") or "")


def test_a_flags_path_is_the_working_directorys_and_its_errors_name_the_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cfg").mkdir()
    path = tmp_path / "cfg" / "deeprest.yaml"
    path.write_text("window: 5s\n")
    (tmp_path / "token").write_text("secret\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(path, {"api_token_file": "token"}).api_token == "secret"
    for key, value in (("window", "1x"), ("prometheus.url", "localhost:9090")):
        with pytest.raises(InputError) as info:
            load_config(path, {key: value})
        assert info.value.source is None  # the file holds no such value
        assert info.value.field == "--" + key.replace(".", "-")


def test_component_mapping_regex_and_rename(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "prometheus:\n  component_label: pod\n  component_regex: '(.+)-[0-9a-f]+-[a-z0-9]+'\n"
        "  component_rename: {nginx-thrift: nginx}\n"
    )
    queries = UsageQueries(load_config(path).prometheus, 60)
    assert queries.component({"pod": "nginx-thrift-5d8f7c-abcde"}) == "nginx"
    assert queries.component({"pod": "compose-7f9c-x1y2z"}) == "compose"
    assert queries.component({"pod": "nohash"}) is None
    assert "sum by (pod)" in (queries.usage("memory") or "")


def test_serve_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("window: -5s\n")
    assert main(["serve", "--config", str(path)]) == 2
    assert "field 'window'" in capsys.readouterr().err
    capsys.readouterr()
    assert main(["serve", "--model", str(tmp_path / "missing")]) == 2  # the bundle given is bad
    assert "--model: " in capsys.readouterr().err
    path.write_text(f"model: {tmp_path / 'missing'}\n")
    assert main(["serve", "--config", str(path)]) == 2  # named where it was given
    assert f"{path}, field 'model': {tmp_path / 'missing'}: not a model bundle" in (
        capsys.readouterr().err
    )


def start_serve(tmp_path: Path, port: int, window: str) -> tuple[list[str], subprocess.Popen]:
    """`deeprest serve` of the bundle in tmp_path/model on loopback, as a process of its own
    (signals reach it as they reach a deployed exporter): its command line and the process."""
    command = [
        sys.executable, "-m", "exporter.cli", "serve", "--model", str(tmp_path / "model"),
        "--port", str(port), "--data-dir", str(tmp_path / "data"), "--window", window,
        "--host", "127.0.0.1",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return command, subprocess.Popen(command, stderr=subprocess.PIPE, env=env)


def test_serve_command_runs_without_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train(tmp_path / "model")
    port = free_port()
    command, process = start_serve(tmp_path, port, "1s")
    try:

        def estimated() -> bool:
            try:
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
            except requests.RequestException:
                return False
            return "\ndeeprest_last_estimate_timestamp_seconds " in text

        wait_until(estimated, 30, 0.2, what="the serve command to estimate a window")
        assert requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
        # a second exporter on its data dir would overwrite its windows: refused; readers are not
        second = [*command[3:7], str(free_port()), *command[8:]]
        assert main(second) == 2
        said = capsys.readouterr().err
        assert (
            f"{tmp_path / 'data'} is in use by another running exporter (pid {process.pid})" in said
        )
        assert WindowStore(tmp_path / "data").count() >= 1
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    assert process.returncode == 0, err.decode()
    assert WindowStore(tmp_path / "data").count() >= 1


def test_serve_reloads_its_bundle_on_sighup_and_keeps_serving(tmp_path: Path) -> None:
    """SIGHUP, as Prometheus and Alertmanager take it: the configured bundle is read again (a
    damaged one is refused, the loaded model goes on serving); its default action would end the
    process without the stop's save of what is open."""
    import shutil

    train(tmp_path / "model")
    port = free_port()
    _, process = start_serve(tmp_path, port, "1m")
    base = f"http://127.0.0.1:{port}"

    def version() -> str | None:
        try:
            return str(requests.get(f"{base}/api/v1/model", timeout=1).json()["version"])
        except (requests.RequestException, ValueError, KeyError):
            return None

    try:
        wait_until(lambda: version() is not None, 30, 0.2, what="the serve command to be ready")
        first = version()
        span = {
            "traceId": "ab" * 16, "spanId": "cd" * 8, "name": "/compose",
            "startTimeUnixNano": "1", "endTimeUnixNano": str(time.time_ns()),
        }  # fmt: skip
        resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "nginx"}}]}
        body = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}
        assert requests.post(f"{base}/v1/traces", json=body, timeout=5).status_code == 200
        (tmp_path / "model" / "manifest.json").write_text("{")  # damaged: refused
        process.send_signal(signal.SIGHUP)
        time.sleep(1.5)
        assert process.poll() is None and version() == first
        shutil.rmtree(tmp_path / "model")
        train(tmp_path / "model", seed=1)  # another bundle at the same path
        process.send_signal(signal.SIGHUP)
        wait_until(lambda: version() not in (None, first), 20, 0.2, what="the reload")
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    said = err.decode()
    assert process.returncode == 0, said
    assert "SIGHUP: model reload refused, the loaded model goes on serving" in said
    assert "on SIGHUP: version" in said
    assert " for the next start" in said  # the stop's save: "kept ... open trace"


def test_serve_where_it_cannot_listen_or_store_exits_2_with_the_cause(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train(tmp_path / "model")
    base = ["serve", "--model", str(tmp_path / "model")]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = [*base, "--port", str(port), "--host", "127.0.0.1"]
        assert main([*argv, "--data-dir", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert f"deeprest serve: error: cannot listen on 127.0.0.1:{port}: " in err
    assert "in use by another program?" in err and "Traceback" not in err
    argv = [*base, "--port", "0", "--data-dir", str(tmp_path / "data")]
    host = "x" * 64 + ".example"  # a label over 63 characters: refused without asking DNS
    assert main([*argv, "--host", host]) == 2
    assert f"{host}:0: host does not resolve" in capsys.readouterr().err
    (tmp_path / "afile").write_text("")
    argv = [*base, "--port", "0", "--host", "127.0.0.1", "--data-dir", str(tmp_path / "afile")]
    assert main(argv) == 2
    assert f"data_dir: {tmp_path / 'afile'} is not a directory" in capsys.readouterr().err


def test_limits_with_a_suffix_of_another_resource_are_read_with_a_warning() -> None:
    with pytest.warns(DataWarning) as said:
        limits = parse_limits({"db": {"cpu": "1Gi", "memory": "500m"}})
    assert limits == {("db", "cpu"): 2.0**30, ("db", "memory"): 0.5}
    messages = sorted(str(w.message) for w in said)
    assert messages[0].startswith("limits.db.cpu: 1Gi is a cpu limit of 1.07374e+09")
    assert messages[1].startswith("limits.db.memory: 500m is a memory limit of 0.5")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse_limits({"db": {"cpu": "500m", "memory": "2Gi"}})  # as meant: no warning


def test_traffic_apis_with_traces_as_the_source_are_said_to_be_unread(tmp_path: Path) -> None:
    path = tmp_path / "deeprest.yaml"
    path.write_text(
        "traffic:\n  apis:\n    - {component: web, operation: /x, expr: 'sum(rate(r[1m]))'}\n"
    )
    with pytest.warns(DataWarning, match="1 API listed, but traffic.source is otlp"):
        config = load_config(path)
    assert config.traffic_source == "otlp"


def test_corrupted_rows_of_the_store_are_dropped_or_named_with_a_way_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import sqlite3

    store = WindowStore(tmp_path)
    store.put(world(window=2.0)[:2])
    store.close()
    with sqlite3.connect(tmp_path / "windows.sqlite") as db:
        db.execute("INSERT INTO open_windows VALUES (10.0, 'garbage')")
        db.execute("INSERT INTO open_traces VALUES ('zz', '[1, 2]')")
        infinite = '[["00", "", "svc", "op", Infinity, 1, 1.0]]'  # an end time of 1e400
        db.execute("INSERT INTO open_traces VALUES ('ab', ?)", (infinite,))
        for trace, span in (
            ("c1", '["01", "", "svc", "op", "12", 1, 1.0]'),  # a time as text
            ("c2", '["01", "", "svc", "op", 1e30, 1, 1.0]'),  # past 2262
            ("c3", '["01", "", "svc", "op", 12, 1, Infinity]'),  # an endless weight
            ("c4", '["01", "", null, "op", 12, 1, 1.0]'),  # no service
        ):
            db.execute("INSERT INTO open_traces VALUES (?, ?)", (trace, f"[{span}]"))
        good = '[["02", "", "svc", "op", 12, -1, 2.0]]'  # a start of -1: unknown
        db.execute("INSERT INTO open_traces VALUES ('d0', ?)", (good,))
    store = WindowStore(tmp_path)
    # what a stop kept to resume is dropped with a warning: a start is not refused over it
    assert store.take_open() == []
    assert store.take_open_traces() == {
        bytes.fromhex("d0"): {b"\x02": (b"", "svc", "op", 12, -1, 2.0)}
    }
    assert all(
        f"open trace {t} is corrupted, dropped" in caplog.text for t in ("c1", "c2", "c3", "c4")
    )
    assert "open window at 10.0 is corrupted, dropped" in caplog.text
    assert "open trace zz is corrupted, dropped" in caplog.text
    assert "open trace ab is corrupted, dropped" in caplog.text
    assert len(store.recent(5)) == 2
    start = store.recent(1)[0].start
    store.close()
    with sqlite3.connect(tmp_path / "windows.sqlite") as db:
        db.execute("UPDATE windows SET body = 'garbage' WHERE start = ?", (start,))
    store = WindowStore(tmp_path)
    with pytest.raises(StoreError, match="DELETE FROM windows WHERE start = ") as info:
        store.recent(5)
    assert "or move the data_dir aside" in str(info.value)
    store.close()


def test_a_config_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "deeprest.yaml"
    path.write_bytes(b"window: 5s\nport: \xff\n")
    with pytest.raises(InputError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: not UTF-8 text (byte 18)"


def test_a_token_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    (tmp_path / "token").write_bytes(b"s3\xffcret\n")
    path = tmp_path / "deeprest.yaml"
    path.write_text("api_token_file: token\n")
    with pytest.raises(InputError) as info:
        load_config(path)
    assert info.value.field == "api_token_file"
    assert f"{tmp_path / 'token'} is not UTF-8 text (byte 3)" in str(info.value)


def test_readable_durations_take_the_largest_whole_unit() -> None:
    from exporter.config import readable_duration

    assert [readable_duration(s) for s in (7 * 86400, 36 * 3600, 5400, 45, 60, 0.5)] == [
        "7d",
        "36h",
        "90m",
        "45s",
        "1m",
        "0.5s",
    ]

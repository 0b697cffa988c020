"""The command line end to end on a tiny world: train, predict, evaluate, whatif; bundle tampering."""

from __future__ import annotations

import argparse
import csv
import html
import json
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from estimator.bundle import load_bundle
from estimator.errors import BundleError, DataWarning, InputError
from estimator.whatif import steady_estimates
from estimator.windows import Latency, Window, api_counts, load_windows, write_windows
from exporter.cli import build_parser, main
from tests.worlds import FRONT, tiny_world


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    train, test = root / "train.jsonl", root / "test.jsonl"
    write_windows(train, tiny_world(200, seed=1))
    write_windows(test, tiny_world(60, seed=2, scale=2.0))
    model = root / "model"
    assert main(["train", "--data", str(train), "--out", str(model), "--model", "linear"]) == 0
    return {"root": root, "train": train, "test": test, "model": model}


def test_predict_writes_contract_csv(trained: dict[str, Path]) -> None:
    out = trained["root"] / "pred.csv"
    assert (
        main(
            [
                "predict",
                "--model",
                str(trained["model"]),
                "--data",
                str(trained["test"]),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    with open(out) as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["start", "component", "resource", "lower", "median", "upper"]
    assert len(rows) == 60 * 5
    for row in rows:
        assert float(row["lower"]) <= float(row["median"]) <= float(row["upper"])
    pred, _ = load_bundle(trained["model"]).predict(load_windows(trained["test"]))
    written = np.array([[float(r[k]) for k in ("lower", "median", "upper")] for r in rows])
    assert written == pytest.approx(pred.reshape(-1, 3), rel=1e-9)  # not rounded to 6 digits


def test_evaluate_prints_table_and_writes_report(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    report = trained["root"] / "report"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(trained["model"]),
                "--data",
                str(trained["test"]),
                "--report",
                str(report),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "oracle_accuracy" in out and "mean_accuracy" in out
    assert (report / "index.html").is_file()
    assert len(list(report.glob("*.png"))) == 4  # one per component


def test_evaluate_says_what_its_scores_leave_out_or_may_get_wrong(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    windows = []
    for w in tiny_world(60, seed=2):  # cut off where training ended, one series renamed, MiB
        w = replace(w, start=w.start + 12000, end=w.end + 12000)
        w.metrics[("timeline-v2", "cpu")] = w.metrics.pop(("timeline", "cpu"))
        w.metrics[("store", "memory")] /= 2**20
        w.metrics[("compose", "cpu")] = 0.0  # not running in this range
        windows.append(w)
    data = trained["root"] / "odd.jsonl"
    write_windows(data, windows)
    assert main(["evaluate", "--model", str(trained["model"]), "--data", str(data)]) == 0
    said = capsys.readouterr()
    assert (
        f"deeprest evaluate: warning: {data}: 1 series of the model's 5 has no usage in the "
        "range, so no score: timeline/cpu"
    ) in said.err
    assert "1 series in the data the model does not estimate: timeline-v2/cpu" in said.err
    assert (
        "1 series used nothing in the range (0 throughout: a component not running, or its usage "
        "not measured?), so no "
        "accuracy: compose/cpu"
    ) in said.err
    assert "another unit than the model was trained on?" in said.err
    assert "store/memory (9." in said.err and "e-07x, in MiB?)" in said.err
    assert f"deeprest evaluate: warning: {data} starts where the model's training ended" in said.err
    # the summaries count the series with an accuracy: compose/cpu has none
    assert "  cpu (2 series): mean_accuracy" in said.out and "  memory (1 series)" in said.out
    assert " cores" in said.out and " MiB" in said.out  # mae in its unit


def test_evaluate_of_a_recording_with_the_training_windows_says_so(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    model = trained["root"] / "model60"
    data = str(trained["train"])
    assert (
        main(["train", "--data", data, "--to", "60%", "--out", str(model), "--model", "linear"])
        == 0
    )
    capsys.readouterr()
    assert main(["evaluate", "--model", str(model), "--data", data]) == 0
    said = capsys.readouterr().err
    assert (
        f"deeprest evaluate: warning: {data}: 120 of the 200 windows scored lie in the model's training range"
        in said
    )
    assert "score the windows after it with --from" in said
    assert main(["evaluate", "--model", str(model), "--data", data, "--from", "60%"]) == 0
    assert "training range" not in capsys.readouterr().err
    # the training file scored from inside its range: the model scores windows it learned
    assert (
        main(["evaluate", "--model", str(model), "--data", data, "--from", "40%", "--to", "60%"])
        == 0
    )
    assert (
        "40 of the 40 windows scored lie in the model's training range" in capsys.readouterr().err
    )
    # another file on the training dates (a simulated test day) says nothing of it
    assert main(["evaluate", "--model", str(trained["model"]), "--data", str(trained["test"])]) == 0
    assert "training range" not in capsys.readouterr().err


def test_evaluate_scores_baselines_trained_before_the_range_on_the_same_windows(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    evaluate = ["evaluate", "--model", str(trained["model"]), "--data", str(trained["train"])]
    assert main([*evaluate, "--baselines"]) == 2
    assert "--baselines trains them on the data's windows before --from" in capsys.readouterr().err
    assert main([*evaluate, "--from", "60%", "--baselines"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("component"))
    assert header.split()[-3:] == ["linear_accuracy", "ols-api_accuracy", "history_accuracy"]
    assert "baselines, trained on the 120 windows before the range" in out
    for name in ("linear", "ols-api", "history"):
        line = next(x for x in out.splitlines() if x.startswith(f"  {name}: mean_accuracy"))
        assert 0.0 < float(line.split()[2].rstrip(",")) <= 1.0
    assert main([*evaluate, "--from", "5", "--baselines"]) == 2  # 5 windows: too few to train


def test_evaluate_says_the_history_baseline_reads_usage_that_repeats_window_to_window(
    trained: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    windows = load_windows(trained["train"])
    for before, window in zip(windows[::2], windows[1::2], strict=False):
        window.metrics = dict(before.metrics)  # one metric row given to two windows
    data = tmp_path / "coarse.jsonl"
    write_windows(data, windows)
    args = ["evaluate", "--model", str(trained["model"]), "--from", "60%", "--baselines"]
    assert main([*args, "--data", str(trained["train"])]) == 0
    assert "history baseline forecasts a value" not in capsys.readouterr().err
    assert main([*args, "--data", str(data)]) == 0
    err = capsys.readouterr().err
    assert "usage repeats the window before it in 5" in err  # about half of the windows
    assert "the history baseline forecasts a value it has already read" in err


def test_baselines_are_documented_as_needing_the_whole_recording(
    capsys: pytest.CaptureFixture[str],
) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    said = " ".join(readme[readme.index("With `--baselines`") :][:1500].split())
    assert "`--data` is the whole recording" in said and "not a test file split off it" in said
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    helped = " ".join(capsys.readouterr().out.split())
    assert "--data is the whole recording, split by --from, not a split-off test file" in helped


def test_an_unknown_flag_is_named_by_its_command_with_the_commands_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["whatif", "--model", "m", "--scale", "2", "--nope"])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: deeprest whatif ") and "--limits" in err
    assert "deeprest whatif: error: unrecognized arguments: --nope" in err


def test_readme_names_only_flags_its_commands_have() -> None:
    """The flags of the README's synopsis, and of each command's own section, are that
    command's (other sections name other tools' flags: Locust's, k6's)."""

    def flags_of(command: str) -> set[str]:
        parser = build_parser([command])
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return {o for action in sub.choices[command]._actions for o in action.option_strings}

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    synopsis = readme[readme.index("## Commands") :].split("```")[1]
    named: dict[str, set[str]] = {}
    for line in synopsis.strip().splitlines():
        named.setdefault(line.split()[1], set()).update(re.findall(r"--[a-z][a-z-]*", line))
    for section in re.split(r"^### ", readme, flags=re.MULTILINE)[1:]:
        title, body = section.split("\n", 1)
        if title in ("train", "evaluate", "simulate", "whatif", "predict", "import"):
            named[title] |= set(re.findall(r"`(--[a-z][a-z-]*)", body.split("\n## ")[0]))
    assert "--traffic" in named["whatif"]
    assert {c: sorted(f - flags_of(c)) for c, f in named.items() if f - flags_of(c)} == {}


def test_evaluate_report_sets_the_baselines_beside_the_model_with_training_times(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    report = trained["root"] / "report-baselines"
    evaluate = ["evaluate", "--model", str(trained["model"]), "--data", str(trained["train"])]
    assert main([*evaluate, "--from", "60%", "--baselines", "--report", str(report)]) == 0
    out = capsys.readouterr().out
    page = html.unescape((report / "index.html").read_text(encoding="utf-8"))
    for column in ("linear_accuracy", "ols-api_accuracy", "history_accuracy", "training_seconds"):
        assert f"<th>{column}</th>" in page
    assert "baselines, trained on the 120 windows before the range" in page
    # every summary the command line prints, the model's and each baseline's, as it prints it
    summaries = [x.strip() for x in out.splitlines() if ": mean_accuracy" in x]
    assert len(summaries) == 4 * 3  # the model and 3 baselines: overall, cpu and memory
    for line in summaries:
        assert f"{line}<" in page
    seconds = json.loads((trained["model"] / "manifest.json").read_text())["training"]["seconds"]
    model_row = re.search(r"<tr><td>linear \(model\)</td>(.*?)</tr>", page)
    assert model_row is not None and model_row[1].endswith(f"<td>{seconds:.3f}</td>")
    for name in ("linear", "ols-api", "history"):
        row = re.search(rf"<tr><td>{name}</td>(<td>[^<]*</td>)+</tr>", page)
        assert row is not None and float(row[1][4:-5]) > 0.0  # its training time, in seconds


def _evaluate_report(
    trained: dict[str, Path], name: str, capsys: pytest.CaptureFixture[str]
) -> tuple[str, str]:
    """Evaluate the trained model on the test windows with a report in `name`: the command's
    standard output and the report's page, unescaped."""
    report = trained["root"] / name
    evaluate = ["evaluate", "--model", str(trained["model"]), "--data", str(trained["test"])]
    assert main([*evaluate, "--report", str(report)]) == 0
    out = capsys.readouterr().out
    return out, html.unescape((report / "index.html").read_text(encoding="utf-8"))


def test_evaluate_report_gives_the_summary_of_each_resource(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out, page = _evaluate_report(trained, "report-resources", capsys)
    lines = [x.strip() for x in out.splitlines() if " series): " in x]
    assert [x.split(" (")[0] for x in lines] == ["cpu", "memory"]
    for line in lines:
        assert f"<li>{line}</li>" in page


def test_evaluate_report_gives_the_mae_in_its_unit_as_the_command_line_does(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out, page = _evaluate_report(trained, "report-units", capsys)
    lines = out.splitlines()
    table = lines[lines.index(next(x for x in lines if x.startswith("component"))) + 2 :]
    rows = [x.split() for x in table[: table.index(next(x for x in table if x[:8] == "summary:"))]]
    assert len(rows) == 5
    for component, resource, _, _, *mae_and_more in rows:
        mae = " ".join(mae_and_more[:2])  # `0.00123 cores`, `1.5 MiB`
        assert mae.endswith((" cores", "B")), mae
        assert f"<td>{component}</td><td>{resource}</td>" in page
        assert re.search(
            rf"<td>{component}</td><td>{resource}</td><td>[^<]*</td><td>[^<]*</td><td>{mae}</td>",
            page,
        ), mae


def test_readme_defines_every_figure_evaluate_prints(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    evaluate = ["evaluate", "--model", str(trained["model"]), "--data", str(trained["test"])]
    assert main(evaluate) == 0  # simulated data: the oracle's figures too
    out = capsys.readouterr().out
    header = next(x for x in out.splitlines() if x.startswith("component"))
    fields = set(header.split()[2:])
    for line in out.splitlines():
        if ": mean_accuracy" in line:
            fields |= set(re.findall(r"([a-z_]+) -?[0-9.]+", line.split(": ", 1)[1]))
    assert {"worst_mae_ratio", "median_accuracy", "oracle_accuracy"} <= fields
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("`evaluate` prints a table per dataset") :]
    assert not [f for f in sorted(fields) if f"`{f}`" not in section[:3000]]


def test_whatif_scale_grows_cpu_with_traffic(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = trained["root"] / "whatif"
    assert (
        main(["whatif", "--model", str(trained["model"]), "--scale", "3", "--out", str(out)]) == 0
    )
    with open(out / "whatif.csv") as handle:
        rows = {(r["component"], r["resource"]): r for r in csv.DictReader(handle)}
    ratio = float(rows[("compose", "cpu")]["ratio"])
    assert 2.0 < ratio < 3.0  # idle cost does not scale, per-call cost does
    assert (out / "whatif.png").stat().st_size > 0
    said = capsys.readouterr().err
    assert "busiest window is 3.00x the busiest of the training windows" in said
    bundle = load_bundle(trained["model"])
    peaks = dict(zip(bundle.series, bundle.training["usage_peaks"], strict=True))
    memory = rows[("store", "memory")]
    past = float(memory["vs_training_peak"])
    assert past == pytest.approx(float(memory["whatif_peak"]) / peaks[("store", "memory")])
    assert past > 1.1  # 3x users: memory past anything training saw, and said to be
    assert f"store {past:.2f}x" in said and "memory projected past its training peak" in said
    assert "beyond 1x the estimates extrapolate" in said
    assert "; per API, past its busiest window of training's last day: " in said  # 3x each


def test_whatif_traffic_runs_as_if_it_had_been_running(tmp_path: Path) -> None:
    """A what-if's first windows get the traffic history of the traffic itself, looped: a busy
    first stretch is not read as all the history there is (its peaks would come from it)."""
    train = tmp_path / "train.jsonl"
    write_windows(train, tiny_world(300, seed=1))
    model = tmp_path / "model"
    argv = ["train", "--data", str(train), "--out", str(model), "--model", "xgboost"]
    assert main([*argv, "--param", "n_estimators=50"]) == 0
    bundle = load_bundle(model)
    period = tiny_world(40, seed=3)
    for window in period[:8]:
        window.calls = {path: 3 * n for path, n in window.calls.items()}
    twice = period + period  # the second period follows its own traffic
    memory = bundle.series.index(("store", "memory"))
    cold, _ = bundle.predict(twice, aged=False)
    gap = np.abs(cold[:40, memory, 1] / cold[40:, memory, 1] - 1).max()
    assert gap > 0.05  # from no history, the first period reads otherwise than the second
    steady = steady_estimates(bundle, bundle.vocabulary.counts(twice))
    assert steady[:40] == pytest.approx(steady[40:], rel=0.01)
    # where the traffic has a history of its own, much as before
    assert steady[40:, :, 1] == pytest.approx(cold[40:, :, 1], rel=0.02)


def test_whatif_reach_is_measured_against_every_training_window() -> None:
    """The reference windows are the training's last day; a busier day before it is seen
    traffic too, not extrapolation. Bundles without the range fall back to the last day."""
    from types import SimpleNamespace

    from exporter.commands.whatif import traffic_reach

    reference = {"counts": [[10.0, 10.0], [25.0, 25.0]]}  # the last day: 20 to 50 calls
    asked = [{("a", "x"): 80.0}]
    bundle = SimpleNamespace(training={"calls_range": [5.0, 100.0], "reference_traffic": reference})
    line = traffic_reach(bundle, asked)  # type: ignore[arg-type]
    assert (
        line == "what-if traffic: its busiest window is 0.80x the busiest of the training windows"
    )
    # what rounds to 1.00x is not said to lie beyond the training windows
    edge = traffic_reach(bundle, [{("a", "x"): 100.2}, {("a", "x"): 4.99}])  # type: ignore[arg-type]
    assert (
        edge == "what-if traffic: its busiest window is 1.00x the busiest of the training windows"
    )
    older = SimpleNamespace(training={"reference_traffic": reference})
    line = traffic_reach(older, asked)  # type: ignore[arg-type]
    assert "1.60x the busiest of the training's reference windows (beyond 1x" in line


def test_whatif_rows_of_bundles_without_usage_peaks_say_nothing_of_them() -> None:
    from types import SimpleNamespace

    from exporter.commands.whatif import past_training, past_training_note

    rows: list[dict[str, object]] = [
        {"component": "cache", "resource": "memory", "whatif_peak": 300.0},
        {"component": "api", "resource": "cpu", "whatif_peak": 3.0},
    ]
    series = [("cache", "memory"), ("api", "cpu")]
    older = SimpleNamespace(series=series, training={})
    assert not past_training(older, series, rows)  # type: ignore[arg-type]
    assert "vs_training_peak" not in rows[0] and past_training_note(rows) == ""
    newer = SimpleNamespace(series=series, training={"usage_peaks": [100.0, 1.0]})
    assert past_training(newer, series, rows)  # type: ignore[arg-type]
    assert [r["vs_training_peak"] for r in rows] == [3.0, 3.0]
    assert past_training_note(rows).startswith(  # cpu is not said: no capacity caps it
        "memory projected past its training peak for 1 component (cache 3.00x)"
    )


def test_whatif_says_so_where_memory_falls_under_its_training_low(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    windows = tiny_world(200, seed=1)
    for w in windows:  # memory charged wholly to calls, as a model may fit a creeping heap
        w.metrics[("store", "memory")] = 1e6 * sum(api_counts(w.calls).values())
    write_windows(tmp_path / "charged.jsonl", windows)
    model = tmp_path / "model"
    argv = ["train", "--data", str(tmp_path / "charged.jsonl"), "--out", str(model)]
    assert main([*argv, "--model", "xgboost"]) == 0
    bundle = load_bundle(model)
    lows = dict(zip(bundle.series, bundle.training["usage_lows"], strict=True))
    assert lows[("store", "memory")] == min(w.metrics[("store", "memory")] for w in windows)
    capsys.readouterr()
    rows = _whatif_rows(model, tmp_path / "w", "--scale", "0.1")
    said = capsys.readouterr().err
    ratio = float(rows[("store", "memory")]["whatif_mean"]) / lows[("store", "memory")]
    assert ratio < 0.9 and "memory projected under its lowest in training for 1 component" in said
    _whatif_rows(model, tmp_path / "w1", "--scale", "1")
    assert "under its lowest in training" not in capsys.readouterr().err


def test_whatif_scale_never_answers_less_than_today(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Memory that creeps up while load falls teaches a linear model a negative cost per call;
    what-if answers at more traffic stay at least today's, those at less at most today's."""
    rng = np.random.default_rng(5)
    windows = []
    for i, w in enumerate(tiny_world(240, seed=3)):
        w.metrics[("front", "memory")] = (1e8 + 4e5 * i) * (1 + 0.01 * rng.standard_normal())
        windows.append(w)
    falling = sorted(windows, key=lambda w: -sum(api_counts(w.calls).values()))
    for i, w in enumerate(falling):  # busiest first: load falls while memory rises
        w.start, w.end = 60.0 * i, 60.0 * (i + 1)
    data, model = tmp_path / "creep.jsonl", tmp_path / "model"
    write_windows(data, falling)
    argv = ["train", "--data", str(data), "--out", str(model), "--model", "ols-api"]
    assert main(argv) == 0
    bundle = load_bundle(model)
    twice = [replace(w, calls={p: 2 * n for p, n in w.calls.items()}) for w in falling[-60:]]
    j = bundle.series.index(("front", "memory"))
    raw = bundle.predict(twice, aged=False)[0][:, j, 1].mean()
    assert raw < bundle.predict(falling[-60:], aged=False)[0][:, j, 1].mean()  # the model dips
    for scale, ok in (("2", lambda r: r >= 1.0), ("0.5", lambda r: r <= 1.0)):
        rows = _whatif_rows(model, tmp_path / f"w{scale}", "--scale", scale)
        assert ok(float(rows[("front", "memory")]["ratio"])), rows[("front", "memory")]
        assert ok(float(rows[("compose", "cpu")]["ratio"]))
    rows = _whatif_rows(model, tmp_path / "w3", "--scale", "3")
    assert float(rows[("compose", "cpu")]["ratio"]) > 2.0  # rising series keep the model's answer


def test_whatif_of_more_traffic_answering_less_memory_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A new shape (flat at the busiest window, all day) is no scale, so the model's answer
    stands: where memory crept up while load fell, it answers less memory under more traffic,
    and a warning names that memory."""
    windows = tiny_world(240, seed=3)
    falling = sorted(windows, key=lambda w: -sum(api_counts(w.calls).values()))
    for i, w in enumerate(falling):  # busiest first: load falls while memory rises
        w.start, w.end = 60.0 * i, 60.0 * (i + 1)
        w.metrics[("front", "memory")] = 1e8 * (1 + 0.005 * i)
    data, model = tmp_path / "creep.jsonl", tmp_path / "model"
    write_windows(data, falling)
    assert main(["train", "--data", str(data), "--out", str(model), "--model", "ols-api"]) == 0
    busiest = api_counts(falling[0].calls)
    columns = sorted(busiest)
    flat = tmp_path / "flat.csv"
    flat.write_text(
        "start," + ",".join(f"{c}:{o}" for c, o in columns) + "\n"
        + "".join(f"{60 * i}," + ",".join(str(busiest[a]) for a in columns) + "\n" for i in range(60))
    )  # fmt: skip
    quiet = tmp_path / "quiet.jsonl"  # the base: the last, quietest hour
    write_windows(quiet, falling[-60:])
    capsys.readouterr()
    rows = _whatif_rows(model, tmp_path / "w-flat", "--traffic", str(flat), "--data", str(quiet))
    said = capsys.readouterr().err
    ratio = float(rows[("front", "memory")]["ratio"])
    assert ratio < 0.98
    assert f"memory lower than at the base for 1 component (front {ratio:.2f}x) though" in said
    _whatif_rows(model, tmp_path / "w-same", "--scale", "1", "--data", str(quiet))
    assert "memory lower than at the base" not in capsys.readouterr().err  # the same traffic


def _with_front_latency(
    trained: dict[str, Path], name: str, latency: Callable[[float, float], float]
) -> tuple[Path, list[Window]]:
    """The test windows with /compose latency `latency(load, busiest load)` in seconds (load:
    requests/s of all APIs), written to `name` beside the trained model."""
    windows = load_windows(trained["test"])
    loads = [sum(api_counts(w.calls).values()) / (w.end - w.start) for w in windows]
    for w, load in zip(windows, loads, strict=True):
        value = latency(load, max(loads))
        w.latency[FRONT] = Latency(int(w.calls[(FRONT,)]), value, value, value, value, value)
    data = trained["root"] / name
    write_windows(data, windows)
    return data, windows


def test_whatif_on_windows_with_latency_adds_each_apis_latency_at_the_peak_load(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Windows whose /compose latency rises with load, as in a queue of capacity 1.1 times
    their busiest load."""
    data, windows = _with_front_latency(
        trained,
        "with-latency.jsonl",
        lambda load, busiest: 0.01 + 0.002 / (1 - load / (1.1 * busiest)),
    )
    out = trained["root"] / "whatif-latency"
    argv = ["whatif", "--model", str(trained["model"]), "--data", str(data), "--scale", "1.05"]
    assert main([*argv, "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "latency at the peak load" in said
    assert (  # /read's windows carry no latency: said, not left out in silence
        "no latency curve for 1 API of the what-if traffic: front:/read (too few recorded "
        "windows with its latency)"
    ) in said
    with open(out / "latency.csv") as handle:
        [row] = list(csv.DictReader(handle))
    assert row["api"] == "front:/compose"
    assert math.inf > float(row["whatif_p95_s"]) > float(row["base_p95_s"]) > 0.01
    assert float(row["whatif_low_s"]) <= float(row["whatif_p95_s"]) <= float(row["whatif_high_s"])

    few = trained["root"] / "few-with-latency.jsonl"  # too few windows for a curve
    write_windows(few, windows[:2])
    argv = ["whatif", "--model", str(trained["model"]), "--data", str(few), "--scale", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "no latency table" in err and "latency.csv" not in err
    assert not (out / "latency.csv").exists()  # the earlier run's table is gone


def test_whatif_gives_no_latency_at_another_load_where_it_does_not_rise_with_load(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Recorded /compose latency that falls as load grows (a mix that changed with the hours):
    no queueing curve is read through it, so the what-if names it without a latency at the
    peak, as `deeprest capacity` leaves its latency columns empty, instead of a saturation."""
    data, _ = _with_front_latency(
        trained, "falling-latency.jsonl", lambda load, busiest: 0.05 - 0.03 * load / busiest
    )
    out = trained["root"] / "whatif-falling"
    argv = ["whatif", "--model", str(trained["model"]), "--data", str(data), "--scale", "3"]
    assert main([*argv, "--out", str(out)]) == 0
    said = capsys.readouterr()
    assert "front:/compose (its latency does not rise with load in the recording" in said.out
    assert "no latency table" in said.err
    assert not (out / "latency.csv").exists()


def _whatif_rows(model: Path, out: Path, *extra: str) -> dict[tuple[str, str], dict[str, str]]:
    assert main(["whatif", "--model", str(model), "--out", str(out), *extra]) == 0
    with open(out / "whatif.csv") as handle:
        return {(r["component"], r["resource"]): r for r in csv.DictReader(handle)}


def test_whatif_base_traffic_with_an_api_never_seen_keeps_its_paths_and_warns(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    windows = load_windows(trained["test"])
    new_api = ("front", "/brand-new")
    for w in windows:
        w.calls[(new_api,)] = 5.0
        w.calls[(new_api, ("store", "write"))] = 5.0
    data = trained["root"] / "with_new_api.jsonl"
    write_windows(data, windows)
    rows = _whatif_rows(
        trained["model"], trained["root"] / "wnew", "--data", str(data), "--scale", "2"
    )
    said = capsys.readouterr().err
    assert f"{data}: 1 API never seen in training (front:/brand-new: " in said
    busiest = max(sum(api_counts(w.calls).values()) for w in windows)  # the new API's calls too
    seen = load_bundle(trained["model"]).training["calls_range"][1]
    assert f"its busiest window is {2 * busiest / seen:.2f}x the busiest of the training" in said
    plain = _whatif_rows(
        trained["model"], trained["root"] / "wold", "--data", str(trained["test"]), "--scale", "2"
    )
    # its store writes are counted (in the model's features of paths unseen), not dropped
    assert float(rows[("store", "cpu")]["base_mean"]) > float(plain[("store", "cpu")]["base_mean"])
    # the limit search scales them with the rest: the same limit is reached sooner
    limits = trained["root"] / "store-limit.yaml"
    limits.write_text(f"store: {{cpu: {3 * float(plain[('store', 'cpu')]['base_peak'])}}}\n")
    with_new, without = (
        _whatif_rows(
            trained["model"],
            trained["root"] / name,
            "--data",
            str(path),
            "--scale",
            "2",
            "--limits",
            str(limits),
        )[("store", "cpu")]
        for name, path in (("lnew", data), ("lold", trained["test"]))
    )
    assert float(with_new["max_scale_median"]) < float(without["max_scale_median"])
    capsys.readouterr()
    # as the traffic asked about, its paths are kept too
    given = _whatif_rows(trained["model"], trained["root"] / "wgiven", "--traffic", str(data))
    said = capsys.readouterr().err
    assert f"{data}: 1 API never seen in training (front:/brand-new: " in said
    assert "call paths are kept as they are" in said and "times --scale" not in said
    known = _whatif_rows(
        trained["model"], trained["root"] / "wknown", "--traffic", str(trained["test"])
    )
    assert float(given[("store", "cpu")]["whatif_mean"]) > float(
        known[("store", "cpu")]["whatif_mean"]
    )


def test_whatif_refuses_windows_of_another_length_than_the_models(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    halves = load_windows(trained["test"])
    for w in halves:
        w.end = w.start + (w.end - w.start) / 2
    data = trained["root"] / "halves.jsonl"
    write_windows(data, halves)
    base = ["whatif", "--model", str(trained["model"]), "--out", str(trained["root"] / "wh")]
    for extra in (["--data", str(data), "--scale", "2"], ["--traffic", str(data)]):
        assert main([*base, *extra]) == 2
        said = capsys.readouterr().err
        assert f"{data}: windows of 30 s; the model was trained on windows of 60 s" in said


def test_predict_and_evaluate_refuse_a_dataset_with_many_windows_of_another_length(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Half the windows of the model's length and half shorter: the most common length matches,
    and each short window's calls would read as a quieter full one."""
    windows = load_windows(trained["test"])
    for w in windows[len(windows) // 2 :]:
        w.end = w.start + (w.end - w.start) / 2
    data = trained["root"] / "mixed.jsonl"
    write_windows(data, windows)
    for command in (
        ["predict", "--out", str(trained["root"] / "mixed.csv")],
        ["evaluate"],
    ):
        assert (
            main([command[0], "--model", str(trained["model"]), "--data", str(data), *command[1:]])
            == 2
        )
        said = capsys.readouterr().err
        assert (
            f"{data}: {len(windows) - len(windows) // 2} of {len(windows)} windows are not of the model's 60 s"
            in said
        )


def test_whatif_limits_give_headroom_and_the_scale_each_allows(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """max_scale is where the upper band's peak meets the limit: at that scale it is at or under
    the limit, a little beyond it is over; the first limit reached is named."""
    root, model = trained["root"], trained["model"]
    today = _whatif_rows(model, root / "w1", "--scale", "1")
    upper = float(today[("compose", "cpu")]["whatif_peak_upper"])
    limits = root / "limits.yaml"  # a serve config's limits section is read as well
    limits.write_text(f"limits:\n  compose:\n    cpu: {2 * upper}\n  front:\n    cpu: 1000\n")
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:  # stderr is no terminal: lines, not a bar
        patch.setattr("exporter.commands.whatif.SAY_EVERY", 0.0)
        rows = _whatif_rows(model, root / "w2", "--scale", "1.5", "--limits", str(limits))
    said = capsys.readouterr()
    line = said.out.splitlines()[-1]
    tried = re.findall(r"\] ([0-9]+) traffic scales estimated", said.err)  # the search's count
    assert tried and int(tried[-1]) > 3, said.err
    assert re.search(r"\] 2 traffic scales estimated \(the last [0-9.]+x\)", said.err), said.err
    compose = rows[("compose", "cpu")]
    allowed = float(compose["max_scale"])
    assert 1.5 < allowed < 2.5  # idle cost does not scale: a bit under twice
    assert float(compose["headroom"]) == pytest.approx(
        1 - float(compose["whatif_peak_upper"]) / (2 * upper)
    )
    assert rows[("front", "cpu")]["max_scale"] == "inf"
    assert rows[("timeline", "cpu")]["limit"] == ""
    assert line.startswith("capacity: compose/cpu reaches its limit") and f"{allowed:.2f}x" in line
    at = _whatif_rows(model, root / "w3", "--scale", str(allowed))
    beyond = _whatif_rows(model, root / "w4", "--scale", str(allowed * 1.01))
    assert float(at[("compose", "cpu")]["whatif_peak_upper"]) <= 2 * upper
    assert float(beyond[("compose", "cpu")]["whatif_peak_upper"]) > 2 * upper
    expected = float(compose["max_scale_median"])  # the same, read off the median
    assert expected > allowed
    at = _whatif_rows(model, root / "w5", "--scale", str(expected))
    beyond = _whatif_rows(model, root / "w6", "--scale", str(expected * 1.01))
    assert float(at[("compose", "cpu")]["whatif_peak"]) <= 2 * upper
    assert float(beyond[("compose", "cpu")]["whatif_peak"]) > 2 * upper
    # a limit only a scale past 100x breaks: asking that scale searches that far
    far = root / "far.yaml"
    far.write_text(f"compose: {{cpu: {150 * upper}}}\n")
    capsys.readouterr()
    rows = _whatif_rows(model, root / "w7", "--scale", "400", "--limits", str(far))
    line = capsys.readouterr().out.splitlines()[-1]
    compose = rows[("compose", "cpu")]
    assert float(compose["headroom"]) < 0 and 100 < float(compose["max_scale"]) < 400
    assert line.startswith("capacity: compose/cpu reaches its limit")
    rows = _whatif_rows(model, root / "w8", "--scale", "2", "--limits", str(far))
    assert rows[("compose", "cpu")]["max_scale"] == "inf"  # 2x asked: searched to 100x
    assert "no limit is reached up to 100x the base traffic" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nosuch:\n  cpu: 1\n", "field 'limits.nosuch.cpu': the model estimates no series"),
        ("compose:\n  CPU: 1\n", "no series compose/CPU; of compose, it estimates cpu"),
        ("compose:\n  cpu: -1\n", "field 'limits.compose.cpu': expected a positive number"),
        ("compose:\n  cpu: .nan\n", "field 'limits.compose.cpu': expected a positive number"),
        ("compose:\n  cpu: 2 cores\n", "field 'limits.compose.cpu': expected a positive number"),
        ("\xff\xfe\x00", "not UTF-8 text"),
        ("compose: {cpu: 1}\ncompose: {memory: 2}\n", "key 'compose' is given twice"),
        ("compose: [1, 2\n", "line 2: not valid YAML or JSON: expected "),
        ("{}\n", "holds no limits"),
        ("limit:\n  compose: {cpu: 500m}\n", "no `limits` section, and limit holds mappings"),
        ("port: 9464\nreceiver: {sampling_ratio: 1}\n", "a deeprest config (keys port, receiver)"),
    ],
)
def test_whatif_bad_limits_exit_2_and_name_the_file(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    limits = trained["root"] / "bad-limits.yaml"
    limits.write_bytes(text.encode("latin-1"))
    out = trained["root"] / "w-bad"
    argv = ["whatif", "--model", str(trained["model"]), "--scale", "2", "--limits", str(limits)]
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(limits) in err and message in err


def test_a_traffic_csv_of_a_spreadsheet_with_a_byte_order_mark_and_blank_lines_is_read(
    trained: dict[str, Path],
) -> None:
    traffic = trained["root"] / "excel.csv"
    traffic.write_bytes(b"\xef\xbb\xbfstart,/compose\r\n0,100\r\n60,100\r\n\r\n\r\n")
    out = trained["root"] / "whatif-excel"
    argv = ["whatif", "--model", str(trained["model"]), "--traffic", str(traffic)]
    assert main([*argv, "--out", str(out)]) == 0
    with open(out / "whatif.csv") as handle:
        assert len(list(csv.DictReader(handle))) > 0


def test_whatif_traffic_csv(trained: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    traffic = trained["root"] / "mix.csv"
    traffic.write_text("start,/compose,front:/read\n0,100,0\n60,100,0\n")
    out = trained["root"] / "whatif-mix"
    assert (
        main(
            [
                "whatif",
                "--model",
                str(trained["model"]),
                "--traffic",
                str(traffic),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    with open(out / "whatif.csv") as handle:
        rows = {(r["component"], r["resource"]): r for r in csv.DictReader(handle)}
    assert float(rows[("timeline", "cpu")]["whatif_mean"]) < float(
        rows[("timeline", "cpu")]["base_mean"]
    )
    bad = trained["root"] / "bad.csv"
    whatif = ["whatif", "--model", str(trained["model"]), "--traffic", str(bad), "--out", str(out)]
    for text, where in (
        ("start,/compose\n0,lots\n", "line 2, field '/compose'"),
        ("start,/compose,front:/compose\n0,1,2\n", "line 1, field 'front:/compose'"),  # one API
        ("start,/nope\n0,1\n", "line 1, field '/nope'"),
        ("start,/compose\n60,1\n0,1\n", "line 3, field 'start': rows must be in time order"),
        ("start,/compose\n60,1\n60,2\n", "line 3, field 'start': the same start as the row"),
        ("start\n0\n60\n", "line 1: no API column after 'start'"),  # no traffic at all
        ("", "line 1: empty file: expected a header 'start,API,...'"),
        ("\n\n", "line 1: empty file: expected a header 'start,API,...'"),
        ("start,/compose\n0,1\n60,1e300\n", "line 3, field '/compose': 1e300 calls a window"),
        ("start,/compose\n0,1\n30,1\n", "line 3, field 'start': 30 s after the row before"),
        ("start,/compose\n1e30,1\n", "line 2, field 'start': 1e30 is past the year 2262"),
        ("start,/compose\nmonday,1\n", "line 2, field 'start': 'monday' is neither unix"),
    ):
        bad.write_text(text)
        assert main(whatif) == 2
        assert f"{bad}, {where}" in capsys.readouterr().err
    bad.write_text("start,/compose\n0,100\n3600,100\n")  # an hour apart
    assert main(whatif) == 0
    assert "1 row further than a window (60 s) after the row before" in capsys.readouterr().err
    bad.write_bytes(b"start,/compose\n0,\xff\n")
    assert main(whatif) == 2
    assert f"{bad}: not UTF-8 text (byte 18)" in capsys.readouterr().err
    # traffic of no calls: no multiple of it reaches a limit, said so
    zero = trained["root"] / "zero.csv"
    zero.write_text("start,/compose\n0,0\n60,0\n")
    limits = trained["root"] / "zero-limits.yaml"
    limits.write_text("compose: {cpu: 0.5}\n")
    assert main([*whatif[:4], str(zero), "--limits", str(limits), "--out", str(out / "z")]) == 0
    said = capsys.readouterr().out
    assert "capacity: the traffic of zero holds no API calls, so no multiple of it" in said
    # start times in ISO 8601 too, as --from and --to take them
    iso = trained["root"] / "iso.csv"
    iso.write_text(
        "start,/compose,front:/read\n1970-01-01T00:00:00Z,100,0\n1970-01-01T00:01:00,100,0\n"
    )
    out_iso = trained["root"] / "whatif-iso"
    assert main([*whatif[:4], str(iso), "--out", str(out_iso)]) == 0
    assert (out_iso / "whatif.csv").read_bytes() == (out / "whatif.csv").read_bytes()


def test_bad_input_exits_2_and_names_the_line(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    bad = trained["root"] / "bad.jsonl"
    lines = trained["test"].read_text().splitlines()
    lines[3] = lines[3].replace('"start"', '"begin"', 1)
    bad.write_text("\n".join(lines))
    code = main(
        [
            "predict",
            "--model",
            str(trained["model"]),
            "--data",
            str(bad),
            "--out",
            str(trained["root"] / "p.csv"),
        ]
    )
    assert code == 2
    assert "line 4" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--data",
                str(trained["root"] / "missing.jsonl"),
                "--out",
                str(trained["root"] / "m"),
            ]
        )
        == 2
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", str(trained["train"]), "--out", "x", "--model", "nope"])
    assert exit_info.value.code == 2


def test_bundle_round_trip_predicts_identically(trained: dict[str, Path]) -> None:
    bundle = load_bundle(trained["model"])
    copy = trained["root"] / "copy"
    shutil.copytree(trained["model"], copy)
    windows = tiny_world(20, seed=5)
    a, _ = bundle.predict(windows)
    b, _ = load_bundle(copy).predict(windows)
    assert np.array_equal(a, b)
    manifest = json.loads((trained["model"] / "manifest.json").read_text())
    assert manifest["model"]["series_kinds"] == ["linear"] * 5
    assert len(manifest["validation"]["accuracy"]) == 5


@pytest.mark.parametrize(
    "damage", ["truncate_manifest", "flip_model_byte", "drop_file", "version", "vocabulary"]
)
def test_damaged_bundles_get_a_clear_error(
    trained: dict[str, Path], tmp_path: Path, damage: str
) -> None:
    bundle = tmp_path / "b"
    shutil.copytree(trained["model"], bundle)
    manifest_path = bundle / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    model_file = bundle / sorted(manifest["files"])[0]
    if damage == "truncate_manifest":
        manifest_path.write_text(manifest_path.read_text()[:100])
    elif damage == "flip_model_byte":
        data = bytearray(model_file.read_bytes())
        data[len(data) // 2] ^= 0xFF
        model_file.write_bytes(bytes(data))
    elif damage == "drop_file":
        model_file.unlink()
    elif damage == "version":
        manifest["format_version"] = 99
        manifest_path.write_text(json.dumps(manifest))
    else:
        manifest["vocabulary"]["components"].append("extra")
        manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError):
        load_bundle(bundle)
    code = main(
        [
            "predict",
            "--model",
            str(bundle),
            "--data",
            str(trained["test"]),
            "--out",
            str(tmp_path / "p.csv"),
        ]
    )
    assert code == 2  # the bundle given is bad input


def test_series_with_usage_in_too_few_windows_to_learn_from_are_left_out_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    windows = tiny_world(100, seed=4)
    for i, w in enumerate(windows):
        if i not in (5, 6):  # measured twice only
            del w.metrics[("store", "memory")]
        if i < 90:  # measured only in the validation tail
            del w.metrics[("compose", "cpu")]
    data = tmp_path / "scarce.jsonl"
    write_windows(data, windows)
    out = tmp_path / "m"
    assert main(["train", "--data", str(data), "--out", str(out), "--model", "linear"]) == 0
    said = capsys.readouterr().err
    assert (
        "deeprest train: warning: 2 series left out, with usage in fewer than 10 of the 80 "
        "windows fitted on (before the validation tail), too few to learn from: compose/cpu (0), "
        "store/memory (2)"
    ) in said
    assert {("compose", "cpu"), ("store", "memory")}.isdisjoint(load_bundle(out).series)
    fresh = tiny_world(100, seed=4)
    for i, w in enumerate(fresh):  # none left to learn: 9 windows of usage before the tail
        w.metrics = {("compose", "cpu"): w.metrics[("compose", "cpu")]} if i < 9 or i >= 90 else {}
    write_windows(data, fresh)
    assert main(["train", "--data", str(data), "--out", str(out), "--model", "linear"]) == 2
    assert (
        "no series has usage in 10 or more of the 80 windows fitted on" in capsys.readouterr().err
    )


def test_cpu_or_memory_that_reads_0_while_its_component_serves_calls_is_left_out_and_memory_at_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A collector that reports 0 for a pod it does not see: the series would be published as 0
    expected usage (and 0 cores at 2x); it is left out, named with its spans. So is memory that
    reads 0 where no calls came (no running process holds none), while CPU there may be idle. A
    component that never writes keeps its disk series at 0: usage measured, and a write is news."""
    windows = tiny_world(100, seed=4)
    for w in windows:
        w.metrics[("compose", "cpu")] = 0.0
        w.metrics[("compose", "write_iops")] = 0.0
        w.metrics[("avatar", "cpu")] = w.metrics[("avatar", "memory")] = 0.0  # no spans
    data = tmp_path / "zero.jsonl"
    write_windows(data, windows)
    out = tmp_path / "m"
    assert main(["train", "--data", str(data), "--out", str(out), "--model", "linear"]) == 0
    said = capsys.readouterr().err
    spans = sum(n for w in windows for path, n in w.calls.items() if path[-1][0] == "compose")
    assert (
        "deeprest train: warning: 2 series left out, reading 0 in every window (memory, which "
        "no running process lacks, or while their component served calls): their usage is not "
        "being measured (a metric of another pod or container name?): avatar/memory (0 spans), "
        f"compose/cpu ({spans:,.0f} spans)"
    ) in said
    series = load_bundle(out).series
    assert ("compose", "cpu") not in series and ("compose", "write_iops") in series
    assert ("avatar", "memory") not in series and ("avatar", "cpu") in series


def test_train_names_series_whose_band_missed_most_of_the_validation_tail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A service's CPU that turns ten times as noisy for the last fifth of the recording (a
    neighbour on its node): its band, learned before, misses there, though its usage does not
    drift; training says so, as it does not for the others."""
    windows = tiny_world(200, seed=5)
    rng = np.random.default_rng(5)
    for w in windows[160:]:
        w.metrics[("timeline", "cpu")] *= 1 + 0.25 * rng.standard_normal()
    data = tmp_path / "jump.jsonl"
    write_windows(data, windows)
    args = ["train", "--data", str(data), "--out", str(tmp_path / "m"), "--model", "linear"]
    assert main(args) == 0
    said = capsys.readouterr().err
    assert "deeprest train: warning: the 90% band of 1 series covered under 50% of the " in said
    assert "validation tail's windows (timeline/cpu " in said
    assert "expect bands to miss more often than 1 in 10" in said


def test_two_trainings_on_the_same_data_give_one_version_whatever_their_wall_time(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    args = ["train", "--data", str(trained["train"]), "--model", "linear"]
    versions = []
    for name in ("a", "b"):
        assert main([*args, "--out", str(tmp_path / name)]) == 0
        versions.append(load_bundle(tmp_path / name).version)
    manifest = tmp_path / "b" / "manifest.json"
    edited = json.loads(manifest.read_text())
    edited["training"]["seconds"] += 100.0  # another wall time: still the same model
    manifest.write_text(json.dumps(edited))
    assert load_bundle(tmp_path / "b").version == versions[0] == versions[1]
    edited["training"]["end"] += 60.0  # what the model is: refused as edited
    manifest.write_text(json.dumps(edited))
    with pytest.raises(BundleError, match="differs from the manifest the model was saved with"):
        load_bundle(tmp_path / "b")


def test_a_share_without_its_percent_sign_is_refused_on_a_recent_dataset() -> None:
    from exporter.commands.ranges import span

    windows = [replace(w, start=w.start + 1.7e9, end=w.end + 1.7e9) for w in tiny_world(10)]
    with pytest.raises(InputError, match="for a share of the windows write 60%$") as info:
        span(windows, "60", None, "d.jsonl")  # as a time of 1970 it would keep every window
    assert (info.value.source, info.value.field) == ("d.jsonl", "--from")
    with pytest.raises(InputError, match="60 is read as unix seconds"):
        span(windows, None, "60", "d.jsonl")
    for number in ("1e3", "-5", "100"):  # other numbers of 1970 too, without a share to offer
        with pytest.raises(InputError, match=r"\(write unix seconds, an ISO 8601 time, or a share"):
            span(windows, number, None, "d.jsonl")
    assert span(windows, "60%", None, "d.jsonl") == slice(6, 10)
    assert span(tiny_world(10), "60", None, "d.jsonl") == slice(1, 10)  # data of 1970: a time


def test_version_and_bare_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("deeprest ")
    assert main([]) == 2


def test_one_recording_splits_by_share_or_time(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data, model = trained["train"], trained["root"] / "split-model"
    args = ["train", "--data", str(data), "--out", str(model), "--model", "linear", "--to", "60%"]
    assert main(args) == 0
    training = json.loads((model / "manifest.json").read_text())["training"]
    assert training["windows"] == 120  # the first 60% of 200
    capsys.readouterr()
    evaluate = ["evaluate", "--model", str(model), "--data", str(data)]
    assert main([*evaluate, "--from", "60%"]) == 0
    assert "(80 windows" in capsys.readouterr().out
    # The same split by time: the first test window's start, as unix seconds and as ISO 8601 (UTC).
    first = training["end"]
    iso = datetime.fromtimestamp(first, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    for bound in (str(first), iso):
        assert main([*evaluate, "--from", bound]) == 0
        assert "(80 windows" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["simulate", "--scenario", "normal", "--attack-component", "nginx"], "--attack-component"),
        (["simulate", "--scenario", "normal", "--window-seconds", "0"], "--window-seconds"),
        (["simulate", "--scenario", "normal", "--scale", "3"], "--scale"),  # scale's only
        (["simulate", "--scenario", "scale", "--scale", "0"], "--scale"),
    ],
)
def test_errors_name_a_flag_as_it_is_typed(
    tmp_path: Path, argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--out", str(tmp_path / "x.jsonl")]) == 2
    assert f"field '{flag}'" in capsys.readouterr().err


@pytest.mark.parametrize("bound", ["150%", "x%", "soon", "nan"])
def test_bad_range_bounds_exit_2(
    trained: dict[str, Path], bound: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = trained["root"] / "bad-range-model"
    args = ["train", "--data", str(trained["train"]), "--out", str(out), "--model", "linear"]
    assert main([*args, "--to", bound]) == 2
    assert "--to" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("kind", "param", "named"),
    [
        ("auto", "robust=false", "robust"),  # a kind's hyperparameter given to auto
        ("xgboost", "bogus=1", "bogus"),
        ("xgboost", "shrinkage=-1", "shrinkage"),
        ("linear", "ridge=x", "ridge"),
        ("qrnn", "shrinkage=-1", "shrinkage"),
        ("xgboost", "n_estimators=abc", "n_estimators"),  # the wrong type
        ("xgboost", "n_estimators=1.5", "n_estimators"),
        ("xgboost", "learning_rate=-0.5", "learning_rate"),  # out of range
        ("xgboost", "calibration_fraction=2", "calibration_fraction"),
        ("xgboost", 'robust="yes"', "robust"),
        ("linear", "components=abc", "components"),
    ],
)
def test_bad_hyperparameters_exit_2(
    trained: dict[str, Path],
    kind: str,
    param: str,
    named: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = trained["root"] / "bad-param-model"
    args = ["train", "--data", str(trained["train"]), "--out", str(out), "--model", kind]
    assert main([*args, "--param", param]) == 2
    err = capsys.readouterr().err
    assert "field '--param'" in err and named in err, err
    assert not out.exists()


@pytest.mark.parametrize("kind", ["xgboost", "auto"])
def test_a_validation_tail_that_leaves_too_few_windows_to_fit_exits_2_naming_it(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "thirty.jsonl"
    write_windows(data, tiny_world(30, seed=3))
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "m"), "--model", kind]
    assert main([*argv, "--validation-fraction", "0.8"]) == 2
    err = capsys.readouterr().err
    assert "field '--validation-fraction': only 30 windows carry metrics; training needs at " in err
    assert "least 48: 10 to fit on, and 38 to validate on (the newest 0.8 of them" in err
    assert "or hold out fewer: --validation-fraction 0.67 at most" in err
    # the least that trains: 11 windows, the one-window tail the advice names
    write_windows(data, tiny_world(11, seed=3))
    assert main([*argv, "--validation-fraction", "0.2"]) == 2
    err = capsys.readouterr().err
    assert "training needs at least 12: 10 to fit on, and 2 to validate on" in err
    assert "--validation-fraction 0.091 at most" in err
    assert main([*argv, "--validation-fraction", "0.091"]) == 0
    write_windows(data, tiny_world(10, seed=3))
    assert main([*argv, "--validation-fraction", "0.091"]) == 2
    [err] = [line for line in capsys.readouterr().err.splitlines() if " error: " in line]
    assert "only 10 windows carry metrics; training needs at least 11: 10 to fit on" in err
    assert "field" not in err and "at most" not in err  # no fraction trains on 10


@pytest.mark.parametrize(("fraction", "need"), [(None, 12), ("0.3", 14), ("0.05", 11)])
def test_the_windows_the_minimum_asks_for_train(
    tmp_path: Path, fraction: str | None, need: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """The least number of windows an error asks for counts the validation tail held out of
    them: given that many, training succeeds."""
    data = tmp_path / "few.jsonl"
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "m"), "--model", "linear"]
    argv += ["--validation-fraction", fraction] if fraction else []
    write_windows(data, tiny_world(10, seed=3))
    assert main(argv) == 2
    err = capsys.readouterr().err
    asked = re.search(r"training needs at least (\d+)", err)
    assert asked and int(asked.group(1)) == need, err
    write_windows(data, tiny_world(need - 1, seed=3))
    assert main(argv) == 2
    assert f"training needs at least {need}" in capsys.readouterr().err
    write_windows(data, tiny_world(need, seed=3))
    assert main(argv) == 0, capsys.readouterr().err


def test_an_empty_range_exits_2(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    evaluate = ["evaluate", "--model", str(trained["model"]), "--data", str(trained["test"])]
    assert main([*evaluate, "--from", "50%", "--to", "50.1%"]) == 2  # both on window 30 of 60
    assert "no windows within --from 50% and --to 50.1% (60 in the dataset)" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("command", ["train", "predict", "evaluate", "capacity"])
@pytest.mark.parametrize(
    ("start", "end", "said"),
    [
        (
            "60%",
            "40%",
            "--from 60% (1970-01-01T00:36:00Z) is not before --to 40% (1970-01-01T00:24:00Z)",
        ),
        (
            "50%",
            "50%",
            "--from 50% (1970-01-01T00:30:00Z) is not before --to 50% (1970-01-01T00:30:00Z)",
        ),
        (
            "1970-01-01T00:40",
            "1970-01-01T00:20",
            "--from 1970-01-01T00:40 (1970-01-01T00:40:00Z) is",
        ),
        (
            "2400",
            "40%",
            "--from 2400 (1970-01-01T00:40:00Z) is not before --to 40% (1970-01-01T00:24",
        ),
        (
            "40%",
            "1440",
            "--from 40% (1970-01-01T00:24:00Z) is not before --to 1440 (1970-01-01T00:24",
        ),
    ],
)
def test_a_from_at_or_after_the_to_exits_2_saying_so(
    trained: dict[str, Path],
    tmp_path: Path,
    command: str,
    start: str,
    end: str,
    said: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data, model = str(trained["test"]), str(trained["model"])
    argv = {
        "train": ["train", "--data", data, "--out", str(tmp_path / "m")],
        "predict": ["predict", "--model", model, "--data", data, "--out", str(tmp_path / "p.csv")],
        "evaluate": ["evaluate", "--model", model, "--data", data],
        "capacity": ["capacity", "--data", data, "--out", str(tmp_path / "c")],
    }[command]
    assert main([*argv, "--from", start, "--to", end]) == 2
    assert f"error: {data}: {said}" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "capacity"])
def test_a_from_at_or_after_the_to_of_a_stores_range_exits_2_saying_so(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "deeprest.yaml"
    config.write_text("")
    argv = [command, "--config", str(config), "--out", str(tmp_path / "o")]
    assert main([*argv, "--from", "2023-01-30T12:00Z", "--to", "1675076400"]) == 2
    assert (
        "--from 2023-01-30T12:00Z (2023-01-30T12:00:00Z) is not before --to 1675076400 "
        "(2023-01-30T11:00:00Z)"
    ) in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_range_is_estimated_with_the_history_before_it(trained: dict[str, Path]) -> None:
    """Estimates of the windows from 60% on are those of a run over the whole dataset, as live."""
    root = trained["root"]
    model = make_model_dir(root, trained["train"], "xgboost")
    rows = {}
    for name, extra in (("all", []), ("tail", ["--from", "60%"])):
        out = root / f"range-{name}.csv"
        args = ["predict", "--model", str(model), "--data", str(trained["test"]), "--out", str(out)]
        assert main([*args, *extra]) == 0
        with open(out) as handle:
            rows[name] = list(csv.DictReader(handle))
    assert len(rows["tail"]) == 24 * 5  # 60 windows, the last 40%
    assert rows["tail"] == rows["all"][-len(rows["tail"]) :]


def make_model_dir(root: Path, data: Path, kind: str) -> Path:
    """A bundle of `kind` trained on `data` (once per module)."""
    model = root / f"model-{kind}"
    if not model.exists():
        args = ["train", "--data", str(data), "--out", str(model), "--model", kind]
        assert main([*args, "--param", "n_estimators=10"]) == 0
    return model


def test_auto_training_tells_each_candidate_as_it_starts(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Fitting every candidate is the long part of `deeprest train`: each one is announced."""
    out = trained["root"] / "model-auto-progress"
    args = ["train", "--data", str(trained["train"]), "--out", str(out), "--model", "auto"]
    assert main([*args, "--param", 'candidates=["linear", "ols-api"]']) == 0
    said = capsys.readouterr()
    lines = (said.out + said.err).splitlines()
    for kind in ("linear", "ols-api"):
        assert any(f"auto: fitting {kind} on the first 160 windows" in line for line in lines)
    assert any("auto: fitting" in line and "on all 200 windows" in line for line in lines)
    half = trained["root"] / "model-auto-half"  # --validation-fraction sets auto's tail too
    args = ["train", "--data", str(trained["train"]), "--out", str(half), "--model", "auto"]
    argv = [*args, "--param", 'candidates=["linear"]', "--validation-fraction", "0.5"]
    assert main(argv) == 0
    said = capsys.readouterr()
    assert "auto: fitting linear on the first 100 windows" in said.out + said.err
    tiny = [*args[:4], str(half.parent / "model-auto-tiny"), *args[5:]]
    argv = [*tiny, "--param", 'candidates=["linear"]', "--param", "validation_fraction=0.999"]
    assert main(argv) == 2  # the user's numbers, not a failure of the tool
    assert "field '--param': auto: too few windows (200)" in capsys.readouterr().err


def test_unwritable_outputs_exit_2_before_the_work(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root, model, test = trained["root"], str(trained["model"]), str(trained["test"])
    a_file = root / "a-file"
    a_file.write_text("x")
    a_dir = root / "a-dir"
    a_dir.mkdir(exist_ok=True)
    for argv, flag in (
        (["predict", "--model", model, "--data", test, "--out", str(a_dir)], "--out"),
        (["predict", "--model", model, "--data", test, "--out", f"{a_file}/p.csv"], "--out"),
        (["train", "--data", test, "--model", "linear", "--out", str(a_file)], "--out"),
        (["evaluate", "--model", model, "--data", test, "--report", str(a_file)], "--report"),
        (["whatif", "--model", model, "--scale", "2", "--out", str(a_file)], "--out"),
        (["simulate", "--scenario", "normal", "--windows", "5", "--out", str(a_dir)], "--out"),
        (["train", "--data", test, "--max-paths", "0", "--out", str(root / "m0")], "--max-paths"),
        # a folder that takes no new file, though access() says it may (as root)
        (["predict", "--model", model, "--data", test, "--out", "/proc/p.csv"], "--out"),
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"field '{flag}'" in err and "Traceback" not in err, err
    nested = root / "new" / "deeper" / "pred.csv"
    trial = ["predict", "--model", model, "--data", str(a_file), "--out", str(nested)]
    assert main(trial) == 2  # the input does not read: the trial left no folder behind
    assert not (root / "new").exists()
    capsys.readouterr()
    assert main(["predict", "--model", model, "--data", test, "--out", str(nested)]) == 0
    assert nested.exists(), "the folders of an output are created"


def test_an_output_that_is_the_input_exits_2_and_leaves_it_whole(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root, model = trained["root"], str(trained["model"])
    data = root / "keep.jsonl"
    shutil.copy(trained["test"], data)
    raw = root / "keep-raw.json"
    raw.write_text(
        json.dumps([{"end": 60.0 * k, "component": "a", "operation": "b"} for k in range(9)])
    )
    link = root / "keep-link.jsonl"
    link.unlink(missing_ok=True)
    link.symlink_to(data)
    for argv, reads, flag in (
        (["predict", "--model", model, "--data", str(data), "--out", str(data)], data, "--data"),
        (["predict", "--model", model, "--data", str(data), "--out", str(link)], data, "--data"),
        (["import", "--format", "raw", "--input", str(raw), "--out", str(raw)], raw, "--input"),
    ):
        before = reads.read_bytes()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"field '--out': is the file {flag} reads" in err, err
        assert reads.read_bytes() == before


def test_data_the_bundle_cannot_read_exits_2_or_warns(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root, model = trained["root"], str(trained["model"])
    windows = load_windows(trained["test"])
    other_app = root / "other-app.jsonl"
    write_windows(
        other_app,
        [
            replace(
                w,
                calls={(("gw", f"/other{op}"),): n for (_, op), n in api_counts(w.calls).items()},
            )
            for w in windows
        ],
    )
    predict = ["predict", "--model", model, "--out", str(root / "p.csv"), "--data"]
    assert main([*predict, str(other_app)]) == 2
    assert "was seen in training" in capsys.readouterr().err
    halved = root / "30s.jsonl"
    write_windows(halved, [replace(w, start=w.start / 2, end=w.end / 2) for w in windows])
    assert main([*predict, str(halved)]) == 2
    assert "windows of 30 s; the model was trained on windows of 60 s" in capsys.readouterr().err
    traffic_only = root / "traffic-only.jsonl"
    write_windows(traffic_only, [replace(w, metrics={}, oracle={}) for w in windows])
    evaluate = ["evaluate", "--model", model, "--data", str(traffic_only)]
    assert main(evaluate) == 2
    assert "carries usage" in capsys.readouterr().err
    some_new = root / "some-new.jsonl"
    new_api = (("gw", "/brand-new"),)
    write_windows(some_new, [replace(w, calls={**w.calls, new_api: 1000.0}) for w in windows])
    assert main([*predict, str(some_new)]) == 0
    assert "too rare to keep (gw:/brand-new)" in capsys.readouterr().err
    below = (*new_api, ("db", "query"))
    reaching = root / "new-reaching-db.jsonl"
    write_windows(
        reaching, [replace(w, calls={**w.calls, new_api: 1e3, below: 2e3}) for w in windows]
    )
    assert main([*predict, str(reaching)]) == 0
    said = capsys.readouterr().err
    assert "estimates of the components they reach may leave out their work: db, gw" in said
    assert "with spans in training" not in said
    untraced = root / "store-untraced.jsonl"
    write_windows(
        untraced,
        [
            replace(w, calls={p: n for p, n in w.calls.items() if p[-1][0] != "store"})
            for w in windows
        ],
    )
    assert main([*predict, str(untraced)]) == 0
    said = capsys.readouterr().err
    assert "1 component with spans in training but none in" in said
    assert "estimated at their idle usage: store (renamed, or no longer traced?)" in said


def test_limits_read_an_exponent_yaml_reads_as_text_and_kubernetes_quantities() -> None:
    from exporter.config import parse_limits

    assert parse_limits({"db": {"memory": "4e9", "cpu": 2}}) == {
        ("db", "memory"): 4e9,
        ("db", "cpu"): 2.0,
    }
    assert parse_limits({"db": {"memory": "4Gi", "cpu": "500m", "write_iops": "2k"}}) == {
        ("db", "memory"): 4 * 2**30,
        ("db", "cpu"): 0.5,
        ("db", "write_iops"): 2000.0,
    }
    for bad in ("4 GiB", "500x", "lots", "-1", "0m"):
        with pytest.raises(InputError, match="Kubernetes quantity") as info:
            parse_limits({"db": {"memory": bad}})
        assert info.value.field == "limits.db.memory"


def test_a_bare_limit_that_reads_as_no_such_limit_is_warned_of() -> None:
    import warnings

    from exporter.config import parse_limits

    with pytest.warns(
        DataWarning,
        match=r"limits.web.cpu: 2000 without a unit is a cpu limit of 2000 cores; .*2000m meant\?",
    ):
        assert parse_limits({"web": {"cpu": 2000}}) == {("web", "cpu"): 2000.0}
    with pytest.warns(DataWarning, match=r"limits.db.memory: 4096 without a unit .*4096Mi meant\?"):
        parse_limits({"db": {"memory": "4096"}})
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # plausible as they stand: nothing to say
        parse_limits({"web": {"cpu": 4, "memory": 4e9}, "db": {"cpu": "2000m", "memory": "4Gi"}})


def test_capacity_line_says_the_unit_and_when_the_base_is_over_already() -> None:
    from estimator.whatif import Allowed
    from exporter.commands.whatif import capacity_line

    key = ("db", "memory")
    limits = {key: 3e8}
    line = capacity_line({key: Allowed(2.5, 3.0)}, limits, "the base traffic")
    assert "reaches its limit (286 MiB) first, at 2.50x the base traffic" in line
    assert "over it already" not in line
    line = capacity_line({key: Allowed(0.02, 0.5)}, limits, "the base traffic")
    assert "at 0.02x the base traffic by the upper band (0.50x by the median): the base " in line
    assert line.endswith("the base traffic is over it already")
    line = capacity_line({key: Allowed(2.5, 3.0)}, limits, "the base traffic", peaks={key: 2e8})
    assert line.endswith(
        "(the limit is 1.50x the most it used in training: an extrapolation, "
        "where a cache, pool or heap may stop short of it)"
    )
    line = capacity_line({key: Allowed(2.5, 3.0)}, limits, "the base traffic", peaks={key: 4e8})
    assert "extrapolation" not in line
    cpu = ("db", "cpu")  # no cache stops CPU short: more calls may cost more there instead
    line = capacity_line({cpu: Allowed(2.5, 3.0)}, {cpu: 0.5}, "the base traffic", peaks={cpu: 0.2})
    assert line.endswith(
        "where a saturated resource (a lock, a disk, a full core) may cost more per call there)"
    )
    line = capacity_line({key: Allowed(0.0, 0.0)}, limits, "the base traffic")
    assert line == (
        "capacity: db/memory is over its limit (286 MiB) already: its upper band is over it even "
        "at 1/64 of the base traffic; its median is too, so the limit is under what it needs"
    )
    line = capacity_line({key: Allowed(0.0, 11.87)}, limits, "the base traffic")
    assert line.endswith(
        "even at 1/64 of the base traffic; its median reaches it at 11.87x the base traffic, so "
        "the band's spread (noise or spikes in training) is what leaves no room: a limit to read "
        "with max_scale_median"
    )


def test_train_refuses_windows_of_several_lengths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from estimator.windows import write_windows
    from tests.worlds import tiny_world

    windows = tiny_world(40)
    for i, window in enumerate(windows):  # 60 s windows, every other one cut to 30 s
        window.start = 60.0 * i
        window.end = window.start + (30.0 if i % 2 else 60.0)
    data = tmp_path / "mixed.jsonl"
    write_windows(data, windows)
    assert (
        main(["train", "--data", str(data), "--out", str(tmp_path / "m"), "--model", "linear"]) == 2
    )
    err = capsys.readouterr().err
    assert "windows of several lengths: 20 of 60 s, 20 of 30 s" in err


def test_report_file_names_keep_names_apart_that_differ_in_unsafe_characters() -> None:
    from exporter.report import slug

    names = ["api/v1", "api v1", "api_v1", "api.v1", "ünï"]
    slugs = [slug(n) for n in names]
    assert len(set(slugs)) == len(names)
    assert slug("api_v1") == "api_v1" and slug("post-storage") == "post-storage"
    assert all(s.isascii() and "/" not in s for s in slugs)


def test_tables_show_tiny_values_and_not_minus_zero() -> None:
    from exporter.report import format_table

    rows = [{"series": "a", "value": 2e-5}, {"series": "b", "value": -0.0}, {"series": "c"}]
    rows += [{"series": "d", "value": 1.23456}, {"series": "e", "value": float("nan")}]
    lines = format_table(rows, ["series", "value"]).splitlines()[2:]
    assert [line.split()[1] if len(line.split()) > 1 else "" for line in lines] == [
        "2e-05",
        "0.000",
        "",
        "1.235",
        "nan",
    ]


def test_plots_of_names_the_font_lacks_warn_nothing(tmp_path: Path) -> None:
    import warnings

    from exporter.report import plain, pyplot

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a glyph warning would fail the test
        plt = pyplot()
        fig, ax = plt.subplots()
        title = ax.set_title(plain("注文サービス 🚀 svc$\\frac$"))  # `$`: a character, not TeX
        ax.set_yscale("log")
        ax.set_ylim(1, 1000)
        fig.savefig(tmp_path / "names.png")
        ticks = [t.get_text() for t in ax.get_yticklabels()]
        plt.close(fig)
    assert (tmp_path / "names.png").stat().st_size > 0
    assert title.get_text() == "注文サービス 🚀 svc\\$\\frac\\$"
    assert plt.rcParams["text.parse_math"]  # the log axis's 10^k labels are TeX
    assert "$\\mathdefault{10^{2}}$" in ticks


def test_a_flag_value_argparse_refuses_names_the_command_and_the_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--scenario", "normal", "--days", "abc", "--out", "x.jsonl"])
    assert info.value.code == 2
    said = capsys.readouterr().err.splitlines()[-1]
    assert said == "deeprest simulate: error: field '--days': invalid float value: 'abc'"
    with pytest.raises(SystemExit):
        main(["simulate", "--scenario", "normal"])
    said = capsys.readouterr().err.splitlines()[-1]
    assert said == "deeprest simulate: error: the following arguments are required: --out"


def test_whatif_on_data_with_usage_shows_the_recorded_mean_beside_the_estimate(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = trained["root"] / "whatif-actual"
    argv = ["whatif", "--model", str(trained["model"]), "--scale", "2"]
    assert main([*argv, "--data", str(trained["test"]), "--out", str(out)]) == 0
    with open(out / "whatif.csv") as handle:
        rows = list(csv.DictReader(handle))
    windows = load_windows(trained["test"])
    key = (rows[0]["component"], rows[0]["resource"])
    recorded = np.mean([w.metrics[key] for w in windows if key in w.metrics])
    assert float(rows[0]["base_actual_mean"]) == pytest.approx(recorded)
    said = capsys.readouterr()
    assert "base_actual_mean" in said.out and "times or more off the usage" not in said.err
    for w in windows:  # a series measured five times what the model says of that traffic
        if key in w.metrics:
            w.metrics[key] *= 5.0
    off = trained["root"] / "five-times.jsonl"
    write_windows(off, windows)
    assert main([*argv, "--data", str(off), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "2 times or more off the usage they recorded for 1 series: " in err
    assert f"{key[0]}/{key[1]} (recorded 5" in err


def test_a_traffic_csv_is_told_from_a_window_dataset_by_more_than_a_lower_case_suffix(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A CSV named .CSV (a Windows export) or .txt is read as the CSV it is; a file that is
    neither form (YAML, gzip, tab-separated) is refused naming both, not as bad JSON; a CSV
    separated by semicolons or tabs is told so."""
    root = trained["root"]
    whatif = ["whatif", "--model", str(trained["model"]), "--out", str(root / "w-kind")]
    expected = None
    for name in ("kind.csv", "KIND.CSV", "kind.txt"):
        traffic = root / name
        traffic.write_text("start,/compose\n0,100\n60,100\n")
        assert main([*whatif, "--traffic", str(traffic)]) == 0, capsys.readouterr().err
        answer = (root / "w-kind" / "whatif.csv").read_bytes()
        assert expected is None or answer == expected
        expected = answer
    for name, body in (
        ("kind.yaml", b"/compose: 100\n"),
        ("kind.tsv", b"start\t/compose\n0\t100\n"),
        ("kind.csv.gz", b"\x1f\x8b\x08\x00\x00\x00\x00\x00"),
    ):
        (root / name).write_bytes(body)
        assert main([*whatif, "--traffic", str(root / name)]) == 2
        err = capsys.readouterr().err
        assert f"{root / name}: neither a CSV of calls per window" in err, err
        assert "not valid JSON" not in err and "not UTF-8" not in err
    for separator in (";", "\t"):
        (root / "sep.csv").write_text(f"start{separator}/compose\n0{separator}100\n")
        assert main([*whatif, "--traffic", str(root / "sep.csv")]) == 2
        err = capsys.readouterr().err
        assert f"line 1: columns separated by {separator!r}: separate them with commas" in err


def test_a_window_dataset_given_through_a_pipe_is_read_whole(trained: dict[str, Path]) -> None:
    """--traffic /dev/stdin (or a shell's <(...)): a pipe is read once, so its form is not told
    from its first bytes, which would take them from the dataset's reader; it is read as a window
    dataset, whole, as the same windows in a named file are."""
    root, repo = trained["root"], Path(__file__).resolve().parents[1]
    whatif = [sys.executable, "-m", "exporter.cli", "whatif", "--model", str(trained["model"])]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]),
    }
    answers = []
    for name, traffic, given in (
        ("w-pipe", "/dev/stdin", trained["test"].read_bytes()),
        ("w-named", str(trained["test"]), b""),
    ):
        done = subprocess.run(
            [*whatif, "--traffic", traffic, "--out", str(root / name)],
            input=given,
            capture_output=True,
            cwd=repo,
            env=env,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr.decode()
        answers.append((root / name / "whatif.csv").read_bytes())
    assert answers[0] == answers[1]


def test_evaluate_names_the_worst_series(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """At hundreds of series, worst_accuracy alone says nothing of where to look."""
    root, model = trained["root"], trained["model"]
    capsys.readouterr()
    assert main(["evaluate", "--model", str(model), "--data", str(root / "test.jsonl")]) == 0
    printed = capsys.readouterr().out
    found = re.search(
        r"^summary: .*worst_accuracy ([0-9.]+).* \(worst: (\S+)/(\S+)\)$", printed, re.M
    )
    assert found, printed
    row = next(
        line.split()
        for line in printed.splitlines()
        if line.split()[:2] == list(found.groups()[1:])
    )
    assert f"{float(row[2]):.3f}" == found.group(1)


def test_the_series_table_and_the_model_api_name_the_kind_auto_chose_per_series() -> None:
    from estimator.evaluation import build_evaluation
    from exporter.app import model_json
    from exporter.live import ModelInfo
    from exporter.report import Scored, series_table

    windows = tiny_world(20, seed=3)
    series = [("front", "cpu"), ("store", "memory")]
    pred = np.ones((len(windows), len(series), 3))
    evaluation = build_evaluation(windows, series, pred)
    rows, columns = series_table(Scored(evaluation, kinds=["xgboost", "qrnn"]))
    assert columns[:3] == ["component", "resource", "model"]
    assert [row["model"] for row in rows] == ["xgboost", "qrnn"]
    assert "model" not in series_table(Scored(evaluation, kinds=["xgboost"] * 2))[1]
    info = ModelInfo(
        "auto",
        "v",
        60.0,
        tuple(series),
        {},
        {},
        kinds=dict(zip(series, ["xgboost", "qrnn"], strict=True)),
    )
    assert [s["model"] for s in model_json(info)["series"]] == ["xgboost", "qrnn"]


def test_evaluate_report_carries_what_the_command_warned_of_and_the_range_scored(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A reader of the report alone sees why a series has no score, on which windows, and the
    series to look at first."""
    windows = []
    for w in tiny_world(60, seed=2):
        w = replace(w, start=w.start + 1675078800, end=w.end + 1675078800)
        w.metrics[("compose", "cpu")] = 0.0  # not running in this range
        windows.append(w)
    data, report = trained["root"] / "idle.jsonl", trained["root"] / "report-notes"
    model = str(trained["model"])
    write_windows(data, windows)
    assert main(["evaluate", "--model", model, "--data", str(data), "--report", str(report)]) == 0
    said = capsys.readouterr()
    page = html.unescape((report / "index.html").read_text(encoding="utf-8"))
    warned = [x.split(": warning: ", 1)[1] for x in said.err.splitlines() if ": warning: " in x]
    assert warned and all(text in page for text in warned)
    assert "60 windows, 2023-01-30 11:40 to 12:40 UTC" in page
    assert "accuracy = 1 - WAPE" in page and "90% band" in page
    worst = re.search(r"^summary: .*\(worst: (\S+)/(\S+)\)$", said.out, re.M)
    assert worst is not None
    assert re.search(rf"series to look at first.*?<td>{worst[1]}</td><td>{worst[2]}</td>", page)
    row = re.search(r"<tr><td>compose</td><td>cpu</td><td>([^<]*)</td>", page)
    assert row is not None and row[1] == "no usage"  # not a number that reads as a score


def test_component_plots_read_in_real_time_and_in_the_units_of_the_table() -> None:
    """Memory in MiB as the table's mae, times in UTC, each panel with its series' scores."""
    from estimator.evaluation import build_evaluation
    from exporter.report import component_figure, pyplot

    windows = [
        replace(w, start=w.start + 1675078800, end=w.end + 1675078800) for w in tiny_world(30)
    ]
    for w in windows:
        w.metrics[("compose", "cpu")] = 0.0
    series = [("compose", "cpu"), ("store", "memory")]
    pred = np.stack([[[w.oracle[k] * f for f in (0.9, 1.0, 1.1)] for k in series] for w in windows])
    pred[:, 0] = 0.0
    evaluation = build_evaluation(windows, series, pred)
    figure = component_figure(evaluation, "store", "test: store")
    try:
        memory = figure.axes[0]
        assert "MiB" in memory.get_ylabel()
        assert 40 < memory.get_ylim()[1] < 200  # 5e7 bytes drawn as about 48 MiB
        assert "UTC" in figure.axes[-1].get_xlabel()
        assert memory.xaxis.get_converter() is not None  # dates, not minutes since start
        accuracy = evaluation.accuracy[1]
        assert f"accuracy {accuracy:.3f}" in memory.get_title(loc="left")
    finally:
        pyplot().close(figure)
    figure = component_figure(evaluation, "compose", "test: compose")
    try:  # 0 throughout: no score, not a perfect one
        assert "no usage" in figure.axes[0].get_title(loc="left")
    finally:
        pyplot().close(figure)


def test_quantities_read_without_exponents_in_their_unit() -> None:
    from exporter.report import quantity

    assert quantity(1023.9 * 2**20, "memory") == "1 GiB"  # not 1.02e+03 MiB
    assert quantity(1001 * 2**20, "memory") == "0.978 GiB"
    assert quantity(9.31e-10, "memory") == "0 B"
    assert quantity(12345.0, "write_iops") == "12345 ops/s"
    assert quantity(0.5, "cpu") == "0.5 cores"


def test_whatif_says_what_its_columns_are_in_what_unit_and_band(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = trained["root"] / "whatif-legend"
    model = str(trained["model"])
    assert main(["whatif", "--model", model, "--scale", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    header = next(x for x in printed.splitlines() if x.startswith("component"))
    legend = printed[printed.index(header) :]
    assert all(f"{column}:" in legend for column in header.split()[2:]), legend
    assert "90% band" in legend and "95% quantile" in legend and "cores" in legend
    assert "whatif.csv" in legend and "base units" in legend

"""Latency capacity: the queueing curve, the measured crossing and `deeprest capacity`."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from estimator.errors import InputError
from estimator.latency import (
    CurveFit,
    QueueCurve,
    Step,
    fit_curve,
    latency_drivers,
    load_steps,
    measured_max_rate,
    mutual_information,
    over_below,
)
from estimator.windows import Latency, Window, api_counts, write_windows
from exporter.cli import main
from exporter.store import WindowStore

TRUE = QueueCurve(base=0.004, scale=0.002, capacity=1000.0, servers=4)


def steps_of(curve: QueueCurve, rates: list[float], seed: int, noise: float = 0.05) -> list[Step]:
    rng = np.random.default_rng(seed)
    latency = curve.latency(np.array(rates)) * np.exp(rng.normal(0.0, noise, len(rates)))
    return [Step(r, r, float(v)) for r, v in zip(rates, latency, strict=True)]


def test_curve_max_rate_is_where_latency_meets_the_objective() -> None:
    for servers in (1, 4, 16):
        curve = QueueCurve(0.004, 0.002, 1000.0, servers)
        rate = curve.max_rate(0.1)
        assert 0 < rate < 1000
        assert float(curve.latency(rate)) == pytest.approx(0.1, rel=1e-6)
        assert float(curve.latency(rate * 1.01)) > 0.1
    assert curve.max_rate(0.003) == 0.0  # over the objective even at zero load
    assert QueueCurve(0.004, 0.0, 1000.0).max_rate(0.1) == math.inf  # flat: never reached
    assert float(QueueCurve(0.004, 0.002, 1000.0).latency(1000.0)) == math.inf


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_finds_the_knee_from_steps_below_it(seed: int) -> None:
    truth = TRUE.max_rate(0.02)  # about 910/s; the highest step (850/s) is at about 11 ms
    fit = fit_curve(steps_of(TRUE, [100, 300, 500, 650, 750, 850], seed))
    low, best, high = fit.max_rate(0.02)
    assert low <= truth <= high
    assert best == pytest.approx(truth, rel=0.05)
    assert high < 1.5 * truth, "a curve that bends is not given an open range"


def test_saturated_steps_cap_the_capacity() -> None:
    rates = [100.0, 300.0, 500.0, 700.0]
    steps = steps_of(TRUE, rates, 0)
    # Offered 1200 and 1500, served about 1000 with latency in seconds (a growing backlog).
    steps += [Step(1200.0, 990.0, 4.0), Step(1500.0, 1000.0, 9.0)]
    fit = fit_curve(steps)
    assert fit.steps_used == 4
    assert all(c.capacity <= 990.0 * 1.05 for c in fit.plausible)
    assert fit.max_rate(0.1)[2] < 990.0 * 1.05


def test_flat_latency_leaves_the_range_open() -> None:
    flat = [Step(r, r, 0.008 * (1 + 0.02 * (-1) ** i)) for i, r in enumerate([200, 400, 800, 1600])]
    low, _, high = fit_curve(flat).max_rate(0.1)
    assert low >= 1600 * 0.99 and high == math.inf


def test_an_uptick_within_noise_is_not_a_knee() -> None:
    latency = [0.030, 0.034, 0.028, 0.031, 0.027, 0.029, 0.035]  # about 10% noise, last one up
    steps = [Step(math.nan, 100.0 * (i + 1), v) for i, v in enumerate(latency)]
    fit = fit_curve(steps)
    assert math.isinf(fit.best.capacity)
    assert fit.latency(2000.0)[1] < 0.04, "no saturation read into noise"
    assert fit.max_rate(0.1)[0] < math.inf, "the range still holds the knees the steps allow"


def test_too_few_unsaturated_steps_is_an_input_error() -> None:
    with pytest.raises(InputError, match="at least 3 unsaturated steps"):
        fit_curve([Step(100, 100, 0.01), Step(200, 200, 0.02), Step(400, 300, 3.0)])


def test_a_step_that_served_nothing_is_left_out_of_the_fit() -> None:
    steps = [Step(100, 100, 0.01), Step(200, 200, 0.012), Step(400, 400, 0.02)]
    fit = fit_curve([Step(math.nan, 0.0, 0.01), *steps, Step(math.nan, 350, 0.0)])
    assert fit.steps_used == 3 and fit.highest_rate == 400
    with pytest.raises(InputError, match="has 2 \\(2 more served nothing or measured no"):
        fit_curve([*steps[:2], Step(math.nan, 0.0, 0.01), Step(300, 300, 0.0)])


def test_measured_crossing_reads_between_the_bracketing_steps() -> None:
    steps = [Step(100, 100, 0.010), Step(200, 200, 0.050), Step(300, 300, 0.200)]
    rate, lo, hi = measured_max_rate(steps, 0.1)
    assert (lo, hi) == (200, 300) and rate == pytest.approx(250.0)  # halfway in log latency
    assert measured_max_rate(steps, 0.005) == (0.0, 0.0, 100)
    assert measured_max_rate(steps, 1.0) == (math.inf, 300, math.inf)
    # A calm step past a slow one is noise: the steps' monotone fit pools the two (134 ms), so
    # the crossing stays between 200 and 300 rather than passing 400
    rate, lo, hi = measured_max_rate([*steps, Step(400, 400, 0.09)], 0.1)
    assert (lo, hi) == (200, 300) and rate == pytest.approx(
        200 + 100 * math.log(2) / math.log(0.134 / 0.05), rel=1e-3
    )
    noisy = [*steps, Step(400, 400, 0.09)]
    assert over_below(noisy, 0.1, measured_max_rate(noisy, 0.1)) == []


def test_no_curve_saturates_below_a_rate_a_saturated_step_served() -> None:
    steps = [
        Step(r, r, 0.01 + 0.05 * (r / 2500) ** 4 / (1 - r / 2500 * 0.9))
        for r in (200, 400, 800, 1200, 1600, 2000, 2400)
    ] + [Step(3700, 3384, 11.0), Step(4000, 3390, 12.0)]  # served 3384 and 3390
    fit = fit_curve(steps)
    assert all(c.capacity > 3390 for c in fit.plausible)
    assert all(math.isfinite(v) for v in fit.latency(3000))  # served at 3384: not "saturated"


def test_a_slow_lowest_step_does_not_hide_the_crossing_above_it() -> None:
    # a warm-up bump: the lowest step is just over the objective, the next two well within
    steps = [
        Step(200, 200, 0.02126), Step(1000, 1000, 0.0171), Step(2000, 2000, 0.0206),
        Step(2400, 2400, 0.060),
    ]  # fmt: skip
    rate, lo, hi = measured_max_rate(steps, 0.021)
    assert (lo, hi) == (2000, 2400) and 2000 < rate < 2100
    assert over_below(steps, 0.021, (rate, lo, hi)) == [steps[0]]
    assert measured_max_rate(steps, 0.015) == (0.0, 0.0, 200)  # over at every step's fit


def write_csv(path: Path, header: list[str], rows: Sequence[Sequence[object]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def wrk_rows() -> list[list[object]]:
    """Two deployments of one API: 'a' crosses 100 ms at about 980/s, 'b' stays flat."""
    rows: list[list[object]] = []
    for rate in (100, 300, 500, 700, 850, 950, 990):
        rows.append(["a", "/compose", rate, rate, 1e3 * float(TRUE.latency(rate))])
        rows.append(["b", "/compose", rate, rate * 0.999, 8.0])
    return rows


def test_cli_answers_per_group_and_writes_csv_and_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = write_csv(
        tmp_path / "runs.csv",
        ["deployment", "api", "offered_rps", "achieved_rps", "latency_p99_ms"],
        wrk_rows(),
    )
    out = tmp_path / "out"
    argv = ["capacity", "--runs", str(runs), "--group-by", "deployment", "--rate", "900"]
    argv += ["--scale", "0.5"]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    truth = TRUE.max_rate(0.1)
    assert "requests/s within p99 <= 100 ms (measured between the steps at 950 and 990)" in printed
    assert "b /compose: at least 990 requests/s within p99 <= 100 ms (highest step)" in printed
    with open(out / "capacity.csv", newline="", encoding="utf-8") as handle:
        rows = {r["group"]: r for r in csv.DictReader(handle)}
    assert float(rows["a"]["measured"]) == pytest.approx(truth, rel=0.02)
    assert float(rows["a"]["model"]) == pytest.approx(truth, rel=0.05)
    assert rows["b"]["measured"] == ">=990"
    half = float(rows["a"]["p99_ms@0.5x"].split()[0])  # half the busiest step: 495/s
    assert half == pytest.approx(1e3 * float(TRUE.latency(495.0)), rel=0.2)
    assert float(rows["a"]["p99_ms@900"].split()[0]) == pytest.approx(
        1e3 * float(TRUE.latency(900.0)), rel=0.2
    )
    assert len(list(out.glob("*.png"))) == 2
    assert main([*argv, "--slo", "p99=5ms", "--out", str(out)]) == 0  # b is over at every step
    printed = capsys.readouterr().out
    assert "b /compose: over p99 <= 5 ms already at the lowest tested rate (100/s)" in printed
    with open(out / "capacity.csv", newline="", encoding="utf-8") as handle:
        assert {r["group"]: r for r in csv.DictReader(handle)}["b"]["measured"] == "<100"


def test_a_measured_answer_without_a_curve_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [["/compose", rate, rate, 1e3 * float(TRUE.latency(rate))] for rate in (500, 990)]
    runs = write_csv(
        tmp_path / "runs.csv", ["api", "offered_rps", "achieved_rps", "latency_p99_ms"], rows
    )
    assert main(["capacity", "--runs", str(runs), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "(measured between the steps at 500 and 990)" in printed
    assert "; no latency curve (needs at least 3 unsaturated steps" in printed


def test_cli_reads_locust_stats_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header = ["Type", "Name", "Request Count", "Requests/s", "95%", "99%"]
    files = []
    for i, (rps, p95) in enumerate([(10.0, 20), (20.0, 22), (40.0, 30), (60.0, 90)]):
        rows = [["GET", "/home", 100, rps, p95, p95 * 2], ["POST", "/rare", 0, 0.0, "N/A", "N/A"]]
        files.append(write_csv(tmp_path / f"step{i}_stats.csv", header, rows))
    argv = ["capacity", "--runs", *map(str, files), "--slo", "p95=50ms"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "/home: " in printed and "within p95 <= 50 ms (measured between" in printed
    assert "/rare" not in printed  # rows without requests hold no step
    assert "GET /home: " in printed  # Locust's request type names the API with its name


def test_locust_rows_of_one_name_and_two_types_are_two_apis(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header = ["Type", "Name", "Request Count", "Requests/s", "99%"]
    files = []
    for i, rps in enumerate([10.0, 20.0, 40.0, 80.0]):
        rows = [["GET", "/cart", 100, rps, 10 + i], ["POST", "/cart", 100, rps, 50 * (i + 1)]]
        files.append(write_csv(tmp_path / f"step{i}_stats.csv", header, rows))
    assert main(["capacity", "--runs", *map(str, files), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "GET /cart: at least 80" in printed
    assert "POST /cart: 20 requests/s" in printed  # at 100 ms exactly at the 20/s step


def test_cli_matches_columns_ignoring_case_and_punctuation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [[r[1], r[3], r[4], r[0].upper()] for r in wrk_rows()]
    header = ["Endpoint", "Achieved RPS", "Latency P99 (ms)", "Zone"]
    runs = write_csv(tmp_path / "runs.csv", header, rows)
    argv = ["capacity", "--runs", str(runs), "--group-by", "zone", "--out", str(tmp_path / "o")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "A /compose: " in printed and "B /compose: at least 989 requests/s" in printed


def test_cli_reads_rate_columns_as_other_tools_spell_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [[r[0], r[2], r[3], r[4], 2 * r[4]] for r in wrk_rows()]
    runs = write_csv(
        tmp_path / "runs.csv", ["zone", "rate", "throughput", "p99_ms", "p999_ms"], rows
    )
    argv = ["capacity", "--runs", str(runs), "--group-by", "zone", "--out", str(tmp_path / "o")]
    assert main(argv) == 0
    plain = capsys.readouterr().out
    assert "b all: at least 990 requests/s" in plain  # the offered rate is the step's load
    assert main([*argv, "--slo", "p999=200ms"]) == 0  # p999 is p99.9, as its column is named
    assert "within p99.9 <= 200 ms" in capsys.readouterr().out
    offered = write_csv(
        tmp_path / "offered.csv", ["zone", "target_rps", "p99_ms"], [r[:2] + r[3:4] for r in rows]
    )
    assert (
        main(
            ["capacity", "--runs", str(offered), "--group-by", "zone", "--out", str(tmp_path / "p")]
        )
        == 0
    )
    said = capsys.readouterr()
    assert "each step is read as serving the rate it was offered (target_rps)" in said.err
    assert "b all: at least 990 requests/s" in said.out


def test_cli_reads_the_layouts_of_other_load_tools(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["capacity", "--out", str(tmp_path / "o"), "--runs"]
    # JMeter's aggregate report: Label names the API, 99% Line is in milliseconds
    rows = [[r[0], r[3], r[4]] for r in wrk_rows()]
    jmeter = write_csv(tmp_path / "jm.csv", ["Label", "Throughput", "99% Line"], rows)
    assert main([*argv, str(jmeter)]) == 0
    printed = capsys.readouterr().out
    assert "a: " in printed and "b: at least 989 requests/s" in printed and "all:" not in printed
    # wrk2's own name of the rate served, beside the rate asked: saturation is seen
    rows = [
        ["/x", rate, min(rate, 600), 5.0 if rate <= 600 else 90.0] for rate in (200, 400, 600, 800)
    ]
    wrk = write_csv(tmp_path / "wrk.csv", ["api", "rate", "Requests/sec", "p99_ms"], rows)
    assert main([*argv, str(wrk)]) == 0
    assert (
        "(measured between the steps at 600 and 800, which served 600)" in capsys.readouterr().out
    )
    # a target rps beside the rate served: the target is the offered rate
    tank = write_csv(tmp_path / "tank.csv", ["api", "rps", "actual_rps", "p99_ms"], rows)
    assert main([*argv, str(tank)]) == 0
    assert (
        "(measured between the steps at 600 and 800, which served 600)" in capsys.readouterr().out
    )
    # a semicolon-separated spreadsheet reads as one with commas
    semi = tmp_path / "semi.csv"
    semi.write_text(wrk.read_text().replace(",", ";"))
    assert main([*argv, str(semi)]) == 0
    assert (
        "(measured between the steps at 600 and 800, which served 600)" in capsys.readouterr().out
    )


def test_no_modelled_capacity_lies_under_a_step_measured_within_the_objective(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        ["x", r, r, v] for r, v in zip(range(100, 700, 100), [60, 60, 62, 58, 5, 5], strict=True)
    ]
    runs = write_csv(
        tmp_path / "falling.csv", ["api", "offered_rps", "achieved_rps", "latency_p99_ms"], rows
    )
    assert main(["capacity", "--runs", str(runs), "--out", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr().out
    assert "x: at least 600 requests/s within p99 <= 100 ms (highest step)" in printed
    assert "reach the objective from 600" in printed  # latency that falls fits knees under it
    with open(tmp_path / "o" / "capacity.csv", newline="", encoding="utf-8") as handle:
        [row] = csv.DictReader(handle)
    assert float(row["model_range"].split("-")[0]) >= 600


def test_steps_serving_more_than_offered_are_said_to_have_their_columns_swapped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [["/x", min(r, 600), r, 5.0 if r <= 600 else 90.0] for r in (200, 400, 600, 800)]
    header = ["api", "offered_rps", "achieved_rps", "p99_ms"]
    runs = write_csv(tmp_path / "swapped.csv", header, rows)
    assert main(["capacity", "--runs", str(runs), "--out", str(tmp_path / "o")]) == 0
    assert f"{runs}, line 5: a step served 800/s of 600/s offered" in capsys.readouterr().err


def test_an_answer_that_rests_on_one_slow_step_names_the_calm_ones_above_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header = ["api", "offered_rps", "achieved_rps", "latency_p99_ms"]
    for name, latency, said in (
        ("low", [5000, 8.9, 60.3], "over p99 <= 100 ms already at the lowest tested rate (1000/s)"),
        ("mid", [5, 1e7, 60.3], "(measured between the steps at 1000 and 1500)"),
    ):
        rows = [["x", r, r, v] for r, v in zip((1000, 1500, 2000), latency, strict=True)]
        runs = write_csv(tmp_path / f"{name}.csv", header, rows)
        assert main(["capacity", "--runs", str(runs), "--out", str(tmp_path / "o")]) == 0
        printed = capsys.readouterr().out
        assert said in printed
        assert "higher steps measured within it (" in printed and "60.3 ms at 2000)" in printed
        assert "(a slow outlier?)" in printed


def test_a_curve_whose_range_misses_the_measured_crossing_is_said_to_fit_poorly() -> None:
    from exporter.commands.capacity import Answer
    from exporter.loadtests import Objective

    steps = [
        Step(math.nan, r, v) for r, v in ((0.6, 0.08), (0.69, 0.086), (0.815, 0.41), (0.975, 0.41))
    ]
    objective = Objective("p95", 0.2)
    measured = measured_max_rate(steps, objective.seconds)
    knee = QueueCurve(0.05, 0.01, 1.1, servers=8)  # crosses 200 ms near 1.0, past the jump
    fit = CurveFit(knee, (knee,), len(steps), 0.975, rmse_log=0.68)
    sentence = Answer("", "x", steps, measured, fit, "").sentence(objective)
    assert "(measured between the steps at 0.69 and 0.815)" in sentence
    assert "the latency curve's plausible range (" in sentence and ") misses it" in sentence
    assert "fit_rmse_log 0.68" in sentence
    agreeing = CurveFit(knee, (knee,), len(steps), 0.975, rmse_log=0.1)
    cap = knee.max_rate(0.2)  # steps that cross where the curve does
    close = [
        Step(math.nan, 0.6, 0.08),
        Step(math.nan, 0.99 * cap, 0.19),
        Step(math.nan, 1.01 * cap, 0.21),
    ]
    said = Answer("", "x", close, measured_max_rate(close, 0.2), agreeing, "").sentence(objective)
    assert "misses it" not in said


def test_a_shortfall_that_a_higher_step_served_past_is_noise_not_saturation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [["x", 2.0, 2.11, 20.0], ["x", 4.0, 3.8, 25.0], ["x", 8.0, 8.0, 29.0]]
    header = ["api", "offered_rps", "achieved_rps", "latency_p99_ms"]
    runs = write_csv(tmp_path / "short.csv", header, rows)
    assert main(["capacity", "--runs", str(runs), "--out", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr().out
    assert "x: at least 8 requests/s within p99 <= 100 ms" in printed
    rows[2][2] = 6.0  # the highest step short too: the system met a limit there
    runs = write_csv(tmp_path / "short.csv", header, rows)
    assert main(["capacity", "--runs", str(runs), "--out", str(tmp_path / "o")]) == 0
    assert "which served 6" in capsys.readouterr().out


def test_locust_failures_are_not_served(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header = ["Type", "Name", "Request Count", "Failure Count", "Requests/s", "Failures/s", "99%"]
    files = []
    for i, rps in enumerate([30.0, 60.0, 90.0, 120.0]):
        fails = 0.0 if rps < 90 else rps  # fast errors, every one of them, from 90/s on
        rows = [["POST", "/checkout", 100, int(100 * fails / rps), rps, fails, 2 + i]]
        files.append(write_csv(tmp_path / f"step{i}_stats.csv", header, rows))
    assert main(["capacity", "--out", str(tmp_path / "o"), "--runs", *map(str, files)]) == 0
    printed = capsys.readouterr().out
    assert "at least 120" not in printed  # errors are not capacity: a step of them saturates
    assert (
        "60 requests/s within p99 <= 100 ms (measured between the steps at 60 and 90, which served 0)"
        in printed
    )


@pytest.mark.parametrize(
    ("header", "row", "extra", "message"),
    [
        (["api", "rps", "latency_p99_ms"], ["x", "fast", "5"], [], "line 2, field 'rps'"),
        (["api", "rps", "latency_p99_ms"], ["x", "-1", "5"], [], "non-negative"),
        (["api", "rps", "latency_p50_ms"], ["x", "10", "5"], [], "no column for p99"),
        (["api", "latency_p99_ms"], ["x", "5"], [], "no rate column: one of achieved_rps"),
        (["api", "rps", "latency_p99_ms"], ["x", "10", "5"], ["--rate=--"], "got '--'"),
        (["api", "rps", "latency_p99_ms"], ["x", "10", "5"], ["--slo", "p99<100"], "bad objective"),
        (["api", "rps", "latency_p99_ms"], ["x", "10", "5"], ["--slo", "p99=-5ms"], "be positive"),
        (["api", "rps", "latency_p99_ms"], ["x", "10", "5"], ["--group-by", "zone"], "'zone'"),
        (["api", "rps", "latency_p99_ms"], ["x", "10"], [], "line 2: expected 3 columns"),
        (["api", "rps", "latency_p99_ms"], [" ", "10", "5"], [], "line 2, field 'api': no API"),
        (["api", "rps", "latency_p0_ms"], ["x", "10", "5"], ["--slo", "p0=1s"], "bad objective"),
    ],
)
def test_cli_bad_input_exits_2_naming_the_place(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    header: list[str],
    row: list[str],
    extra: list[str],
    message: str,
) -> None:
    runs = write_csv(tmp_path / "runs.csv", header, [row])
    out = tmp_path / "out"
    try:
        code = main(["capacity", "--runs", str(runs), *extra, "--out", str(out)])
    except SystemExit as exc:  # usage errors exit from argparse
        code = int(exc.code or 0)
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (out / "capacity.csv").exists()


def test_cli_steps_gzipped_or_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import gzip

    rows = [["x", "10", "5"], ["x", "20", "6"], ["x", "40", "9"], ["x", "80", "30"]]
    text = "api,rps,latency_p99_ms\n\n" + "\n".join(",".join(r) for r in rows) + "\n"
    (tmp_path / "steps.csv.gz").write_bytes(gzip.compress(text.encode()))
    argv = ["capacity", "--runs", str(tmp_path / "steps.csv.gz"), "--out", str(tmp_path / "o")]
    assert main(argv) == 0  # a gzipped file is read as the plain one
    (tmp_path / "utf16.csv").write_bytes(text.encode("utf-16"))
    argv = ["capacity", "--runs", str(tmp_path / "utf16.csv"), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "utf16.csv: not UTF-8 text" in capsys.readouterr().err
    (tmp_path / "bad.csv").write_text(text.replace("40,9", "40,slow"))
    argv = ["capacity", "--runs", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "line 5" in capsys.readouterr().err  # the blank line counts


def recorded(rates: np.ndarray, seed: int = 0) -> list[Window]:
    """A window per rate: calls of one API and its latency on the TRUE curve, with noise."""
    rng = np.random.default_rng(seed)
    api = ("nginx", "/compose")
    out = []
    for i, rate in enumerate(rates):
        window = Window(60.0 * i, 60.0 * (i + 1), calls={(api,): float(rate) * 60})
        value = float(TRUE.latency(rate)) * math.exp(rng.normal(0.0, 0.05))
        window.latency[api] = Latency(int(rate * 60), value, value, value, value, value)
        out.append(window)
    return out


def test_load_steps_bin_windows_by_total_request_rate() -> None:
    windows = recorded(np.linspace(100, 900, 40))
    windows.append(Window(9e3, 9e3 + 60, calls={(("nginx", "/compose"),): 60.0}))  # no latency
    [(api, steps)] = load_steps(windows, "p99", bins=8).items()
    assert api == ("nginx", "/compose") and len(steps) == 8
    rates = [s.achieved for s in steps]
    assert rates == sorted(rates) and rates[0] == pytest.approx(
        np.linspace(100, 900, 40)[:5].mean()
    )
    assert all(math.isnan(s.offered) for s in steps)
    assert len(load_steps(windows[:5], "p99", bins=8)[api]) == 1  # at least 3 windows a bin
    busiest = windows[39]  # the highest rate, and the latency it was served at
    assert steps[-1].peak == pytest.approx(900.0)
    top = np.log([w.latency[api].p99 for w in windows[35:40]])  # the last step's windows
    spread = math.exp(1.645 * float(np.std(top)))
    assert steps[-1].peak_bound == pytest.approx(busiest.latency[api].p99 * spread)


def test_a_curve_does_not_blow_up_at_the_busiest_window_served() -> None:
    """Binned steps sit at their mean loads; the busiest window lies beyond the last of them,
    and was served at the latency it measured: no plausible curve makes it many times slower."""
    steps = [Step(math.nan, r, lat) for r, lat in ((1.0, 0.10), (2.0, 0.10), (3.0, 0.11))]
    steps.append(Step(math.nan, 4.0, 0.13, peak=5.0, peak_bound=0.3))
    fit = fit_curve(steps)
    assert all(float(c.latency(5.0)) <= 0.3 for c in fit.plausible)
    assert fit.latency(5.0)[1] <= 0.3
    unmeasured = [*steps[:3], Step(math.nan, 4.0, 0.13, peak=5.0)]
    assert fit_curve(unmeasured).latency(5.0)[2] > 1.0  # what the window rules out


def test_cli_reads_recorded_windows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "recorded.jsonl"
    write_windows(data, recorded(np.linspace(100, 980, 120)))
    out = tmp_path / "out"
    assert main(["capacity", "--data", str(data), "--slo", "p99=20ms", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "nginx:/compose: " in printed
    assert "requests/s of all APIs within p99 <= 20 ms (measured between" in printed
    with open(out / "capacity.csv", newline="", encoding="utf-8") as handle:
        [row] = list(csv.DictReader(handle))
    assert float(row["measured"]) == pytest.approx(TRUE.max_rate(0.02), rel=0.05)


def test_recorded_scale_multiplies_the_busiest_window_for_every_api(tmp_path: Path) -> None:
    windows = recorded(np.linspace(100, 980, 120))
    other = ("nginx", "/read")
    for i, window in enumerate(windows):  # a second API, quiet: its own steps top out far lower
        window.calls[(other,)] = 60.0 * (1 + i % 3)
        value = 0.005
        window.latency[other] = Latency(60 * (1 + i % 3), value, value, value, value, value)
    data = tmp_path / "two.jsonl"
    write_windows(data, windows)
    out = tmp_path / "out"
    argv = ["capacity", "--data", str(data), "--scale", "0.5", "--out", str(out)]
    assert main(argv) == 0
    busiest = max(sum(api_counts(w.calls).values()) / 60.0 for w in windows)
    assert main([*argv[:-4], "--rate", f"{busiest * 0.5:.6f}", "--out", str(out / "r")]) == 0
    with open(out / "capacity.csv", newline="", encoding="utf-8") as handle:
        by_scale = {r["api"]: r["p99_ms@0.5x"] for r in csv.DictReader(handle)}
    with open(out / "r" / "capacity.csv", newline="", encoding="utf-8") as handle:
        by_rate = {r["api"]: r[f"p99_ms@{busiest * 0.5:g}"] for r in csv.DictReader(handle)}
    assert by_scale == by_rate  # both APIs at half the recording's busiest window


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--slo", "p75=20ms"], "windows keep mean, p50, p90, p95, p99, not p75"),
        (["--group-by", "zone"], "--group-by applies to --runs only"),
        (["--bins", "0"], "--bins must be >= 1"),
    ],
)
def test_cli_recorded_windows_bad_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    data = tmp_path / "recorded.jsonl"
    write_windows(data, recorded(np.linspace(100, 900, 30)))
    assert main(["capacity", "--data", str(data), *extra, "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_cli_windows_without_latency_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "plain.jsonl"
    write_windows(data, [Window(0.0, 60.0, calls={(("nginx", "/x"),): 5.0})])
    assert main(["capacity", "--data", str(data), "--out", str(tmp_path / "o")]) == 2
    assert "no window carries latency" in capsys.readouterr().err


def test_mutual_information_is_near_zero_for_independent_and_high_for_dependent() -> None:
    rng = np.random.default_rng(0)
    x, noise = rng.normal(size=2000), rng.normal(size=2000)
    assert mutual_information(x, noise) < 0.02
    assert mutual_information(x, np.exp(x)) > 1.9  # a monotone function: every bin is shared
    assert mutual_information(x, x + 0.5 * noise) > 0.3
    assert mutual_information(np.zeros(50), noise[:50]) == 0.0  # a constant tells nothing


def test_latency_drivers_rank_the_rate_that_moves_latency_first() -> None:
    rng = np.random.default_rng(1)
    a, b = ("front", "/a"), ("front", "/b")
    windows = []
    for i in range(200):
        rate_a, rate_b = rng.uniform(1, 10), rng.uniform(1, 10)
        window = Window(60.0 * i, 60.0 * (i + 1), calls={(a,): rate_a * 60, (b,): rate_b * 60})
        value = 0.01 * (1 + rate_b) * math.exp(rng.normal(0.0, 0.05))  # /a waits on /b's work
        window.latency[a] = Latency(int(rate_a * 60), value, value, value, value, value)
        windows.append(window)
    ranked = latency_drivers(windows, "p99")[a]
    assert ranked[0][0] == "front:/b" and ranked[0][1] > 0.5
    scores = dict(ranked)
    assert scores["front:/a"] < 0.05 and 0 < scores["all APIs"] < ranked[0][1]
    assert latency_drivers(windows[:10], "p99") == {}  # too few windows to rank anything


def test_cli_data_writes_the_latency_drivers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "recorded.jsonl"
    write_windows(data, recorded(np.linspace(100, 980, 120)))
    out = tmp_path / "out"
    assert main(["capacity", "--data", str(data), "--out", str(out)]) == 0
    assert "latency drivers (mutual information of p99 with request rates):" in (
        capsys.readouterr().out
    )
    with open(out / "drivers.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["rate_of"] for r in rows} == {"nginx:/compose", "all APIs"}
    assert float(rows[0]["mutual_information_nats"]) > 0.5


def test_cli_data_says_when_latency_does_not_rise_with_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(3)
    windows = recorded(np.linspace(1, 3, 80))  # a light recording: latency is noise, no queue
    for window in windows:
        value = 0.05 * math.exp(rng.normal(0.0, 0.3))
        window.latency[("nginx", "/compose")] = Latency(60, value, value, value, value, value)
    data = tmp_path / "light.jsonl"
    write_windows(data, windows)
    argv = ["capacity", "--data", str(data), "--out", str(tmp_path / "out")]
    assert main([*argv, "--slo", "p99=60ms"]) == 0
    flat = capsys.readouterr().out
    assert "its latency does not rise with load (rank correlation" in flat
    assert "extrapolates" not in flat and "curves that fit" not in flat  # no capacity to tell
    table = tmp_path / "out" / "capacity.csv"

    def models() -> list[tuple[str, str, str]]:
        with open(table, newline="", encoding="utf-8") as handle:
            return [
                (r["model"], r["model_range"], r.get("p99_ms@3x", ""))
                for r in csv.DictReader(handle)
            ]

    assert main([*argv, "--slo", "p99=60ms", "--scale", "3"]) == 0
    assert models() == [("-", "-", "-")]  # nor does the table, nor a latency at 3x
    capsys.readouterr()
    assert main([*argv, "--slo", "p99=1ms"]) == 0
    out = capsys.readouterr().out
    assert "over p99 <= 1 ms at every load recorded, the lightest too (" in out
    assert "slower than the objective, not at a capacity" in out
    assert [m[:2] for m in models()] == [("-", "-")]
    assert main(["capacity", "--data", str(_rising(tmp_path)), *argv[3:]]) == 0
    assert "does not rise with load" not in capsys.readouterr().out


def _rising(tmp_path: Path) -> Path:
    data = tmp_path / "rising.jsonl"
    write_windows(data, recorded(np.linspace(100, 980, 120)))
    return data


def test_cli_reads_the_windows_an_exporter_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    windows = recorded(np.linspace(100, 980, 120))
    store = WindowStore(tmp_path / "data")
    store.put(windows)
    store.close()
    config = tmp_path / "deeprest.yaml"
    config.write_text("data_dir: data\n")
    out = tmp_path / "out"
    argv = ["capacity", "--config", str(config), "--slo", "p99=20ms", "--out", str(out)]
    assert main([*argv, "--to", str(windows[60].start)]) == 0  # the quieter first half only
    first_half = capsys.readouterr().out
    assert "nginx:/compose: at least" in first_half
    assert main([*argv, "--to", "50%"]) == 0  # the same half, as a share of the store
    assert capsys.readouterr().out == first_half
    assert main(argv) == 0
    assert "requests/s of all APIs within p99 <= 20 ms (measured" in capsys.readouterr().out
    assert main([*argv, "--from", "1e9"]) == 2
    assert "the store holds no windows in that range" in capsys.readouterr().err


def test_measured_stops_at_a_saturated_step_and_reads_exact_or_repeated_rates() -> None:
    def steps(*rows: tuple[float, float, float]) -> list[Step]:
        return [Step(offered, achieved, ms / 1000) for offered, achieved, ms in rows]

    saturated = steps((100, 100, 10), (200, 199, 12), (400, 398, 20), (800, 500, 60))
    assert measured_max_rate(saturated, 0.1) == (500, 400, 800)  # not ">=800": it served 500
    # a saturated step over the objective: the crossing lies toward what it served (930), not
    # what it was offered (1000), so no answer passes it and a looser objective never gives less
    over = steps((600, 600, 300), (800, 799, 700), (1000, 930, 3660))
    answers = [measured_max_rate(over, ms / 1000)[0] for ms in (800, 1000, 2000, 3000, 5000)]
    assert all(800 < a <= 930 for a in answers) and answers == sorted(answers), answers
    assert measured_max_rate(over, 1.0)[1:] == (800, 1000)
    exact = steps((100, 100, 10), (200, 200, 30), (400, 400, 100), (800, 800, 400))
    assert measured_max_rate(exact, 0.1) == (400, 400, 800)
    repeated = steps((200, 200, 30), (400, 400, 50), (400, 400, 150), (800, 800, 400))
    rate, lo, hi = measured_max_rate(repeated, 0.1)
    assert (rate, lo, hi) == (400, 400, 400)
    from exporter.commands.capacity import _measured

    assert _measured(rate, lo, hi) == "400" and _measured(*measured_max_rate(exact, 0.1)) == "400"


def test_a_saturated_step_is_named_as_what_it_served(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header = ["api", "offered_rps", "achieved_rps", "p99_ms"]
    rows = [["/x", 100, 60, 20], ["/x", 200, 90, 30]]  # both saturated, both within 100 ms
    runs = write_csv(tmp_path / "runs.csv", header, rows)
    assert main(["capacity", "--runs", str(runs), "--out", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr().out
    assert (
        "/x: 60 requests/s within p99 <= 100 ms (measured at the lowest step, at 100, which "
        "served 60)" in printed
    )  # no step at 60 was tested
    rows = [["/x", 100, 100, 20], ["/x", 200, 150, 30]]
    write_csv(tmp_path / "runs.csv", header, rows)
    assert main(["capacity", "--runs", str(runs), "--out", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr().out
    assert (
        "/x: 150 requests/s within p99 <= 100 ms (measured between the steps at 100 and "
        "200, which served 150)" in printed
    )


def test_steps_at_one_rate_twice_are_warned_of(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [["x", r, r, 5 + r / 100] for r in (100, 200, 400, 800)]
    runs = write_csv(tmp_path / "runs.csv", ["api", "offered_rps", "achieved_rps", "p99_ms"], rows)
    assert main(["capacity", "--runs", str(runs), "--out", str(tmp_path / "o")]) == 0
    assert "several steps at one rate" not in capsys.readouterr().err
    assert main(["capacity", "--runs", str(runs), str(runs), "--out", str(tmp_path / "o")]) == 0
    assert "1 group and API pair (x) has several steps at one rate" in capsys.readouterr().err


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_an_out_folder_that_cannot_be_created_is_refused_before_the_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [["x", r, r, 5 + r / 100] for r in (100, 200, 400, 800)]
    runs = write_csv(tmp_path / "runs.csv", ["api", "offered_rps", "achieved_rps", "p99_ms"], rows)
    assert main(["capacity", "--runs", str(runs), "--out", "/proc/deeprest-out"]) == 2
    said = capsys.readouterr()
    assert "field '--out': cannot create" in said.err and "x:" not in said.out  # nothing done
    out = tmp_path / "new" / "folders"
    assert main(["capacity", "--runs", str(runs), "--out", str(out)]) == 0
    assert (out / "capacity.csv").exists()


def test_capacity_from_a_config_without_a_store_creates_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    config = tmp_path / "deeprest.yaml"
    config.write_text(f"data_dir: {store}\nwindow: 60s\n")
    assert main(["capacity", "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    assert "no window store (windows.sqlite)" in capsys.readouterr().err
    assert not list(store.iterdir())  # a read does not create the store


DATA = Path(__file__).resolve().parent / "data"
HISTORY = DATA / "locust_steps_stats_history.csv"  # a real run: see tests/data/README.md
AGGREGATED = DATA / "locust_steps_aggregated_stats_history.csv"  # the same, without full history


def test_a_real_locust_stats_history_reads_as_a_step_per_user_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from exporter.loadtests import parse_objective, read_steps

    steps = read_steps([HISTORY], parse_objective("p99=100ms"), [])
    assert set(steps) == {("", "GET /fast"), ("", "POST /slow")}  # no Aggregated: it sums them
    fast, slow = steps[("", "GET /fast")], steps[("", "POST /slow")]
    assert len(fast) == len(slow) == 7  # 2, 4, ... 14 users
    for users, f, s in zip(range(2, 16, 2), fast, slow, strict=True):
        if users <= 10:  # 10 requests/s a user, 3 to /fast for 1 to /slow, below the pool's limit
            assert f.offered + s.offered == pytest.approx(10 * users, rel=0.1)
            assert f.offered / (f.offered + s.offered) == pytest.approx(0.75, abs=0.05)
        assert f.achieved == f.offered  # no failures
    assert slow[-1].latency > 2 * slow[0].latency  # the pool's queue at 14 users
    assert main(["capacity", "--runs", str(HISTORY), "--out", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr().out
    assert "GET /fast: " in printed and "(measured between the steps at" in printed
    assert "Aggregated" not in printed


def history_rows(header: str, rows: list[list[object]]) -> str:
    return header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n"


def test_locust_history_drops_each_steps_first_seconds_and_failures(tmp_path: Path) -> None:
    from exporter.loadtests import parse_objective, read_steps
    from exporter.locust_history import WARM_UP_S

    header = "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,99%,Total Request Count"
    rows: list[list[object]] = []
    for step, users in enumerate((5, 10)):
        for second in range(20):
            warm = second < WARM_UP_S  # windows that reach into the step before: not read
            rate = 99.0 if warm else 10.0 * users
            p99 = 900 if warm else 20 * (step + 1) + second % 3  # median: 21 and 41
            t = 1000 + 20 * step + second
            rows.append([t, users, "GET", "/a", rate, 0.0 if step == 0 else 5.0, 5, p99, 0])
            rows.append([t, users, "", "Aggregated", rate, 0.0, 5, 999, 0])
    rows.insert(0, [999, 0, "", "Aggregated", 0.0, 0.0, "N/A", "N/A", 0])  # before any user
    path = tmp_path / "run_stats_history.csv"
    path.write_text(history_rows(header, rows))
    steps = read_steps([path], parse_objective("p99=100ms"), [])
    assert list(steps) == [("", "GET /a")]  # the Aggregated rows sum the named ones
    read = [(s.offered, s.achieved, s.latency) for s in steps[("", "GET /a")]]
    assert read == [(50.0, 50.0, pytest.approx(0.021)), (100.0, 95.0, pytest.approx(0.041))]


def test_locust_history_without_full_history_reads_the_mean_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from exporter.loadtests import parse_objective, read_steps

    argv = ["capacity", "--runs", str(AGGREGATED), "--out", str(tmp_path / "o")]
    assert main(argv) == 2  # its percentiles count every request since the run began
    err = capsys.readouterr().err
    assert f"{AGGREGATED}, line 2, field '99%': holds only 'Aggregated' rows" in err
    assert "--csv-full-history" in err
    [aggregated] = read_steps([AGGREGATED], parse_objective("mean=50ms"), []).values()
    assert [round(s.offered, -1) for s in aggregated] == [20, 40, 60, 80]
    # the mean of each step's own requests, from the running totals: near the run's (23 ms)
    assert all(0.015 < s.latency < 0.035 for s in aggregated)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("1001,5,", "998,5,", 1), "line 3, field 'Timestamp': goes back"),
        (lambda t: t.replace("1001,5,", "1001,five,", 1), "line 3, field 'User Count'"),
        (lambda t: t.replace(",21\n", ",fast\n", 1), "field '99%': not a number"),
        (lambda t: t.replace(",50%,99%", ",50%,95%"), "no column 99% for p99 (this file has"),
        (lambda t: "\n".join(t.split("\n")[:8]) + "\n", "no user count lasts over 12 s"),
    ],
)
def test_locust_history_bad_input_exits_2_naming_the_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: object, message: str
) -> None:
    header = "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,99%"
    rows = [[1000 + s, 5, "GET", "/a", 10.0, 0.0, 5, 21] for s in range(20)]
    path = tmp_path / "bad_stats_history.csv"
    path.write_text(edit(history_rows(header, rows)))  # type: ignore[operator]
    assert main(["capacity", "--runs", str(path), "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.integration
@pytest.mark.slow
def test_a_live_locust_run_with_a_step_shape_reads_as_steps(tmp_path: Path) -> None:
    from exporter.loadtests import parse_objective, read_steps
    from tests.locust_steps import record

    history = record(tmp_path / "live", "2:15,4:15")
    steps = read_steps([history], parse_objective("p95=200ms"), [])
    assert set(steps) == {("", "GET /fast"), ("", "POST /slow")}
    total = [a.offered + b.offered for a, b in zip(*steps.values(), strict=True)]
    assert total == [pytest.approx(20, rel=0.15), pytest.approx(40, rel=0.15)]


def k6_summary(rate: float, p95_ms: float, failed: float = 0.0, legacy: bool = True) -> dict:
    """A k6 summary as `--summary-export` writes it (legacy) or handleSummary's data."""
    trend = {"avg": p95_ms / 2, "min": 1.0, "med": p95_ms / 2, "max": 2 * p95_ms}
    trend |= {"p(90)": 0.9 * p95_ms, "p(95)": p95_ms}
    metrics: dict[str, dict[str, object]] = {
        "http_req_duration": trend,
        "http_reqs": {"count": int(60 * rate), "rate": rate},
        "http_req_failed": {"passes": int(60 * rate * failed), "fails": 0, "value": failed},
        "vus": {"value": 10, "min": 1, "max": 10},
    }
    if not legacy:
        metrics = {
            k: {"type": "trend", "contains": "time", "values": v} for k, v in metrics.items()
        }
        metrics["http_req_failed"]["values"] = {"rate": failed, "passes": 0, "fails": 0}
    return {"root_group": {"name": "", "path": "", "groups": []}, "metrics": metrics}


def test_cli_reads_k6_summaries_one_per_step_from_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    runs = tmp_path / "k6"
    runs.mkdir()
    for i, rate in enumerate((100, 300, 500, 700, 850, 950, 990)):
        summary = k6_summary(rate, 1e3 * float(TRUE.latency(rate)), legacy=i % 2 == 0)
        (runs / f"step{i}.json").write_text(json.dumps(summary, indent=2))
    (runs / "notes.txt").write_text("not a step")  # neither CSV nor JSON: passed over
    argv = ["capacity", "--runs", str(runs), "--slo", "p95=100ms", "--out", str(tmp_path / "o")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "all: " in printed and "(measured between the steps at 950 and 990)" in printed
    # a failed share is sent but not served: the step saturates
    (runs / "step6.json").write_text(json.dumps(k6_summary(990, 50.0, failed=0.5)))
    assert main(argv) == 0
    assert "which served 495" in capsys.readouterr().out
    assert main([*argv[:-4], "--slo", "p99=100ms", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "step0.json, field 'metrics.http_req_duration.p(99)': no such field" in err
    assert "--summary-trend-stats=avg,min,med,max,p(90),p(95),p(99)" in err


def test_k6_sub_metrics_tagged_by_name_are_apis(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from exporter.loadtests import parse_objective, read_steps

    summary = k6_summary(30, 20.0)
    metrics = summary["metrics"]
    metrics["http_req_duration{name:GET /cart}"] = {"med": 9.0, "p(95)": 12.0}
    metrics["http_reqs{name:GET /cart}"] = {"count": 600, "rate": 10.0}
    metrics["http_req_failed{name:GET /cart}"] = {"passes": 60, "fails": 540, "value": 0.1}
    path = tmp_path / "tagged.json"
    path.write_text(json.dumps(summary))
    steps = read_steps([path], parse_objective("p95=50ms"), [])
    [(key, [step])] = steps.items()
    assert key == ("", "GET /cart")
    assert (step.offered, step.achieved, step.latency) == (10.0, 9.0, pytest.approx(0.012))
    del metrics["http_reqs{name:GET /cart}"]
    path.write_text(json.dumps(summary))
    argv = ["capacity", "--runs", str(path), "--slo", "p95=50ms", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "field 'metrics.http_reqs{name:GET /cart}.rate': no such field" in err
    assert "add thresholds: {'http_reqs{name:GET /cart}': ['count>=0']}" in err


def vegeta_report(rate: float, throughput: float, p99_ms: float) -> dict:
    """A report as `vegeta report -type=json` writes it (latencies in nanoseconds)."""
    ns = 1e6 * p99_ms
    latencies = {"total": int(ns * rate), "mean": int(ns / 3), "50th": int(ns / 4)}
    latencies |= {"90th": int(ns / 2), "95th": int(ns / 1.5), "99th": int(ns), "max": int(2 * ns)}
    return {
        "latencies": latencies | {"min": 1000},
        "bytes_in": {"total": 0, "mean": 0},
        "bytes_out": {"total": 0, "mean": 0},
        "earliest": "2026-01-01T00:00:00Z",
        "latest": "2026-01-01T00:01:00Z",
        "end": "2026-01-01T00:01:00.01Z",
        "duration": 60_000_000_000,
        "wait": 10_000_000,
        "requests": int(60 * rate),
        "rate": rate,
        "throughput": throughput,
        "success": throughput / rate,
        "status_codes": {"200": int(60 * throughput)},
        "errors": [],
    }


def test_cli_reads_vegeta_reports_given_as_a_list_of_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    files = []
    for rate in (200, 400, 600, 800):
        served, p99 = min(rate, 600), 5.0 if rate <= 600 else 90.0
        files.append(tmp_path / f"vegeta-{rate}.json")
        files[-1].write_text(json.dumps(vegeta_report(rate, served, p99)))
    argv = ["capacity", "--out", str(tmp_path / "o"), "--runs", *map(str, files)]
    assert main(argv) == 0
    assert "(measured between the steps at 600 and 800, which served 600)" in (
        capsys.readouterr().out
    )
    old = vegeta_report(800, 600, 90.0)
    del old["throughput"]  # Vegeta before 12: the served rate is rate * success
    files[-1].write_text(json.dumps(old))
    assert main(argv) == 0
    assert "which served 600" in capsys.readouterr().out
    assert main([*argv, "--slo", "p999=1s"]) == 2
    err = capsys.readouterr().err
    assert "vegeta-200.json, field 'latencies.p99.9': Vegeta reports no p99.9 latency" in err


@pytest.mark.parametrize(
    ("text", "extra", "message"),
    [
        ('{"metrics": {}', [], "s.json, line 1: not JSON"),
        ('{"rate": 5}', [], "neither a k6 summary"),
        ('{"latencies": {"99th": -5}, "rate": 1}', [], "field 'latencies.99th': must be non"),
        ('{"latencies": {"99th": "5ms"}, "rate": 1}', [], "field 'latencies.99th': not a number"),
        ('{"latencies": {"99th": 5}, "rate": 1}', ["--group-by", "zone"], "field '--group-by'"),
        (
            '{"start": 0, "end": 60}\n{"start": 60, "end": 120}\n',
            [],
            "line 2: not JSON: Extra data (a window dataset, a JSON object per line: give it as "
            "--data, not --runs)",
        ),
    ],
)
def test_bad_summaries_exit_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, extra: list[str], message: str
) -> None:
    (tmp_path / "s.json").write_text(text)
    argv = ["capacity", "--runs", str(tmp_path / "s.json"), *extra, "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_folder_of_locust_files_passes_over_failures_and_an_empty_one_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["capacity", "--runs", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "empty: a folder with no load-test files" in capsys.readouterr().err
    runs = tmp_path / "locust"
    runs.mkdir()
    (runs / "run_stats_history.csv").write_text(HISTORY.read_text())
    (runs / "run_failures.csv").write_text("Method,Name,Error,Occurrences\n")
    (runs / "run_exceptions.csv").write_text("Count,Message,Traceback,Nodes\n")
    assert main(["capacity", "--runs", str(runs), "--out", str(tmp_path / "o")]) == 0
    assert "GET /fast: " in capsys.readouterr().out


def test_pooled_deployments_are_named_by_the_columns_that_tell_them_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two deployments' runs in one file: the warning names the columns to group by, not a
    column of one value per run (its file) nor one that says what another does."""
    header = ["api", "experiment", "commit", "runtime", "source", "offered_rps", "achieved_rps"]
    rows = [
        ["x", exp, f"c{exp}", runtime, f"{exp}/{runtime}/{r}.txt", r, r, 5 + r / scale]
        for exp, runtime, scale in (("e1", "vm", 100), ("e2", "vm", 50), ("e2", "docker", 80))
        for r in (100, 200, 400, 800)
    ]
    runs = write_csv(tmp_path / "runs.csv", [*header, "p99_ms"], rows)
    assert main(["capacity", "--runs", str(runs), "--out", str(tmp_path / "o")]) == 0
    said = capsys.readouterr().err
    assert "(their rows differ in experiment, runtime: --group-by experiment,runtime?)" in said
    args = ["capacity", "--runs", str(runs), "--group-by", "experiment,runtime"]
    assert main([*args, "--out", str(tmp_path / "o")]) == 0
    assert "several steps at one rate" not in capsys.readouterr().err


def test_a_curve_of_as_many_steps_as_parameters_says_its_range_is_assumed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header = ["api", "offered_rps", "achieved_rps", "p99_ms"]
    rows = [["x", r, r, 10 / (1 - r / 2500)] for r in (1000, 1500, 2000)]
    runs = write_csv(tmp_path / "runs.csv", header, rows)
    assert main(["capacity", "--runs", str(runs), "--out", str(tmp_path / "o")]) == 0
    assert "assumes a step's noise of 10% rather than measuring it" in capsys.readouterr().out
    rows.append(["x", 500, 500, 10 / (1 - 500 / 2500)])
    write_csv(tmp_path / "runs.csv", header, rows)
    assert main(["capacity", "--runs", str(runs), "--out", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr().out
    assert "extrapolates to" in printed and "rather than measuring it" not in printed


def test_capacity_csv_gives_the_answers_as_numbers_beside_the_printed_cells(tmp_path: Path) -> None:
    header = ["api", "offered_rps", "achieved_rps", "p99_ms"]
    rows = [["x", r, r, 10 / (1 - r / 2500)] for r in (500, 1000, 1500, 2000, 2400)]
    rows += [["y", r, r, 5] for r in (100, 200, 400)]
    runs = write_csv(tmp_path / "runs.csv", header, rows)
    assert main(["capacity", "--runs", str(runs), "--slo", "p99=50ms", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "capacity.csv", newline="") as handle:
        x, y = csv.DictReader(handle)
    assert (x["objective"], x["unit"]) == ("p99 <= 50 ms", "requests/s")
    assert float(x["measured_low"]) == float(x["measured_high"]) == pytest.approx(2000, rel=0.01)
    assert float(x["model_low"]) <= float(x["model_rate"]) <= float(x["model_high"])
    assert (float(y["measured_low"]), y["measured_high"]) == (400, "inf")
    assert y["measured"] == ">=400"


def test_latency_asked_far_past_the_steps_is_called_an_extrapolation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header = ["api", "offered_rps", "achieved_rps", "p99_ms"]
    rows = [["x", r, r, 10 / (1 - r / 2500)] for r in (500, 1000, 1500, 2000)]
    runs = write_csv(tmp_path / "runs.csv", header, rows)
    args = ["capacity", "--runs", str(runs), "--out", str(tmp_path / "o")]
    assert main([*args, "--rate", "2400"]) == 0
    assert "extrapolation" not in capsys.readouterr().out
    assert main([*args, "--rate", "3100", "--scale", "1.2"]) == 0
    printed = capsys.readouterr().out
    assert (
        "past 1.5x an API's highest step are the curve's extrapolation, rough: @3100 for x\n"
        in printed
    )


@pytest.mark.parametrize(
    ("latency_ms", "said"),
    [
        ((8.0, 12.0, 30.0), "(its 3 steps fit the curve's parameters exactly, so the range"),
        ((8.0, 35.0, 9.5), "(its 3 steps are as many as the curve's parameters, yet no curve"),
    ],
)
def test_three_steps_are_said_to_fit_exactly_only_where_a_curve_takes_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], latency_ms: tuple[float, ...], said: str
) -> None:
    rates = (1.16, 2.39, 3.42)
    rows = [["/compose", r, r, ms] for r, ms in zip(rates, latency_ms, strict=True)]
    runs = write_csv(
        tmp_path / "runs.csv", ["api", "offered_rps", "achieved_rps", "latency_p99_ms"], rows
    )
    argv = ["capacity", "--runs", str(runs), "--slo", "p99=50ms", "--out", str(tmp_path / "o")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert said in printed, printed


def test_a_folder_of_the_step_test_is_read_as_its_step_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "steps"
    runs.mkdir()
    header = ["users", "api", "offered_rps", "achieved_rps", "requests", "failures"]
    rows = [
        [u, "/compose", rate, rate, 60 * rate, 0, 1e3 * float(TRUE.latency(rate))]
        for u, rate in zip((5, 10, 20, 40), (100, 500, 900, 990), strict=True)
    ]
    write_csv(runs / "steps.csv", [*header, "latency_p99_ms"], rows)
    # a step's own Locust history, Aggregated rows only: refused when read as steps
    history = ["Timestamp", "User Count", "Type", "Name", "Requests/s", "Failures/s", "99%"]
    history += ["Total Request Count", "Total Failure Count", "Total Average Response Time"]
    write_csv(
        runs / "step-00005_stats_history.csv",
        history,
        [[1700000000 + t, 5, "", "Aggregated", 100, 0, 8, 100 * t, 0, 8.0] for t in range(30)],
    )
    argv = ["capacity", "--runs", str(runs), "--out", str(tmp_path / "o")]
    assert main(argv) == 0, capsys.readouterr().err
    assert "(measured between the steps at 900 and 990)" in capsys.readouterr().out
    (runs / "steps.csv").unlink()  # a folder of Locust files alone: each is read
    assert main(argv) == 2
    assert "holds only 'Aggregated' rows" in capsys.readouterr().err


def test_capacity_plots_read_in_the_answers_unit_and_never_sit_beside_an_earlier_runs(
    tmp_path: Path,
) -> None:
    """Recorded traffic answers in requests/s of all APIs, and its plots say so; a run into a
    folder of an earlier run's plots leaves only its own."""
    from exporter.commands.capacity import answer, capacity_figure
    from exporter.objective import parse_objective
    from exporter.report import pyplot

    windows = recorded(np.linspace(100, 980, 120))
    objective = parse_objective("p99=20ms")
    [(api, steps)] = load_steps(windows, "p99", bins=8).items()
    result = answer("", f"{api[0]}:{api[1]}", steps, objective, "requests/s of all APIs")
    figure = capacity_figure(result, objective)
    try:
        assert figure.axes[0].get_xlabel() == "requests/s of all APIs"
    finally:
        pyplot().close(figure)
    out = tmp_path / "out"
    out.mkdir()
    (out / "07_gone_api.png").write_bytes(b"an earlier run's plot")
    (out / "notes.png").write_bytes(b"the user's")
    data = tmp_path / "recorded.jsonl"
    write_windows(data, windows)
    assert main(["capacity", "--data", str(data), "--slo", "p99=20ms", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["00_nginx_compose.png", "notes.png"]

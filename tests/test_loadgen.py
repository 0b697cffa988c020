"""Load shapes as data: stage tables and mixes, checked against elapsed time without sleeping."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from estimator.errors import InputError
from loadgen.attacks import (
    Attack,
    AttackRunner,
    encrypt_tree,
    proof_of_work,
    schedule_from_dicts,
    xor_encrypt,
)
from loadgen.shapes import (
    API_NAMES,
    COMPOSITION_MIXES,
    DiurnalSpec,
    LoadPlan,
    Stage,
    composition,
    constant,
    diurnal,
    scale,
    shape,
)
from loadgen.steps import StepTest, step_rows

SPEC = DiurnalSpec(cycles=2, period_s=1200.0, step_s=20.0, base_users=2, peak_users=40, seed=7)


def users_over(plan: LoadPlan, step: float) -> list[int]:
    """Users in the middle of every `step` real seconds until the plan ends."""
    out, i = [], 0
    while (tick := plan.tick((i + 0.5) * step)) is not None:
        out.append(tick[0])
        i += 1
    return out


def local_maxima(values: list[int], radius: int) -> list[int]:
    """Indices that are the maximum of their +-radius neighbourhood and above the midline."""
    mid = (max(values) + min(values)) / 2
    return [
        i
        for i, v in enumerate(values)
        if v > mid and v == max(values[max(0, i - radius) : i + radius + 1])
    ]


def test_diurnal_has_two_peaks_per_cycle_with_seeded_random_heights() -> None:
    plan = diurnal(SPEC)
    users = [s.users for s in plan.stages]
    per_cycle = len(users) // SPEC.cycles
    for c in range(SPEC.cycles):
        cycle = users[c * per_cycle : (c + 1) * per_cycle]
        half = per_cycle // 2
        first, second = max(cycle[:half]), max(cycle[half:])
        trough = min(cycle[half // 2 : half + half // 2])
        assert first > 2 * trough and second > 2 * trough
    peaks = [max(users[i : i + per_cycle // 2]) for i in range(0, len(users), per_cycle // 2)]
    assert len(set(peaks)) > 1, "peak heights are random, not all equal"
    assert max(users) <= SPEC.peak_users * (1 + 4 * SPEC.noise)
    assert diurnal(SPEC) == plan, "same seed, same plan"
    other = diurnal(DiurnalSpec(**{**SPEC.__dict__, "seed": 8}))
    assert [s.users for s in other.stages] != users


def test_scale_multiplies_peaks_by_k() -> None:
    base, tripled = diurnal(SPEC), scale(3.0, SPEC)
    assert [s.end for s in tripled.stages] == [s.end for s in base.stages]
    for b, t in zip(base.stages, tripled.stages, strict=True):
        assert abs(t.users - 3 * b.users) <= 1
    assert max(s.users for s in tripled.stages) >= 3 * max(s.users for s in base.stages) - 1


def test_shape_is_flat_at_peak() -> None:
    plan = shape(SPEC)
    users = [s.users for s in plan.stages]
    assert max(users) == SPEC.peak_users
    longest, run = 0, 0
    for u in users:
        run = run + 1 if u == SPEC.peak_users else 0
        longest = max(longest, run)
    hold_steps = (SPEC.period_s / 5) / SPEC.step_s
    assert longest >= hold_steps - 1
    assert len(local_maxima(users, 3)) >= 2 * SPEC.cycles


@pytest.mark.parametrize(("cycles", "period", "step"), [(1, 100, 30), (2, 40, 15), (1, 100, 500)])
def test_a_step_that_does_not_divide_the_run_cuts_the_last_stage_short(
    cycles: int, period: float, step: float
) -> None:
    spec = DiurnalSpec(cycles=cycles, period_s=period, step_s=step)
    for plan in (diurnal(spec), shape(spec)):
        ends = [s.end for s in plan.stages]
        assert ends[-1] == cycles * period and all(
            a < b for a, b in zip(ends, ends[1:], strict=False)
        )
        assert all(0 < b - a <= step for a, b in zip([0.0, *ends], ends, strict=False))


def test_constant_holds_peak_users_then_ends() -> None:
    plan = constant(DiurnalSpec(period_s=30.0, peak_users=12, compression=2.0))
    assert plan.duration == 15.0
    assert plan.tick(0.0) == plan.tick(14.9) == (12, 12.0)  # all users start at once
    assert plan.tick(15.0) is None


def test_step_test_builds_one_constant_run_per_step(tmp_path: Path) -> None:
    runs = StepTest("http://127.0.0.1:1", tmp_path, (2, 8), seconds=30.0).runs()
    assert [(r.shape, r.base_users, r.peak_users, r.period_s) for r in runs] == [
        ("constant", 2, 2, 30.0),
        ("constant", 8, 8, 30.0),
    ]
    assert runs[0].csv_prefix != runs[1].csv_prefix
    assert "--rate-per-user" in runs[0].command()
    with pytest.raises(InputError, match="users"):
        StepTest("http://127.0.0.1:1", tmp_path, (0, 2))
    with pytest.raises(InputError, match="rate_per_user"):
        StepTest("http://127.0.0.1:1", tmp_path, (1, 2), rate_per_user=-1.0)


def test_step_rows_read_the_served_rate_once_every_user_runs(tmp_path: Path) -> None:
    prefix = tmp_path / "step-00004"
    head = "Type,Name,Request Count,Failure Count,Requests/s,50%,90%,95%,99%\n"
    (tmp_path / "step-00004_stats.csv").write_text(
        head + "GET,a,30,0,2.5,10,20,30,40\nPOST,b,10,1,0.8,5,6,7,8\nPOST,c,0,0,0,N/A,N/A,N/A,N/A\n"
        ",Aggregated,40,1,3.3,8,18,28,38\n"
    )
    history = ["Timestamp,User Count,Name,Total Request Count", "100,2,Aggregated,0"]
    history += [f"{100 + t},4,Aggregated,{4 * t}" for t in range(1, 11)]  # 4 requests/s at 4 users
    (tmp_path / "step-00004_stats_history.csv").write_text("\n".join(history) + "\n")
    rows = {r["api"]: r for r in step_rows(4, prefix, rate_per_user=1.0)}
    assert set(rows) == {"GET a", "POST b", "Aggregated"}, "an API without requests has no row"
    # not the 3.3 of the run, and the failed request is not served
    assert float(rows["Aggregated"]["achieved_rps"]) == pytest.approx(4.0 * 39 / 40)
    assert float(rows["POST b"]["achieved_rps"]) == pytest.approx(1.0 * 9 / 10)
    assert float(rows["Aggregated"]["offered_rps"]) == pytest.approx(4.0)
    assert float(rows["GET a"]["achieved_rps"]) == pytest.approx(3.0)  # its share of the requests
    assert float(rows["GET a"]["offered_rps"]) == pytest.approx(3.0)
    assert rows["POST b"]["latency_p99_ms"] == "8"
    assert "offered_rps" not in step_rows(4, prefix, rate_per_user=0.0)[0], "closed loop: unknown"


def test_composition_mixes_sum_to_one_and_change_over_time() -> None:
    plan = composition(SPEC)
    seen = []
    for t in range(0, int(plan.duration) + 50, 10):
        mix = plan.mix(float(t))
        assert set(mix) == set(API_NAMES)
        assert math.isclose(sum(mix.values()), 1.0, rel_tol=1e-9)
        assert all(w >= 0 for w in mix.values())
        seen.append(tuple(round(mix[a], 6) for a in API_NAMES))
    assert len(set(seen)) == len(COMPOSITION_MIXES)
    assert [s.users for s in plan.stages] == [s.users for s in diurnal(SPEC).stages]


def test_time_compression_plays_the_same_table_faster() -> None:
    slow = diurnal(SPEC)
    fast = diurnal(DiurnalSpec(**{**SPEC.__dict__, "compression": 60.0}))
    assert math.isclose(fast.duration * 60.0, slow.duration)
    for t in (0.0, 1.0, 7.5, 19.9, 30.0):
        assert fast.tick(t) == slow.tick(t * 60.0)
    assert fast.tick(fast.duration + 0.01) is None
    assert fast.tick(fast.duration - 0.01) is not None
    assert users_over(fast, 1.0 / 3.0) == users_over(slow, 20.0)


def test_tick_follows_the_stage_table() -> None:
    plan = LoadPlan("t", (Stage(10, 5, 1.0), Stage(20, 8, 2.0)), compression=2.0)
    assert plan.tick(0) == (5, 1.0)
    assert plan.tick(4.99) == (5, 1.0)
    assert plan.tick(5.0) == (8, 2.0)
    assert plan.tick(10.0) is None


@pytest.mark.parametrize(
    "stages, mixes, compression",
    [
        ((), ((math.inf, {"register": 1.0}),), 1.0),
        ((Stage(10, 1, 1.0), Stage(5, 1, 1.0)), ((math.inf, {"register": 1.0}),), 1.0),
        ((Stage(10, -1, 1.0),), ((math.inf, {"register": 1.0}),), 1.0),
        ((Stage(10, 1, 1.0),), ((math.inf, {"nope": 1.0}),), 1.0),
        ((Stage(10, 1, 1.0),), ((math.inf, {"register": 0.0}),), 1.0),
        ((Stage(10, 1, 1.0),), ((math.inf, {"register": 1.0}),), 0.0),
    ],
)
def test_bad_tables_are_input_errors(
    stages: tuple[Stage, ...], mixes: tuple[tuple[float, dict[str, float]], ...], compression: float
) -> None:
    with pytest.raises(InputError):
        LoadPlan("bad", stages, mixes, compression)


def test_shape_options_build_the_plan() -> None:
    import argparse

    from loadgen.options import add_arguments, plan_from_options

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    opts = parser.parse_args(["--shape", "scale", "--scale-k", "2", "--compression", "10"])
    plan = plan_from_options(opts)
    assert plan.compression == 10.0
    base = plan_from_options(parser.parse_args(["--compression", "10"]))
    assert max(s.users for s in plan.stages) >= 2 * max(s.users for s in base.stages) - 1
    with pytest.raises(SystemExit):  # --shape has choices
        parser.parse_args(["--shape", "sideways"])
    for argv, flag in (
        (["--shape", "scale", "--scale-k", "-2"], "--scale-k"),  # named as typed
        (["--scale-k", "nan"], "--scale-k"),  # checked whatever the shape
        (["--base-users", "30", "--peak-users", "5"], "--base-users"),  # peaks as troughs
    ):
        with pytest.raises(InputError) as caught:
            plan_from_options(parser.parse_args(argv))
        assert caught.value.field == flag, argv
    opts.shape = "sideways"  # as a caller that skips the parser would pass it
    with pytest.raises(InputError):
        plan_from_options(opts)
    opts.shape, opts.base_users = "scale", -3
    with pytest.raises(InputError, match="--base-users"):
        plan_from_options(opts)
    for flag, value in (("--noise", "-1"), ("--peak-users", "-5"), ("--compression", "0"),
                        ("--period", "0"), ("--step", "0"), ("--cycles", "0")):  # fmt: skip
        with pytest.raises(InputError) as info:
            plan_from_options(parser.parse_args([flag, value]))
        assert info.value.field == flag, (flag, str(info.value))


def test_attack_schedule_fires_each_attack_once_when_due() -> None:
    fired: list[Attack] = []
    attacks = schedule_from_dicts(
        [{"kind": "ransomware", "target": "post-storage", "start_s": 30, "duration_s": 5},
         {"kind": "crypto", "target": "social-graph", "start_s": 10, "duration_s": 20}]
    )  # fmt: skip
    assert [a.kind for a in attacks] == ["crypto", "ransomware"], "sorted by start"
    runner = AttackRunner(attacks, fired.append)
    assert runner.step(9.9) == [] and runner.active(9.9) == []
    assert [a.kind for a in runner.step(10.0)] == ["crypto"]
    assert runner.step(20.0) == []
    assert [a.kind for a in runner.step(31.0)] == ["ransomware"]
    assert [a.kind for a in runner.active(31.0)] == ["ransomware"]
    assert fired == list(attacks)


@pytest.mark.parametrize(
    "item, field",
    [
        ({"kind": "mining", "target": "x", "start_s": 0, "duration_s": 1}, "[0].kind"),
        ({"kind": "crypto", "target": "x", "start_s": -1, "duration_s": 1}, "[0].start_s"),
        ({"kind": "crypto", "target": "x", "start_s": 0, "duration_s": 0}, "[0].duration_s"),
        ({"kind": "crypto", "target": "x", "start_s": 0}, "[0]"),
        (
            {"kind": "crypto", "target": "x", "start_s": 0, "duration_s": 1, "intensity": 1e6},
            "[0].intensity",
        ),
    ],
)
def test_bad_attacks_name_the_field(item: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError) as info:
        schedule_from_dicts([item], source="attacks.yaml")
    assert info.value.field == field and "attacks.yaml" in str(info.value)


def test_ransomware_encrypts_files_in_place(tmp_path: Path) -> None:
    files = {tmp_path / f"{i}.json": json.dumps({"post": i}).encode() for i in range(5)}
    for path, data in files.items():
        path.write_bytes(data)
    key = b"k" * 32
    assert xor_encrypt(xor_encrypt(b"secret", key), key) == b"secret"
    count, written = encrypt_tree(tmp_path, 0.3, key)
    assert count >= len(files) and written >= sum(map(len, files.values()))
    assert all(path.read_bytes() != data for path, data in files.items())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in files)


def test_proof_of_work_hashes_for_the_time_given() -> None:
    import time

    started, wall = time.process_time(), time.monotonic()
    hashes = proof_of_work(0.2)
    assert hashes > 1000
    assert time.process_time() - started > 0.02
    assert 0.19 <= time.monotonic() - wall < 1.0, "the burner stops when its time is up"


def test_a_step_whose_every_request_fails_ends_the_test(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    from loadgen.steps import main

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = ["--host", f"http://127.0.0.1:{port}", "--users", "1", "--seconds", "2"]
    assert main([*argv, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "every request of step 1 failed" in err and "Connection refused" in err
    assert not (tmp_path / "steps.csv").exists()


def test_bad_shape_options_end_a_locust_run_with_one_line() -> None:
    import subprocess
    import sys

    locustfile = Path(__file__).resolve().parents[1] / "loadgen" / "locustfile.py"
    for flag, named in (("--base-users=-3", "--base-users"), ("--cycles=0", "--cycles")):
        done = subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
             "--host", "http://127.0.0.1:1", flag],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 2
        assert f"loadgen: error: field '{named}'" in done.stderr
        assert "Traceback" not in done.stderr


def test_step_test_errors_name_the_flag_as_typed(capsys: pytest.CaptureFixture[str]) -> None:
    from loadgen.steps import main

    for argv, flag in (
        (["--users", "0"], "--users"),
        (["--users", "a,b"], "--users"),
        (["--users", "1", "--rate-per-user", "nan"], "--rate-per-user"),
    ):
        assert main(["--host", "http://127.0.0.1:1", *argv]) == 2
        assert f"loadgen.steps: error: field '{flag}': " in capsys.readouterr().err, argv


def test_step_test_help_gives_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    from loadgen.steps import main

    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "length of each step in seconds (default 60)" in text
    assert "directory for the CSVs (default steps)" in text

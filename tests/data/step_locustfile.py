"""Locust users for tests.locust_steps: each keeps pace with 10 requests/s, 3 to /fast for 1 to
/slow, through a step shape whose stages are data (`--stages users:seconds,...`)."""

from __future__ import annotations

from typing import Any

from locust import HttpUser, LoadTestShape, constant_throughput, events, task

RATE_PER_USER = 10.0


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--stages", default="2:16,4:16", help="users:seconds, one per step")


def stages_of(text: str) -> list[tuple[int, float]]:
    """'2:16,4:16' -> [(2, 16.0), (4, 16.0)]."""
    return [(int(u), float(s)) for u, s in (part.split(":") for part in text.split(","))]


def tick_at(stages: list[tuple[int, float]], elapsed: float) -> tuple[int, float] | None:
    """Users and spawn rate at `elapsed` seconds, or None past the last stage."""
    end = 0.0
    for users, seconds in stages:
        end += seconds
        if elapsed < end:
            return users, 100.0
    return None


class StepShape(LoadTestShape):
    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None
        return tick_at(
            stages_of(self.runner.environment.parsed_options.stages), self.get_run_time()
        )


class PoolUser(HttpUser):
    wait_time = constant_throughput(RATE_PER_USER)

    @task(3)
    def fast(self) -> None:
        self.client.get("/fast")

    @task(1)
    def slow(self) -> None:
        self.client.post("/slow")

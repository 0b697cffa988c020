"""Headless entry point: locust -f loadgen/locustfile.py --headless --csv PREFIX --host URL.

The shape and its parameters are Locust custom arguments (`locust --help` does not list them:
Locust reads --help before it loads this file; `loadgen/options.py` declares them):
--shape diurnal|scale|shape|composition|constant, --period, --step, --cycles, --base-users,
--peak-users, --noise, --seed, --compression, --scale-k, --rate-per-user. They are checked
before any user starts: a bad one ends the run with one line and exit status 2.
"""

from __future__ import annotations

import sys
from typing import Any

from locust import events

from estimator.errors import InputError
from loadgen import locust_shapes, options
from loadgen.shapes import LoadPlan
from loadgen.users import SocialNetworkUser


@events.init_command_line_parser.add_listener
def add_arguments(parser: Any) -> None:
    """Declare the shape options."""
    options.add_arguments(parser)


@events.init.add_listener
def check_options(environment: Any, **_: Any) -> None:
    """Build the plan once before any load, so that a bad option is one line, not a traceback
    in the shape's greenlet."""
    if environment.parsed_options is None:
        return
    try:
        options.plan_from_options(environment.parsed_options)
    except InputError as exc:
        print(f"loadgen: error: {exc}", file=sys.stderr)
        sys.exit(2)


class SocialNetwork(SocialNetworkUser):
    """The user class of headless runs."""


class OptionsShape(locust_shapes.PlanShape):
    """The shape chosen with --shape and friends."""

    def build_plan(self) -> LoadPlan:
        """Build from the parsed command line."""
        assert self.runner is not None
        return options.plan_from_options(self.runner.environment.parsed_options)

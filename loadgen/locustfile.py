"""Headless entry point: locust -f loadgen/locustfile.py --headless --csv PREFIX --host URL.

The shape and its parameters are Locust custom arguments (see `locust -f ... --help`):
--shape diurnal|scale|shape|composition, --period, --step, --cycles, --base-users,
--peak-users, --noise, --seed, --compression, --scale-k.
"""

from __future__ import annotations

from typing import Any

from locust import events

from loadgen import locust_shapes, options
from loadgen.shapes import LoadPlan
from loadgen.users import SocialNetworkUser


@events.init_command_line_parser.add_listener
def add_arguments(parser: Any) -> None:
    """Declare the shape options."""
    options.add_arguments(parser)


class SocialNetwork(SocialNetworkUser):
    """The user class of headless runs."""


class OptionsShape(locust_shapes.PlanShape):
    """The shape chosen with --shape and friends."""

    def build_plan(self) -> LoadPlan:
        """Build from the parsed command line."""
        assert self.runner is not None
        return options.plan_from_options(self.runner.environment.parsed_options)

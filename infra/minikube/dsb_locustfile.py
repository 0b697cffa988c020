"""Locust users for DeathStarBench's social network (nginx-thrift's /wrk2-api/* routes).

The shapes and their options are loadgen's (--shape diurnal|scale|shape|composition, ...); only
the requests differ from loadgen/users.py, whose routes are the local testbed's. Run it with
`locust -f infra/minikube/dsb_locustfile.py --headless --host http://127.0.0.1:8080 --shape ...`
(load.sh does) after the social graph is initialised (`load.sh init`, users 0..961 of socfb-Reed98).
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from typing import Any, ClassVar

from locust import events

from loadgen import locust_shapes, options
from loadgen.shapes import LoadPlan
from loadgen.users import SocialNetworkUser

DSB_ROUTES: Mapping[str, tuple[str, str]] = {
    "compose_post": ("POST", "/wrk2-api/post/compose"),
    "read_home_timeline": ("GET", "/wrk2-api/home-timeline/read"),
    "read_user_timeline": ("GET", "/wrk2-api/user-timeline/read"),
    "register": ("POST", "/wrk2-api/user/register"),
    "follow": ("POST", "/wrk2-api/user/follow"),
}
"""DeathStarBench's API per loadgen API name; upload_media has no nginx-thrift route."""

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
REED98_USERS = 962


def compose_form(user_id: int, text: str, media_ids: list[str]) -> dict[str, str]:
    """Form fields of /wrk2-api/post/compose (as DeathStarBench's own workload sends them)."""
    return {
        "username": f"username_{user_id}",
        "user_id": str(user_id),
        "text": text,
        "media_ids": json.dumps(media_ids),
        "media_types": json.dumps(["png"] * len(media_ids)),
        "post_type": "0",
    }


class DeathStarBenchUser(SocialNetworkUser):
    """A client of DeathStarBench's social network, drawing each request from the shape's mix."""

    abstract = True
    user_pool: ClassVar[int] = REED98_USERS - 1

    def _media_ids(self, count: int) -> list[str]:
        return ["".join(self.rng.choices(string.digits, k=18)) for _ in range(count)]

    def compose_post(self) -> None:
        """Write a post of random length without media."""
        form = compose_form(self.user_id, self._text(self.rng.randint(5, 60)), [])
        self.client.post(DSB_ROUTES["compose_post"][1], data=form, headers=FORM,
                         name="compose_post")  # fmt: skip

    def upload_media(self) -> None:
        """Write a post that references one to four media ids (uploads go to media-frontend,
        which the load leaves aside)."""
        media = self._media_ids(self.rng.randint(1, 4))
        form = compose_form(self.user_id, self._text(self.rng.randint(5, 30)), media)
        self.client.post(DSB_ROUTES["compose_post"][1], data=form, headers=FORM,
                         name="compose_post_media")  # fmt: skip

    def _timeline(self, api: str, user: int) -> None:
        start = self.rng.randint(0, 50)
        path = f"{DSB_ROUTES[api][1]}?user_id={user}&start={start}&stop={start + 10}"
        self.client.get(path, name=api)

    def read_home_timeline(self) -> None:
        """Read this user's home timeline."""
        self._timeline("read_home_timeline", self.user_id)

    def read_user_timeline(self) -> None:
        """Read another user's own posts."""
        self._timeline("read_user_timeline", self.rng.randint(0, self.user_pool))

    def register(self) -> None:
        """Register a user beyond the initial graph (DSB answers an error for a taken name)."""
        uid = REED98_USERS + self.rng.randint(0, 100_000)
        form = {"first_name": f"first_{uid}", "last_name": f"last_{uid}",
                "username": f"username_{uid}", "password": f"password_{uid}", "user_id": str(uid)}  # fmt: skip
        self.client.post(DSB_ROUTES["register"][1], data=form, headers=FORM, name="register")

    def follow(self) -> None:
        """Follow a random other user of the graph, by user name."""
        form = {"user_name": f"username_{self.user_id}",
                "followee_name": f"username_{self.rng.randint(0, self.user_pool)}"}  # fmt: skip
        self.client.post(DSB_ROUTES["follow"][1], data=form, headers=FORM, name="follow")


@events.init_command_line_parser.add_listener
def add_arguments(parser: Any) -> None:
    """Declare loadgen's shape options."""
    options.add_arguments(parser)


class DeathStarBench(DeathStarBenchUser):
    """The user class of headless runs against the cluster."""


class OptionsShape(locust_shapes.PlanShape):
    """The shape chosen with --shape and friends."""

    def build_plan(self) -> LoadPlan:
        """Build from the parsed command line."""
        assert self.runner is not None
        return options.plan_from_options(self.runner.environment.parsed_options)

"""Locust users of the social-network API; each request is drawn from the current API mix."""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from locust import between, constant_throughput, task
from locust.contrib.fasthttp import FastHttpUser

from loadgen.shapes import API_NAMES, DEFAULT_MIX, normalize_mix

# The front end's routes, one per API of the mix.
API_ROUTES: Mapping[str, tuple[str, str]] = {
    "compose_post": ("POST", "/api/post/compose"),
    "read_home_timeline": ("GET", "/api/timeline/home"),
    "read_user_timeline": ("GET", "/api/timeline/user"),
    "register": ("POST", "/api/user/register"),
    "follow": ("POST", "/api/user/follow"),
    "upload_media": ("POST", "/api/media/upload"),
}

WORDS = ("load", "trace", "span", "cpu", "disk", "graph", "post", "media", "home", "user")


THINK_TIME = between(0.2, 1.0)
"""Wait between a user's requests, unless --rate-per-user sets a pace."""


class SocialNetworkUser(FastHttpUser):
    """One client of the social network; picks each request from the shape's current mix.

    With --rate-per-user R, each user keeps pace with R requests per second (Locust's
    constant_throughput), so a step of N users offers N * R requests per second, and a server
    that cannot keep up serves fewer: the saturation a step load test looks for.
    """

    abstract = True
    user_pool: ClassVar[int] = 500
    fixed_mix: ClassVar[Mapping[str, float]] = DEFAULT_MIX

    def on_start(self) -> None:
        """Give this user an id and an independent, reproducible random stream."""
        self.rng = random.Random(id(self))
        self.user_id = self.rng.randint(1, self.user_pool)
        self.media_ids: list[str] = []
        rate = float(getattr(self.environment.parsed_options, "rate_per_user", 0.0) or 0.0)
        self.pace = constant_throughput(rate) if rate > 0 else THINK_TIME

    def wait_time(self) -> float:
        """Seconds to wait before the next request (think time, or what keeps the pace)."""
        return float(self.pace(self))

    def current_mix(self) -> dict[str, float]:
        """The shape's mix now if the shape has one, else the class's fixed mix."""
        shape: Any = self.environment.shape_class
        if shape is not None and hasattr(shape, "current_mix"):
            mix: dict[str, float] = shape.current_mix()
            return mix
        return normalize_mix(self.fixed_mix)

    @task
    def one_request(self) -> None:
        """Send one request of an API drawn from the current mix."""
        mix = self.current_mix()
        api = self.rng.choices(API_NAMES, weights=[mix[a] for a in API_NAMES])[0]
        self.actions()[api]()

    def actions(self) -> dict[str, Callable[[], None]]:
        """The request function of every API."""
        return {
            "compose_post": self.compose_post,
            "read_home_timeline": self.read_home_timeline,
            "read_user_timeline": self.read_user_timeline,
            "register": self.register,
            "follow": self.follow,
            "upload_media": self.upload_media,
        }

    def _text(self, words: int) -> str:
        """A random post text with a mention and a URL now and then."""
        body = " ".join(self.rng.choice(WORDS) for _ in range(words))
        if self.rng.random() < 0.3:
            body += f" @user_{self.rng.randint(1, self.user_pool)}"
        if self.rng.random() < 0.2:
            body += " https://example.org/" + "".join(
                self.rng.choices(string.ascii_lowercase, k=12)
            )
        return body

    def compose_post(self) -> None:
        """Write a post of random length, sometimes with previously uploaded media."""
        media = self.media_ids[-2:] if self.media_ids and self.rng.random() < 0.5 else []
        payload = {"user_id": self.user_id, "text": self._text(self.rng.randint(5, 60)),
                   "media_ids": media}  # fmt: skip
        self.client.post(API_ROUTES["compose_post"][1], json=payload, name="compose_post")

    def read_home_timeline(self) -> None:
        """Read this user's home timeline."""
        path = f"{API_ROUTES['read_home_timeline'][1]}?user_id={self.user_id}&count=10"
        self.client.get(path, name="read_home_timeline")

    def read_user_timeline(self) -> None:
        """Read another user's own posts."""
        other = self.rng.randint(1, self.user_pool)
        path = f"{API_ROUTES['read_user_timeline'][1]}?user_id={other}&count=10"
        self.client.get(path, name="read_user_timeline")

    def register(self) -> None:
        """Register a new user name for a random id."""
        uid = self.rng.randint(1, self.user_pool)
        payload = {"user_id": uid, "username": f"user_{uid}", "password": f"pw-{self.rng.random()}"}
        self.client.post(API_ROUTES["register"][1], json=payload, name="register")

    def follow(self) -> None:
        """Follow a random other user."""
        payload = {"follower_id": self.user_id, "followee_id": self.rng.randint(1, self.user_pool)}
        self.client.post(API_ROUTES["follow"][1], json=payload, name="follow")

    def upload_media(self) -> None:
        """Upload a random binary blob of 4 to 64 KiB."""
        blob: Any = self.rng.randbytes(self.rng.randint(4, 64) * 1024)  # the client takes bytes
        with self.client.post(
            API_ROUTES["upload_media"][1], data=blob, name="upload_media",
            headers={"Content-Type": "application/octet-stream"}, catch_response=True,
        ) as response:  # fmt: skip
            if response.status_code == 200 and response.json():
                self.media_ids.append(str(response.json().get("media_id", "")))
                self.media_ids = self.media_ids[-8:]
                response.success()
            elif response.status_code == 0 and response.error:  # no answer: say why
                response.failure(response.error)
            else:
                response.failure(f"upload failed with status {response.status_code}")

"""The social network's seven services: what each route does, its real CPU work and its calls."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import threading
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

from infra.local.service_kit import HttpError, Request, Service

SERVICES: tuple[str, ...] = (
    "frontend",
    "compose-post",
    "post-storage",
    "user-timeline",
    "home-timeline",
    "social-graph",
    "media",
)
STORES: dict[str, str] = {"post-storage": "posts", "media": "blobs"}
MENTION = re.compile(r"@(\w+)")
URL = re.compile(r"https?://\S+")


def hash_work(data: bytes, rounds: int) -> str:
    """Chained sha256 over data: CPU proportional to rounds x len(data)."""
    digest = b""
    for _ in range(max(1, rounds)):
        digest = hashlib.sha256(digest + data).digest()
    return digest.hex()


def durable_write(path: Path, data: bytes) -> None:
    """Write a file and fsync it, so the write reaches the disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def work(ctx: dict[str, Any], data: bytes, rounds: float) -> str:
    """hash_work scaled by the testbed's work_scale (rounds at scale 1)."""
    return hash_work(data, int(rounds * float(ctx.get("work_scale", 1.0))))


def _count(req: Request) -> int:
    """The `count` query parameter, 1 to 50."""
    return max(1, min(50, req.int_field(req.query, "count") if "count" in req.query else 10))


def frontend(svc: Service, ctx: dict[str, Any]) -> None:
    """The API gateway: validates input and forwards to the owning service."""

    @svc.route("POST", "/api/post/compose", "/api/post/compose")
    def compose(req: Request) -> Any:
        work(ctx, req.body, 600)
        body = req.json()
        if not isinstance(body.get("text"), str) or not body["text"]:
            raise HttpError(400, "field 'text' must be a non-empty string")
        req.int_field(body, "user_id")
        return svc.call("compose-post", "POST", "/compose", json=body)

    @svc.route("GET", "/api/timeline/home", "/api/timeline/home")
    def home(req: Request) -> Any:
        params = {"user_id": req.int_field(req.query, "user_id"), "count": _count(req)}
        work(ctx, str(params).encode(), 600)
        return svc.call("home-timeline", "GET", "/read", params=params)

    @svc.route("GET", "/api/timeline/user", "/api/timeline/user")
    def user(req: Request) -> Any:
        params = {"user_id": req.int_field(req.query, "user_id"), "count": _count(req)}
        work(ctx, str(params).encode(), 600)
        return svc.call("user-timeline", "GET", "/read", params=params)

    @svc.route("POST", "/api/user/register", "/api/user/register")
    def register(req: Request) -> Any:
        work(ctx, req.body, 600)
        return svc.call("social-graph", "POST", "/register", json=req.json())

    @svc.route("POST", "/api/user/follow", "/api/user/follow")
    def follow(req: Request) -> Any:
        work(ctx, req.body, 600)
        return svc.call("social-graph", "POST", "/follow", json=req.json())

    @svc.route("POST", "/api/media/upload", "/api/media/upload")
    def upload(req: Request) -> Any:
        if not req.body:
            raise HttpError(400, "media upload needs a non-empty body")
        work(ctx, req.body[:4096], 100)
        return svc.call("media", "POST", "/upload", data=req.body)


def compose_post(svc: Service, ctx: dict[str, Any]) -> None:
    """Builds a post: text processing, media lookup, storage, timelines and fan-out."""
    ids = itertools.count(int(time.time() * 1000) * 1000)
    lock = threading.Lock()

    @svc.route("POST", "/compose", "compose_post")
    def compose(req: Request) -> Any:
        body = req.json()
        user_id, text = req.int_field(body, "user_id"), str(body.get("text", ""))
        media_ids = [str(m) for m in body.get("media_ids") or []][:4]
        with lock:
            post_id = next(ids)
        post = {"post_id": post_id, "user_id": user_id, "text": text, "timestamp": time.time(),
                "mentions": MENTION.findall(text), "urls": URL.findall(text),
                "digest": work(ctx, text.encode(), 400 + 20 * len(text))}  # fmt: skip
        if media_ids:
            post["media"] = svc.call("media", "POST", "/meta", json={"media_ids": media_ids})
        svc.call("post-storage", "POST", "/store", json=post)
        svc.call("user-timeline", "POST", "/write", json={"user_id": user_id, "post_id": post_id})
        followers = svc.call("social-graph", "GET", "/followers", params={"user_id": user_id})
        fanout = {"post_id": post_id, "user_ids": [user_id, *followers["followers"]]}
        svc.call("home-timeline", "POST", "/fanout", json=fanout)
        return {"post_id": post_id}


def post_storage(svc: Service, ctx: dict[str, Any]) -> None:
    """Posts as fsync-ed JSON files under the data directory."""
    root: Path = ctx["data_dir"]

    def path_of(post_id: int) -> Path:
        return root / f"{post_id % 64:02d}" / f"{post_id}.json"

    @svc.route("POST", "/store", "store_post")
    def store(req: Request) -> Any:
        post = req.json()
        post_id = req.int_field(post, "post_id")
        data = json.dumps(post, sort_keys=True).encode()
        work(ctx, data, 600)
        durable_write(path_of(post_id), data)
        return {"stored": post_id}

    @svc.route("POST", "/read", "read_posts")
    def read(req: Request) -> Any:
        ids = req.json().get("post_ids") or []
        posts, unreadable = [], 0
        for raw in ids[:50]:
            try:
                raw_post = path_of(int(raw)).read_bytes()
                work(ctx, raw_post, 150)
                posts.append(json.loads(raw_post))
            except FileNotFoundError:
                continue
            except (ValueError, UnicodeDecodeError):
                unreadable += 1  # e.g. encrypted by ransomware
        return {"posts": posts, "unreadable": unreadable}


def user_timeline(svc: Service, ctx: dict[str, Any]) -> None:
    """Each user's own posts, newest first, in memory."""
    timelines: dict[int, deque[int]] = defaultdict(lambda: deque(maxlen=200))
    lock = threading.Lock()

    @svc.route("POST", "/write", "write_user_timeline")
    def write(req: Request) -> Any:
        body = req.json()
        work(ctx, req.body, 400)
        with lock:
            timelines[req.int_field(body, "user_id")].appendleft(req.int_field(body, "post_id"))
        return {"ok": True}

    @svc.route("GET", "/read", "read_user_timeline")
    def read(req: Request) -> Any:
        with lock:
            ids = list(timelines.get(req.int_field(req.query, "user_id"), ()))[: _count(req)]
        work(ctx, str(ids).encode(), 400)
        return svc.call("post-storage", "POST", "/read", json={"post_ids": ids}) if ids else {
            "posts": [], "unreadable": 0}  # fmt: skip


def home_timeline(svc: Service, ctx: dict[str, Any]) -> None:
    """Home timelines as Redis lists."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=ctx["redis_port"], socket_timeout=5)

    @svc.route("POST", "/fanout", "write_home_timeline")
    def fanout(req: Request) -> Any:
        body = req.json()
        post_id = req.int_field(body, "post_id")
        pipe = client.pipeline(transaction=False)
        for uid in (body.get("user_ids") or [])[:1000]:
            work(ctx, f"{uid}:{post_id}".encode(), 100)
            pipe.lpush(f"home:{int(uid)}", post_id)
            pipe.ltrim(f"home:{int(uid)}", 0, 199)
        pipe.execute()
        return {"ok": True}

    @svc.route("GET", "/read", "read_home_timeline")
    def read(req: Request) -> Any:
        key = f"home:{req.int_field(req.query, 'user_id')}"
        ids = [int(x) for x in client.lrange(key, 0, _count(req) - 1)]
        work(ctx, str(ids).encode(), 400)
        return svc.call("post-storage", "POST", "/read", json={"post_ids": ids}) if ids else {
            "posts": [], "unreadable": 0}  # fmt: skip


def social_graph(svc: Service, ctx: dict[str, Any]) -> None:
    """Users (salted password hashes) and follow edges, in memory."""
    users: dict[int, dict[str, str]] = {}
    followers: dict[int, set[int]] = defaultdict(set)
    lock = threading.Lock()

    @svc.route("POST", "/register", "register_user")
    def register(req: Request) -> Any:
        body = req.json()
        uid, password = req.int_field(body, "user_id"), str(body.get("password", ""))
        salt = os.urandom(8)
        hashed = hashlib.pbkdf2_hmac(
            "sha256", password.encode(), salt, max(1, int(2000 * ctx.get("work_scale", 1.0)))
        ).hex()
        with lock:
            users[uid] = {"username": str(body.get("username", uid)), "hash": hashed}
        return {"user_id": uid}

    @svc.route("POST", "/follow", "follow_user")
    def follow(req: Request) -> Any:
        body = req.json()
        follower, followee = req.int_field(body, "follower_id"), req.int_field(body, "followee_id")
        with lock:
            followers[followee].add(follower)
        work(ctx, req.body, 400)
        return {"ok": True}

    @svc.route("GET", "/followers", "get_followers")
    def get_followers(req: Request) -> Any:
        with lock:
            result = sorted(followers.get(req.int_field(req.query, "user_id"), ()))
        work(ctx, str(result).encode(), 400)
        return {"followers": result}


def media(svc: Service, ctx: dict[str, Any]) -> None:
    """Media blobs as fsync-ed files, content-addressed by a hash whose cost follows the size."""
    root: Path = ctx["data_dir"]

    @svc.route("POST", "/upload", "upload_media")
    def upload(req: Request) -> Any:
        if not req.body:
            raise HttpError(400, "empty media body")
        media_id = hash_work(req.body, 1)[:24]
        work(ctx, req.body, 40)
        durable_write(root / media_id[:2] / media_id, req.body)
        return {"media_id": media_id, "size": len(req.body)}

    @svc.route("POST", "/meta", "get_media")
    def meta(req: Request) -> Any:
        out = []
        for media_id in (req.json().get("media_ids") or [])[:8]:
            if not re.fullmatch(r"[0-9a-f]{24}", str(media_id)):
                continue
            path = root / media_id[:2] / media_id
            if path.exists():
                out.append({"media_id": media_id, "size": path.stat().st_size})
        return out


BUILDERS = {
    "frontend": frontend,
    "compose-post": compose_post,
    "post-storage": post_storage,
    "user-timeline": user_timeline,
    "home-timeline": home_timeline,
    "social-graph": social_graph,
    "media": media,
}

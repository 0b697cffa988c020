"""The simulated application, after the DeathStarBench social network: components, costs, call trees."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from estimator.windows import CallPath, Pair

MB = 1024.0 * 1024.0
KB = 1024.0

APIS: tuple[str, ...] = (
    "/compose-post",
    "/read-home-timeline",
    "/read-user-timeline",
    "/register",
    "/follow",
    "/upload-media",
)
"""Root operations at the nginx front end, one per API."""

FRONT_END = "nginx"

# name: (kind, idle cores, base MB, MB per concurrent request, cache capacity MB, cache tau s,
#        idle write iops, idle write KB/s)
_COMPONENTS: dict[str, tuple[str, float, float, float, float, float, float, float]] = {
    "nginx": ("service", 0.03, 40, 6.0, 0, 0, 0, 0),
    "compose-post": ("service", 0.02, 60, 12.0, 0, 0, 0, 0),
    "unique-id": ("service", 0.01, 25, 2.0, 0, 0, 0, 0),
    "text": ("service", 0.01, 35, 4.0, 0, 0, 0, 0),
    "url-shorten": ("service", 0.01, 35, 4.0, 0, 0, 0, 0),
    "media": ("service", 0.02, 50, 24.0, 0, 0, 0, 0),
    "user": ("service", 0.02, 45, 5.0, 0, 0, 0, 0),
    "post-storage": ("service", 0.02, 55, 8.0, 0, 0, 0, 0),
    "user-timeline": ("service", 0.02, 45, 6.0, 0, 0, 0, 0),
    "home-timeline": ("service", 0.02, 45, 6.0, 0, 0, 0, 0),
    "social-graph": ("service", 0.02, 45, 6.0, 0, 0, 0, 0),
    "user-memcached": ("cache", 0.01, 20, 1.0, 96, 1800, 0, 0),
    "post-storage-memcached": ("cache", 0.015, 20, 1.0, 384, 2400, 0, 0),
    "home-timeline-redis": ("cache", 0.015, 30, 1.0, 256, 2700, 0, 0),
    "social-graph-redis": ("cache", 0.01, 30, 1.0, 128, 1800, 0, 0),
    "user-mongodb": ("store", 0.03, 180, 2.0, 192, 3600, 4, 96),
    "post-storage-mongodb": ("store", 0.04, 220, 2.0, 512, 3600, 6, 160),
    "user-timeline-mongodb": ("store", 0.03, 200, 2.0, 384, 3600, 5, 128),
    "social-graph-mongodb": ("store", 0.03, 180, 2.0, 256, 3600, 4, 96),
    "media-mongodb": ("store", 0.03, 200, 2.0, 768, 3600, 5, 192),
}

# (component, operation): (cpu ms, latency ms, write ios, write KB, cache fill KB)
_OPERATIONS: dict[Pair, tuple[float, float, float, float, float]] = {
    ("nginx", "/compose-post"): (0.9, 40, 0, 0, 0),
    ("nginx", "/read-home-timeline"): (0.6, 25, 0, 0, 0),
    ("nginx", "/read-user-timeline"): (0.6, 30, 0, 0, 0),
    ("nginx", "/register"): (0.8, 30, 0, 0, 0),
    ("nginx", "/follow"): (0.6, 20, 0, 0, 0),
    ("nginx", "/upload-media"): (2.5, 120, 0, 0, 0),
    ("compose-post", "compose-post"): (3.0, 35, 0, 0, 0),
    ("unique-id", "compose-unique-id"): (0.6, 1, 0, 0, 0),
    ("text", "compose-text"): (1.5, 10, 0, 0, 0),
    ("url-shorten", "compose-urls"): (2.0, 6, 0, 0, 0),
    ("media", "compose-media"): (1.2, 4, 0, 0, 0),
    ("media", "upload-media"): (6.0, 100, 0, 0, 0),
    ("user", "compose-creator"): (0.8, 3, 0, 0, 0),
    ("user", "get-mentions"): (1.0, 4, 0, 0, 0),
    ("user", "register-user"): (4.0, 20, 0, 0, 0),
    ("user", "get-user-id"): (0.8, 3, 0, 0, 0),
    ("user-memcached", "get"): (0.15, 0.5, 0, 0, 0),
    ("user-memcached", "set"): (0.2, 0.5, 0, 0, 1.0),
    ("user-mongodb", "find"): (1.5, 3, 0, 0, 2.0),
    ("user-mongodb", "insert"): (2.5, 5, 2, 4.0, 2.0),
    ("post-storage", "store-post"): (1.5, 8, 0, 0, 0),
    ("post-storage", "read-posts"): (2.0, 8, 0, 0, 0),
    ("post-storage-memcached", "get"): (0.3, 1, 0, 0, 0),
    ("post-storage-memcached", "set"): (0.4, 1, 0, 0, 12.0),
    ("post-storage-mongodb", "insert"): (2.0, 5, 2, 6.0, 2.0),
    ("post-storage-mongodb", "find"): (2.5, 6, 0, 0, 8.0),
    ("user-timeline", "write-user-timeline"): (1.2, 6, 0, 0, 0),
    ("user-timeline", "read-user-timeline"): (2.5, 12, 0, 0, 0),
    ("user-timeline-mongodb", "update"): (1.8, 5, 1.5, 3.0, 1.0),
    ("user-timeline-mongodb", "find"): (1.5, 4, 0, 0, 2.0),
    ("home-timeline", "write-home-timeline"): (2.0, 10, 0, 0, 0),
    ("home-timeline", "read-home-timeline"): (1.5, 8, 0, 0, 0),
    ("home-timeline-redis", "zadd"): (0.08, 0.3, 0, 0, 0.4),
    ("home-timeline-redis", "zrange"): (0.25, 0.6, 0, 0, 0),
    ("social-graph", "get-followers"): (1.0, 4, 0, 0, 0),
    ("social-graph", "follow"): (2.0, 10, 0, 0, 0),
    ("social-graph", "insert-user"): (1.0, 5, 0, 0, 0),
    ("social-graph-redis", "get-followers"): (0.2, 0.5, 0, 0, 0),
    ("social-graph-redis", "set"): (0.3, 0.5, 0, 0, 6.0),
    ("social-graph-redis", "update"): (0.25, 0.5, 0, 0, 1.0),
    ("social-graph-mongodb", "find"): (1.5, 4, 0, 0, 3.0),
    ("social-graph-mongodb", "update"): (2.0, 5, 2, 2.0, 1.0),
    ("social-graph-mongodb", "insert"): (2.0, 5, 2, 2.0, 1.0),
    ("media-mongodb", "insert-chunk"): (3.0, 8, 1, 255.0, 16.0),
}

# Branch parameters: probabilities of optional calls, cache miss rates, fan-out means.
_PARAMS: dict[str, float] = {
    "p_urls": 0.35,
    "p_mentions": 0.25,
    "p_media": 0.2,
    "p_by_name": 0.5,
    "miss_user": 0.1,
    "miss_post_home": 0.12,
    "miss_post_user": 0.3,
    "miss_graph": 0.15,
    "followers": 8.0,
    "chunks": 4.0,
}

# A call-tree node: (component, operation, draw, parameter, children). draw is "always" (one per
# driver call), "p" (Bernoulli with _PARAMS[parameter]), "fan" (Poisson with that mean) or "mirror"
# (exactly as many as the earlier sibling whose operation is the parameter).
TreeNode = tuple[str, str, str, str, list["TreeNode"]]


def _cached(component: str, op: str, store: str, miss: str) -> list[TreeNode]:
    """A cache lookup, a store read on a miss, and the cache fill after it."""
    cache = f"{component}-memcached" if component != "social-graph" else "social-graph-redis"
    return [
        (cache, op if cache == "social-graph-redis" else "get", "always", "", []),
        (store, "find", "p", miss, []),
        (cache, "set", "mirror", "find", []),
    ]


def _user(op: str, draw: str = "always", param: str = "") -> TreeNode:
    return ("user", op, draw, param, _cached("user", "get", "user-mongodb", "miss_user"))


def _posts(miss: str) -> TreeNode:
    kids = _cached("post-storage", "get", "post-storage-mongodb", miss)
    return ("post-storage", "read-posts", "always", "", kids)


def _followers() -> TreeNode:
    kids = _cached("social-graph", "get-followers", "social-graph-mongodb", "miss_graph")
    return ("social-graph", "get-followers", "always", "", kids)


_TREES: dict[str, TreeNode] = {
    "/compose-post": ("compose-post", "compose-post", "always", "", [
        ("unique-id", "compose-unique-id", "always", "", []),
        ("text", "compose-text", "always", "", [
            ("url-shorten", "compose-urls", "p", "p_urls", []),
            _user("get-mentions", "p", "p_mentions"),
        ]),
        ("media", "compose-media", "p", "p_media", []),
        _user("compose-creator"),
        ("post-storage", "store-post", "always", "", [
            ("post-storage-mongodb", "insert", "always", "", []),
        ]),
        ("user-timeline", "write-user-timeline", "always", "", [
            ("user-timeline-mongodb", "update", "always", "", []),
        ]),
        ("home-timeline", "write-home-timeline", "always", "", [
            _followers(),
            ("home-timeline-redis", "zadd", "fan", "followers", []),
        ]),
    ]),
    "/read-home-timeline": ("home-timeline", "read-home-timeline", "always", "", [
        ("home-timeline-redis", "zrange", "always", "", []),
        _posts("miss_post_home"),
    ]),
    "/read-user-timeline": ("user-timeline", "read-user-timeline", "always", "", [
        ("user-timeline-mongodb", "find", "always", "", []),
        _posts("miss_post_user"),
    ]),
    "/register": ("user", "register-user", "always", "", [
        ("user-mongodb", "insert", "always", "", []),
        ("social-graph", "insert-user", "always", "", [
            ("social-graph-mongodb", "insert", "always", "", []),
        ]),
    ]),
    "/follow": ("social-graph", "follow", "always", "", [
        ("social-graph-mongodb", "update", "always", "", []),
        ("social-graph-redis", "update", "always", "", []),
        _user("get-user-id", "p", "p_by_name"),
    ]),
    "/upload-media": ("media", "upload-media", "always", "", [
        ("media-mongodb", "insert-chunk", "fan", "chunks", []),
    ]),
}  # fmt: skip

DRAWS: tuple[str, ...] = ("root", "always", "p", "fan")
"""Codes of CallTree.draw: how a node's count follows from its driver's count."""


@dataclass(frozen=True)
class CallTree:
    """Every call path of every API in topological order, with how its count is drawn."""

    paths: tuple[CallPath, ...]
    api: np.ndarray  # [paths] index into APIS
    driver: np.ndarray  # [paths] index of the path whose count drives this one; -1 at roots
    draw: np.ndarray  # [paths] index into DRAWS
    param: np.ndarray  # [paths] probability or mean of the draw
    op: np.ndarray  # [paths] index into App.operations


@dataclass(frozen=True)
class App:
    """The seeded application: components, per-operation costs, call trees."""

    components: tuple[str, ...]
    kinds: tuple[str, ...]
    idle_cpu: np.ndarray  # [components] cores
    base_memory: np.ndarray  # [components] bytes
    memory_per_request: np.ndarray  # [components] bytes per concurrent request
    cache_capacity: np.ndarray  # [components] bytes (0: no cache)
    cache_tau: np.ndarray  # [components] seconds
    idle_iops: np.ndarray  # [components]
    idle_write_bytes: np.ndarray  # [components] bytes/s
    operations: tuple[Pair, ...]
    op_component: np.ndarray  # [operations] index into components
    op_cost: np.ndarray  # [operations, 5]: cpu s, latency s, write ios, write bytes, fill bytes
    tree: CallTree

    @property
    def stores(self) -> tuple[str, ...]:
        return tuple(c for c, k in zip(self.components, self.kinds, strict=True) if k == "store")


def _flatten(ops: dict[Pair, int], params: dict[str, float]) -> CallTree:
    paths: list[CallPath] = []
    api: list[int] = []
    driver: list[int] = []
    draw: list[int] = []
    param: list[float] = []
    for a, name in enumerate(APIS):
        root: TreeNode = (FRONT_END, name, "root", "", [_TREES[name]])
        stack: list[tuple[TreeNode, CallPath, int, dict[str, int]]] = [(root, (), -1, {})]
        while stack:
            (comp, op, how, key, kids), above, parent, siblings = stack.pop(0)
            path = (*above, (comp, op))
            index = len(paths)
            siblings[op] = index
            source = siblings[key] if how == "mirror" else parent
            paths.append(path)
            api.append(a)
            driver.append(source)
            draw.append(DRAWS.index("always" if how == "mirror" else how))
            param.append(params.get(key, 1.0))
            mine: dict[str, int] = {}
            stack.extend((kid, path, index, mine) for kid in kids)
    return CallTree(
        paths=tuple(paths),
        api=np.array(api),
        driver=np.array(driver),
        draw=np.array(draw),
        param=np.array(param),
        op=np.array([ops[p[-1]] for p in paths]),
    )


@lru_cache(maxsize=8)
def build_app(app_seed: int = 0) -> App:
    """The application of `app_seed`: nominal costs jittered by a seeded +-15% lognormal factor."""
    rng = np.random.default_rng(np.random.SeedSequence([app_seed, 0x5EED]))
    names = tuple(_COMPONENTS)
    table = np.array([row[1:] for row in _COMPONENTS.values()], dtype=float)
    table *= rng.lognormal(0.0, 0.15, size=table.shape)
    operations = tuple(_OPERATIONS)
    cost = np.array(list(_OPERATIONS.values()), dtype=float)
    cost *= rng.lognormal(0.0, 0.15, size=cost.shape)
    cost[:, :2] /= 1000.0  # ms -> s
    cost[:, 3:] *= KB
    jitter = rng.lognormal(0.0, 0.1, size=len(_PARAMS))
    params = {k: v * f for (k, v), f in zip(_PARAMS.items(), jitter, strict=True)}
    params = {k: min(v, 0.95) if k.startswith(("p_", "miss_")) else v for k, v in params.items()}
    return App(
        components=names,
        kinds=tuple(row[0] for row in _COMPONENTS.values()),
        idle_cpu=table[:, 0],
        base_memory=table[:, 1] * MB,
        memory_per_request=table[:, 2] * MB,
        cache_capacity=table[:, 3] * MB,
        cache_tau=table[:, 4],
        idle_iops=table[:, 5],
        idle_write_bytes=table[:, 6] * KB,
        operations=operations,
        op_component=np.array([names.index(c) for c, _ in operations]),
        op_cost=cost,
        tree=_flatten({p: i for i, p in enumerate(operations)}, params),
    )

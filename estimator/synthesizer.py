"""Trace synthesizer for what-if: per API, the learned distribution of call-path vectors per call."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from estimator.errors import BundleError, InputError
from estimator.windows import CallPath, Pair, Window, api_counts, api_depth, api_of

TOTAL: Pair = ("*", "*")
"""Pseudo-API for paths that belong to no API (a gateway root): they follow the total of calls."""

OTHER_APIS = "(other APIs)"
"""Operation of the pseudo-API that stands, per component, for the APIs a bundle's vocabulary
left out (seen in one window, past its cap: ids in operation names); their calls read as those
of an API never seen, as at predict time, and the spans below them keep their components."""

MAX_PROFILES = 64
"""Per-call path vectors kept per API (from the busiest training windows) for sampling."""


def _key(pair: Pair) -> str:
    return f"{pair[0]}:{pair[1]}"


@dataclass(frozen=True)
class Synthesizer:
    """Turns per-API call counts, or a scale factor on observed traffic, into call-path counts."""

    apis: tuple[Pair, ...]
    paths: dict[Pair, tuple[CallPath, ...]]
    mean: dict[Pair, np.ndarray]  # expected count of each path per call of the API
    profiles: dict[Pair, np.ndarray]  # [profiles, paths] per-call vectors seen in single windows

    @classmethod
    def fit(cls, windows: Sequence[Window], keep: Collection[Pair] | None = None) -> Synthesizer:
        """Learn per-call path vectors of each API from the training windows; with `keep` (the
        vocabulary's APIs), the other APIs of each component are pooled as one (`OTHER_APIS`),
        so that an API per request does not make a synthesizer of every request."""
        per_api: dict[Pair, dict[CallPath, list[tuple[int, float]]]] = {}
        calls: dict[Pair, np.ndarray] = {}
        n = len(windows)
        for i, window in enumerate(windows):
            entries = folded_api_counts(window.calls, keep)
            for api, count in entries.items():
                calls.setdefault(api, np.zeros(n))[i] = count
            calls.setdefault(TOTAL, np.zeros(n))[i] = sum(entries.values())
            for path, count in window.calls.items():
                api = api_of(path) or TOTAL
                if keep is not None and api != TOTAL and api not in keep:
                    api, path = _pooled(path)
                seen = per_api.setdefault(api, {}).setdefault(path, [])
                if seen and seen[-1][0] == i:  # pooled paths of one window add up
                    seen[-1] = (i, seen[-1][1] + count)
                else:
                    seen.append((i, count))
        paths, mean, profiles = {}, {}, {}
        for api, by_path in per_api.items():
            denominators = calls.get(api)
            if denominators is None or denominators.sum() <= 0:
                continue
            ordered = tuple(sorted(by_path))
            matrix = np.zeros((n, len(ordered)))
            for j, path in enumerate(ordered):
                for i, count in by_path[path]:
                    matrix[i, j] = count
            paths[api] = ordered
            mean[api] = matrix.sum(axis=0) / denominators.sum()
            busiest = np.argsort(-denominators, kind="stable")[:MAX_PROFILES]
            busiest = busiest[denominators[busiest] > 0]
            profiles[api] = matrix[busiest] / denominators[busiest, None]
        apis = tuple(sorted(a for a in paths if a != TOTAL))
        return cls(apis=apis, paths=paths, mean=mean, profiles=profiles)

    def resolve_api(self, name: str) -> Pair:
        """An API from 'component:operation' or an unambiguous operation name."""
        for api in self.apis:
            if name == _key(api):
                return api
        matches = [api for api in self.apis if api[1] == name]
        if len(matches) == 1:
            return matches[0]
        known = ", ".join(_key(a) for a in self.apis)
        pooled = (name.split(":", 1)[0], OTHER_APIS)
        hint = (
            f" (APIs seen in under two training windows, or past the cap, are pooled per "
            f"component: for them give '{_key(pooled)}')"
            if ":" in name and pooled in self.mean
            else ""
        )
        raise InputError(
            f"unknown or ambiguous API '{name}'{hint}; known APIs: {known}", field="api"
        )

    def windows(
        self,
        traffic: Sequence[Mapping[Pair, float]],
        starts: Sequence[float] | np.ndarray,
        window_seconds: float,
        rng: np.random.Generator | None = None,
    ) -> list[Window]:
        """Windows of call-path counts for per-API calls per window (expected, or sampled with rng).

        Calls that are no finite non-negative number, and a `window_seconds` that is no positive
        number, are an InputError (an API with NaN calls would otherwise read as none)."""
        if len(traffic) != len(starts):
            raise InputError(
                f"{len(traffic)} windows of traffic but {len(starts)} start times", field="starts"
            )
        if not (math.isfinite(window_seconds) and window_seconds > 0):
            raise InputError(
                f"must be a positive number, got {window_seconds!r}", field="window_seconds"
            )
        out = []
        for i, (counts, start) in enumerate(zip(traffic, starts, strict=True)):
            for api, n in counts.items():
                if not (math.isfinite(n) and n >= 0):
                    raise InputError(
                        f"calls of API {_key(api)}: {n!r} is no finite non-negative number",
                        field=f"traffic[{i}]",
                    )
            window = Window(start=float(start), end=float(start) + window_seconds)
            total = float(sum(counts.values()))
            for api, n in (*counts.items(), (TOTAL, total)):
                if api not in self.mean or n <= 0:
                    if api != TOTAL and n > 0 and api not in self.mean:
                        raise InputError(f"API {_key(api)} was never seen in training", field="api")
                    continue
                vector = self._per_call(api, rng) * n
                if rng is not None:
                    vector = rng.poisson(vector).astype(float)
                for path, count in zip(self.paths[api], vector, strict=True):
                    if count > 0:
                        window.add_path(path, float(count))
            out.append(window)
        return out

    def _per_call(self, api: Pair, rng: np.random.Generator | None) -> np.ndarray:
        if rng is None or len(self.profiles[api]) == 0:
            return self.mean[api]
        return self.profiles[api][rng.integers(len(self.profiles[api]))]

    # ------------------------------------------------------------------ persistence

    def to_json(self) -> dict[str, Any]:
        return {
            "apis": {
                _key(api): {
                    "api": list(api),
                    "paths": [[list(s) for s in p] for p in self.paths[api]],
                    "mean": [round(float(x), 9) for x in self.mean[api]],
                    "profiles": np.round(self.profiles[api], 9).tolist(),
                }
                for api in self.paths
            }
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any] | None) -> Synthesizer:
        if not obj:
            raise BundleError("this bundle has no trace synthesizer; retrain it with this version")
        try:
            paths, mean, profiles = {}, {}, {}
            for entry in obj["apis"].values():
                api = (str(entry["api"][0]), str(entry["api"][1]))
                paths[api] = tuple(tuple((str(c), str(o)) for c, o in p) for p in entry["paths"])
                mean[api] = np.asarray(entry["mean"], dtype=float)
                width = len(paths[api])
                profiles[api] = np.asarray(entry["profiles"], dtype=float).reshape(-1, width)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise BundleError(f"trace synthesizer in manifest is malformed: {exc!r}") from exc
        apis = tuple(sorted(a for a in paths if a != TOTAL))
        return cls(apis=apis, paths=paths, mean=mean, profiles=profiles)


def _pooled(path: CallPath) -> tuple[Pair, CallPath]:
    """The pooled API of a path of an API left out, and the path with its API step pooled."""
    depth = api_depth(path)
    api = (path[depth - 1][0], OTHER_APIS)
    return api, (*path[: depth - 1], api, *path[depth:])


def folded_api_counts(
    calls: Mapping[CallPath, float], keep: Collection[Pair] | None
) -> dict[Pair, float]:
    """Calls per API, those of APIs not in `keep` (where given) pooled per component."""
    out: dict[Pair, float] = {}
    for api, count in api_counts(calls).items():
        if keep is not None and api not in keep:
            api = (api[0], OTHER_APIS)
        out[api] = out.get(api, 0.0) + count
    return out


def scale_windows(windows: Sequence[Window], factor: float) -> list[Window]:
    """Observed traffic with every call-path count multiplied by `factor` (metrics dropped)."""
    if not np.isfinite(factor) or factor < 0:
        raise InputError(f"scale factor must be a finite non-negative number, got {factor}")
    return [Window(w.start, w.end, {p: c * factor for p, c in w.calls.items()}) for w in windows]


def traffic_of(windows: Sequence[Window]) -> list[dict[Pair, float]]:
    """Per-API calls per window, as the synthesizer takes them."""
    return [api_counts(w.calls) for w in windows]

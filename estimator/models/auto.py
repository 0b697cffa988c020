"""Per-series model choice: fit every candidate, keep per series the best on the newest windows.

A candidate is a model kind or a blend of kinds written `kind+kind`, whose quantiles are the
means of its members' quantiles. Averaging two models that are about as accurate but err
differently cancels part of their errors where much of a series' error is noise each model fits
in its own way. Each kind is fitted once, however many candidates it belongs to, so a blend of
kinds already scored costs nothing to score.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from estimator.drift import drift_rates
from estimator.errors import InputError, ModelError
from estimator.features import Layout
from estimator.metrics import accuracy, coverage
from estimator.models.base import QuantileModel, clearly_lower, finalize, held_out

DEFAULT_CANDIDATES: tuple[str, ...] = ("xgboost", "xgboost+qrnn", "qrnn", "linear", "ols-api")

BLEND = "+"
"""Joins the kinds of a blended candidate."""


COVERAGE_SLACK = 0.15
"""How far under both 90% and the first candidate's band coverage on the tail another candidate's
may fall and still take a series: a median a little better is no gain with a band that misses."""


def members(candidate: str) -> tuple[str, ...]:
    """The model kinds a candidate averages (one for a plain kind)."""
    return tuple(candidate.split(BLEND))


def _blend(outputs: Mapping[str, np.ndarray], candidate: str) -> np.ndarray:
    """A candidate's quantiles from its members' predictions (the mean of each quantile)."""
    parts = [outputs[kind] for kind in members(candidate)]
    return parts[0] if len(parts) == 1 else np.mean(parts, axis=0)


def _json_list(values: np.ndarray) -> list[float | None]:
    """Floats for a manifest, with None where a value is not defined (NaN)."""
    return [None if not math.isfinite(v) else float(v) for v in values]


class AutoModel(QuantileModel):
    """Chooses a candidate per series by accuracy on the last `validation_fraction` windows.

    The first candidate (by default XGBoost) is preferred: another takes a series only when it
    beats it by more than `margin` accuracy and its absolute errors on the tail are lower by more
    than `z` standard errors (a paired comparison, window by window), so a noisy tail of few windows
    does not hand a series to whichever candidate its noise favoured, and when its band covers the
    tail no worse than COVERAGE_SLACK under both 90% and the first candidate's coverage. The tail
    is traffic like the rest of training, so it cannot show how a model extrapolates to traffic
    never seen; the first candidate is the one built to extrapolate.

    Candidates with a kind whose module cannot be imported are skipped; the kinds of the chosen
    candidates are refitted on all windows. `validation_` holds per-series accuracy and coverage of
    the chosen candidates on the tail.
    """

    kind = "auto"

    def __init__(
        self,
        candidates: Sequence[str] = DEFAULT_CANDIDATES,
        validation_fraction: float = 0.2,
        params: Mapping[str, Mapping[str, Any]] | None = None,
        margin: float = 0.01,
        z: float = 2.0,
    ) -> None:
        from estimator.models import MODEL_KINDS, make_model

        if isinstance(candidates, str) or not candidates:
            raise InputError("auto: candidates must be a non-empty list", field="param")
        self.candidates = tuple(candidates)
        for candidate in self.candidates:
            kinds = members(candidate) if isinstance(candidate, str) else [""]
            if "" in kinds or len(set(kinds)) != len(kinds):
                raise InputError(
                    f"auto: candidate '{candidate}' is not KIND or KIND+KIND", field="param"
                )
            wrong = [k for k in kinds if k not in MODEL_KINDS or k == self.kind]
            if wrong:
                what = "is" if wrong[0] == candidate else f"names '{wrong[0]}',"
                raise InputError(
                    f"auto: candidate '{candidate}' {what} no kind auto can fit; choose from "
                    f"{', '.join(k for k in MODEL_KINDS if k != self.kind)}",
                    field="param",
                )
        if not 0 < validation_fraction < 1 or not margin >= 0 or not z >= 0:
            raise InputError(
                "auto needs validation_fraction in (0, 1), margin >= 0 and z >= 0", field="param"
            )
        self.margin = margin
        self.z = z
        self.validation_fraction = validation_fraction
        if not isinstance(params, Mapping | None) or not all(
            isinstance(v, Mapping) for v in (params or {}).values()
        ):
            raise InputError(
                'auto: params must map model kinds to their params, e.g. {"qrnn": {"epochs": 5}}',
                field="params",
            )
        self.params = {k: dict(v) for k, v in (params or {}).items()}
        for kind, given in self.params.items():
            if kind not in MODEL_KINDS or kind == self.kind:
                raise InputError(
                    f"auto: params for '{kind}', which is no model kind auto fits", field="params"
                )
            with contextlib.suppress(ImportError):  # checked now, not after hours of training
                make_model(kind, **given)

    def _make(self, kind: str) -> QuantileModel | None:
        """A fresh candidate, or None when its module (or what it needs) cannot be imported."""
        from estimator.models import make_model

        if kind == self.kind:
            raise ModelError("auto: 'auto' cannot be its own candidate")
        try:
            model = make_model(kind, **self.params.get(kind, {}))
        except ImportError:
            return None
        model.progress = self.progress
        return model

    def _score(
        self, X: np.ndarray, Y: np.ndarray, layout: Layout, cut: int
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per available candidate: tail predictions [tail, s, 3] and per-series tail accuracy."""
        outputs: dict[str, np.ndarray] = {}
        missing: set[str] = set()
        for kind in dict.fromkeys(k for c in self.candidates for k in members(c)):
            model = self._make(kind)
            if model is None:
                missing.add(kind)
                continue
            self.say(f"auto: fitting {kind} on the first {cut} windows, to score it on the rest")
            model.fit(X[:cut], Y[:cut], layout)
            start = max(0, cut - model.context)
            outputs[kind] = model.predict(X[start:])[cut - start :]
        scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for candidate in self.candidates:
            if missing.isdisjoint(members(candidate)):
                pred = _blend(outputs, candidate)
                scores[candidate] = (pred, accuracy(pred[..., 1], Y[cut:]))
        if not scores:
            raise ModelError(f"auto: none of the candidates {list(self.candidates)} is available")
        return scores

    def fit(self, X: np.ndarray, Y: np.ndarray, layout: Layout) -> Self:
        X, Y = np.asarray(X, dtype=float), np.asarray(Y, dtype=float)
        if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y):
            raise ModelError(f"auto: X {X.shape} and Y {Y.shape} do not match")
        tail = held_out(len(X), self.validation_fraction)
        cut = len(X) - tail
        if cut < 2:
            raise InputError(
                f"auto: too few windows ({len(X)}) to hold out a tail of {tail} and fit on the "
                "rest; give more windows or a smaller validation fraction",
                field="param",
            )
        scores = self._score(X, Y, layout, cut)
        kinds = list(scores)
        table = np.vstack([np.nan_to_num(scores[k][1], nan=-np.inf) for k in kinds])
        table[0] += self.margin
        first = np.abs(scores[kinds[0]][0][..., 1] - Y[cut:])
        covered = {k: coverage(scores[k][0], Y[cut:]) for k in kinds}
        floor = np.minimum(covered[kinds[0]], 0.9) - COVERAGE_SLACK
        for i, kind in enumerate(kinds[1:], start=1):
            clear = clearly_lower(np.abs(scores[kind][0][..., 1] - Y[cut:]), first, self.z)
            table[i, ~clear & np.isfinite(table[0])] = -np.inf
            with np.errstate(invalid="ignore"):
                table[i, covered[kind] < floor] = -np.inf  # NaN (no actual): no evidence
        chosen = [kinds[i] for i in np.argmax(table, axis=0)]
        chosen_pred = np.stack(
            [scores[k][0][:, j] for j, k in enumerate(chosen)], axis=1
        )  # [tail, s, 3]
        self.validation_ = {
            "windows": tail,
            "accuracy": _json_list(accuracy(chosen_pred[..., 1], Y[cut:])),
            "coverage": _json_list(coverage(chosen_pred, Y[cut:])),
            "drift": drift_rates(Y[cut:], chosen_pred[..., 1]).tolist(),
            "candidates": {k: _json_list(scores[k][1]) for k in kinds},
        }
        self.chosen_ = chosen
        self.models_: dict[str, QuantileModel] = {}
        for kind in dict.fromkeys(k for c in chosen for k in members(c)):
            model = self._make(kind)
            assert model is not None  # it imported a moment ago
            self.say(f"auto: fitting {kind} on all {len(X)} windows")
            self.models_[kind] = model.fit(X, Y, layout)
        self.context = max(m.context for m in self.models_.values())
        self.n_features_, self.n_series_ = X.shape[1], Y.shape[1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted(X)
        outputs = {kind: model.predict(X) for kind, model in self.models_.items()}
        return finalize(self._combine(outputs, (len(X), self.n_series_, 3)))

    def predict_last(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted(X)
        outputs = {kind: model.predict_last(X) for kind, model in self.models_.items()}
        return finalize(self._combine(outputs, (self.n_series_, 3)))

    def _combine(self, outputs: Mapping[str, np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
        """Each series' columns from its chosen candidate's members ([..., s, 3] each)."""
        out = np.zeros(shape)
        for candidate in dict.fromkeys(self.chosen_):
            columns = [j for j, k in enumerate(self.chosen_) if k == candidate]
            parts = {kind: outputs[kind][..., columns, :] for kind in members(candidate)}
            out[..., columns, :] = _blend(parts, candidate)
        return out

    def series_kinds(self) -> list[str]:
        return list(self.chosen_)

    def save(self, directory: Path) -> dict[str, Any]:
        subs = {}
        for kind, model in self.models_.items():
            (directory / kind).mkdir(parents=True, exist_ok=True)
            subs[kind] = model.save(directory / kind)
        return {
            "candidates": list(self.candidates),
            "validation_fraction": self.validation_fraction,
            "margin": self.margin,
            "z": self.z,
            "params": self.params,
            "n_features": self.n_features_,
            "n_series": self.n_series_,
            "series_kinds": self.chosen_,
            "models": subs,
            "validation": self.validation_,
        }

    @classmethod
    def load(cls, directory: Path, meta: dict[str, Any]) -> Self:
        from estimator.models import model_class

        model = cls(
            meta["candidates"],
            meta["validation_fraction"],
            meta.get("params"),
            meta.get("margin", 0.0),
            meta.get("z", 2.0),
        )
        model.chosen_ = [str(k) for k in meta["series_kinds"]]
        model.models_ = {
            kind: model_class(kind).load(directory / kind, sub)
            for kind, sub in dict(meta["models"]).items()
        }
        needed = {kind for candidate in model.chosen_ for kind in members(candidate)}
        if needed != set(model.models_):
            raise ModelError(f"{directory}: series kinds and saved sub-models disagree")
        model.validation_ = dict(meta.get("validation") or {})
        model.context = max(m.context for m in model.models_.values())
        model.n_features_, model.n_series_ = int(meta["n_features"]), int(meta["n_series"])
        return model


__all__ = ["BLEND", "DEFAULT_CANDIDATES", "AutoModel", "members"]

"""Boosted quantile trees on top of a non-negative per-call cost base, so estimates extrapolate.

Trees alone predict flat beyond the traffic they were trained on. Here each series is
`base + scale * z`: `base` is a non-negative linear cost per call (plus an idle intercept) fitted
on the count and traffic-history features, robustly (see `costbase.py`: windows of faults in
training do not raise it); `z` is the relative residual, learned by
multi-quantile XGBoost from load-free features (API mix shares, component shares, history relative
to current load, log load). At 3x traffic `base` triples while the mix features stay in range.
The newest training windows are held out: they choose each series' number of boosting rounds
(early stopping) and calibrate its band (conformalized quantile regression) before a refit on all
windows, so the trees stop before fitting noise and the band's coverage is honest.

State that fills and drains (a cache) must neither scale nor be read off the current window. For
every series, three forms are fitted on the lower-load windows and compared on the busiest ones
(the direction of extrapolation): SCALE (the base above), RESERVOIR (the base on current counts
plus the series' reservoir, a state that fills with its component's calls, drains, and stops at a
capacity where training shows one; see `reservoir.py`) and SATURATE (no base: trees on the absolute
levels of traffic and history, flat beyond the load they have seen, and never falling as any of
them rises: monotone constraints, so a heap that creeps up while load falls is not read as
traffic that costs less). The series keeps the most
structured form unless a looser one predicts that tail clearly better (FORM_MARGIN) and beyond
chance (FORM_EVIDENCE); a series whose reservoir shows a capacity anywhere in training keeps
RESERVOIR, since the busiest windows are often the only ones where a cache is full.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self

import numpy as np
import xgboost as xgb

from estimator.errors import BundleError, ModelError
from estimator.features import FEATURE_GROUPS, Layout
from estimator.models.base import (
    QUANTILES,
    QuantileModel,
    check_saved_arrays,
    clearly_lower,
    conformal_margin,
    finalize,
    widen,
)
from estimator.models.costbase import (
    FLOOR,
    SAY_EVERY,
    SHRINKAGE,
    choose_shrinkage,
    fit_nonnegative_costs,
    fit_state_costs,
    mean_level,
    shrinkage_grid,
    usable_cores,
)
from estimator.models.forest import Forest
from estimator.models.reservoir import CONTEXT, Reservoir, load_reservoirs, search, states

SCALE, SATURATE, RESERVOIR = 0, 1, 2
HISTORY_COSTS = ("all", "own", "none")
"""Which traffic history a scaling series' per-call costs may use (see `_owned_history`)."""
PATH_COSTS = ("reach", "all")
"""Which call paths a series' per-call costs may use (see `_unreached_paths`)."""
RATES = frozenset({"cpu", "write_iops", "write_throughput"})
"""Resources whose usage in a window is the work done in it, with no state carried over: their
per-call costs never read the traffic history (see `_owned_history`)."""
FORMS = ("scale", "saturate", "reservoir")
SELECTION_ROWS = 4000
"""Lower-load windows (evenly subsampled) on which the forms are fitted for the choice."""
TREE_ROWS = 8192
"""Default bound on the windows (evenly subsampled) each series' trees learn from. The cost base
uses every window; the trees learn how the mix shifts the residual, which some days of windows
already show, and their training time grows with every row."""
MIN_ROWS = 4
MIN_LEAF_WINDOWS = 20.0
"""Default `min_child_weight`: the fewest windows a leaf of the trees may hold (the quantile
objective weighs each window 1; XGBoost's own default is 1). The median of 20 windows of 5% noise
is off by about 1.4%; a leaf of a handful of windows learns their noise as an effect of the API
mix, and a new window with that mix gets it back. On a simulated store whose cache was full all
through two days of training, a normal day's median rose 12% over the cache's level at its peak
(7% with leaves of 20 windows); on the real recording's split inside its training part, leaves of
20 windows lowered the median CPU WAPE from 0.370 to 0.355 (see docs/benchmarks.md)."""
FORM_MARGIN = 0.05
"""How much lower (relatively) a less structured form's tail error must be for it to be chosen.
About two standard errors of a mean absolute error over some 600 windows of 5% noise: smaller
differences are noise, and the more structured form extrapolates to more kinds of change."""
FORM_EVIDENCE = 2.0
"""...and by this many standard errors of the mean per-window difference: on real recordings the
tail is a few dozen noisy windows, where a 5% lead is often chance."""


def _prefer_structure(errors: np.ndarray) -> np.ndarray:
    """Per series, from absolute tail errors [forms, windows, s] (NaN: unknown): SCALE, else
    RESERVOIR, else SATURATE, each only where it beats the form kept so far by more than
    FORM_MARGIN of that form's mean error and, window by window, by more than FORM_EVIDENCE
    standard errors of the mean difference (a few noisy windows do not trade structure away)."""
    chosen = np.full(errors.shape[2], SCALE)
    best = errors[SCALE].copy()
    for form in (RESERVOIR, SATURATE):
        # inf: a form the series cannot take; all NaN: a series without usage in the tail
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # numpy's "Mean of empty slice"
            level = np.nanmean(best, axis=0)
            ahead = level - np.nanmean(errors[form], axis=0)
        better = (ahead > FORM_MARGIN * level) & clearly_lower(errors[form], best, FORM_EVIDENCE)
        chosen[better], best[:, better] = form, errors[form][:, better]
    return chosen


def _without(groups: Sequence[np.ndarray], left_out: np.ndarray) -> np.ndarray:
    """The columns of `groups`, in order, but those `left_out`."""
    columns = np.concatenate([np.zeros(0, dtype=int), *groups])
    return columns[~np.isin(columns, left_out)]


def _even(rows: np.ndarray, limit: int) -> np.ndarray:
    """At most `limit` of `rows`, evenly spread (all of them when there are few enough)."""
    if len(rows) <= limit:
        return rows
    return rows[np.linspace(0, len(rows) - 1, limit).astype(int)]


class XGBoostQuantile(QuantileModel):
    """Per series: NNLS cost base, then multi-quantile XGBoost on the relative residual."""

    kind = "xgboost"
    reservoirs_: list[Reservoir | None]
    state_weight_: np.ndarray
    forest_: Forest | None

    def __init__(
        self,
        n_estimators: int = 20,
        max_depth: int = 4,
        learning_rate: float = 0.2,
        subsample: float = 0.7,
        max_bin: int = 64,
        min_child_weight: float = MIN_LEAF_WINDOWS,
        calibration_fraction: float = 0.2,
        tree_groups: Sequence[str] = ("api", "component", "history"),
        ridge: float = 1e-6,
        nthread: int = 1,
        seed: int = 0,
        saturation: str = "auto",
        saturation_holdout: float = 0.15,
        max_tree_rows: int = TREE_ROWS,
        choose_rounds: bool = True,
        robust: bool = True,
        shrinkage: float | Sequence[float] = SHRINKAGE,
        workers: int = 0,
        monotone: bool = True,
        history_costs: str = "own",
        path_costs: str = "reach",
    ) -> None:
        # One OpenMP thread per booster: on a shared two-core machine OpenMP's second thread
        # spins and makes training several times slower. Instead `workers` threads (0: one per
        # usable core) each train their own series' boosters; the result does not depend on
        # how many. Fitted models predict through the numpy forest; the boosters' own
        # predictions (while fitting) use one thread.
        for name, value, ok, what in (
            ("n_estimators", n_estimators, n_estimators >= 1, ">= 1"),
            ("max_depth", max_depth, max_depth >= 1, ">= 1"),
            ("learning_rate", learning_rate, learning_rate > 0, "> 0"),
            ("subsample", subsample, 0 < subsample <= 1, "in (0, 1]"),
            ("max_bin", max_bin, max_bin >= 2, ">= 2"),
            ("min_child_weight", min_child_weight, min_child_weight >= 0, ">= 0"),
            (
                "calibration_fraction",
                calibration_fraction,
                0 < calibration_fraction < 1,
                "in (0, 1)",
            ),
            ("saturation_holdout", saturation_holdout, 0 < saturation_holdout < 1, "in (0, 1)"),
            ("ridge", ridge, ridge >= 0, ">= 0"),
            ("nthread", nthread, nthread >= 1, ">= 1"),
        ):
            if not ok:
                raise ModelError(f"xgboost: {name} must be {what}, not {value!r}")
        unknown = sorted(set(tree_groups) - set(FEATURE_GROUPS))
        if unknown or isinstance(tree_groups, str):
            raise ModelError(
                f"xgboost: tree_groups must name groups of {', '.join(FEATURE_GROUPS)}, not "
                f"{tree_groups!r}"
            )
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.max_bin = max_bin
        self.min_child_weight = min_child_weight
        self.calibration_fraction = calibration_fraction
        self.tree_groups = tuple(tree_groups)
        self.ridge = ridge
        self.nthread = nthread
        self.seed = seed
        if saturation not in ("auto", "never", *FORMS):
            raise ModelError(
                f"xgboost: saturation must be auto, never or one of {FORMS}, not {saturation!r}"
            )
        self.saturation = saturation
        self.saturation_holdout = saturation_holdout
        if max_tree_rows < MIN_ROWS:
            raise ModelError(f"xgboost: max_tree_rows must be at least {MIN_ROWS}")
        self.max_tree_rows = max_tree_rows
        self.choose_rounds = choose_rounds
        self.robust = robust
        self.shrinkage = shrinkage_grid(shrinkage, "xgboost")
        self.monotone = monotone
        if history_costs not in HISTORY_COSTS:
            raise ModelError(
                f"xgboost: history_costs must be one of {', '.join(HISTORY_COSTS)}, "
                f"not {history_costs!r}"
            )
        self.history_costs = history_costs
        if path_costs not in PATH_COSTS:
            raise ModelError(
                f"xgboost: path_costs must be one of {', '.join(PATH_COSTS)}, not {path_costs!r}"
            )
        self.path_costs = path_costs
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
            raise ModelError(f"xgboost: workers must be a whole number >= 0, not {workers!r}")
        self.workers = workers

    # ------------------------------------------------------------------ features

    def _params(self, rising: Sequence[bool] = ()) -> dict[str, Any]:
        """Booster parameters; with `monotone`, the prediction may only rise with the features
        marked in `rising` (more traffic never lowers usage)."""
        constraints = {}
        if self.monotone and any(rising):
            rise = ",".join("1" if r else "0" for r in rising)
            constraints = {"monotone_constraints": f"({rise})"}
        return constraints | {
            "objective": "reg:quantileerror",
            "quantile_alpha": list(QUANTILES),
            "tree_method": "hist",
            "max_depth": self.max_depth,
            "eta": self.learning_rate,
            "subsample": self.subsample,
            "max_bin": self.max_bin,
            "min_child_weight": self.min_child_weight,
            "nthread": self.nthread,
            "seed": self.seed,
            "verbosity": 0,
        }

    def _tree_features(self, X: np.ndarray) -> np.ndarray:
        """Load-free features: chosen columns as shares of total calls, plus log total calls."""
        total = X[:, self.load_columns_].sum(axis=1, keepdims=True)
        shares = X[:, self.tree_columns_] / (total + 1.0)
        return np.hstack([shares, np.log1p(total)]).astype(np.float32)

    def _level_features(self, X: np.ndarray) -> np.ndarray:
        """Absolute traffic and history levels: trees on them saturate beyond the training range."""
        return np.asarray(X[:, self.level_columns_], dtype=np.float32)

    def _base(self, X: np.ndarray, S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Linear cost base [n, s] (with reservoir states S) and the residual scale it implies."""
        base = X @ self.weights_ + self.intercept_ + self.state_weight_ * S
        linear = self.form_ != SATURATE
        return base, np.where(linear, np.maximum(base, self.floor_), self.floor_)

    def _owned_history(self, layout: Layout, n_series: int) -> list[frozenset[int]]:
        """Per series, the traffic history columns its per-call costs may use (`history_costs`):
        "own" (the default: the moving averages of its own component's spans and of each of its
        busiest operations', so a cache or store follows the calls that fill it), "all" (every
        component's: a store filled by calls another component's spans count, with none of its
        own) or "none". With "all", on a real recording, a JVM heap that crept all day took the
        creep as a cost per call of another component's history average that happened to rise
        with it, and a what-if at 2x doubled the heap; a service with no spans at all had its
        memory doubled too. "own" keeps such answers near today's (see docs/benchmarks.md).

        Whatever the setting, a series of a rate (`RATES`: CPU, disk writes) uses none: the
        history is there for state (a cache, a heap). On a day of steady traffic a history
        average can stand in for a rate's idle cost, and where traffic then stops for hours (an
        API that calls a service only by day) it took the estimate to zero: on a real recording
        a service idling at 2.6 millicores was estimated at 0.1."""
        history = frozenset(int(c) for c in self.history_columns_)
        if self.history_costs == "none":
            return [frozenset()] * n_series
        if not layout.series:
            return [history] * n_series
        if self.history_costs == "all":
            owned = [history] * n_series
        else:
            columns = (int(c) for c in layout.columns("history"))
            owner = dict(zip(columns, layout.history_owners, strict=False))  # none: no owner
            owned = [
                frozenset(c for c in history if owner.get(c) == comp) for comp, _ in layout.series
            ]
        rates = [resource in RATES for _, resource in layout.series]
        return [frozenset() if rate else mine for mine, rate in zip(owned, rates, strict=True)]

    def _unreached_paths(self, layout: Layout, n_series: int) -> list[frozenset[int]]:
        """Per series, the path columns its per-call costs may not use (`path_costs`): with
        "reach" (the default), the paths that never pass through its component, whose calls
        do no work there; "all" leaves none out. A component that no kept path passes through
        (its spans not traced) keeps them all: its costs can only ride on its callers' paths.

        A cost on a path that never reaches the component is a correlation of the training
        days, which a new API mix breaks, and each series' cost solve is cubic in its width: on
        a big system (hundreds of kept paths, each through a few of 150 components) "all" took
        training about twice as long and scored worse on the hours after it (README, "how
        training time grows"); on the benchmark's and a real recording's windows both read
        about the same."""
        none: list[frozenset[int]] = [frozenset()] * n_series
        if self.path_costs == "all" or not layout.series or not layout.path_components:
            return none
        paths = [int(c) for c in layout.columns("path")]
        traced = frozenset().union(*layout.path_components)
        return [
            frozenset(
                c
                for c, on in zip(paths, layout.path_components, strict=True)
                if component not in on
            )
            if component in traced
            else frozenset()
            for component, _ in layout.series
        ]

    def _say_costs(self, line: str) -> None:
        self.say(f"xgboost: {line}")

    def _cost_groups(
        self, series: np.ndarray, width: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The series (indices) whose costs may use the same columns, with the columns of X they
        may use (the count columns but the paths left out, and the history columns allowed)."""
        groups: dict[tuple[frozenset[int], frozenset[int]], list[int]] = {}
        for j in series:
            groups.setdefault((self._owned[int(j)], self._unreached[int(j)]), []).append(int(j))
        history = set(int(c) for c in self.history_columns_)
        for (allowed, unreached), members in groups.items():
            keep = [
                c for c in range(width) if (c not in history or c in allowed) and c not in unreached
            ]
            yield np.asarray(members, dtype=int), np.asarray(keep, dtype=int)

    def _states(self, X: np.ndarray) -> np.ndarray:
        """[n, s] reservoir state of every RESERVOIR series (0 elsewhere) over consecutive rows."""
        return states(X, self.reservoirs_, CONTEXT)

    def _search(self, X: np.ndarray, Y: np.ndarray, layout: Layout, rows: np.ndarray) -> None:
        """Reservoirs of the RESERVOIR series, found on `rows` of the consecutive windows X."""
        found: list[Reservoir | None] = []
        if (self.form_ == RESERVOIR).any():
            key = np.packbits(rows).tobytes()
            if key not in self._found:  # the search over all rows serves twice
                self._found[key] = search(X, Y, layout, rows)
            found = self._found[key]
        self.reservoirs_ = [
            found[j] if self.form_[j] == RESERVOIR else None for j in range(Y.shape[1])
        ]

    # ------------------------------------------------------------------ fitting

    def _fit_part(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        T: np.ndarray,
        S: np.ndarray,
        rounds: np.ndarray | None = None,
        only: np.ndarray | None = None,
    ) -> None:
        """Fit the cost base on these rows, the per-series boosters on at most max_tree_rows,
        each with its `rounds` of boosting (n_estimators where not given); where `only` (a mask
        over series) is given, the other series get neither costs nor a booster."""
        n_series = Y.shape[1]
        only = np.ones(n_series, dtype=bool) if only is None else only
        self.weights_ = np.zeros((X.shape[1], n_series))
        self.intercept_, self.state_weight_ = np.zeros(n_series), np.zeros(n_series)
        saturating = self.form_ == SATURATE  # no base at all
        stateful = np.flatnonzero(
            [r is not None and only[j] for j, r in enumerate(self.reservoirs_)]
        )
        scaling = ~saturating & only
        scaling[stateful] = False  # their costs are fitted beside their reservoir, below
        for group, keep in self._cost_groups(np.flatnonzero(scaling), X.shape[1]):
            weights, intercept = fit_nonnegative_costs(
                X[:, keep],
                Y[:, group],
                self.ridge,
                robust=self.robust,
                shrink=self.shrink_[group],
                progress=self._say_costs,
                workers=self.workers,
            )[:2]
            self.weights_[np.ix_(keep, group)], self.intercept_[group] = weights, intercept
        if stateful.size:
            weights, intercept, state = fit_state_costs(
                X,
                Y[:, stateful],
                self.history_columns_,
                S[:, stateful],
                self.ridge,
                self.robust,
                self.shrink_[stateful],
                self.workers,
                progress=self._say_costs,
            )
            self.weights_[:, stateful], self.intercept_[stateful] = weights, intercept
            self.state_weight_[stateful] = state
        rows = _even(np.arange(len(X)), self.max_tree_rows)
        X, Y, T, S = X[rows], Y[rows], T[rows], S[rows]
        base, scale = self._base(X, S)
        levels = self._level_features(X) if (saturating & only).any() else None
        known = ~np.isnan(Y)
        todo = [j for j in range(n_series) if only[j] and known[:, j].sum() >= MIN_ROWS]
        boosters: list[xgb.Booster | None] = [None] * n_series
        lock, trained, said = threading.Lock(), [0], [time.monotonic()]

        def tell() -> None:  # a line every SAY_EVERY seconds: a big system trains for minutes
            with lock:
                trained[0] += 1
                if time.monotonic() - said[0] >= SAY_EVERY:
                    said[0] = time.monotonic()
                    self.say(f"xgboost: boosters: {trained[0]} of {len(todo)} series")

        def train(share: list[int]) -> None:  # one worker's series, on its own matrices
            shares = xgb.QuantileDMatrix(T, max_bin=self.max_bin, nthread=self.nthread)
            absolute = None
            if levels is not None:
                absolute = xgb.QuantileDMatrix(levels, max_bin=self.max_bin, nthread=self.nthread)
            for j in share:
                matrix = absolute if self.form_[j] == SATURATE and absolute is not None else shares
                y = np.nan_to_num(Y[:, j])
                matrix.set_label(np.where(known[:, j], (y - base[:, j]) / scale[:, j], 0.0))
                matrix.set_weight(known[:, j].astype(np.float32))
                n_rounds = self.n_estimators if rounds is None else int(rounds[j])
                # a saturating series' trees read amounts of traffic, and must not make more of
                # it cost less; the other trees correct a base that already rises with traffic
                rising = [matrix is not shares] * len(self.level_columns_)
                params = self._params(rising if matrix is not shares else ())
                booster = xgb.train(params, matrix, num_boost_round=n_rounds)
                booster.set_param({"nthread": 1})
                boosters[j] = booster
                tell()

        self._side_by_side(train, todo)
        self.boosters_ = boosters
        self.forest_ = None  # built once the final boosters are known

    def _side_by_side(self, work: Callable[[list[int]], None], series: list[int]) -> None:
        """`work` on interleaved shares of `series`, each share on its own thread (XGBoost
        releases the GIL while it trains and predicts): `workers` threads, or one per usable
        core."""
        if not series:
            return
        workers = max(1, min(self.workers or usable_cores(), len(series)))
        if workers == 1:
            work(series)
            return
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(work, [series[k::workers] for k in range(workers)]))

    def _forest(self) -> Forest:
        """The boosters as one forest over [tree features | level features]."""
        width = len(self.tree_columns_) + 1
        offsets = [width if form == SATURATE else 0 for form in self.form_]
        return Forest(self.boosters_, offsets, len(QUANTILES))

    def _quantiles(self, X: np.ndarray, rounds: np.ndarray | None = None) -> np.ndarray:
        """[n, s, 3] relative residual quantiles from the boosters (zero where none)."""
        return self._booster_quantiles(*self._booster_inputs(X), rounds)

    def _booster_inputs(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The boosters' features of rows X: tree features, and level features where a series
        saturates (None otherwise)."""
        levels = self._level_features(X) if (self.form_ == SATURATE).any() else None
        return self._tree_features(X), levels

    def _booster_quantiles(
        self, T: np.ndarray, levels: np.ndarray | None, rounds: np.ndarray | None = None
    ) -> np.ndarray:
        """`_quantiles` from the boosters' features: the forest once fitted; while fitting, each
        booster's own prediction (the same to float32 rounding, and quicker for the many rows
        fitting asks about than building a forest each time), from its first `rounds` rounds
        where given."""
        if self.forest_ is not None:
            return self.forest_.predict(T if levels is None else np.hstack([T, levels]))
        out = np.zeros((len(T), len(self.boosters_), len(QUANTILES)))

        def predict(share: list[int]) -> None:
            for j in share:
                booster = self.boosters_[j]
                assert booster is not None
                rows = levels if self.form_[j] == SATURATE and levels is not None else T
                upto = (0, 0) if rounds is None else (0, int(rounds[j]))  # (0, 0): every round
                out[:, j] = booster.inplace_predict(rows, iteration_range=upto).reshape(
                    len(T), len(QUANTILES)
                )

        self._side_by_side(predict, [j for j, b in enumerate(self.boosters_) if b is not None])
        return out

    def _choose_rounds(
        self, X: np.ndarray, Y: np.ndarray, base: np.ndarray, scale: np.ndarray
    ) -> np.ndarray:
        """Per series, the number of boosting rounds whose median has the least absolute error on
        these held-out rows (early stopping: with few or noisy windows, later rounds fit noise)."""
        rounds = np.full(Y.shape[1], self.n_estimators)
        if not self.choose_rounds:
            return rounds
        error = np.zeros((self.n_estimators, Y.shape[1]))
        T, levels = self._booster_inputs(X)
        for r in range(1, self.n_estimators + 1):
            quantiles = self._booster_quantiles(T, levels, np.full(Y.shape[1], r))
            median = base + scale * quantiles[..., 1]
            error[r - 1] = np.nansum(np.abs(median - Y), axis=0)
        known = (~np.isnan(Y)).sum(axis=0) >= MIN_ROWS
        rounds[known] = 1 + np.argmin(error[:, known], axis=0)
        return rounds

    def _choose_forms(self, X: np.ndarray, Y: np.ndarray, layout: Layout) -> np.ndarray:
        """Per series: the form that predicts the busiest training windows best (SCALE by default)."""
        n_series = Y.shape[1]
        if self.saturation != "auto":
            form = SCALE if self.saturation == "never" else FORMS.index(self.saturation)
            return np.full(n_series, form)
        load = X[:, self.load_columns_].sum(axis=1)
        busy = load > np.quantile(load, 1.0 - self.saturation_holdout)
        quiet = np.flatnonzero(~busy)
        quiet = _even(quiet, SELECTION_ROWS)  # an even subsample keeps the choice cheap
        shares = self._tree_features(X[quiet])
        # A capacity seen anywhere in training is a fact about the component: keep it. The tail
        # decides the rest, where training holds no direct evidence of how usage extrapolates.
        self.form_ = np.full(n_series, RESERVOIR)
        self._search(X, Y, layout, np.ones(len(X), dtype=bool))
        full = np.array([r is not None and bool(np.isfinite(r.cap)) for r in self.reservoirs_])
        errors = []
        for form in range(len(FORMS)):
            self.form_ = np.full(n_series, form)
            self.floor_ = self._floors(Y)
            self._search(X, Y, layout, ~busy)
            S = self._states(X)
            # only the series whose choice is open, and which can take this form, are fitted
            able = ~full
            if form == RESERVOIR:
                able &= np.array([r is not None for r in self.reservoirs_])
            self._fit_part(X[quiet], Y[quiet], shares, S[quiet], only=able)
            base, scale = self._base(X[busy], S[busy])
            median = base + scale * self._quantiles(X[busy])[..., 1]
            error = np.where(able, np.abs(median - Y[busy]), np.inf)
            errors.append(error)
        chosen = _prefer_structure(np.stack(errors))
        chosen[full] = RESERVOIR
        return chosen

    def _floors(self, Y: np.ndarray) -> np.ndarray:
        """Residual scale floor: a tenth of the mean level, or the whole level where saturating."""
        level = mean_level(Y) + 1e-9
        return np.where(self.form_ == SATURATE, level, FLOOR * level)

    def fit(self, X: np.ndarray, Y: np.ndarray, layout: Layout) -> Self:
        X, Y = np.asarray(X, dtype=float), np.asarray(Y, dtype=float)
        if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y):
            raise ModelError(f"xgboost: X {X.shape} and Y {Y.shape} do not match")
        if len(X) < 2 * MIN_ROWS:
            raise ModelError(f"xgboost: need at least {2 * MIN_ROWS} windows, got {len(X)}")
        load = layout.columns("api")
        self.load_columns_ = load if load.size else layout.columns("counts")
        # trees read the components' traffic history, not their operations' (those are for the
        # costs of state): on a real recording's few hundred windows, trees on operations'
        # averages learned noise, and memory accuracy fell from 0.976 to 0.966
        tree = [layout.columns(g) for g in self.tree_groups]
        self.tree_columns_ = _without(tree, layout.columns("operation_history"))
        levels = [layout.columns(g) for g in ("api", "component", "history")]
        self.level_columns_ = _without(levels, layout.columns("operation_history"))
        self.history_columns_ = layout.columns("history")
        self._found: dict[bytes, list[Reservoir | None]] = {}
        cut = len(X) - max(MIN_ROWS, int(round(len(X) * self.calibration_fraction)))
        self.say(f"xgboost: per-call costs of {Y.shape[1]} series, shrinkage chosen on the tail")
        self._owned = self._owned_history(layout, Y.shape[1])
        self._unreached = self._unreached_paths(layout, Y.shape[1])
        self.shrink_ = np.zeros(Y.shape[1])
        for group, keep in self._cost_groups(np.arange(Y.shape[1]), X.shape[1]):
            self.shrink_[group] = choose_shrinkage(
                X[:, keep],
                Y[:, group],
                np.arange(len(X)) < cut,
                self.shrinkage,
                self.ridge,
                self.robust,
                SELECTION_ROWS,
                progress=self._say_costs,
                workers=self.workers,
            )
        self.say(
            "xgboost: forms (scales with calls, reservoir or saturates) on the busiest windows"
        )
        self.form_ = self._choose_forms(X, Y, layout)
        self.floor_ = self._floors(Y)
        T = self._tree_features(X)
        self.say("xgboost: reservoirs (usage that fills and drains) on the calibration head")
        self._search(X, Y, layout, np.arange(len(X)) < cut)
        S = self._states(X)
        self.say("xgboost: boosters on the head, calibrated on the tail")
        self._fit_part(X[:cut], Y[:cut], T[:cut], S[:cut])
        base, scale = self._base(X[cut:], S[cut:])
        rounds = self._choose_rounds(X[cut:], Y[cut:], base, scale)
        q = self._quantiles(X[cut:], rounds)
        margins = np.zeros(Y.shape[1])
        for j in range(Y.shape[1]):
            known = ~np.isnan(Y[cut:, j])
            z = (Y[cut:, j][known] - base[known, j]) / scale[known, j]
            margins[j] = conformal_margin(z, q[known, j])
        self.margin_ = margins
        self.say("xgboost: reservoirs and boosters on all rows")
        self._search(X, Y, layout, np.ones(len(X), dtype=bool))
        self._fit_part(X, Y, T, self._states(X), rounds)
        stateless = np.array([r is None for r in self.reservoirs_])
        self.form_[(self.form_ == RESERVOIR) & stateless] = SCALE
        self.forest_ = self._forest()
        self.context = CONTEXT if any(r is not None for r in self.reservoirs_) else 0
        del self._found, self._owned, self._unreached
        self.n_features_, self.n_series_ = X.shape[1], Y.shape[1]
        return self

    # ------------------------------------------------------------------ prediction

    def predict(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted(X)
        X = np.asarray(X, dtype=float)
        return self._predict_rows(X, self._states(X))

    def predict_last(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted(X)
        X = np.asarray(X, dtype=float)
        return self._predict_rows(X[-1:], self._states(X)[-1:])[0]

    def _predict_rows(self, X: np.ndarray, S: np.ndarray) -> np.ndarray:
        base, scale = self._base(X, S)
        q = widen(self._quantiles(X), self.margin_)
        return finalize(base[..., None] + scale[..., None] * q)

    # ------------------------------------------------------------------ persistence

    def save(self, directory: Path) -> dict[str, Any]:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "weights.npy", self.weights_, allow_pickle=False)
        files: list[str | None] = []
        for j, booster in enumerate(self.boosters_):
            name = None
            if booster is not None:
                name = f"series_{j:04d}.ubj"
                booster.save_model(str(directory / name))
            files.append(name)
        return {
            "params": self.hyperparameters(),
            "n_features": self.n_features_,
            "n_series": self.n_series_,
            "intercept": self.intercept_.tolist(),
            "floor": self.floor_.tolist(),
            "margin": self.margin_.tolist(),
            "load_columns": self.load_columns_.tolist(),
            "tree_columns": self.tree_columns_.tolist(),
            "level_columns": self.level_columns_.tolist(),
            "forms": [FORMS[f] for f in self.form_],
            "history_columns": self.history_columns_.tolist(),
            "state_weight": self.state_weight_.tolist(),
            "shrink": self.shrink_.tolist(),
            "reservoirs": [None if r is None else r.to_json() for r in self.reservoirs_],
            "boosters": files,
        }

    def hyperparameters(self) -> dict[str, Any]:
        """The constructor arguments, JSON-able."""
        return {
            "n_estimators": self.n_estimators,
            "max_depth": self.max_depth,
            "learning_rate": self.learning_rate,
            "subsample": self.subsample,
            "max_bin": self.max_bin,
            "min_child_weight": self.min_child_weight,
            "calibration_fraction": self.calibration_fraction,
            "tree_groups": list(self.tree_groups),
            "ridge": self.ridge,
            "nthread": self.nthread,
            "seed": self.seed,
            "saturation": self.saturation,
            "saturation_holdout": self.saturation_holdout,
            "max_tree_rows": self.max_tree_rows,
            "choose_rounds": self.choose_rounds,
            "robust": self.robust,
            "shrinkage": list(self.shrinkage),
            "workers": self.workers,
            "monotone": self.monotone,
            "history_costs": self.history_costs,
            "path_costs": self.path_costs,
        }

    @classmethod
    def load(cls, directory: Path, meta: dict[str, Any]) -> Self:
        # older bundles: least squares, unshrunk costs
        model = cls(
            **{
                "robust": False,
                "shrinkage": (0.0,),
                "monotone": False,
                "path_costs": "all",
                **meta["params"],
            }
        )
        model.weights_ = np.load(directory / "weights.npy", allow_pickle=False)
        model.intercept_ = np.asarray(meta["intercept"], dtype=float)
        model.floor_ = np.asarray(meta["floor"], dtype=float)
        model.margin_ = np.asarray(meta["margin"], dtype=float)
        model.load_columns_ = np.asarray(meta["load_columns"], dtype=int)
        model.tree_columns_ = np.asarray(meta["tree_columns"], dtype=int)
        model.level_columns_ = np.asarray(meta["level_columns"], dtype=int)
        model.form_ = np.asarray([FORMS.index(f) for f in meta["forms"]], dtype=int)
        model.history_columns_ = np.asarray(meta["history_columns"], dtype=int)
        model.state_weight_ = np.asarray(meta["state_weight"], dtype=float)
        model.shrink_ = np.asarray(meta.get("shrink", np.zeros(len(model.intercept_))), dtype=float)
        model.reservoirs_ = load_reservoirs(
            meta["reservoirs"], int(meta["n_features"]), int(meta["n_series"])
        )
        model.context = CONTEXT if any(r is not None for r in model.reservoirs_) else 0
        boosters: list[xgb.Booster | None] = []
        for name in meta["boosters"]:
            if name is not None and not (directory / name).resolve().is_relative_to(
                directory.resolve()
            ):
                raise BundleError(f"booster {name} lies outside the bundle")
            boosters.append(None if name is None else xgb.Booster(model_file=str(directory / name)))
        for booster in boosters:
            if booster is not None:
                booster.set_param({"nthread": 1})
        model.boosters_ = boosters
        model.forest_ = model._forest()
        model.n_features_, model.n_series_ = int(meta["n_features"]), int(meta["n_series"])
        try:
            check_saved_arrays(
                model.n_features_,
                model.n_series_,
                weights=model.weights_,
                per_series={
                    name: getattr(model, f"{name}_")
                    for name in ("intercept", "floor", "margin", "form", "state_weight", "shrink")
                }
                | {"boosters": np.asarray(meta["boosters"], dtype=object)},
                columns={
                    name: getattr(model, f"{name}_columns_")
                    for name in ("load", "tree", "level", "history")
                },
            )
        except ModelError as exc:
            raise ModelError(f"{directory}: {exc}") from exc
        return model


__all__ = ["XGBoostQuantile", "fit_nonnegative_costs"]

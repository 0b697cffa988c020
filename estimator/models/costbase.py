"""The part of usage that scales: non-negative costs per call, plus each series' reservoir.

Shared by the models that learn a residual on top of it (the XGBoost and neural models): at 3x
traffic the costs triple, a cache's reservoir stops at its capacity, and the learned residual,
relative to this base, stays in the range it was trained on.

The costs are a robust fit (Huber's M-estimator by iteratively reweighted least squares): real
training windows hold faults, attacks, restarts and warm-up (a recording's injected CPU
contention, a JVM compiling after a deploy), and a least-squares base would raise every
expected value to pay for them. Windows far off the fit count as if they were nearer; under
Gaussian noise the fit keeps 95% of least squares' efficiency.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Self

import numpy as np
from scipy.linalg import cho_factor, cho_solve, solve_triangular
from scipy.optimize import nnls
from threadpoolctl import threadpool_limits

from estimator.errors import ModelError
from estimator.features import Layout
from estimator.models.base import check_saved_arrays
from estimator.models.reservoir import CONTEXT, load_reservoirs, search, states

FLOOR = 0.1
"""The residual scale never drops below this share of a series' mean level."""
HUBER_K = 1.345
"""Huber's constant k, in robust standard deviations sigma: a row whose residual r is beyond
k sigma weighs k sigma / |r|."""
ROBUST_STEPS = 4
"""Reweighting steps after the least-squares start; each is one weighted solve per series."""
START_ROUNDS = 8
"""Solves `_start` tries for a feasible start of the active set, dropping negative costs."""
ACTIVE_ROUNDS = 3
"""Active-set rounds per coefficient before NNLS from scratch (see `_nonnegative`)."""
SHRINKAGE: tuple[float, ...] = (0.0, 0.01, 0.1, 1.0)
"""Candidate shrinkages of the per-call costs (see `choose_shrinkage`)."""
MAD_SIGMA = 1.4826
"""Median absolute deviation -> standard deviation under Gaussian noise."""
SAY_EVERY = 10.0
"""Seconds between progress lines of a long fit (hundreds of series and features)."""
MIN_SUPPORT = 3
MIN_SUPPORT_SHARE = 0.01
"""A count column gets a cost only where it is non-zero in at least this many rows and this
share of them: a path, API or component with calls in a window or two (an API's first calls
before a release, a batch job) would otherwise take whatever those windows' noise asks, and a
cost fitted to one window's residual, multiplied by later traffic of that feature (the API in
full use), sent unrelated services' estimates to 300 times their usage."""


def fit_nonnegative_costs(
    A: np.ndarray,
    Y: np.ndarray,
    ridge: float = 1e-6,
    extra: np.ndarray | None = None,
    robust: bool = True,
    shrink: float | np.ndarray = 0.0,
    progress: Callable[[str], None] | None = None,
    workers: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per series non-negative weights [f, s], intercepts [s] and extra-column weights [s].

    Columns of A with calls in too few rows (`supported`) get no cost. Least squares over each
    series' known rows of Y on A, an intercept and, where `extra` [n, s]
    is given, one more column of the series' own; then, where `robust`, ROBUST_STEPS of Huber
    reweighting. `ridge` keeps every solve well posed; `shrink` (one value, or one per series)
    is a further ridge on the per-call costs alone, never on the idle intercept or the extra
    column (see `choose_shrinkage`). Both are relative to the mean diagonal of the Gram matrix
    of columns scaled to unit mean square, over the columns that are not all zero. Solved in
    Gram form (the least-squares start's Gram matrix shared per pattern of known rows and
    shrinkage), so each series costs an active-set NNLS over its free coefficients instead of
    one over all rows. BLAS runs on one thread here:
    for products this small, more threads only wait on each other (on two cores the fit took
    1.7 times as long, and three times the CPU); the series are solved side by side instead,
    on `workers` threads (0: one per usable core; the result is the same whatever their number).
    """
    shrinks = np.broadcast_to(np.asarray(shrink, dtype=float), (Y.shape[1],))
    # columns without calls get no cost whatever the fit: solving without them gives the same
    # costs, and each series' solve is cubic in the width (a big system's history columns
    # outnumber its paths several times, and the reservoir fits zero them)
    used = np.flatnonzero(supported(A) & A.any(axis=0))
    with threadpool_limits(limits=1, user_api="blas"):
        weights, intercept, extra_weights = _fit_costs(
            A[:, used], Y, ridge, extra, robust, shrinks, progress, workers
        )
    full = np.zeros((A.shape[1], Y.shape[1]))
    full[used] = weights
    return full, intercept, extra_weights


def usable_cores() -> int:
    """CPU cores this process may run on (1 where the system does not say)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


def supported(A: np.ndarray) -> np.ndarray:
    """[f] whether each count column has calls in enough rows to be given a cost (MIN_SUPPORT)."""
    need = max(MIN_SUPPORT, int(np.ceil(MIN_SUPPORT_SHARE * len(A))))
    return np.count_nonzero(A, axis=0) >= need


def _fit_costs(
    A: np.ndarray,
    Y: np.ndarray,
    ridge: float,
    extra: np.ndarray | None,
    robust: bool,
    shrinks: np.ndarray,
    progress: Callable[[str], None] | None = None,
    workers: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, f = A.shape
    done, said = 0, time.monotonic()
    design = np.hstack([A, np.ones((n, 1))])
    scale = np.sqrt(np.mean(design**2, axis=0))
    scale[scale == 0] = 1.0
    design /= scale
    own, own_scale = None, np.ones(Y.shape[1])
    if extra is not None:
        own_scale = np.sqrt(np.mean(np.asarray(extra, dtype=float) ** 2, axis=0))
        own_scale[own_scale == 0] = 1.0
        own = extra / own_scale
    width = f + 1 if own is None else f + 2
    known = ~np.isnan(Y)
    weights = np.zeros((width, Y.shape[1]))
    patterns: dict[tuple[bytes, float], list[int]] = {}
    for j in range(Y.shape[1]):
        if known[:, j].sum() > 0:
            key = (np.packbits(known[:, j]).tobytes(), float(shrinks[j]))
            patterns.setdefault(key, []).append(j)
    workers = min(workers or usable_cores(), Y.shape[1])
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    try:
        for (_, shrink), series in patterns.items():
            rows = known[:, series[0]]
            D = design[rows]
            penalty = np.full(width, ridge)
            penalty[:f] += shrink
            shared = D.T @ D / len(D)

            mine = None if own is None else own[rows]
            one = partial(_one_series, D, Y[rows], mine, shared, penalty, robust)
            solved = map(one, series) if pool is None else pool.map(one, series)
            for j, b in zip(series, solved, strict=True):
                weights[:, j] = b
                done += 1
                if progress is not None and time.monotonic() - said >= SAY_EVERY:
                    said = time.monotonic()
                    progress(f"per-call costs: {done} of {Y.shape[1]} series")
    finally:
        if pool is not None:
            pool.shutdown()
    weights[: f + 1] /= scale[:, None]
    extra_weights = weights[f + 1] / own_scale if own is not None else np.zeros(Y.shape[1])
    return weights[:f], weights[f], extra_weights


def _one_series(
    D: np.ndarray,
    Y: np.ndarray,
    own: np.ndarray | None,
    shared: np.ndarray,
    penalty: np.ndarray,
    robust: bool,
    j: int,
) -> np.ndarray:
    """Series j's weights on the known rows' design D (shared = D'D / n), with its own extra
    column where `own` is given."""
    gram, Dj, y = shared, D, np.ascontiguousarray(Y[:, j])
    c = D.T @ y / len(D)
    if own is not None:
        e = np.ascontiguousarray(own[:, j])
        cross = D.T @ e / len(D)
        corner = np.array([[e @ e / len(D)]])
        gram = np.block([[shared, cross[:, None]], [cross[None, :], corner]])
        c = np.append(c, e @ y / len(D))
        Dj = np.hstack([D, e[:, None]])
    b = _nonnegative(gram, c, penalty)
    return _huber(Dj, y, gram, c, b, penalty) if robust else b


def _solve(upper: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Non-negative least squares in Gram form: min b'Gb - 2c'b over b >= 0, G = upper'upper."""
    d = solve_triangular(upper, c, trans="T", lower=False)
    return nnls(upper, d, maxiter=50 * len(c))[0]


def _huber(
    D: np.ndarray,
    y: np.ndarray,
    gram: np.ndarray,
    c: np.ndarray,
    b: np.ndarray,
    penalty: np.ndarray,
) -> np.ndarray:
    """Huber IRLS from the least-squares fit b (gram = D'D / n, c = D'y / n): rows whose residual
    exceeds HUBER_K robust standard deviations (from the median absolute residual) weigh
    HUBER_K * sigma / |r|. Only those rows change the Gram matrix, so each step subtracts their
    share instead of forming D'WD anew."""
    n = len(D)
    for _ in range(ROBUST_STEPS):
        r = np.abs(y - D @ b)
        sigma = MAD_SIGMA * np.median(r)
        if not sigma > 0:  # an exact fit for most rows: nothing to reweight
            break
        w = np.minimum(1.0, HUBER_K * sigma / np.maximum(r, 1e-300))
        off = w < 1.0
        far = D[off]
        cut = (1.0 - w[off])[:, None] * far
        total = w.sum()
        weighted = (n * gram - far.T @ cut) / total
        b = _nonnegative(weighted, (n * c - cut.T @ y[off]) / total, penalty, b)
    return b


def _nonnegative(
    gram: np.ndarray, c: np.ndarray, penalty: np.ndarray, near: np.ndarray | None = None
) -> np.ndarray:
    """Non-negative least squares in Gram form: min b'Gb - 2c'b over b >= 0, G the ridged gram.

    Lawson and Hanson's active-set method run on the Gram matrix (as in Bro and De Jong's fast
    NNLS), with the Cholesky factor of the free coefficients' block extended by a row as each
    joins: a round costs a product of the width by the free set, not a solve over all rows or
    the full width. It starts from `near`'s positive coefficients where given (a reweighting
    step's solution is close to the previous one: a few rounds suffice) and from none otherwise.
    Each round frees the coefficient whose gradient most wants to rise and solves the free ones;
    where some would turn negative, the step stops at the first to reach zero, which leaves the
    free set. After ACTIVE_ROUNDS rounds per coefficient without the optimality conditions
    (rounding can make the method cycle), or a block that is not positive definite, NNLS from
    scratch decides."""
    ridged = _ridged(gram, penalty)
    b = _start(ridged, c) if near is None else np.maximum(near, 0.0)
    free = [int(i) for i in np.flatnonzero(b > 0)]
    tol = 1e-9 * max(float(np.abs(c).max()), 1e-300)
    try:
        lower = np.linalg.cholesky(ridged[np.ix_(free, free)])
        for _ in range(ACTIVE_ROUNDS * len(c)):
            while free:
                step = cho_solve((lower, True), c[free], check_finite=False)
                if (step > 0).all():
                    b[:] = 0.0
                    b[free] = step
                    break
                here = b[free]
                blocked = np.flatnonzero(step <= 0)  # move toward step until one reaches 0
                ratio = here[blocked] / np.maximum(here[blocked] - step[blocked], 1e-300)
                first = int(np.argmin(ratio))
                b[free] = here + ratio[first] * (step - here)
                b[free[blocked[first]]] = 0.0
                free = [i for i in free if b[i] > 0]
                b[b <= 0] = 0.0
                lower = np.linalg.cholesky(ridged[np.ix_(free, free)])
            gradient = c - ridged @ b  # > 0: raising that coefficient would help
            gradient[free] = 0.0
            if (gradient <= tol).all():
                return b
            j = int(np.argmax(gradient))
            lower = _extend(lower, ridged[free, j], ridged[j, j])
            free.append(j)
    except np.linalg.LinAlgError:
        pass
    return _solve(_upper_factor(gram, penalty), c)


def _start(ridged: np.ndarray, c: np.ndarray) -> np.ndarray:
    """A feasible start for `_nonnegative`: the unconstrained solution, re-solved without its
    non-positive coefficients until none is left (0 where that takes more than START_ROUNDS)."""
    free = np.arange(len(c))
    for _ in range(START_ROUNDS):
        try:
            step = cho_solve(cho_factor(ridged[np.ix_(free, free)], lower=True), c[free])
        except np.linalg.LinAlgError:
            break
        if (step > 0).all():
            b = np.zeros(len(c))
            b[free] = step
            return b
        free = free[step > 0]
    return np.zeros(len(c))


def _extend(lower: np.ndarray, cross: np.ndarray, corner: float) -> np.ndarray:
    """The lower Cholesky factor of [[A, cross], [cross', corner]] from A's factor `lower`."""
    k = len(lower)
    row = solve_triangular(lower, cross, lower=True, check_finite=False) if k else cross
    pivot = corner - float(row @ row)
    if not pivot > 0:
        raise np.linalg.LinAlgError("not positive definite")
    out = np.zeros((k + 1, k + 1))
    out[:k, :k], out[k, :k], out[k, k] = lower, row, np.sqrt(pivot)
    return out


def _ridged(gram: np.ndarray, penalty: np.ndarray) -> np.ndarray:
    """A Gram matrix plus a ridge per coefficient (`penalty` [width]) relative to its mean
    diagonal over the columns that are not all zero: columns left empty (a cost the series may
    not use, a path too rare to cost) must not weaken the ridge and shrinkage of the others."""
    gram = gram.copy()
    diagonal = np.diag(gram)
    used = diagonal[diagonal > 0]
    level = float(used.mean()) if used.size else 0.0
    gram[np.diag_indices_from(gram)] += penalty * max(level, 1e-12)
    return gram


def _upper_factor(gram: np.ndarray, penalty: np.ndarray) -> np.ndarray:
    """Upper Cholesky factor of a Gram matrix with a ridge per coefficient."""
    return np.triu(cho_factor(_ridged(gram, penalty), lower=False)[0])


def fit_state_costs(
    X: np.ndarray,
    Y: np.ndarray,
    history: np.ndarray,
    S: np.ndarray,
    ridge: float,
    robust: bool = True,
    shrink: float | np.ndarray = 0.0,
    workers: int = 0,
    progress: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Costs of this window's counts and of each series' reservoir state S [n, s]: the traffic
    history columns are left out, since history enters through the reservoir."""
    current = X.copy()
    current[:, history] = 0.0
    return fit_nonnegative_costs(
        current,
        Y,
        ridge,
        extra=S,
        robust=robust,
        shrink=shrink,
        progress=progress,
        workers=workers,
    )


def choose_shrinkage(
    A: np.ndarray,
    Y: np.ndarray,
    head: np.ndarray,
    grid: Sequence[float],
    ridge: float = 1e-6,
    robust: bool = True,
    max_rows: int | None = None,
    progress: Callable[[str], None] | None = None,
    workers: int = 0,
) -> np.ndarray:
    """Per series, the shrinkage of the per-call costs that `fit_nonnegative_costs` should use,
    chosen on time: costs are fitted on the `head` rows (at most `max_rows` of them, evenly
    spread) at each value of `grid` and scored on the rows after them; the value with the least
    mean absolute error there wins (the smallest, on a tie or where the series is unknown there).

    With many call paths and few windows (a few hours of a large application), unshrunk costs
    fit the training windows' noise and mix, and an idle cost the traffic cannot separate from
    the busiest paths goes to zero; a shift of the API mix then moves the estimate far off. With
    days of windows the data pins the costs down and the choice hardly matters: on the simulator,
    most series keep 0, and estimates of every scenario are as good as with none.
    """
    grid = sorted(float(g) for g in grid)
    tail = ~head
    if len(grid) == 1 or head.sum() < 2 or tail.sum() < 1:
        return np.full(Y.shape[1], grid[0])
    rows = np.flatnonzero(head)
    if max_rows is not None and len(rows) > max_rows:  # weeks of windows: a subsample suffices
        rows = rows[np.linspace(0, len(rows) - 1, max_rows).astype(int)]
    errors = np.full((len(grid), Y.shape[1]), np.inf)
    for i, value in enumerate(grid):
        said = None
        if progress is not None:
            step = f"shrinkage {value:g} ({i + 1} of {len(grid)})"
            said = lambda line, step=step: progress(f"{step}, {line}")  # noqa: E731
        weights, intercept, _ = fit_nonnegative_costs(
            A[rows], Y[rows], ridge, robust=robust, shrink=value, progress=said, workers=workers
        )
        error = np.abs(A[tail] @ weights + intercept - Y[tail])
        known = (~np.isnan(error)).any(axis=0)
        errors[i, known] = np.nanmean(error[:, known], axis=0)
    return np.asarray(grid)[np.argmin(errors, axis=0)]


def shrinkage_grid(value: object, kind: str) -> tuple[float, ...]:
    """A shrinkage hyperparameter (a number >= 0 or a list of them) as a grid of floats."""
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    numbers = [float(v) for v in items if isinstance(v, int | float) and not isinstance(v, bool)]
    grid = tuple(numbers) if len(numbers) == len(items) else ()
    if not grid or min(grid) < 0 or not all(np.isfinite(grid)):
        raise ModelError(
            f"{kind}: shrinkage must be a number >= 0 or a list of them, not {value!r}"
        )
    return grid


def mean_level(Y: np.ndarray) -> np.ndarray:
    """[s] mean absolute value of each series over its known rows (0 where none is known)."""
    known = ~np.isnan(Y)
    return np.where(known, np.abs(Y), 0.0).sum(axis=0) / np.maximum(known.sum(axis=0), 1)


class CostBase:
    """Per series: costs per call of this window's counts, an idle intercept and its reservoir."""

    def __init__(
        self,
        ridge: float = 1e-6,
        robust: bool = True,
        shrinkage: float | Sequence[float] = (0.0,),
        holdout: float = 0.2,
    ) -> None:
        self.ridge = ridge
        self.robust = robust
        self.shrinkage = shrinkage_grid(shrinkage, "cost base")
        self.holdout = holdout

    @property
    def context(self) -> int:
        """Rows of look-back the reservoirs need."""
        return CONTEXT if any(r is not None for r in self.reservoirs_) else 0

    def fit(self, X: np.ndarray, Y: np.ndarray, layout: Layout) -> Self:
        """Reservoirs found on every row, the costs' shrinkage chosen on the newest `holdout`
        share of rows, then costs by NNLS on current counts and reservoirs."""
        self.reservoirs_ = search(X, Y, layout, np.ones(len(X), dtype=bool))
        head = np.arange(len(X)) < len(X) - max(1, int(round(len(X) * self.holdout)))
        self.shrink_ = choose_shrinkage(X, Y, head, self.shrinkage, self.ridge, self.robust)
        self.weights_, self.intercept_, self.state_weight_ = fit_state_costs(
            X,
            Y,
            layout.columns("history"),
            states(X, self.reservoirs_, CONTEXT),
            self.ridge,
            self.robust,
            self.shrink_,
        )
        self.floor_ = FLOOR * mean_level(Y) + 1e-9
        return self

    def predict(self, X: np.ndarray, last: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Base [n, s] for consecutive rows X (only the last row's, [1, s], with `last`), and
        the residual scale max(base, floor)."""
        state = states(X, self.reservoirs_, CONTEXT)
        if last:
            X, state = X[-1:], state[-1:]
        base = X @ self.weights_ + self.intercept_ + self.state_weight_ * state
        return base, np.maximum(base, self.floor_)

    def save(self, directory: Path) -> dict[str, Any]:
        """Costs to an .npy file (no pickle); the rest as JSON metadata."""
        np.save(directory / "base_weights.npy", self.weights_, allow_pickle=False)
        return {
            "ridge": self.ridge,
            "robust": self.robust,
            "shrinkage": list(self.shrinkage),
            "holdout": self.holdout,
            "shrink": self.shrink_.tolist(),
            "intercept": self.intercept_.tolist(),
            "state_weight": self.state_weight_.tolist(),
            "floor": self.floor_.tolist(),
            "reservoirs": [None if r is None else r.to_json() for r in self.reservoirs_],
        }

    @classmethod
    def load(cls, directory: Path, meta: dict[str, Any]) -> Self:
        base = cls(  # older bundles: least squares, unshrunk costs
            float(meta["ridge"]),
            bool(meta.get("robust", False)),
            meta.get("shrinkage", (0.0,)),
            float(meta.get("holdout", 0.2)),
        )
        base.weights_ = np.load(directory / "base_weights.npy", allow_pickle=False)
        base.intercept_ = np.asarray(meta["intercept"], dtype=float)
        base.state_weight_ = np.asarray(meta["state_weight"], dtype=float)
        base.floor_ = np.asarray(meta["floor"], dtype=float)
        if base.weights_.ndim != 2:
            raise ModelError(f"{directory}: base_weights.npy is not a [features, series] array")
        n_features, n_series = base.weights_.shape
        base.reservoirs_ = load_reservoirs(meta["reservoirs"], n_features, n_series)
        base.shrink_ = np.asarray(meta.get("shrink", np.zeros(n_series)), dtype=float)
        try:
            check_saved_arrays(
                n_features,
                n_series,
                weights=base.weights_,
                per_series={
                    name: getattr(base, f"{name}_")
                    for name in ("intercept", "state_weight", "floor", "shrink")
                },
            )
        except ModelError as exc:
            raise ModelError(f"{directory}: cost base: {exc}") from exc
        return base


__all__ = [
    "FLOOR",
    "SHRINKAGE",
    "CostBase",
    "choose_shrinkage",
    "fit_nonnegative_costs",
    "fit_state_costs",
    "mean_level",
    "shrinkage_grid",
]

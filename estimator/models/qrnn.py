"""Quantile RNN in the spirit of DeepRest: per-series experts with feature masks, causal GRU.

Torch is imported inside methods only (through `estimator.models.qrnn_net`), so importing this
module, or the model registry, stays fast; torch is paid for when a model is fitted or loaded.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from estimator.errors import BundleError, DataWarning, InputError, ModelError
from estimator.features import Layout
from estimator.models.base import QuantileModel, conformal_margin, finalize, widen
from estimator.models.costbase import SHRINKAGE, CostBase, shrinkage_grid

if TYPE_CHECKING:
    from estimator.models.qrnn_net import Experts

WEIGHTS = "qrnn.safetensors"
SMALL_PROBLEM = 2048
"""Features x series below which fitting uses a single thread."""


@dataclass(frozen=True)
class QRNNConfig:
    """Hyperparameters of the quantile RNN."""

    context: int = 8
    """Rows of look-back: row t is predicted from rows t-context..t."""
    hidden: int = 16
    """GRU state size of each series' expert."""
    epochs: int = 40
    lr: float = 1e-2
    batch_size: int = 256
    """Target rows per optimizer step."""
    block: int = 32
    """Consecutive target rows that share one input projection (windows overlap)."""
    l1: float = 1e-3
    """Sparsity penalty on the mean feature-mask gate."""
    patience: int = 4
    """Epochs without validation improvement before stopping."""
    epoch_rows: int = 6144
    """Target rows drawn (at random, in blocks) per epoch: big data sets get short epochs, so
    early stopping checks often."""
    validation: float = 0.1
    """Share of the last rows held out for early stopping."""
    anchor: bool = True
    """Learn usage relative to a non-negative cost base (costs per call and reservoirs, as the
    XGBoost model does), so estimates scale with calls and caches stop at their capacity; False
    learns usage directly (a masked linear cost plus the recurrent correction)."""
    robust: bool = True
    """Fit the cost base robustly (Huber), so faulty training windows do not raise it."""
    shrinkage: float | tuple[float, ...] = SHRINKAGE
    """Candidate shrinkages of the cost base's per-call costs, chosen per series on the newest
    training rows (see `costbase.choose_shrinkage`); (0,) never shrinks."""
    seed: int = 0
    max_seconds: float = 240.0
    """Training time budget; training stops at the first batch past it (a fit cut short by the
    budget is no longer reproducible under the seed)."""
    threads: int = 1
    """Torch threads for fitting; the weights are the same whatever the number. One by default:
    on a 2-core machine shared with other work, two made a fit 5 to 9 times slower (waiting on
    each other), where on an idle one they made it 1.6 times faster (14 days of windows: 31 s
    against 51 s); set `threads=N` on a machine of your own."""
    progress: bool | None = None
    """Show a progress bar on stderr; None shows it when stderr is a terminal."""


MAX_LR = 10.0
"""Learning rates above it only diverge (Adam's steps are about lr in size)."""
MAX_CONTEXT = 1440
"""The longest look-back in windows (a day of minutes): each row's estimate reads that many rows
before it, so training memory and time grow with it."""


class QRNN(QuantileModel):
    """Per-series experts: masked linear cost per call plus a recurrent correction, pinball loss.

    Features are divided by their mean absolute training value (features never seen in training
    are ignored), targets by their series' mean absolute value. With `anchor`, the targets are
    usage relative to the cost base, (y - base) / max(base, floor), and the experts are recurrent
    corrections only. `predict` takes rows in time order; the first `config.context` rows have no
    earlier rows, so the first row is repeated in their place (as if traffic had been steady
    before the data began). The band is widened per series, never narrowed, so that at least 90%
    of the early stopping rows, which neither the experts nor the cost base under them trained
    on, fall inside it; the base then learns again on every row, as the XGBoost model refits.
    """

    CONFIG = QRNNConfig
    """Its hyperparameters, given to the constructor as keyword overrides."""

    kind = "qrnn"

    def __init__(self, config: QRNNConfig | None = None, **overrides: Any) -> None:
        base = config or QRNNConfig()
        names = {f.name for f in dataclasses.fields(QRNNConfig)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise InputError(
                f"unknown qrnn hyperparameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(names))}",
                field="param",
            )
        self.config = dataclasses.replace(base, **overrides)
        try:
            grid = shrinkage_grid(self.config.shrinkage, "qrnn")
        except ModelError as exc:
            raise InputError(str(exc), field="param") from None
        self.config = dataclasses.replace(self.config, shrinkage=grid)
        c = self.config
        if c.context < 0 or min(c.hidden, c.epochs, c.batch_size, c.block, c.threads) < 1:
            raise InputError(
                "qrnn needs context >= 0; hidden, epochs, batch_size, block and threads >= 1",
                field="param",
            )
        if not (c.lr > 0 and c.l1 >= 0 and c.max_seconds > 0 and 0 < c.validation < 1):
            raise InputError(
                "qrnn needs lr > 0, l1 >= 0, max_seconds > 0 and validation in (0, 1)",
                field="param",
            )
        if c.patience < 1 or c.epoch_rows < 1:
            raise InputError("qrnn needs patience and epoch_rows >= 1", field="param")
        if not (0 <= c.seed < 2**32 and c.lr <= MAX_LR and c.context <= MAX_CONTEXT):
            raise InputError(
                f"qrnn needs seed in [0, 2**32), lr <= {MAX_LR:g} and context <= {MAX_CONTEXT}",
                field="param",
            )
        self.context = self.config.context

    # ------------------------------------------------------------------ fitting

    def fit(self, X: np.ndarray, Y: np.ndarray, layout: Layout) -> Self:
        """Learn scalers and experts from features X [n, f] and targets Y [n, s] (NaN unknown)."""
        import torch

        from estimator.models import qrnn_net

        X, Y = np.asarray(X, dtype=float), np.asarray(Y, dtype=float)
        if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y) or len(X) == 0:
            raise ModelError(
                f"qrnn: need X [n, f] and Y [n, s] with n > 0, got {X.shape}, {Y.shape}"
            )
        if not np.isfinite(X).all() or np.isinf(Y).any():
            raise ModelError("qrnn: features hold NaN or infinite values, or targets infinite ones")
        self.n_features_, self.n_series_ = X.shape[1], Y.shape[1]
        self.feature_names_ = list(layout.names) if len(layout.names) == X.shape[1] else []
        self.base_: CostBase | None = None
        n_val = qrnn_net.validation_rows(len(X), self.config.validation)
        Y_all = Y
        if self.config.anchor:
            # the base learns on the rows before the held-out ones, so the band is calibrated
            # on rows neither the experts nor the base have seen
            head = len(X) - n_val
            self.base_ = self._new_base().fit(X[:head], Y[:head], layout)
            base, scale = self.base_.predict(X)
            Y = (Y - base) / scale
            self.context = max(self.config.context, self.base_.context)
        scale = np.abs(X).mean(axis=0)
        self.x_inv_ = np.where(scale > 0, 1.0 / np.where(scale > 0, scale, 1.0), 0.0)
        known = ~np.isnan(Y)
        y_sum = np.where(known, np.abs(Y), 0.0).sum(axis=0)
        y_scale = y_sum / np.maximum(known.sum(axis=0), 1)
        self.y_scale_ = np.where(y_scale > 0, y_scale, 1.0)
        cfg = self.config
        progress = sys.stderr.isatty() if cfg.progress is None else cfg.progress
        plan = qrnn_net.TrainPlan(
            epochs=cfg.epochs,
            lr=cfg.lr,
            batch_size=cfg.batch_size,
            block=cfg.block,
            l1=cfg.l1,
            patience=cfg.patience,
            epoch_rows=cfg.epoch_rows,
            validation=cfg.validation,
            max_seconds=cfg.max_seconds,
            progress=progress,
            say=self.progress,
        )
        with qrnn_net.deterministic(cfg.seed, self._threads()):
            self.net_ = self._new_net()
            linear = self._linear_columns(layout) * (not self.config.anchor)
            self.net_.linear.copy_(torch.from_numpy(linear))
            self.training_ = qrnn_net.train(
                self.net_, self._padded(X), Y / self.y_scale_, plan, cfg.seed
            )
        if self.training_.get("cut_short"):
            warnings.warn(
                DataWarning(
                    f"qrnn: training stopped at its time budget of {cfg.max_seconds:g} s after "
                    f"{self.training_['epochs']:g} of at most {cfg.epochs} epochs, before "
                    "early stopping ended it: the fit may be short of its best and another run "
                    "with the same seed may differ; raise the budget with --param "
                    "max_seconds=SECONDS (with --model auto, in its qrnn params)"
                ),
                stacklevel=2,
            )
        if not all(bool(torch.isfinite(w).all()) for w in self.net_.parameters()):
            raise ModelError(
                "qrnn: training diverged (weights are no longer numbers); lower lr or l1"
            )
        self.margin_ = self._calibrate(X, Y / self.y_scale_)
        if self.base_ is not None and n_val:
            # then on every row, as the XGBoost model refits its own after calibrating
            self.base_ = self._new_base().fit(X, Y_all, layout)
            self.context = max(self.config.context, self.base_.context)
        return self

    def _new_base(self) -> CostBase:
        return CostBase(robust=self.config.robust, shrinkage=self.config.shrinkage)

    def _calibrate(self, X: np.ndarray, Z: np.ndarray) -> np.ndarray:
        """Per series: the band margin (in the experts' scaled units) that makes the early
        stopping rows, which neither the experts nor their cost base trained on, 90% covered.

        A pinball loss fits its band on rows it has seen; out of sample the band is too narrow,
        the more so the fewer the rows. Split conformal calibration on the held-out rows corrects
        it, as the XGBoost model's does on its own held-out windows.
        """
        from estimator.models import qrnn_net

        margins = np.zeros(self.n_series_)
        n_val = qrnn_net.validation_rows(len(Z), self.config.validation)
        if n_val == 0:
            return margins
        # Each row's estimate reads only its `context` rows before it (as in predict_last).
        q = qrnn_net.predict(self.net_, self._padded(X)[len(X) - n_val :])
        for j in range(self.n_series_):
            known = ~np.isnan(Z[-n_val:, j])
            margins[j] = conformal_margin(Z[-n_val:, j][known], q[known, j])
        return margins

    def _threads(self) -> int:
        """Threads for fitting: small problems run faster on one (parallel overhead dominates)."""
        small = self.n_features_ * self.n_series_ < SMALL_PROBLEM
        return 1 if small else max(1, self.config.threads)

    def _linear_columns(self, layout: Layout) -> np.ndarray:
        """1.0 for the count columns the linear cost term may use, 0.0 for traffic history."""
        out = np.ones(self.n_features_, dtype=np.float32)
        if len(layout.names) == self.n_features_ and "history" in layout.groups:
            out[layout.columns("history")] = 0.0
        return out

    def _new_net(self) -> Experts:
        from estimator.models import qrnn_net

        return qrnn_net.Experts(
            self.n_features_, self.n_series_, self.config.hidden, self.config.context
        )

    def _padded(self, X: np.ndarray) -> np.ndarray:
        """Scaled rows with the first row repeated `context` times in front."""
        scaled = X * self.x_inv_
        return np.vstack([np.repeat(scaled[:1], self.config.context, axis=0), scaled])

    # ------------------------------------------------------------------ predicting

    def predict(self, X: np.ndarray) -> np.ndarray:
        """[n, s, 3] lower, median, upper for time-ordered rows X [n, f]."""
        from estimator.models import qrnn_net

        X = np.asarray(X, dtype=float)
        self._check_fitted(X)
        if len(X) == 0:
            return np.zeros((0, self.n_series_, 3))
        pred = widen(qrnn_net.predict(self.net_, self._padded(X)), self.margin_)
        pred *= self.y_scale_[None, :, None]
        if self.base_ is not None:
            base, scale = self.base_.predict(X)
            pred = base[..., None] + scale[..., None] * pred
        return finalize(pred)

    def predict_last(self, X: np.ndarray) -> np.ndarray:
        """[s, 3] for the last row: the experts see only their context, the base its own."""
        from estimator.models import qrnn_net

        X = np.asarray(X, dtype=float)
        self._check_fitted(X)
        tail = self._padded(X[len(X) - min(len(X), self.config.context + 1) :])
        pred = widen(qrnn_net.predict(self.net_, tail)[-1], self.margin_) * self.y_scale_[:, None]
        if self.base_ is not None:
            base, scale = self.base_.predict(X, last=True)
            pred = base[0, :, None] + scale[0, :, None] * pred
        return finalize(pred)

    def feature_mask(self) -> np.ndarray:
        """[series, features] learned gates in (0, 1): which features each expert uses."""
        if not hasattr(self, "net_"):
            raise ModelError("qrnn model used before fit")
        return self.net_.mask().detach().numpy().astype(np.float64)

    # ------------------------------------------------------------------ persistence

    def save(self, directory: Path) -> dict[str, Any]:
        """Weights to safetensors; hyperparameters and scalers as JSON metadata."""
        from safetensors.torch import save

        from estimator.models import qrnn_net

        if not hasattr(self, "net_"):
            raise ModelError("qrnn model saved before fit")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        # written as any other file of the bundle, with the user's umask (save_file makes it
        # private to the owner, so a bundle trained by one user would not load for another)
        (directory / WEIGHTS).write_bytes(save(qrnn_net.state_arrays(self.net_)))
        return {
            "config": dataclasses.asdict(self.config),
            "n_features": self.n_features_,
            "n_series": self.n_series_,
            "x_inv": self.x_inv_.tolist(),
            "y_scale": self.y_scale_.tolist(),
            "margin": self.margin_.tolist(),
            # how the training went but its wall time, which differs from run to run: two
            # trainings of one model save one manifest, and so one bundle version
            "training": {k: v for k, v in self.training_.items() if k != "seconds"},
            "base": None if self.base_ is None else self.base_.save(directory),
        }

    @classmethod
    def load(cls, directory: Path, meta: dict[str, Any]) -> Self:
        """Rebuild from `save`'s safetensors file and metadata."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            config = QRNNConfig(**meta["config"])
            model = cls(config)
            model.n_features_, model.n_series_ = int(meta["n_features"]), int(meta["n_series"])
            model.x_inv_ = np.asarray(meta["x_inv"], dtype=float)
            model.y_scale_ = np.asarray(meta["y_scale"], dtype=float)
            # Bundles written before the band was calibrated have no margins.
            model.margin_ = np.asarray(meta.get("margin") or np.zeros(model.n_series_), dtype=float)
            model.training_ = dict(meta.get("training") or {})
            base = meta.get("base")
            model.base_ = None if base is None else CostBase.load(Path(directory), base)
            if model.base_ is not None:
                model.context = max(config.context, model.base_.context)
        except (KeyError, TypeError, ValueError, InputError, OSError) as exc:
            raise BundleError(f"qrnn metadata is malformed: {exc!r}") from exc
        if (
            model.x_inv_.shape != (model.n_features_,)
            or model.y_scale_.shape != (model.n_series_,)
            or model.margin_.shape != (model.n_series_,)
        ):
            raise BundleError("qrnn metadata: scaler sizes do not match features and series")
        path = Path(directory) / WEIGHTS
        try:
            weights = load_file(str(path))
        except (OSError, ValueError, RuntimeError, SafetensorError) as exc:  # a header that lies
            raise BundleError(f"{path}: cannot read qrnn weights ({exc})") from exc
        model.net_ = model._new_net()
        try:
            model.net_.load_state_dict(weights, strict=True)
        except RuntimeError as exc:
            raise BundleError(f"{path}: weights do not fit the model ({exc})") from exc
        model.net_.freeze()
        return model

    def __repr__(self) -> str:
        return f"QRNN({json.dumps(dataclasses.asdict(self.config))})"

"""Torch parts of the quantile RNN: grouped per-series experts, pinball loss, training loop.

Only `estimator.models.qrnn` imports this module, and only inside its methods, so that importing
the model registry never pays for torch.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from estimator.models.base import QUANTILES


def _inv_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class Experts(nn.Module):
    """One small expert per series, evaluated together as grouped weights.

    Expert s gates the features with its learned mask m_s (sigmoid), then predicts
        median = bias_s + cost_s * <m_s, x_t> + correction_s(GRU over rows t-context..t)
    with the band as non-negative offsets from the median: a learned share of the linear cost
    (so the band widens with load) plus a recurrent term. The linear cost term scales with traffic
    beyond the training range; the recurrent term sees asinh-compressed inputs and is bounded by
    its tanh state, so it corrects the shape without blowing up at 3x traffic.
    """

    def __init__(self, n_features: int, n_series: int, hidden: int, context: int) -> None:
        super().__init__()
        f, s, h = n_features, n_series, hidden
        self.context, self.hidden = context, hidden
        self._frozen: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.recurrent = True
        """False while warming up: the experts are then linear cost models only."""
        self.gate = nn.Parameter(torch.zeros(s, f))
        self.cost = nn.Parameter(torch.full((s,), _inv_softplus(1.0 / max(f, 1))))
        self.bias = nn.Parameter(torch.ones(s))
        self.center: torch.Tensor
        self.register_buffer("center", torch.zeros(f))
        self.linear: torch.Tensor
        self.register_buffer("linear", torch.ones(f))
        """1 for the features that carry a per-call cost (this window's counts), 0 for the rest
        (traffic history): a history feature that is nearly constant in training would act as
        a stand-in for the bias and scale it up with traffic."""
        """Mean scaled training row: the linear cost is fitted on centered counts, which
        decouples it from the bias (a far better conditioned problem), then un-centered."""
        self.w_ih = nn.Parameter(torch.randn(s, f, 3 * h) / math.sqrt(max(f, 1)))
        self.b_ih = nn.Parameter(torch.zeros(s, 3 * h))
        self.w_hh = nn.Parameter((torch.rand(s, h, 3 * h) * 2 - 1) / math.sqrt(h))
        self.b_hh = nn.Parameter(torch.zeros(s, 3 * h))
        self.head = nn.Parameter(torch.randn(s, h, 3) * 0.01)
        head_b = torch.zeros(s, 3)
        head_b[:, 1:] = _inv_softplus(0.05)
        self.head_b = nn.Parameter(head_b)
        self.spread = nn.Parameter(torch.full((s, 2), _inv_softplus(0.05)))

    def mask(self) -> torch.Tensor:
        """[series, features] feature gates in (0, 1)."""
        return torch.sigmoid(self.gate)

    def derived(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masked input weights [f, s * 3h], linear costs [s, f] and cost offset [s].

        Frozen after training (see `freeze`) so that predicting one window does not recompute
        them.
        """
        if self._frozen is not None and not torch.is_grad_enabled():
            return self._frozen
        m = self.mask()
        f = m.shape[1]
        w = (m.unsqueeze(-1) * self.w_ih).transpose(0, 1).reshape(f, -1)
        coef = m * self.linear * F.softplus(self.cost).unsqueeze(1)
        return w, coef, coef @ self.center

    def freeze(self) -> None:
        """Cache `derived` for inference; training mode drops the cache."""
        self.eval()
        with torch.no_grad():
            self._frozen = tuple(t.contiguous() for t in self.derived())  # type: ignore[assignment]

    def train(self, mode: bool = True) -> Experts:
        self._frozen = None
        return super().train(mode)

    def _recur(self, xa: torch.Tensor, w: torch.Tensor, length: int) -> torch.Tensor:
        """GRU state [series, blocks * length, hidden] after rows i..i + context of each window."""
        nb, rows, f = xa.shape
        s, h = self.bias.shape[0], self.hidden
        proj = torch.addmm(self.b_ih.reshape(-1), xa.reshape(-1, f), w)
        # Every step's input as a view; unbind (not slicing) keeps the backward pass one
        # gather instead of a zero-filled copy of the whole projection per step and gate.
        windows = proj.view(nb, rows, s, 3, h).unfold(1, length, 1)  # [nb, T, s, 3, h, L]
        steps = windows.permute(1, 3, 2, 0, 5, 4).unbind(0)  # T x [3, s, nb, L, h]
        state = xa.new_zeros(s, nb * length, h)
        for gi in steps:
            gh = torch.baddbmm(self.b_hh.unsqueeze(1), state, self.w_hh)
            h_r, h_z, h_n = gh.view(s, nb, length, 3, h).unbind(3)
            i_r, i_z, i_n = gi.unbind(0)
            r = torch.sigmoid(i_r + h_r)
            z = torch.sigmoid(i_z + h_z)
            n = torch.tanh(torch.addcmul(i_n, r, h_n))
            state = torch.lerp(n, state.view(s, nb, length, h), z).reshape(s, nb * length, h)
        return state

    def forward(self, x: torch.Tensor, xa: torch.Tensor) -> torch.Tensor:
        """Scaled rows x and asinh(x), [blocks, L + context, features] -> [blocks, L, series, 3].

        Row i + context of a block is predicted from rows i..i + context of that block.
        """
        nb, rows, f = x.shape
        ctx = self.context
        length = rows - ctx
        s = self.bias.shape[0]
        w, coef, offset = self.derived()
        if self.recurrent:
            state = self._recur(xa, w, length)
            out = torch.baddbmm(self.head_b.unsqueeze(1), state, self.head)  # [s, B, 3]
        else:
            out = self.head_b.unsqueeze(1).expand(s, nb * length, 3)
        x_t = x[:, ctx:].reshape(nb * length, f)
        lin = (x_t @ coef.T).T  # [s, B]
        load = lin.clamp_min(0.0)
        spread = F.softplus(self.spread)
        med = (self.bias - offset).unsqueeze(1) + lin + out[..., 0]
        lo = med - F.softplus(out[..., 1]) - spread[:, :1] * load
        hi = med + F.softplus(out[..., 2]) + spread[:, 1:] * load
        q = torch.stack([lo, med, hi], dim=-1)
        return q.transpose(0, 1).reshape(nb, length, s, 3)


def pinball(pred: torch.Tensor, y: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Mean pinball loss over known targets; pred [..., 3], y and known [...]."""
    q = pred.new_tensor(QUANTILES)
    diff = y.unsqueeze(-1) - pred
    loss = torch.maximum(q * diff, (q - 1) * diff).sum(-1)
    return (loss * known).sum() / known.sum().clamp_min(1.0)


@dataclass(frozen=True)
class TrainPlan:
    """How to train: epochs, batching, early stopping, budget, progress."""

    epochs: int
    lr: float
    batch_size: int
    block: int
    l1: float
    patience: int
    epoch_rows: int
    validation: float
    max_seconds: float
    progress: bool
    say: Callable[[str], None] | None = None
    """Told a line every SAY_EVERY seconds of training where the bar is off (a log file)."""


SAY_EVERY = 15.0


@contextmanager
def deterministic(seed: int, threads: int) -> Iterator[None]:
    """Seeded, deterministic CPU torch for the duration; global settings are restored after."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads())
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.set_num_threads(before[1])


def _blocks(
    data: _Data, starts: np.ndarray, length: int, ctx: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """[len(starts), length + ctx, f] slices of the padded rows (target row t is x[t + ctx])."""
    idx = torch.from_numpy(starts[:, None] + np.arange(length + ctx)[None, :])
    return data.x[idx], data.xa[idx]


def _targets(y: torch.Tensor, starts: np.ndarray, length: int) -> torch.Tensor:
    return y[torch.from_numpy(starts[:, None] + np.arange(length)[None, :])]


def _evaluate(net: Experts, data: _Data, lo: int) -> float:
    """Pinball loss of target rows lo..end, in one no-grad pass."""
    with torch.no_grad():
        rows = slice(lo, len(data.y) + net.context)
        pred = net(data.x[rows].unsqueeze(0), data.xa[rows].unsqueeze(0))[0]
        return float(pinball(pred, data.y[lo:], data.known[lo:]))


MIN_STEPS = 32
"""Optimizer steps per epoch that small data sets are batched for."""


@dataclass
class _Data:
    """Training tensors: padded scaled rows, scaled targets, known mask, train/validation split."""

    x: torch.Tensor
    xa: torch.Tensor
    """asinh(x), the recurrent term's compressed input."""
    y: torch.Tensor
    known: torch.Tensor
    n_train: int
    n_val: int
    deadline: float
    """time.monotonic() after which no new epoch starts."""
    next_say: float = 0.0
    """time.monotonic() at which the next progress line is due (where the bar is off)."""
    epochs_done: int = 0
    cut_short: bool = False
    """The time budget, not early stopping or the epoch count, ended training."""


def _epoch(
    net: Experts, data: _Data, opt: torch.optim.Optimizer, plan: TrainPlan, rng: np.random.Generator
) -> float:
    """One pass over shuffled blocks of consecutive target rows; returns the mean batch loss.

    Small data gets smaller blocks and batches, so that an epoch still makes about
    `MIN_STEPS` optimizer steps.
    """
    rows = max(1, min(plan.batch_size, data.n_train // MIN_STEPS))
    ctx, length = net.context, max(1, min(plan.block, rows, data.n_train))
    per_batch = max(1, rows // length)
    offset = int(rng.integers(0, length)) if data.n_train > length else 0
    starts = np.arange(offset, data.n_train - length + 1, length)
    starts = starts if len(starts) else np.array([0])
    rng.shuffle(starts)
    starts = starts[: max(1, plan.epoch_rows // length)]
    net.train()
    total, seen = 0.0, 0
    for i in range(0, len(starts), per_batch):
        if seen and time.monotonic() > data.deadline:
            data.cut_short = True
            break  # the budget holds within an epoch too (a long look-back makes epochs slow)
        chunk = starts[i : i + per_batch]
        pred = net(*_blocks(data, chunk, length, ctx))
        loss = pinball(pred, _targets(data.y, chunk, length), _targets(data.known, chunk, length))
        loss = loss + plan.l1 * net.mask().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(chunk)
        seen += len(chunk)
    net.eval()
    return total / seen


def _phase(
    net: Experts, data: _Data, plan: TrainPlan, epochs: int, rng: np.random.Generator, bar: tqdm
) -> tuple[int, float]:
    """Train up to `epochs` epochs with early stopping; keep the best weights; (epochs run, best)."""
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=plan.lr)
    best, best_state, stale, ran = math.inf, None, 0, 0
    while ran < epochs:
        ran += 1
        score = _epoch(net, data, opt, plan, rng)
        if data.n_val:
            score = _evaluate(net, data, data.n_train)
        bar.set_postfix(loss=f"{score:.4f}", recurrent=net.recurrent)
        bar.update(1)
        data.epochs_done += 1
        if bar.disable and plan.say is not None and time.monotonic() >= data.next_say:
            data.next_say = time.monotonic() + SAY_EVERY
            stage = "recurrent correction" if net.recurrent else "per-call costs"
            plan.say(
                f"qrnn: epoch {data.epochs_done} of at most {plan.epochs} ({stage}), loss {score:.4f}"
            )
        if score < best - 1e-5:
            best, stale = score, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            stale += 1
        if stale >= plan.patience:
            break
        if time.monotonic() > data.deadline:
            data.cut_short = data.cut_short or ran < epochs
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    return ran, best


def validation_rows(n: int, share: float) -> int:
    """Rows at the end of n held out for early stopping (none for fewer than 50 rows)."""
    return int(n * share) if n >= 50 else 0


def train(
    net: Experts, xp: np.ndarray, y: np.ndarray, plan: TrainPlan, seed: int
) -> dict[str, float]:
    """Fit `net` on padded scaled rows xp [n + ctx, f] and scaled targets y [n, s] (NaN unknown).

    First the experts learn as linear cost models alone (the recurrent term off), so traffic is
    explained by per-call costs wherever it can be, which is what extrapolates; then the
    recurrent correction and band terms train on top. The last `validation` share of rows
    drives early stopping in both phases; the best epoch's weights are kept.
    """
    started = time.monotonic()
    n = len(y)
    n_val = validation_rows(n, plan.validation)
    x = torch.from_numpy(np.ascontiguousarray(xp, dtype=np.float32))
    data = _Data(
        x=x,
        xa=torch.asinh(x),
        y=torch.from_numpy(np.nan_to_num(y).astype(np.float32)),
        known=torch.from_numpy(~np.isnan(y)).float(),
        n_train=n - n_val,
        n_val=n_val,
        deadline=started + plan.max_seconds,
    )
    net.center.copy_(x[: data.n_train + net.context].mean(dim=0))
    rng = np.random.default_rng(seed)
    warmup = max(1, plan.epochs // 4)
    bar = tqdm(
        total=plan.epochs, desc="qrnn", unit="epoch", disable=not plan.progress, file=sys.stderr
    )
    try:
        net.recurrent = False
        first, _ = _phase(net, data, plan, warmup, rng, bar)
        net.recurrent = True
        second, best = _phase(net, data, plan, plan.epochs - warmup, rng, bar)
    finally:
        bar.close()
        net.freeze()
    return {
        "epochs": float(first + second),
        "seconds": time.monotonic() - started,
        "best_loss": best,
        "cut_short": float(data.cut_short),
    }


def predict(net: Experts, xp: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Quantiles [n, s, 3] (scaled) for padded scaled rows xp [n + ctx, f], in row chunks."""
    ctx = net.context
    n = len(xp) - ctx
    outs = []
    with torch.inference_mode():
        xt = torch.from_numpy(np.ascontiguousarray(xp, dtype=np.float32))
        xa = torch.asinh(xt)
        for lo in range(0, n, chunk):
            rows = slice(lo, min(n, lo + chunk) + ctx)
            outs.append(net(xt[rows].unsqueeze(0), xa[rows].unsqueeze(0))[0].numpy())
    return np.concatenate(outs).astype(np.float64)


def state_arrays(net: Experts) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors of the weights, ready for safetensors."""
    return {k: v.detach().contiguous() for k, v in net.state_dict().items()}

"""Many small XGBoost boosters evaluated as one numpy forest.

A live estimate asks every series' booster for one row; XGBoost's per-call overhead (about 0.1 ms)
then dominates, times the number of series. Here the trees of all boosters are laid out once (from
each booster's own JSON model) as complete binary trees of the deepest tree's depth, a leaf above
that depth repeated down both branches, and every row descends all trees together, one level per
step, with no child lookups: node i's children are 2i+1 and 2i+2. XGBoost's rule is kept: a value
below the split condition goes left, a missing one takes the node's default branch. The constant
each booster adds (its base score) is read off XGBoost's own prediction of one row, so the sums
agree with `Booster.inplace_predict` to float32 rounding.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import xgboost as xgb

BLOCK_CELLS = 1 << 20
"""Bound on rows x trees descended together: each [rows, trees] array of a block stays at 8 MB."""


def _depth(tree: dict[str, Any]) -> int:
    """Edges on the longest root-to-leaf path of one XGBoost JSON tree."""
    left, right = tree["left_children"], tree["right_children"]
    level, frontier = 0, [0]
    while True:
        frontier = [c for n in frontier for c in (left[n], right[n]) if c >= 0]
        if not frontier:
            return level
        level += 1


def _complete(tree: dict[str, Any], depth: int) -> tuple[np.ndarray, ...]:
    """One tree as a complete binary tree of `depth`: feature, threshold, default-right of its
    2**depth - 1 inner positions and the values of its 2**depth leaf positions."""
    inner = 2**depth - 1
    feature = np.zeros(inner, dtype=np.int64)
    threshold = np.full(inner, np.inf, dtype=np.float32)
    default_right = np.zeros(inner, dtype=bool)
    values = np.zeros(2**depth)
    left, right = tree["left_children"], tree["right_children"]
    conditions = tree["split_conditions"]
    source = [0]  # original node at each position of the current level
    for level in range(depth + 1):
        first = 2**level - 1
        if level == depth:
            values[:] = [conditions[n] for n in source]
            break
        below = []
        for k, n in enumerate(source):
            if left[n] < 0:  # a leaf: both branches lead to itself
                below += [n, n]
                continue
            feature[first + k] = tree["split_indices"][n]
            threshold[first + k] = conditions[n]
            default_right[first + k] = not tree["default_left"][n]
            below += [left[n], right[n]]
        source = below
    return feature, threshold, default_right, values


class Forest:
    """The trees of `boosters` (None: no booster, predicts zeros); booster j reads the columns
    `offsets[j]` onward of the matrix given to `predict`, and has `outputs` outputs."""

    def __init__(
        self, boosters: Sequence[xgb.Booster | None], offsets: Sequence[int], outputs: int
    ) -> None:
        self.n_boosters, self.outputs = len(boosters), outputs
        trees: list[tuple[dict[str, Any], int, int]] = []  # (tree, offset, output slot)
        for j, booster in enumerate(boosters):
            if booster is None:
                continue
            model = json.loads(booster.save_raw(raw_format="json"))
            found = model["learner"]["gradient_booster"]["model"]
            for tree, output in zip(found["trees"], found["tree_info"], strict=True):
                trees.append((tree, offsets[j], j * outputs + output))
        self.depth = max((_depth(tree) for tree, _, _ in trees), default=0)
        parts = [_complete(tree, self.depth) for tree, _, _ in trees]
        inner = 2**self.depth - 1
        offset = np.repeat([o for _, o, _ in trees], inner).astype(np.int64)
        self.feature = np.concatenate([p[0] for p in parts] or [np.zeros(0, np.int64)]) + offset
        self.threshold = np.concatenate([p[1] for p in parts] or [np.zeros(0, np.float32)])
        self.default_right = np.concatenate([p[2] for p in parts] or [np.zeros(0, bool)])
        self.values = np.concatenate([p[3] for p in parts] or [np.zeros(0)])
        self.slots = np.asarray([slot for _, _, slot in trees], dtype=np.int64)
        self.base = np.zeros((len(boosters), outputs))
        present = [(j, b) for j, b in enumerate(boosters) if b is not None]
        if present:  # the constant XGBoost adds: its prediction of a row less the trees' sum
            width = max(offsets[j] + b.num_features() for j, b in present)
            row = np.zeros((1, width), dtype=np.float32)
            leaves = self._leaves(row)[0]
            for j, booster in present:
                own = booster.inplace_predict(
                    row[:, offsets[j] : offsets[j] + booster.num_features()]
                )
                self.base[j] = own.reshape(outputs) - leaves[j]

    def _leaves(self, F: np.ndarray) -> np.ndarray:
        """[n, boosters, outputs] sums of leaf values (without the base)."""
        width = self.n_boosters * self.outputs
        out = np.zeros((len(F), width))
        n_trees, inner = len(self.slots), 2**self.depth - 1
        starts = np.arange(n_trees, dtype=np.int64) * inner
        step = max(1, BLOCK_CELLS // max(n_trees, 1))
        for lo in range(0, len(F), step):
            block = F[lo : lo + step]
            rows = np.arange(len(block))[:, None]
            missing = bool(np.isnan(block).any())
            position = np.zeros((len(block), n_trees), dtype=np.int64)
            for _ in range(self.depth):
                node = starts + position
                x = block[rows, self.feature[node]]
                right = x >= self.threshold[node]
                if missing:
                    right = np.where(np.isnan(x), self.default_right[node], right)
                position = 2 * position + 1 + right
            leaf = np.arange(n_trees) * 2**self.depth + position - inner
            slots = (rows * width + self.slots).ravel()
            sums = np.bincount(
                slots, weights=self.values[leaf].ravel(), minlength=len(block) * width
            )
            out[lo : lo + len(block)] = sums.reshape(len(block), width)
        return out.reshape(len(F), self.n_boosters, self.outputs)

    def predict(self, F: np.ndarray) -> np.ndarray:
        """[n, boosters, outputs]: every booster's outputs for the rows of float32 matrix F."""
        return self._leaves(np.asarray(F, dtype=np.float32)) + self.base

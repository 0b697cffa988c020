"""The numpy forest predicts what each XGBoost booster predicts."""

from __future__ import annotations

import numpy as np
import xgboost as xgb

from estimator.models.forest import Forest

PARAMS = {
    "objective": "reg:quantileerror",
    "quantile_alpha": [0.05, 0.5, 0.95],
    "tree_method": "hist",
    "max_depth": 4,
    "max_bin": 32,
    "nthread": 1,
    "seed": 0,
}


def _booster(X: np.ndarray, y: np.ndarray, depth: int) -> xgb.Booster:
    matrix = xgb.QuantileDMatrix(X, label=y, max_bin=32)
    return xgb.train({**PARAMS, "max_depth": depth}, matrix, num_boost_round=8)


def test_forest_matches_each_booster_on_its_own_columns() -> None:
    rng = np.random.default_rng(7)
    A = rng.normal(size=(600, 5)).astype(np.float32)
    B = rng.normal(size=(600, 2)).astype(np.float32)
    A[rng.random(A.shape) < 0.1] = np.nan  # missing values take the default branch
    boosters = [
        _booster(A, np.nan_to_num(A[:, 0]) * 3 + rng.normal(size=600), depth=4),
        None,
        _booster(B, B[:, 1] - B[:, 0] + rng.normal(size=600), depth=2),
        _booster(A, rng.normal(size=600), depth=1),
    ]
    forest = Forest(boosters, offsets=[0, 0, 5, 0], outputs=3)
    got = forest.predict(np.hstack([A, B]))
    assert got.shape == (600, 4, 3)
    for j, columns in ((0, A), (2, B), (3, A)):
        booster = boosters[j]
        assert booster is not None
        expected = booster.inplace_predict(columns).reshape(600, 3)
        np.testing.assert_allclose(got[:, j], expected, rtol=1e-5, atol=1e-5)
    assert (got[:, 1] == 0).all()
    np.testing.assert_array_equal(forest.predict(np.hstack([A, B])[7:8])[0], got[7])


def test_forest_of_no_boosters_predicts_zeros() -> None:
    forest = Forest([None, None], offsets=[0, 0], outputs=3)
    assert (forest.predict(np.zeros((4, 3), dtype=np.float32)) == 0).all()

"""Model registry: kinds by name, imported lazily (the neural model pulls in torch)."""

from __future__ import annotations

import importlib

from estimator.errors import InputError
from estimator.models.base import QUANTILES, QuantileModel, finalize

_REGISTRY: dict[str, str] = {
    "xgboost": "estimator.models.xgb:XGBoostQuantile",
    "qrnn": "estimator.models.qrnn:QRNN",
    "linear": "estimator.models.baselines:ComponentLinear",
    "ols-api": "estimator.models.baselines:ApiOLS",
    "auto": "estimator.models.auto:AutoModel",
}

MODEL_KINDS: tuple[str, ...] = tuple(_REGISTRY)


def model_class(kind: str) -> type[QuantileModel]:
    """The class of a model kind; an unknown kind is the caller's mistake."""
    try:
        target = _REGISTRY[kind]
    except KeyError:
        raise InputError(
            f"unknown model '{kind}'; choose one of: {', '.join(MODEL_KINDS)}", field="model"
        ) from None
    module, name = target.split(":")
    cls: type[QuantileModel] = getattr(importlib.import_module(module), name)
    return cls


def make_model(kind: str, **params: object) -> QuantileModel:
    return model_class(kind)(**params)


__all__ = ["MODEL_KINDS", "QUANTILES", "QuantileModel", "finalize", "make_model", "model_class"]

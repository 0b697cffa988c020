"""Model registry: kinds by name, imported lazily (the neural model pulls in torch)."""

from __future__ import annotations

import importlib
import inspect

from estimator.errors import InputError, ModelError
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
    """A fresh model of `kind` with hyperparameters `params`; an unknown or invalid one is the
    caller's mistake (InputError naming it), not a failure of the model."""
    cls = model_class(kind)
    signature = inspect.signature(cls.__init__).parameters
    accepted = [name for name in signature if name != "self"]
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.values())
    unknown = [] if open_ended else sorted(set(params) - set(accepted))  # it checks them itself
    if unknown:
        raise InputError(
            f"{kind} has no hyperparameter {', '.join(unknown)}; it takes: {', '.join(accepted)}",
            field="param",
        )
    try:
        return cls(**params)
    except ModelError as exc:
        raise InputError(str(exc), field="param") from exc


__all__ = ["MODEL_KINDS", "QUANTILES", "QuantileModel", "finalize", "make_model", "model_class"]

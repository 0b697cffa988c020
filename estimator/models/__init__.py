"""Model registry: kinds by name, imported lazily (the neural model pulls in torch)."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
import types
import typing
from collections.abc import Mapping, Sequence

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
    config = getattr(cls, "CONFIG", None)  # a dataclass of hyperparameters, given as overrides
    if cls.__init__ is object.__init__:
        signature: Mapping[str, inspect.Parameter] = {}  # a model without hyperparameters
    else:
        signature = inspect.signature(cls.__init__).parameters
    accepted = [name for name in signature if name not in ("self", "config", "overrides")]
    if config is not None:
        accepted += [f.name for f in dataclasses.fields(config)]
    open_ended = config is None and any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.values()
    )
    unknown = [] if open_ended else sorted(set(params) - set(accepted))  # it checks them itself
    if unknown:
        takes = ", ".join(accepted) or "none"
        raise InputError(
            f"{kind} has no hyperparameter {', '.join(unknown)}; it takes: {takes}",
            field="param",
        )
    try:
        hints = typing.get_type_hints(config if config is not None else cls.__init__)
    except (NameError, TypeError):  # annotations it cannot resolve: the model checks them itself
        hints = {}
    for name, value in params.items():
        if name in hints and not _fits(value, hints[name]):
            raise InputError(
                f"{kind} hyperparameter {name} takes {_describe(hints[name])}, got {value!r}",
                field="param",
            )
    try:
        return cls(**params)
    except ModelError as exc:
        raise InputError(str(exc), field="param") from exc


def _fits(value: object, hint: object) -> bool:
    """Whether a JSON value is of an annotated type (int, float, bool, str, sequences and
    mappings of them, unions); an annotation it does not know lets the value through."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        )
    if hint is str:
        return isinstance(value, str)
    if origin in (Sequence, list, tuple):
        return isinstance(value, (list, tuple)) and all(_fits(v, args[0]) for v in value)
    if origin in (Mapping, dict):
        return isinstance(value, dict)
    return True


def _describe(hint: object) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin in (Sequence, list, tuple):
        return f"a list of {_describe(args[0])}"
    if origin in (Mapping, dict):
        return "an object"
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}
    return names.get(hint, "null" if hint is type(None) else str(hint))  # type: ignore[call-overload]


__all__ = ["MODEL_KINDS", "QUANTILES", "QuantileModel", "finalize", "make_model", "model_class"]

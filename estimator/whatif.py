"""What-if answers: expected usage and band for hypothetical traffic, beside the base traffic."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from estimator.bundle import Bundle
from estimator.errors import InputError
from estimator.synthesizer import Synthesizer
from estimator.windows import Pair, Window


@dataclass(frozen=True)
class WhatIf:
    """Estimates for base and hypothetical traffic, [windows, series, 3] each."""

    series: list[tuple[str, str]]
    starts: np.ndarray
    base: np.ndarray
    hypothetical: np.ndarray

    def rows(self) -> list[dict[str, object]]:
        """Per series: mean and peak of the median, and the peak of the upper band, base vs what-if."""
        out = []
        for j, (component, resource) in enumerate(self.series):
            out.append(
                {
                    "component": component,
                    "resource": resource,
                    "base_mean": float(self.base[:, j, 1].mean()),
                    "whatif_mean": float(self.hypothetical[:, j, 1].mean()),
                    "base_peak": float(self.base[:, j, 1].max()),
                    "whatif_peak": float(self.hypothetical[:, j, 1].max()),
                    "whatif_peak_upper": float(self.hypothetical[:, j, 2].max()),
                    "ratio": float(
                        self.hypothetical[:, j, 1].mean() / max(self.base[:, j, 1].mean(), 1e-12)
                    ),
                }
            )
        return out


def reference_windows(
    bundle: Bundle, synthesizer: Synthesizer
) -> tuple[list[dict[Pair, float]], np.ndarray]:
    """Per-API traffic of the bundle's last training windows, the default base of what-if."""
    ref: Mapping[str, Any] = bundle.training.get("reference_traffic") or {}
    if not ref.get("counts"):
        raise InputError("this bundle keeps no reference traffic; give base traffic with --data")
    apis = [(str(c), str(o)) for c, o in ref["apis"]]
    traffic = [
        {api: float(n) for api, n in zip(apis, row, strict=True) if n > 0} for row in ref["counts"]
    ]
    return traffic, np.asarray(ref["starts"], dtype=float)


def estimate(
    bundle: Bundle,
    base: Sequence[Window],
    hypothetical: Sequence[Window],
) -> WhatIf:
    """Estimates for both traffic sets, each from a fresh traffic history."""
    base_pred, _ = bundle.predict(base)
    new_pred, _ = bundle.predict(hypothetical)
    return WhatIf(
        series=bundle.series,
        starts=np.array([w.start for w in hypothetical]),
        base=base_pred,
        hypothetical=new_pred,
    )


def scaled_traffic(
    traffic: Sequence[Mapping[Pair, float]], factor: float
) -> list[dict[Pair, float]]:
    """Every API's calls multiplied by `factor` (3x users)."""
    if not np.isfinite(factor) or factor < 0:
        raise InputError(
            f"scale factor must be finite and non-negative, got {factor}", field="scale"
        )
    return [{api: n * factor for api, n in counts.items()} for counts in traffic]

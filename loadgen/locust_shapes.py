"""Locust LoadTestShape classes that play a LoadPlan; the plan alone decides users over time."""

from __future__ import annotations

from typing import ClassVar

from locust import LoadTestShape

from loadgen.shapes import DiurnalSpec, LoadPlan, build


class PlanShape(LoadTestShape):
    """Plays `plan` (or the plan from build_plan()) against Locust's elapsed run time."""

    abstract: ClassVar[bool] = True
    plan_name: ClassVar[str] = "diurnal"
    spec: ClassVar[DiurnalSpec] = DiurnalSpec(period_s=120.0, step_s=5.0, compression=1.0)
    scale_k: ClassVar[float] = 3.0

    def __init__(self) -> None:
        super().__init__()
        self._plan: LoadPlan | None = None

    def build_plan(self) -> LoadPlan:
        """The plan to play; subclasses may read Locust's parsed options here."""
        return build(self.plan_name, self.spec, self.scale_k)

    @property
    def plan(self) -> LoadPlan:
        """The plan, built on first use (after Locust has parsed its options)."""
        if self._plan is None:
            self._plan = self.build_plan()
        return self._plan

    def tick(self) -> tuple[int, float] | None:
        """Users and spawn rate now, or None to stop the run."""
        return self.plan.tick(self.get_run_time())

    def current_mix(self) -> dict[str, float]:
        """API weights now; user classes pick their next request with these."""
        return self.plan.mix(self.get_run_time())


class DiurnalShape(PlanShape):
    """Two peaks per cycle, random heights, noise."""

    plan_name = "diurnal"


class ScaleShape(PlanShape):
    """Diurnal with peaks scale_k times higher."""

    plan_name = "scale"


class FlatPeakShape(PlanShape):
    """Peaks held flat at the peak user count."""

    plan_name = "shape"


class CompositionShape(PlanShape):
    """Diurnal users with a rotating schedule of API mixes."""

    plan_name = "composition"

"""A seeded twin of a social-network microservice application: traffic, call paths, usage."""

from estimator.simulator.app import APIS, App, build_app
from estimator.simulator.config import NOISE_SIGMA, SCENARIOS, SimulationConfig
from estimator.simulator.engine import (
    Simulation,
    run_simulation,
    scenario_traffic,
    simulate,
    simulate_traffic,
    to_windows,
)

__all__ = [
    "APIS",
    "NOISE_SIGMA",
    "SCENARIOS",
    "App",
    "Simulation",
    "SimulationConfig",
    "build_app",
    "run_simulation",
    "scenario_traffic",
    "simulate",
    "simulate_traffic",
    "to_windows",
]

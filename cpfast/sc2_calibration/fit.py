"""Coordinate search of the simulator's parameters that minimises the discrepancy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from ..envs.registry import env_options
from .backends import BackendFactory, CalibrationConfig, Episode, default_grid, run_backend, sim_backend
from .statistics import Weights, compare, discrepancy

@dataclass
class FitResult:
    params: dict[str, float]  # the best parameters found (only those searched)
    discrepancy: float
    history: list[tuple[dict[str, float], float]]  # every evaluated point, in order


def fit(reference: BackendFactory | list[Episode], config: CalibrationConfig,
        grid: Mapping[str, Iterable[float]] | None = None, start: Mapping[str, float] | None = None,
        weights: Weights = Weights(), sweeps: int = 2, num_threads: int = 1) -> FitResult:
    """Coordinate search of the simulator's parameters against ``reference`` (a backend, or its
    episodes already played with ``config``): for each parameter of ``grid`` in turn, try every grid
    value with the others held at their current best and keep the value of lowest discrepancy (ties
    keep the current value, else the first in the grid); repeat up to ``sweeps`` times or until a sweep
    changes nothing. Every candidate plays the reference's episodes (same seeds: common random numbers).
    """
    grid = {k: tuple(float(v) for v in vs) for k, vs in (default_grid(config.name) if grid is None else grid).items()}
    options = env_options(config.name)
    unknown = [k for k in grid if k not in options]
    if unknown:
        raise ValueError(f"unknown parameters {unknown}; the simulator's are {', '.join(options)}")
    ref = reference if isinstance(reference, list) else run_backend(reference, config)
    current = {k: float(start[k]) if start and k in start else options[k][0] for k in grid}
    cache: dict[tuple, float] = {}
    history = []

    def score(params):
        key = tuple(sorted(params.items()))
        if key not in cache:
            episodes = run_backend(sim_backend(num_threads, **params), config)
            cache[key] = discrepancy(compare(episodes, ref), weights)
            history.append((dict(params), cache[key]))
        return cache[key]

    best = score(current)
    for _ in range(sweeps):
        changed = False
        for name, values in grid.items():
            for value in values:
                candidate = {**current, name: value}
                s = score(candidate)
                if s < best:
                    best, current, changed = s, candidate, True
        if not changed:
            break
    return FitResult(current, best, history)



"""Registered environments: one entry per C++ environment class."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from cpfast import _envs

from . import render, tables
from ..spec import EnvSpec
from .vec_env import VecEnv


@dataclass(frozen=True)
class EnvEntry:
    runner_cls: type
    zero_shot_table: Callable[[], np.ndarray] | None
    renderer: Callable[[dict[str, np.ndarray]], np.ndarray] | None
    # Training-config fields this environment's preset changes (docs/method.md §17), applied by
    # ``python -m cpfast.train --env NAME`` before the command line's own overrides.
    train_defaults: dict[str, Any] = field(default_factory=dict)
    eval_compositions: tuple[str, ...] = ()  # what `cpfast.evaluate` sweeps by default (empty: all)
    # Whether the env gives each agent its own reward (``info["agent_rewards"]``, summing to the
    # team reward). Where not, the team reward is the only reward (each agent's, cooperatively)
    # and a per-agent buffer the runner may carry is not exposed.
    agent_rewards: bool = False

    @property
    def compositions(self) -> tuple[str, ...]:
        """The composition names the C++ env accepts (StarCraft: ``train`` draws one per reset,
        ``"k"`` fixes the k-th of its list)."""
        return tuple(self.runner_cls.compositions)


# One line per C++ environment class; everything else about an env (dims, compositions, options,
# facts, outcome flags) the class declares itself.
REGISTRY: dict[str, EnvEntry] = {
    "resource_collection": EnvEntry(_envs.ResourceCollection, tables.rc_zero_shot_table,
                                    render.render_resource_collection, agent_rewards=True),
    "rescue": EnvEntry(_envs.RescueGame, tables.rescue_zero_shot_table, render.render_rescue,
                       train_defaults={"segment_tail": "pad", "truncation_is_terminal": False}),
    "sc2_3-8sz": EnvEntry(_envs.StarCraft3to8sz, None, render.render_starcraft, eval_compositions=("train",)),
    "sc2_3-8MMM": EnvEntry(_envs.StarCraft3to8MMM, None, render.render_starcraft, eval_compositions=("train",)),
}


def _outcomes() -> dict[str, str]:
    """Every registered env's outcome flags (info key -> rate name); two envs may share a flag
    only under the same rate name."""
    outcomes: dict[str, str] = {}
    for name, entry in REGISTRY.items():
        for key, rate in entry.runner_cls.outcomes.items():
            if outcomes.setdefault(key, rate) != rate:
                raise RuntimeError(f"{name} names outcome flag {key!r} {rate!r}, another env {outcomes[key]!r}")
    return outcomes


# Episode outcomes of the envs that report them (StarCraft): the info flag set on an episode's
# last step (exactly one of them) -> the name of its rate. A time-out is a draw.
OUTCOMES = _outcomes()


def registered(name: str) -> EnvEntry:
    """The registry entry of environment ``name``; a ValueError lists the registered ones otherwise."""
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"unknown environment {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def make_env(
    name: str,
    num_envs: int = 1,
    seed: int = 0,
    composition: str = "train",
    num_threads: int | None = None,
    eval_seed: int | None = None,
    **env_kwargs: float,
) -> VecEnv:
    """Builds ``num_envs`` environments of ``name`` stepped by one C++ runner.

    ``seed`` seeds training streams (env i: world ``derive(seed, i, 0)``, composition
    ``derive(seed, i, 1)``); with ``eval_seed`` every episode is an evaluation episode
    ``k = i + j * num_envs`` seeded from ``eval_seed`` (docs/interface.md §5). ``num_threads``
    defaults to the machine's cores; results never depend on it. The StarCraft scenarios on an
    installed StarCraft II are ``cpfast.envs.sc2.make_sc2_env`` instead.
    ``env_kwargs`` are the environment's named options (``env_options(name)``: the StarCraft
    simulator's *calibrate* parameters, docs/environments.md, StarCraft §12); absent ones keep their defaults.
    """
    entry = registered(name)
    if isinstance(composition, (int, np.integer)) and not isinstance(composition, bool):
        composition = str(int(composition))  # a composition index
    if composition not in entry.compositions:
        expected = ", ".join(entry.compositions) if len(entry.compositions) <= 8 else \
            f"{entry.compositions[0]} or an index in [0, {len(entry.compositions) - 1})"
        raise ValueError(f"unknown composition {composition!r} for {name}; expected one of {expected}")
    params = _check_options(name, entry, env_kwargs)
    dims = entry.runner_cls.dims
    spec = EnvSpec(name=name, composition=composition, **dims)
    table = entry.zero_shot_table() if entry.zero_shot_table is not None else None
    return VecEnv(
        spec,
        entry.runner_cls,
        num_envs=num_envs,
        seed=seed,
        num_threads=num_threads,
        eval_seed=eval_seed,
        zero_shot_table=table,
        renderer=entry.renderer,
        params=params,
        agent_rewards=entry.agent_rewards,
    )


def env_facts(name: str) -> dict[str, float | tuple[float, ...]]:
    """What the C++ environment ``name`` declares about itself beyond its dims (StarCraft: feature
    columns, unit ids, maximum health and shield per unit type, reward normaliser, number of
    compositions): one number, or a tuple per unit type. Empty for envs that declare none."""
    return {key: values[0] if len(values) == 1 else tuple(values)
            for key, values in registered(name).runner_cls.facts.items()}


def env_options(name: str) -> dict[str, tuple[float, float, float, bool]]:
    """The named options of environment ``name``: ``{option: (default, lo, hi, integer)}`` (ranges
    inclusive). The StarCraft simulator's are documented in ``envs_cpp/starcraft_micro.h``."""
    return dict(registered(name).runner_cls.options)


def _check_options(name: str, entry: EnvEntry, given: dict[str, Any]) -> dict[str, float]:
    """Validates option names, types and ranges (the C++ side checks again) with errors naming the option."""
    known = entry.runner_cls.options
    params = {}
    for key, value in given.items():
        if key not in known:
            expected = f"known options: {', '.join(known)}" if known else "it takes no options"
            raise ValueError(f"unknown option {key!r} for {name} ({expected})")
        _, lo, hi, integer = known[key]
        if isinstance(value, (bool, np.bool_)):
            value = int(value)
        if not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"option {key} for {name} must be a number, got {value!r}")
        value = float(value)
        if not lo <= value <= hi or (integer and not value.is_integer()):
            kind = "an integer" if integer else "a number"
            raise ValueError(f"option {key}={value!r} for {name} must be {kind} in [{lo:g}, {hi:g}]")
        params[key] = value
    return params

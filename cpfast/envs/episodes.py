"""Running a policy for whole episodes on a batched environment."""

from __future__ import annotations

from typing import Callable

import numpy as np

from .registry import OUTCOMES
from .vec_env import VecEnv


def run_episodes(env: VecEnv, policy: Callable[[dict], np.ndarray], n_episodes: int) -> dict[str, np.ndarray]:
    """Resets ``env`` and steps it until at least ``n_episodes`` episodes have ended.

    Returns ``returns`` (team return of each finished episode, in the order they finished)
    and ``team_sizes`` (present agents at the episode's start), plus ``env_steps`` taken; for
    envs that report outcomes also ``outcomes`` (the ``OUTCOMES`` key of each episode).
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be positive, got {n_episodes}")
    obs = env.reset()
    start_size = obs["agent_present"].sum(axis=1)
    returns, sizes, outcomes, env_steps = [], [], [], 0
    while len(returns) < n_episodes:
        obs, _, terminated, truncated, info = env.step(policy(obs))
        env_steps += env.num_envs
        done = np.flatnonzero(terminated | truncated)
        returns.extend(info["episode_return"][done].tolist())
        sizes.extend(start_size[done].tolist())
        start_size[done] = obs["agent_present"][done].sum(axis=1)
        if reports_outcomes(info):
            outcomes.extend(episode_outcomes(info, done))
    result = {"returns": np.array(returns), "team_sizes": np.array(sizes), "env_steps": env_steps}
    if reports_outcomes(info):
        result["outcomes"] = np.array(outcomes)
    return result


def reports_outcomes(info: dict) -> bool:
    return all(key in info for key in OUTCOMES)


def episode_outcomes(info: dict, envs) -> list[str]:
    """The ``OUTCOMES`` key flagged on the last step of each of ``envs`` (episodes that just ended);
    an env that flags none or several is an error, not a guess."""
    flags = np.stack([np.asarray(info[key])[envs] != 0 for key in OUTCOMES], axis=-1)  # [envs, 3]
    if (flags.sum(axis=-1) != 1).any():
        raise RuntimeError(f"an ended episode has outcome flags {flags.astype(int).tolist()} "
                           f"(exactly one of {', '.join(OUTCOMES)} expected)")
    return np.array(list(OUTCOMES))[flags.argmax(axis=-1)].tolist()

"""PettingZoo ``ParallelEnv`` view of one cpfast environment (for tools that speak PettingZoo).

One adapter wraps a ``VecEnv`` with ``num_envs=1``; it is a compatibility layer, not a fast
path (training uses ``VecEnv`` batches directly). Agent ``agent_i`` is slot ``i``.
"""

from __future__ import annotations

import functools

import gymnasium
import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from .registry import make_env


class CpfastParallelEnv(ParallelEnv):
    """``agents`` are the present slots, in slot order.

    In the ``dynamic`` composition an agent that leaves is reported once with
    ``terminations[a] = True`` and then drops out of ``agents``; a joining agent appears in
    ``agents`` from the step it joins. A join reuses the lowest free slot, so a new agent can
    take the name of one that left earlier in the episode (PettingZoo's ``parallel_api_test``
    calls that a revival, see tests/test_pettingzoo.py).

    When the episode ends every remaining agent is truncated (or terminated) and ``agents``
    becomes empty; call ``reset()`` to start the next episode.
    """

    metadata = {"name": "cpfast_v0", "render_modes": ["rgb_array"], "is_parallelizable": True}

    def __init__(self, name="resource_collection", composition="train", seed=0, render_mode=None, **kwargs):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self._make = functools.partial(make_env, name, num_envs=1, composition=composition, num_threads=1, **kwargs)
        self._vec = self._make(seed=seed)
        spec = self._vec.spec
        self.metadata = {**self.metadata, "name": f"cpfast_{name}_v0"}
        self.possible_agents = [f"agent_{i}" for i in range(spec.max_agents)]
        self._slot = {a: i for i, a in enumerate(self.possible_agents)}
        self.agents = []
        self._obs = None  # copy of the observation the last reset/step returned (state() reads it)
        self.state_space = spaces.Box(-np.inf, np.inf, (spec.max_entities * spec.feat_dim,), np.float32)

    # ------------------------------------------------------------------ spaces
    # Cached so each call returns the same object (PettingZoo's API test checks identity, and
    # seeding a space must stick).
    @functools.lru_cache(maxsize=None)
    def observation_space(self, agent):
        s = self._vec.spec
        return spaces.Dict(
            {
                "entities": spaces.Box(-np.inf, np.inf, (s.max_entities, s.feat_dim), np.float32),
                "obs_mask": spaces.Box(0, 1, (s.max_entities,), np.uint8),
                "attributes": spaces.Box(-np.inf, np.inf, (s.attr_dim,), np.float32),
                # int8, not uint8: gymnasium's Discrete.sample(mask=...) accepts only int8 masks.
                "action_mask": spaces.Box(0, 1, (s.n_actions,), np.int8),
            }
        )

    @functools.lru_cache(maxsize=None)
    def action_space(self, agent):
        return spaces.Discrete(self._vec.spec.n_actions)

    # ------------------------------------------------------------------ episode
    def reset(self, seed=None, options=None):
        if seed is not None:  # a fresh runner: seed S gives exactly make_env(..., seed=S)'s episodes
            self._vec.close()
            self._vec = self._make(seed=seed)
        self._obs = _copy_env0(self._vec.reset())
        self.agents = self._present(self._obs)
        return {a: self._observe(self._obs, a) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions):
        if not self.agents:
            raise RuntimeError("the episode is over (or reset() was never called): call reset()")
        acts = np.zeros((1, len(self.possible_agents)), dtype=np.int64)  # missing agents: no-op 0
        for agent, action in actions.items():
            acts[0, self._slot[agent]] = int(action)
        obs, _, terminated, truncated, info = self._vec.step(acts)
        done = bool(terminated[0] or truncated[0])
        # The VecEnv auto-resets inside this step; the finished episode's last obs is in final.
        self._obs = _copy_env0(info["final"] if done else obs)
        present = self._present(self._obs)
        # Report every agent that was alive before the step (leavers once more) plus joiners.
        reported = [a for a in self.possible_agents if a in self.agents or a in present]
        agent_rewards = info["agent_rewards"][0]
        observations = {a: self._observe(self._obs, a) for a in reported}
        rewards = {a: float(agent_rewards[self._slot[a]]) for a in reported}
        terminations = {a: bool(terminated[0]) or a not in present for a in reported}
        truncations = {a: bool(truncated[0]) and a in present for a in reported}
        infos = {a: {} for a in reported}
        self.agents = [] if done else present
        return observations, rewards, terminations, truncations, infos

    # ------------------------------------------------------------------ views
    def state(self):
        if self._obs is None:
            raise RuntimeError("call reset() before state()")
        return self._obs["entities"].reshape(-1).copy()

    def render(self):
        if self.render_mode is None:
            gymnasium.logger.warn("render() called without render_mode; pass render_mode='rgb_array'")
            return None
        # Caveat: after the episode's last step the runner has already auto-reset, so this shows
        # the next episode's first frame rather than the final one.
        return self._vec.render(0)

    def close(self):
        self._vec.close()

    def _present(self, obs):
        return [self.possible_agents[i] for i in np.flatnonzero(obs["agent_present"])]

    def _observe(self, obs, agent):
        i = self._slot[agent]
        mask = obs["obs_mask"][i]
        return {
            "entities": obs["entities"] * mask[:, None].astype(np.float32),  # unseen rows -> 0
            "obs_mask": mask.copy(),
            "attributes": obs["attributes"][i].copy(),
            "action_mask": obs["avail_actions"][i].astype(np.int8),
        }


def _copy_env0(obs):
    """Env 0 of a VecEnv observation, copied: the runner overwrites its buffers on the next call."""
    return {k: np.array(v[0]) for k, v in obs.items()}

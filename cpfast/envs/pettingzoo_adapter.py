"""PettingZoo ``ParallelEnv`` view of one cpfast environment (for tools that speak PettingZoo).

One adapter wraps a ``VecEnv`` with ``num_envs=1``; it is a compatibility layer, not a fast
path (training uses ``VecEnv`` batches directly).
"""

from __future__ import annotations

import functools

import gymnasium
import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from .registry import make_env


class CpfastParallelEnv(ParallelEnv):
    """``agents`` are the agents present now, in name order; ``agent_slot[a]`` is ``a``'s slot.

    The agents present at reset are named after their slots (``agent_i`` is slot ``i``). In the
    ``dynamic`` composition an agent that leaves is reported once with ``terminations[a] = True``
    and then drops out of ``agents``; a joining agent appears in ``agents`` from the step it
    joins. A joiner takes the lowest free slot, possibly one a leaver held earlier, but always
    gets a fresh name: ``agent_{N_A}``, ``agent_{N_A+1}``, ... in join order (N_A = max_agents),
    as PettingZoo never lets a finished agent come back. Names restart at each reset, and
    ``possible_agents`` lists every name an episode can use.

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
        # Only `dynamic` adds agents mid-episode: at most one join per composition event, and
        # events come after every 10th step except the last.
        max_joins = (spec.episode_limit - 1) // 10 if spec.composition == "dynamic" else 0
        self.possible_agents = [f"agent_{i}" for i in range(spec.max_agents + max_joins)]
        self.agent_slot = {}  # name -> slot of every agent seen this episode (leavers included)
        self._next_name = spec.max_agents  # index in possible_agents of the next joiner's name
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
        # The agents present at reset are named after their slots; joiners get names from N_A on.
        self.agent_slot = {f"agent_{i}": int(i) for i in np.flatnonzero(self._obs["agent_present"])}
        self._next_name = self._vec.spec.max_agents
        self.agents = list(self.agent_slot)
        return {a: self._observe(self._obs, a) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions):
        if not self.agents:
            raise RuntimeError("the episode is over (or reset() was never called): call reset()")
        acts = np.zeros((1, self._vec.spec.max_agents), dtype=np.int64)  # missing agents: no-op 0
        for agent in self.agents:  # only live agents act: a leaver's slot may hold a joiner now
            if agent in actions:
                acts[0, self.agent_slot[agent]] = int(actions[agent])
        obs, team_reward, terminated, truncated, info = self._vec.step(acts)
        done = bool(terminated[0] or truncated[0])
        # The VecEnv auto-resets inside this step; the finished episode's last obs is in final.
        self._obs = _copy_env0(info["final"] if done else obs)
        slots = set(np.flatnonzero(self._obs["agent_present"]).tolist())
        stayed = [a for a in self.agents if self.agent_slot[a] in slots]
        left = [a for a in self.agents if a not in stayed]
        # A present slot that no staying agent holds is a joiner's (a step has at most one
        # composition event, so no slot changes hands unseen). A joiner gets the next unused name,
        # never its slot's old one: PettingZoo forbids reviving a finished agent.
        joined = []
        for slot in sorted(slots - {self.agent_slot[a] for a in stayed}):
            joined.append(self.possible_agents[self._next_name])
            self._next_name += 1
            self.agent_slot[joined[-1]] = slot
        # Report every agent that was alive before the step (leavers once more) plus joiners;
        # names only grow, so this is name order.
        reported = self.agents + joined
        observations = {a: self._observe(self._obs, a) for a in reported}
        if "agent_rewards" in info:
            rewards = {a: float(info["agent_rewards"][0][self.agent_slot[a]]) for a in reported}
        else:  # a team reward only (Rescue): every agent receives it
            rewards = {a: float(team_reward[0]) for a in reported}
        terminations = {a: bool(terminated[0]) or a in left for a in reported}
        truncations = {a: bool(truncated[0]) and a not in left for a in reported}
        infos = {a: {} for a in reported}
        self.agents = [] if done else stayed + joined
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

    def _observe(self, obs, agent):
        i = self.agent_slot[agent]
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

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

from .episodes import OUTCOMES
from .registry import env_facts, make_env

# Info keys of an episode's outcome, as the VecEnv reports them (StarCraft), copied into every
# agent's infos on the step an episode ends.
OUTCOME_INFO_KEYS = (*OUTCOMES, "timeout")


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

    ``fixed_slots=True`` is the view for tools that need a fixed set of agents (TorchRL's
    ``PettingZooWrapper``, BenchMARL): ``possible_agents`` are the N_A slots ``agent_0`` ...
    ``agent_{N_A-1}`` and all of them are in ``agents`` during the whole episode. A slot's
    observation has an extra ``agent_present`` flag; an empty slot (never filled, or between a
    leave and a join in ``dynamic``) sees nothing, may only take the no-op (its ``action_mask``)
    and gets reward 0. Its infos always carry the outcome keys (False until the last step).

    Rewards: where the env has per-agent rewards (Resource Collection) each agent gets its own
    (they sum to the team reward); otherwise every agent gets the team reward (cooperative).
    On the step an episode ends, each reported agent's infos hold the env's outcome flags where
    it reports them (StarCraft: ``battle_won``, ``battle_draw``, ``battle_lost``, ``timeout``).

    ``action_space(a).sample()`` without a mask draws among the actions available to ``a`` now
    (``a``'s current ``action_mask``), so unmasked samplers only send legal actions. A live
    agent missing from ``step``'s actions takes the no-op, which must then be available to it.
    """

    metadata = {"name": "cpfast_v0", "render_modes": ["rgb_array"], "is_parallelizable": True}

    def __init__(self, name="resource_collection", composition="train", seed=0, render_mode=None, fixed_slots=False,
                 **kwargs):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.fixed_slots = bool(fixed_slots)
        self._make = functools.partial(make_env, name, num_envs=1, composition=composition, num_threads=1, **kwargs)
        self._vec = self._make(seed=seed)
        spec = self._vec.spec
        self.metadata = {**self.metadata, "name": f"cpfast_{name}_v0"}
        # Only `dynamic` adds agents mid-episode: at most one join per composition event, and
        # events come after every period-th step except the last.
        if spec.composition == "dynamic" and not self.fixed_slots:
            max_joins = (spec.episode_limit - 1) // int(env_facts(name)["composition_event_period"])
        else:
            max_joins = 0
        self.possible_agents = [f"agent_{i}" for i in range(spec.max_agents + max_joins)]
        self.agent_slot = {}  # name -> slot of every agent seen this episode (leavers included)
        self._next_name = spec.max_agents  # index in possible_agents of the next joiner's name
        self.agents = []
        self._obs = None  # copy of the observation the last reset/step returned (state() reads it)
        self.state_space = spaces.Box(-np.inf, np.inf, (spec.max_entities * spec.feat_dim,), np.float32)
        self._outcome_keys = [k for k in OUTCOME_INFO_KEYS if k in self._vec.info]
        self._observation_spaces, self._action_spaces = {}, {}

    # ------------------------------------------------------------------ spaces
    # Cached per env so each call returns the same object (PettingZoo's API test checks identity,
    # and seeding a space must stick).
    def observation_space(self, agent):
        if agent not in self._observation_spaces:
            s = self._vec.spec
            keys = {
                "entities": spaces.Box(-np.inf, np.inf, (s.max_entities, s.feat_dim), np.float32),
                "obs_mask": spaces.Box(0, 1, (s.max_entities,), np.uint8),
                "attributes": spaces.Box(-np.inf, np.inf, (s.attr_dim,), np.float32),
                # int8, not uint8: gymnasium's Discrete.sample(mask=...) accepts only int8 masks.
                "action_mask": spaces.Box(0, 1, (s.n_actions,), np.int8),
            }
            if self.fixed_slots:
                keys["agent_present"] = spaces.Box(0, 1, (1,), np.uint8)
            self._observation_spaces[agent] = spaces.Dict(keys)
        return self._observation_spaces[agent]

    def action_space(self, agent):
        if agent not in self._action_spaces:
            self._action_spaces[agent] = _AvailableDiscrete(self._vec.spec.n_actions,
                                                            functools.partial(self._current_action_mask, agent))
        return self._action_spaces[agent]

    def _current_action_mask(self, agent):
        """``agent``'s action mask now (int8), or None when it is not live."""
        if self._obs is None or agent not in self.agents:
            return None
        return self._obs["avail_actions"][self.agent_slot[agent]].astype(np.int8)

    # ------------------------------------------------------------------ episode
    def reset(self, seed=None, options=None):
        if seed is not None:  # a fresh runner: seed S gives exactly make_env(..., seed=S)'s episodes
            self._vec.close()
            self._vec = self._make(seed=seed)
        self._obs = _copy_env0(self._vec.reset())
        if self.fixed_slots:  # every slot, present or not
            self.agent_slot = {a: i for i, a in enumerate(self.possible_agents)}
        else:  # the agents present at reset are named after their slots; joiners get names from N_A on
            self.agent_slot = {f"agent_{i}": int(i) for i in np.flatnonzero(self._obs["agent_present"])}
        self._next_name = self._vec.spec.max_agents
        self.agents = list(self.agent_slot)
        infos = {a: dict.fromkeys(self._outcome_keys, False) if self.fixed_slots else {} for a in self.agents}
        return {a: self._observe(self._obs, a) for a in self.agents}, infos

    def step(self, actions):
        if not self.agents:
            raise RuntimeError("the episode is over (or reset() was never called): call reset()")
        acts = np.zeros((1, self._vec.spec.max_agents), dtype=np.int64)  # missing agents: no-op 0
        for agent in self.agents:  # only live agents act: a leaver's slot may hold a joiner now
            slot = self.agent_slot[agent]
            if agent in actions:
                acts[0, slot] = int(actions[agent])
            elif not self._obs["avail_actions"][slot, 0]:
                raise ValueError(f"no action for {agent}, whose no-op (action 0) is not available: "
                                 f"give every live agent an action from its action_mask")
        acted = self._obs["agent_present"].astype(bool)  # slots that acted in this step
        obs, team_reward, terminated, truncated, info = self._vec.step(acts)
        done = bool(terminated[0] or truncated[0])
        # The VecEnv auto-resets inside this step; the finished episode's last obs is in final.
        self._obs = _copy_env0(info["final"] if done else obs)
        if "agent_rewards" in info:  # per-agent rewards (they sum to the team reward)
            slot_rewards = np.asarray(info["agent_rewards"][0], dtype=np.float64)
        else:  # a team reward only: every agent receives it (cooperative convention)
            slot_rewards = np.full(self._vec.spec.max_agents, float(team_reward[0]))
        outcome = {k: bool(info[k][0]) for k in self._outcome_keys} if done else {}
        if self.fixed_slots:
            return self._step_fixed_slots(slot_rewards, acted, "agent_rewards" in info, terminated, truncated,
                                          outcome, done)
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
        rewards = {a: float(slot_rewards[self.agent_slot[a]]) for a in reported}
        terminations = {a: bool(terminated[0]) or a in left for a in reported}
        truncations = {a: bool(truncated[0]) and a not in left for a in reported}
        infos = {a: dict(outcome) for a in reported}
        self.agents = [] if done else stayed + joined
        return observations, rewards, terminations, truncations, infos

    def _step_fixed_slots(self, slot_rewards, acted, per_agent, terminated, truncated, outcome, done):
        """``step``'s result in the fixed-slot view: every slot reported; empty slots get reward 0."""
        reported = list(self.possible_agents)
        if not per_agent:  # the team reward goes to the slots that acted; empty ones get 0
            slot_rewards = np.where(acted, slot_rewards, 0.0)
        observations = {a: self._observe(self._obs, a) for a in reported}
        rewards = {a: float(slot_rewards[self.agent_slot[a]]) for a in reported}
        terminations = dict.fromkeys(reported, bool(terminated[0]))
        truncations = dict.fromkeys(reported, bool(truncated[0]))
        infos = {a: {k: outcome.get(k, False) for k in self._outcome_keys} for a in reported}
        self.agents = [] if done else reported
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
        view = {
            "entities": obs["entities"] * mask[:, None].astype(np.float32),  # unseen rows -> 0
            "obs_mask": mask.copy(),
            "attributes": obs["attributes"][i].copy(),
            "action_mask": obs["avail_actions"][i].astype(np.int8),
        }
        if self.fixed_slots:
            view["agent_present"] = obs["agent_present"][i : i + 1].copy()
        return view


class _AvailableDiscrete(spaces.Discrete):
    """``Discrete(n)`` whose ``sample()`` without a mask draws among the actions its agent may take now.

    ``current_mask()`` gives that agent's int8 action mask, or None (then any action is drawn).
    A mask or probability passed to ``sample`` is used as given.
    """

    def __init__(self, n, current_mask):
        super().__init__(n)
        self._current_mask = current_mask

    def sample(self, mask=None, probability=None):
        if mask is None and probability is None:
            mask = self._current_mask()
        return super().sample(mask=mask, probability=probability)

    # Copies and pickles leave the env behind: they sample without a mask, like a plain Discrete.
    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_current_mask", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        self._current_mask = _no_mask


def _no_mask():
    return None


def _copy_env0(obs):
    """Env 0 of a VecEnv observation, copied: the runner overwrites its buffers on the next call."""
    return {k: np.array(v[0]) for k, v in obs.items()}

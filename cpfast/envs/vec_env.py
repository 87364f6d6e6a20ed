"""Python facade over a C++ batched runner: validation, views, state access."""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
from gymnasium import spaces

from ..spec import EnvSpec

STATE_ENV_KEY = "env"  # get_state's entry naming the environment the state belongs to
OBS_KEYS = ("entities", "attributes", "agent_present", "entity_present", "obs_mask", "full_mask", "avail_actions")


class VecEnv:
    """N environments of one kind stepped together by a C++ runner (docs/interface.md §4).

    Arrays returned by ``reset`` and ``step`` (observations, rewards, flags and ``info``) are
    read-only numpy **views of the runner's buffers**: the next ``reset`` or ``step``
    overwrites them in place. Copy what you want to keep (``np.array(x)``, or
    ``{k: v.copy() for k, v in obs.items()}``).

    ``info["final"]`` holds the final observation of every env whose episode ended in this
    step (rows where ``terminated | truncated``); other rows are stale. Envs auto-reset in
    the same step, so ``obs`` is already the next episode's first observation there.

    ``terminated`` and ``truncated`` are bool arrays [num_envs]. ``observation_space`` and
    ``action_space`` are gymnasium spaces of the batched arrays (``single_observation_space``,
    ``single_action_space``: one env's).
    """

    def __init__(
        self,
        spec: EnvSpec,
        runner_cls: type,
        *,
        num_envs: int,
        seed: int,
        num_threads: int | None,
        eval_seed: int | None,
        zero_shot_table: np.ndarray | None,
        renderer: Callable[[dict[str, np.ndarray]], np.ndarray] | None,
        params: dict[str, float] | None = None,
        agent_rewards: bool = True,
    ):
        # The runner takes C ints and uint64s: check here, with the argument's name, what pybind
        # would otherwise reject with its overload listing (or accept: True as 1).
        if not _is_int(num_envs) or not 1 <= num_envs < 2**31:
            raise ValueError(f"num_envs must be an integer in [1, 2**31), got {num_envs!r}")
        if num_threads is None:
            num_threads = os.cpu_count() or 1
        if not _is_int(num_threads) or not 1 <= num_threads < 2**31:
            raise ValueError(f"num_threads must be an integer in [1, 2**31), got {num_threads!r}")
        for label, value, optional in (("seed", seed, False), ("eval_seed", eval_seed, True)):
            if (value is not None or not optional) and (not _is_int(value) or not 0 <= value < 2**64):
                raise ValueError(f"{label} must be an integer in [0, 2**64), got {value!r}")
        self.spec = spec
        self.num_envs = int(num_envs)
        self.num_threads = min(int(num_threads), self.num_envs)
        self.params = dict(params or {})  # the environment options given to make_env
        self._renderer = renderer
        self._runner_cls, self._zero_shot_table, self._eval_seed = runner_cls, zero_shot_table, eval_seed
        self._agent_rewards = bool(agent_rewards)
        self._bind_runner(int(seed))
        self._state_fields = {
            name: (np.dtype(dtype), tuple(shape), lo, hi) for name, dtype, shape, lo, hi in runner_cls.state_fields()
        }
        # gymnasium spaces of the batched arrays: observations are a Dict of Boxes shaped like
        # ``reset``'s arrays ([num_envs, ...]); actions a MultiDiscrete [num_envs, max_agents].
        # The single_* spaces describe one env (gymnasium's VectorEnv convention).
        self.single_observation_space = spaces.Dict(
            {key: _box(view.shape[1:], view.dtype) for key, view in self._obs.items()}
        )
        self.observation_space = spaces.Dict({key: _box(view.shape, view.dtype) for key, view in self._obs.items()})
        self.single_action_space = spaces.MultiDiscrete(np.full(spec.max_agents, spec.n_actions, dtype=np.int64))
        self.action_space = spaces.MultiDiscrete(np.full((self.num_envs, spec.max_agents), spec.n_actions,
                                                         dtype=np.int64))

    def _bind_runner(self, seed: int) -> None:
        """Builds the C++ runner for ``seed`` and binds read-only views of its buffers."""
        self._runner = self._runner_cls(self.num_envs, seed, self.num_threads, self.spec.composition,
                                        self._zero_shot_table, self._eval_seed, self.params)
        buffers = self._runner.buffers()
        for views in (buffers["obs"], buffers["final"]):
            for view in views.values():
                view.setflags(write=False)
        # Env-specific info: per-agent rewards (only where the env has them: a runner may carry
        # an unused buffer, which is not exposed) and per-step counters.
        extra_info = dict(buffers["info"])
        if self._agent_rewards and "agent_rewards" in buffers:
            extra_info["agent_rewards"] = buffers["agent_rewards"]
        for view in (*extra_info.values(), *(buffers[k] for k in ("reward", "terminated", "truncated", "episode_step",
                                                                  "episode_return", "episode_length"))):
            view.setflags(write=False)
        self._obs = buffers["obs"]
        self._reward = buffers["reward"]
        # The runner writes 0/1 bytes: bool views of the same memory (no copy).
        self._terminated = buffers["terminated"].view(np.bool_)
        self._truncated = buffers["truncated"].view(np.bool_)
        self._info = {
            "final": buffers["final"],
            "episode_step": buffers["episode_step"],
            "episode_return": buffers["episode_return"],
            "episode_length": buffers["episode_length"],
            **extra_info,
        }
        self._needs_reset = True

    # ------------------------------------------------------------------ stepping
    def reset(self, env_ids=None, episode_seeds=None, seed=None) -> dict[str, np.ndarray]:
        """Resets ``env_ids`` (all by default); ``episode_seeds`` sets their evaluation episode index k.

        ``seed`` re-seeds every env as ``make_env(..., seed=seed)`` does (a fresh runner with the
        same options and ``eval_seed``): the episodes that follow are exactly those of a new env
        built with that seed. It resets every env, so it cannot be combined with ``env_ids``;
        arrays returned before belong to the old runner and are no longer updated. Every
        argument is checked before anything changes.
        """
        if seed is not None:
            if not _is_int(seed) or not 0 <= seed < 2**64:
                raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
            if env_ids is not None:
                raise ValueError("seed re-seeds every env: it cannot be combined with env_ids")
        ids = None
        if env_ids is not None:
            ids = np.asarray(env_ids)
            if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
                raise ValueError(f"env_ids must be a 1-D integer array, got shape {ids.shape} dtype {ids.dtype}")
            if ids.size and (ids.min() < 0 or ids.max() >= self.num_envs):
                raise ValueError(f"env_ids must lie in [0, {self.num_envs}), got {ids.tolist()}")
            if len(np.unique(ids)) != len(ids):
                raise ValueError("env_ids must not repeat an env")
            if self._needs_reset and len(np.unique(ids)) != self.num_envs:
                raise ValueError("the first reset must reset every env")
            ids = ids.astype(np.int32)
        if episode_seeds is not None:
            seeds = np.asarray(episode_seeds)
            expected = self.num_envs if ids is None else len(ids)
            # Episode indices are int64 in the runner, where a negative one means "training
            # episode": one of 2**63 or more would wrap there and be silently ignored.
            if (seeds.shape != (expected,) or not np.issubdtype(seeds.dtype, np.integer) or (seeds < 0).any()
                    or (seeds > np.iinfo(np.int64).max).any()):
                raise ValueError(f"episode_seeds must be {expected} integers in [0, 2**63), got {seeds!r}")
            episode_seeds = seeds.astype(np.int64)
        if seed is not None:
            self._bind_runner(int(seed))
        self._runner.reset(ids, episode_seeds)
        self._needs_reset = False
        return self._obs

    def step(self, actions):
        """Steps every env: returns ``(obs, reward, terminated, truncated, info)`` (views, see class doc)."""
        self._check_reset()
        self._runner.step(self._validate_actions(actions))
        return self._obs, self._reward, self._terminated, self._truncated, self._info

    def check_actions(self, actions) -> np.ndarray:
        """The checks ``step`` makes of ``actions`` (shape, dtype, range, availability), without
        stepping: for a backend that plays them elsewhere. Returns them as the runner takes them."""
        self._check_reset()
        a = self._validate_actions(actions)
        self._runner.check_actions(a)
        return a

    def step_external(self, i: int, world: dict[str, Any]):
        """One step of env ``i`` whose world moved outside the simulator (the real game): ``world``
        (any of ``get_state``'s keys, converted and checked as ``set_state`` does) is the state
        after the step. The env scores the step with its own rules (reward, end, outcome flags)
        and auto-resets as ``step`` does; returns ``step``'s views. Only envs that can score such
        steps have it (the StarCraft scenarios)."""
        if not hasattr(self._runner, "step_external"):
            raise NotImplementedError(f"{self.spec.name} cannot score a step made outside it")
        self._check_reset()
        i = self._check_index(i)
        self._runner.step_external(i, self._convert_state(world, "world"))
        return self._obs, self._reward, self._terminated, self._truncated, self._info

    def _check_reset(self) -> None:
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")

    def _validate_actions(self, actions) -> np.ndarray:
        """Shape and dtype here; values (range, availability) in the C++ runner, which checks
        every action before any env changes and raises ValueError naming the first bad one."""
        a = np.asarray(actions)
        expected = (self.num_envs, self.spec.max_agents)
        if a.shape != expected:
            raise ValueError(f"actions must have shape {expected} [num_envs, max_agents], got {a.shape}")
        if not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"actions must be an integer array, got dtype {a.dtype}")
        if a.dtype != np.int32 or not a.flags.c_contiguous:
            if a.dtype == np.uint64 and (a > np.iinfo(np.int64).max).any():
                raise ValueError(f"actions must lie in [0, {self.spec.n_actions}), got {a.max()}")
            a = np.ascontiguousarray(a, dtype=np.int64)
        return a

    @property
    def observation(self) -> dict[str, np.ndarray]:
        """The current observation (the views ``reset``/``step`` returned, kept up to date,
        also after ``set_state``)."""
        return self._obs

    @property
    def info(self) -> dict[str, Any]:
        """The ``info`` dict ``step`` returns (views, kept up to date; its keys are fixed from the start)."""
        return self._info

    # ------------------------------------------------------------------ state
    def _check_index(self, i) -> int:
        if not _is_int(i) or not 0 <= i < self.num_envs:
            raise ValueError(f"env index must be an integer in [0, {self.num_envs}), got {i!r}")
        return int(i)

    def get_state(self, i: int) -> dict[str, np.ndarray]:
        """Complete state of env ``i`` (copies): world, counters and both RNG states, and under
        ``"env"`` the environment's name (a 0-d string array), which ``set_state`` checks."""
        state = self._runner.get_state(self._check_index(i))
        state[STATE_ENV_KEY] = np.array(self.spec.name)
        return state

    def set_state(self, i: int, state: dict[str, Any]) -> None:
        """Replaces the given parts of env ``i``'s state; validates everything first.

        Any subset of ``get_state``'s keys is accepted. Values are converted by value (any
        integer or bool dtype for flags and counters, any real dtype for positions); unknown
        keys, wrong shapes and out-of-range values raise ``ValueError`` and change nothing.
        The env's current observation is rewritten from the new state.
        """
        i = self._check_index(i)
        self._runner.set_state(i, self._convert_state(state, "state"))

    def _convert_state(self, state, label: str) -> dict[str, np.ndarray]:
        """``state`` (a subset of get_state's keys) checked and converted for the runner."""
        if not isinstance(state, dict):
            raise ValueError(f"{label} must be a dict of arrays, got {type(state).__name__}")
        if STATE_ENV_KEY in state:
            # Two environments can share every key and shape (the StarCraft scenarios): the name
            # is what tells their states apart. A state without it (a subset) is taken as is.
            source = state[STATE_ENV_KEY]
            source = source.item() if isinstance(source, np.ndarray) and source.ndim == 0 else source
            if not isinstance(source, str) or source != self.spec.name:
                raise ValueError(f"state is from environment {source!r}, not {self.spec.name!r}: it cannot be loaded "
                                 "here")
        return {key: self._convert_state_value(key, value) for key, value in state.items() if key != STATE_ENV_KEY}

    def _convert_state_value(self, key: str, value) -> np.ndarray:
        if key not in self._state_fields:
            raise ValueError(f"unknown state key {key!r}; known keys: {', '.join(self._state_fields)}")
        dtype, shape, lo, hi = self._state_fields[key]
        arr = np.asarray(value)
        if arr.shape != shape:
            raise ValueError(f"state key {key!r} must have shape {shape}, got {arr.shape}")
        if dtype.kind == "f":
            if arr.dtype.kind not in "fiub":
                raise ValueError(f"state key {key!r} must be real numbers, got dtype {arr.dtype}")
            as_float = arr.astype(np.float64)
            if not np.isfinite(as_float).all() or (as_float < lo).any() or (as_float > hi).any():
                raise ValueError(f"state key {key!r} must be finite and within [{lo}, {hi}], got {arr.tolist()}")
            return np.ascontiguousarray(as_float, dtype=dtype)
        if arr.dtype.kind not in "iub":
            raise ValueError(f"state key {key!r} must be an integer or bool array, got dtype {arr.dtype}")
        if dtype == np.uint64:  # a generator state: any 64-bit words but not all zero
            if (arr.dtype.kind == "i" and (arr < 0).any()) or not arr.any():
                raise ValueError(f"state key {key!r} must be four unsigned 64-bit words, not all zero")
            return np.ascontiguousarray(arr, dtype=dtype)
        if (arr < lo).any() or (arr > hi).any():
            raise ValueError(f"state key {key!r} must lie in [{int(lo)}, {int(hi)}], got {arr.tolist()}")
        return np.ascontiguousarray(arr, dtype=dtype)

    # ------------------------------------------------------------------ misc
    def render(self, i: int = 0) -> np.ndarray:
        """RGB uint8 image [H, W, 3] of env ``i``."""
        if self._renderer is None:
            raise NotImplementedError(f"{self.spec.name} has no renderer")
        return self._renderer(self.get_state(self._check_index(i)))

    def close(self) -> None:
        self._runner = None

    def __repr__(self) -> str:
        s = self.spec
        return f"VecEnv({s.name!r}, composition={s.composition!r}, num_envs={self.num_envs}, num_threads={self.num_threads})"


def _is_int(value) -> bool:
    """An integer that is not a bool (True would otherwise pass as 1)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _box(shape, dtype) -> spaces.Box:
    """A Box for one observation array: masks and flags are 0/1, real features unbounded."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return spaces.Box(-np.inf, np.inf, tuple(shape), dtype)
    return spaces.Box(0, 1, tuple(shape), dtype)

"""What the harness plays: its configuration and episode records, the two kinds of backend
(the C++ simulator with given parameters, the real game) and the episode loop."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..envs.episodes import OUTCOMES as EPISODE_OUTCOMES, episode_outcomes
from ..envs.registry import REGISTRY, env_facts, make_env
from ..envs.sc2 import make_sc2_env
from ..policies import RandomPolicy, ScriptedFocusFirePolicy

BackendFactory = Callable[..., object]  # factory(name, num_envs=, composition=, eval_seed=) -> env
OUTCOMES = ("win", "loss", "draw", "timeout")  # the env's outcomes (envs.episodes.OUTCOMES) and time-outs, in report order
POLICIES = ("random", "focus_fire", "focus_fire_nearest")

# The default search grid of ``fit`` (simulator defaults included in every row). Ranges bracket
# the simulator's documented guesses (docs/environments.md, StarCraft): scan and leash around
# §7's 5 and 2, separation around 0.5, spawn gaps from touching to loose, weapon scales around 1
# including 1/1.4 and 1.4 (game seconds mistaken for real seconds at "Faster" speed, §1). An
# enemy Medivac escorts at the slowest friendly speed (2.25 gs with Marines or Marauders alive,
# §7 item 5), so its own speed only shows below that.
DEFAULT_GRID: dict[str, tuple[float, ...]] = {
    "enemy_scan": (4.0, 5.0, 6.0, 7.0),
    "enemy_leash": (0.0, 1.0, 2.0, 3.0, 4.0),
    "separation_firmness": (0.25, 0.5, 0.75, 1.0),
    "spawn_gap": (0.0, 0.1, 0.3, 0.6),
    "damage_scale": (0.8, 0.9, 1.0, 1.1, 1.2),
    "cooldown_scale": (1 / 1.4, 0.85, 1.0, 1.15, 1.4),
    "failed_order": (0.0, 1.0),
    "enemy_medivac_speed": (1.75, 2.0, 2.25, 2.75),
}
# Parameters without effect in a scenario: 3-8sz has no air units, so no failed attack orders and
# no Medivacs.
_INERT = {"sc2_3-8sz": ("failed_order", "enemy_medivac_speed")}


def default_grid(name: str) -> dict[str, tuple[float, ...]]:
    """``DEFAULT_GRID`` without the parameters that cannot matter in scenario ``name``."""
    return {k: v for k, v in DEFAULT_GRID.items() if k not in _INERT.get(name, ())}


@dataclass(frozen=True)
class CalibrationConfig:
    """What both backends play: every (composition, policy) pair for ``episodes`` evaluation episodes."""

    name: str = "sc2_3-8sz"
    compositions: tuple[int, ...] | None = None  # None: all of the scenario's enumerated compositions
    episodes: int = 8  # per composition and policy: evaluation episodes k = 0 .. episodes-1
    eval_seed: int = 7000
    policies: tuple[str, ...] = ("random", "focus_fire")
    policy_seed: int = 0  # the random policy's seed (combined with the composition index)
    num_envs: int | None = None  # envs stepped together (None: min(episodes, 32)); 1 game each on SC2

    def __post_init__(self):
        if self.name not in ("sc2_3-8sz", "sc2_3-8MMM"):
            raise ValueError(f"calibration plays sc2_3-8sz or sc2_3-8MMM, not {self.name!r}")
        bad = [p for p in self.policies if p not in POLICIES]
        if bad or not self.policies:
            raise ValueError(f"unknown policies {bad}; expected some of {', '.join(POLICIES)}")
        if self.episodes < 1 or (self.num_envs is not None and self.num_envs < 1):
            raise ValueError("episodes and num_envs must be positive")
        n = self.n_compositions
        if self.compositions is not None and (not self.compositions or any(not 0 <= c < n for c in self.compositions)):
            raise ValueError(f"compositions must be indices in [0, {n}), got {self.compositions}")

    @property
    def n_compositions(self) -> int:
        return len(REGISTRY[self.name].compositions) - 1  # "train" plus one entry per index

    def composition_list(self) -> tuple[int, ...]:
        return tuple(range(self.n_compositions)) if self.compositions is None else tuple(self.compositions)


@dataclass
class Episode:
    """One finished episode of one backend."""

    policy: str
    composition: int
    k: int  # evaluation episode index
    outcome: str  # win | loss | draw | timeout
    length: int
    ret: float
    time_to_kill: list[float] = field(default_factory=list)  # per enemy: death step, inf if it survived

    @property
    def key(self) -> tuple[str, int, int]:
        return self.policy, self.composition, self.k


def sim_backend(num_threads: int = 1, **params: float) -> BackendFactory:
    """The C++ simulator with the given *calibrate* parameters (validated here, naming the option)."""

    def factory(name, num_envs, composition, eval_seed):
        return make_env(name, num_envs=num_envs, seed=0, composition=composition, num_threads=num_threads,
                        eval_seed=eval_seed, **params)

    make_env("sc2_3-8sz", num_envs=1, num_threads=1, **params)  # checks them now (both scenarios take the same)
    factory.label = "sim" + "".join(f" {k}={v:g}" for k, v in sorted(params.items()))
    return factory


def sc2_backend() -> BackendFactory:
    """The real game (``cpfast.envs.sc2``); building an env raises ``SC2Unavailable`` without it."""

    def factory(name, num_envs, composition, eval_seed):
        return make_sc2_env(name, num_envs=num_envs, seed=0, composition=str(composition), eval_seed=eval_seed)

    factory.label = "sc2"
    return factory


def _make_policy(policy: str, spec, seed: int):
    if policy == "random":
        return RandomPolicy(spec, seed)
    return ScriptedFocusFirePolicy(spec, "nearest" if policy == "focus_fire_nearest" else "lowest_health")


_OUTCOME_NAMES = {flag: rate.removesuffix("_rate") for flag, rate in EPISODE_OUTCOMES.items()}  # battle_won -> win


def _play(env, policy, policy_name: str, composition: int, episodes: int) -> list[Episode]:
    """Steps ``env`` (evaluation-seeded: env i's j-th episode is k = i + j * num_envs) until episodes
    0 .. episodes-1 have finished; time to kill from the health column of the enemy entity rows."""
    spec, b = env.spec, env.num_envs
    n_a = spec.max_agents
    col = int(env_facts(spec.name)["col_health"])  # docs/environments.md, StarCraft §9
    obs = env.reset()
    k = np.arange(b)
    exists = np.array(obs["entity_present"][:, n_a:] != 0)
    death = np.full(exists.shape, -1, np.int64)
    steps = np.zeros(b, np.int64)
    ret = np.zeros(b)
    out = []
    while (k < episodes).any():
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        done = (np.asarray(terminated) | np.asarray(truncated)) != 0
        steps += 1
        ret += reward
        ents = np.where(done[:, None, None], info["final"]["entities"], obs["entities"])
        alive = ents[:, n_a:, col] > 0
        newly = exists & ~alive & (death < 0)
        death[newly] = np.broadcast_to(steps[:, None], death.shape)[newly]
        for i in np.flatnonzero(done):
            if k[i] < episodes:
                # The env's own outcome flags (both backends set them; StarCraft §8). battle_draw
                # also covers time-outs, which the harness keeps apart.
                outcome = "timeout" if info["timeout"][i] else _OUTCOME_NAMES[episode_outcomes(info, [i])[0]]
                ttk = [float(d) if d >= 0 else math.inf for d in death[i][exists[i]]]
                out.append(Episode(policy_name, composition, int(k[i]), outcome, int(steps[i]), float(ret[i]), ttk))
            k[i] += b
            exists[i] = obs["entity_present"][i, n_a:] != 0
            death[i] = -1
            steps[i] = 0
            ret[i] = 0.0
    return out


def run_backend(factory: BackendFactory, config: CalibrationConfig) -> list[Episode]:
    """Plays every (composition, policy) pair of ``config`` on one backend."""
    episodes = []
    num_envs = config.num_envs or min(config.episodes, 32)
    for c in config.composition_list():
        for policy_name in config.policies:
            env = factory(config.name, num_envs=num_envs, composition=c, eval_seed=config.eval_seed)
            try:
                policy = _make_policy(policy_name, env.spec, config.policy_seed * 1_000_003 + c)
                episodes += _play(env, policy, policy_name, c, config.episodes)
            finally:
                env.close()
    return sorted(episodes, key=lambda e: e.key)



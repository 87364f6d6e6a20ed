"""Optional real-StarCraft II backend of the StarCraft scenarios (docs/environments.md, StarCraft §12).

``make_sc2_env("sc2_3-8sz" | "sc2_3-8MMM", ...)`` plays REFIL's scenarios on the real game and
returns an object with ``VecEnv``'s interface (``spec``, ``reset``, ``step``, ``observation``,
``render`` is not offered). It needs, all at once:

- an installed StarCraft II (Linux package 4.6.2.69232, REFIL's version) found through ``SC2PATH``;
- ``pysc2`` and ``s2clientprotocol`` (``pip install cpfast[sc2]``);
- REFIL's ``empty_passive.SC2Map`` under ``$SC2PATH/Maps`` (any sub-folder), obtained by the
  user from shariqiqbal2810/REFIL, and oxwhirl's SMAC maps if other maps are wanted.

Without them ``make_sc2_env`` raises ``SC2Unavailable`` naming what is missing. Note: oxwhirl's
StarCraft Multi-Agent Challenge installs from its Git repository (oxwhirl/smac); **the PyPI
package named ``smac`` is SMAC3, an unrelated hyper-parameter optimiser** that must not be
installed for this purpose (it also claims the ``smac`` module name).

One feature path: the game's unit states are written into a simulator env (``step_external``
after a step, ``set_state`` at an episode's start), and that env's C++ code builds the entities,
masks and availability, so both backends give identical arrays for identical unit states.
Composition, placement and tags are drawn by the simulator's reset (same seeds, same teams).
Reward, game end, outcome flags, auto-reset and the action checks are the simulator's own code
too (``VecEnv.step_external``, ``check_actions``).

This backend has not been run against a live game in this repository's CI (no machine here can
install StarCraft II). The calibration harness of StarCraft §12, ``cpfast.sc2_calibration``, plays the
same episodes on this backend and on the simulator and fits the simulator's *calibrate* parameters
(``make_env`` options) to it; its tests run simulator against simulator.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from .registry import env_facts, make_env

SC2_VERSION = "4.6.2.69232"
MAP_NAME = "empty_passive"
# Per simulator unit type (the C++ table, docs/environments.md, StarCraft §4): REFIL's ally "_RL"
# unit id and the stock enemy id.
_FACTS = env_facts("sc2_3-8sz")  # the same unit table serves both scenarios
UNIT_IDS = {t: (int(a), int(e)) for t, (a, e) in enumerate(zip(_FACTS["ally_unit_id"], _FACTS["enemy_unit_id"]))}
ABILITY_STOP, ABILITY_MOVE, ABILITY_ATTACK, ABILITY_HEAL = 4, 16, 23, 386
LOOPS_PER_STEP = 8
MOVE_DISTANCE = 2.0
PYPI_SMAC_NOTE = ("note: the PyPI package named 'smac' is SMAC3, an unrelated hyper-parameter optimiser, not "
                  "oxwhirl's StarCraft Multi-Agent Challenge (which installs from github.com/oxwhirl/smac); "
                  "do not install PyPI 'smac' for this")


class SC2Unavailable(RuntimeError):
    """The real-game backend cannot run here; the message lists what is missing."""


def _find_map(sc2_path: Path) -> Path | None:
    maps = sc2_path / "Maps"
    if not maps.is_dir():
        return None
    return next(iter(maps.rglob(f"{MAP_NAME}.SC2Map")), None)


def missing_requirements() -> list[str]:
    """What the real-game backend lacks on this machine (empty when it can run)."""
    missing = []
    sc2_path = os.environ.get("SC2PATH")
    if not sc2_path:
        missing.append("SC2PATH is not set: install StarCraft II (Linux package "
                       f"{SC2_VERSION} from Blizzard's download page, AI/ML licence) and point SC2PATH at it")
    elif not (Path(sc2_path) / "Versions").is_dir():
        missing.append(f"SC2PATH={sc2_path} holds no StarCraft II installation (no Versions/ folder)")
    elif _find_map(Path(sc2_path)) is None:
        missing.append(f"map {MAP_NAME}.SC2Map not found under {sc2_path}/Maps (get it from shariqiqbal2810/REFIL)")
    for module in ("pysc2", "s2clientprotocol"):
        if importlib.util.find_spec(module) is None:
            missing.append(f"Python package '{module}' is not installed (pip install cpfast[sc2])")
    if importlib.util.find_spec("smac") is not None and importlib.util.find_spec("smac.env") is None:
        missing.append("the installed 'smac' module is not oxwhirl's SMAC (it has no smac.env): probably PyPI "
                       "SMAC3; uninstall it")
    return missing


def available() -> bool:
    return not missing_requirements()


def make_sc2_env(name: str, num_envs: int = 1, seed: int = 0, composition: str = "train",
                 eval_seed: int | None = None, step_mul: int = LOOPS_PER_STEP) -> "SC2VecEnv":
    """The real-game twin of ``cpfast.make_env(name, ...)`` for the StarCraft scenarios."""
    if name not in ("sc2_3-8sz", "sc2_3-8MMM"):
        raise ValueError(f"the real-game backend plays sc2_3-8sz and sc2_3-8MMM, not {name!r}")
    missing = missing_requirements()
    if missing:
        raise SC2Unavailable("the real StarCraft II backend cannot run here:\n  - " + "\n  - ".join(missing)
                             + f"\n{PYPI_SMAC_NOTE}.\nThe C++ simulator needs none of this: cpfast.make_env({name!r}).")
    return SC2VecEnv(name, num_envs, seed, composition, eval_seed, step_mul)


class _Game:
    """One StarCraft II process playing one env through the raw interface."""

    def __init__(self, seed: int):
        from pysc2 import run_configs
        from s2clientprotocol import common_pb2 as common
        from s2clientprotocol import sc2api_pb2 as sc_pb

        self.sc_pb, self.common = sc_pb, common
        self.run_config = run_configs.get(version=SC2_VERSION)
        self.process = self.run_config.start(version=SC2_VERSION, want_rgb=False)
        self.controller = self.process.controller
        map_path = _find_map(Path(os.environ["SC2PATH"]))
        create = sc_pb.RequestCreateGame(
            local_map=sc_pb.LocalMap(map_path=str(map_path), map_data=self.run_config.map_data(str(map_path))),
            realtime=False, random_seed=seed)
        create.player_setup.add(type=sc_pb.Participant)
        create.player_setup.add(type=sc_pb.Computer, race=common.Random, difficulty=sc_pb.VeryEasy)
        self.controller.create_game(create)
        join = sc_pb.RequestJoinGame(race=common.Terran, options=sc_pb.InterfaceOptions(raw=True, score=False))
        self.controller.join_game(join)
        self._debug(self._debug_pb().DebugCommand(game_state=self._debug_pb().control_enemy))

    @staticmethod
    def _debug_pb():
        from s2clientprotocol import debug_pb2

        return debug_pb2

    @staticmethod
    def _raw_pb():
        from s2clientprotocol import raw_pb2

        return raw_pb2

    def _debug(self, *commands):
        self.controller.debug(list(commands))

    def units(self):
        return list(self.controller.observe().observation.raw_data.units)

    def clear(self):
        d = self._debug_pb()
        for _ in range(100):
            tags = [u.tag for u in self.units()]
            if not tags:
                return
            self._debug(d.DebugCommand(kill_unit=d.DebugKillUnit(tag=tags)))
            self.controller.step(2)
        raise RuntimeError("StarCraft II did not remove the previous episode's units")

    def spawn(self, kinds, owners, positions):
        d = self._debug_pb()
        commands = [d.DebugCommand(create_unit=d.DebugCreateUnit(
            unit_type=UNIT_IDS[int(k)][0 if owner == 1 else 1], owner=int(owner),
            pos=self.common.Point2D(x=float(p[0]), y=float(p[1])), quantity=1))
            for k, owner, p in zip(kinds, owners, positions)]
        self._debug(*commands)
        for _ in range(100):
            self.controller.step(1)
            units = self.units()
            if len(units) == len(commands):
                return units
        raise RuntimeError("StarCraft II did not create the episode's units")

    def command(self, commands):
        """commands: (ability, unit_tags, target) with target None, a game unit tag, or an (x, y) point."""
        raw = self._raw_pb()
        actions = []
        for ability, tags, target in commands:
            cmd = raw.ActionRawUnitCommand(ability_id=ability, unit_tags=list(tags), queue_command=False)
            if isinstance(target, tuple):
                cmd.target_world_space_pos.x, cmd.target_world_space_pos.y = target
            elif target is not None:
                cmd.target_unit_tag = target
            actions.append(self.sc_pb.Action(action_raw=raw.ActionRaw(unit_command=cmd)))
        if actions:
            self.controller.actions(self.sc_pb.RequestAction(actions=actions))

    def close(self):
        self.process.close()


class SC2VecEnv:
    """``num_envs`` real games behind the ``VecEnv`` interface (auto-reset in the same step).

    The games only move the units. A simulator twin (``make_env`` with the same arguments) draws
    each episode's composition, placement and tags, takes the game's units after every step
    (``VecEnv.step_external``) and builds every array from them with its own C++ code: the
    observation, the reward, the episode's end and outcome, the auto-reset and the action checks
    are the simulator's, not copies of them."""

    def __init__(self, name: str, num_envs: int, seed: int, composition: str, eval_seed, step_mul: int):
        self._sim = make_env(name, num_envs=num_envs, seed=seed, composition=composition, num_threads=1,
                             eval_seed=eval_seed)
        self.spec, self.num_envs, self.step_mul = self._sim.spec, num_envs, step_mul
        self._games = [_Game(seed + i) for i in range(num_envs)]
        self._game_tag = np.zeros((num_envs, 16), dtype=np.uint64)  # game unit tag of each slot

    @property
    def observation(self):
        return self._sim.observation

    @property
    def info(self):
        return self._sim.info

    def _start_episode(self, i: int) -> None:
        """Puts the twin's new episode (env ``i``) on the game: its units, then the enemy's attack."""
        state = self._sim.get_state(i)
        game = self._games[i]
        game.clear()
        exists = np.flatnonzero(state["unit_type"] >= 0)
        owners = np.where(exists < 8, 1, 2)
        units = game.spawn(state["unit_type"][exists], owners, state["pos"][exists])
        taken = set()
        for slot, owner in zip(exists, owners):  # match each slot to the nearest free unit of its kind
            want = UNIT_IDS[int(state["unit_type"][slot])][0 if owner == 1 else 1]
            candidates = [u for u in units if u.unit_type == want and u.owner == owner and u.tag not in taken]
            best = min(candidates, key=lambda u: (u.pos.x - state["pos"][slot, 0]) ** 2 + (u.pos.y - state["pos"][slot, 1]) ** 2)
            taken.add(best.tag)
            self._game_tag[i, slot] = best.tag
        enemies = [int(self._game_tag[i, s]) for s in exists if s >= 8]
        centroid = tuple(float(v) for v in state["pos"][[s for s in exists if s < 8]].mean(0))
        game.command([(ABILITY_ATTACK, enemies, centroid)])
        self._sim.set_state(i, self._units(i, state))

    def _units(self, i: int, state: dict) -> dict:
        """The game's units of env ``i`` as the twin's state fields (a missing unit is dead)."""
        by_tag = {u.tag: u for u in self._games[i].units()}
        world = {k: state[k].copy() for k in ("alive", "pos", "health", "shield", "energy", "cooldown")}
        for slot in np.flatnonzero(state["unit_type"] >= 0):
            unit = by_tag.get(int(self._game_tag[i, slot]))
            if unit is None or unit.health <= 0:
                world["alive"][slot] = 0
                continue
            world["pos"][slot] = np.clip((unit.pos.x, unit.pos.y), 0.0, 32.0)
            world["health"][slot] = unit.health
            world["shield"][slot] = unit.shield
            world["energy"][slot] = min(unit.energy, 200.0)
            world["cooldown"][slot] = max(unit.weapon_cooldown, 0.0)
        return world

    def reset(self, env_ids=None, episode_seeds=None):
        self._sim.reset(env_ids, episode_seeds)
        for i in (range(self.num_envs) if env_ids is None else env_ids):
            self._start_episode(int(i))
        return self._sim.observation

    def step(self, actions):
        actions = self._sim.check_actions(actions)
        for i in range(self.num_envs):
            state = self._sim.get_state(i)
            game = self._games[i]
            game.command(self._commands(i, state, actions[i]))
            game.controller.step(self.step_mul)
            views = self._sim.step_external(i, self._units(i, state))
            _, _, terminated, truncated, _ = views
            if terminated[i] or truncated[i]:
                self._start_episode(i)  # the twin has drawn the next episode already
        return views

    def _commands(self, i: int, state: dict, actions) -> list:
        """The game's orders for env ``i``'s actions (docs/environments.md, StarCraft §5)."""
        commands = []
        for a in range(8):
            act = int(actions[a])
            if state["unit_type"][a] < 0 or not state["alive"][a] or act == 0:
                continue
            tag = int(self._game_tag[i, a])
            if act == 1:
                commands.append((ABILITY_STOP, [tag], None))
            elif act <= 5:
                dx, dy = ((0, 1), (0, -1), (1, 0), (-1, 0))[act - 2]
                x, y = state["pos"][a]
                commands.append((ABILITY_MOVE, [tag], (float(x + MOVE_DISTANCE * dx), float(y + MOVE_DISTANCE * dy))))
            else:
                target_tag = act - 6
                slots = np.flatnonzero(state["tag"] == target_tag)
                ability = ABILITY_ATTACK if target_tag < 8 else ABILITY_HEAL
                commands.append((ability, [tag], int(self._game_tag[i, slots[0]])))
        return commands

    def close(self) -> None:
        for game in self._games:
            game.close()
        self._games = []


__all__ = ["PYPI_SMAC_NOTE", "SC2Unavailable", "SC2VecEnv", "available", "make_sc2_env", "missing_requirements"]

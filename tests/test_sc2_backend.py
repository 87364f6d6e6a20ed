"""The optional real-StarCraft II backend: a clear error without the game; its rules against a
stand-in game that moves units as the simulator does; a smoke test with the real game."""

import functools

import numpy as np
import pytest

import cpfast
from cpfast.envs import sc2
from cpfast.envs.registry import env_facts


def test_missing_game_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("SC2PATH", raising=False)
    with pytest.raises(sc2.SC2Unavailable) as error:
        sc2.make_sc2_env("sc2_3-8sz")
    message = str(error.value)
    assert "SC2PATH is not set" in message and "4.6.2.69232" in message
    assert "PyPI package named 'smac' is SMAC3" in message and "github.com/oxwhirl/smac" in message
    assert "cpfast.make_env('sc2_3-8sz')" in message
    monkeypatch.setenv("SC2PATH", str(tmp_path))
    assert any("no StarCraft II installation" in m for m in sc2.missing_requirements())
    (tmp_path / "Versions").mkdir()
    assert any("empty_passive.SC2Map not found" in m for m in sc2.missing_requirements())
    with pytest.raises(ValueError, match="plays sc2_3-8sz and sc2_3-8MMM"):
        sc2.make_sc2_env("resource_collection")


@pytest.mark.sc2
@pytest.mark.skipif(not sc2.available(), reason="needs StarCraft II, pysc2 and the maps: "
                    + "; ".join(sc2.missing_requirements()))
def test_real_game_speaks_the_same_interface():
    from cpfast.policies import RandomPolicy

    env = sc2.make_sc2_env("sc2_3-8MMM", num_envs=1, seed=0)
    sim = cpfast.make_env("sc2_3-8MMM", num_envs=1, seed=0, num_threads=1)
    try:
        obs, sim_obs = env.reset(), sim.reset()
        for key in ("agent_present", "entity_present", "attributes"):
            np.testing.assert_array_equal(obs[key], sim_obs[key])  # same composition and tags
        policy = RandomPolicy(env.spec, 0)
        for _ in range(20):
            obs, reward, terminated, truncated, info = env.step(policy(obs))
            assert obs["entities"].shape == (1, 16, env.spec.feat_dim) and np.isfinite(reward).all()
    finally:
        env.close()


class _TwinGame:
    """Stands in for one StarCraft II process: its units are those of a simulator twin, stepped
    with the actions the backend's orders mean. The backend cannot tell it from a game whose
    units move exactly as the simulator's do, so its arrays must then equal the simulator's."""

    TAG0 = 1000  # game tag of slot s: TAG0 + s

    def __init__(self, name, seed):
        self.twin = cpfast.make_env(name, num_envs=1, seed=seed, num_threads=1)
        self.twin.reset()
        self.controller = self
        self.pending = np.zeros((1, 8), np.int64)
        self.final_units = None  # what the game shows between an episode's end and the next spawn

    def _state(self):
        return self.twin.get_state(0)

    def units(self):
        if self.final_units is not None:
            return self.final_units
        state = self._state()
        return [self._unit(s, state["unit_type"][s], state["pos"][s], state["health"][s], state["shield"][s],
                           state["energy"][s], state["cooldown"][s])
                for s in range(16) if state["unit_type"][s] >= 0 and state["alive"][s]]

    def _unit(self, slot, unit_type, pos, health, shield, energy, cooldown):
        from types import SimpleNamespace as NS

        return NS(tag=self.TAG0 + int(slot), owner=1 if slot < 8 else 2, unit_type=sc2.UNIT_IDS[int(unit_type)][int(slot >= 8)],
                  pos=NS(x=pos[0], y=pos[1]), health=health, shield=shield, energy=energy, weapon_cooldown=cooldown)

    def _final_units(self, final_entities, unit_type):
        """The ended episode's last units, read back from the twin's final observation (the twin
        has started the next episode): health and shield to float32 precision."""
        facts = env_facts(self.twin.spec.name)
        col, width = int(facts["col_health"]), int(facts["health_width"])
        units = []
        for s in np.flatnonzero((unit_type >= 0) & (final_entities[:, col] > 0)):
            t = int(unit_type[s])
            shield = final_entities[s, col + 1] * facts["max_shield"][t] if width == 2 else 0.0
            units.append(self._unit(s, t, (0.0, 0.0), final_entities[s, col] * facts["max_health"][t], shield, 0.0, 0.0))
        return units

    def clear(self):
        self.final_units = None

    def spawn(self, kinds, owners, positions):
        state = self._state()
        exists = np.flatnonzero(state["unit_type"] >= 0)
        np.testing.assert_array_equal(kinds, state["unit_type"][exists])  # the backend puts the twin's episode on
        np.testing.assert_array_equal(positions, state["pos"][exists])
        return self.units()

    def command(self, commands):
        state = self._state()
        for ability, tags, target in commands:
            slot = tags[0] - self.TAG0
            if slot >= 8:
                continue  # the enemy's attack order at the start: the twin's enemy acts by itself
            if ability == sc2.ABILITY_STOP:
                self.pending[0, slot] = 1
            elif ability == sc2.ABILITY_MOVE:
                step = np.round((np.array(target) - state["pos"][slot]) / sc2.MOVE_DISTANCE).astype(int).tolist()
                self.pending[0, slot] = 2 + [[0, 1], [0, -1], [1, 0], [-1, 0]].index(step)
            else:
                self.pending[0, slot] = 6 + int(state["tag"][target - self.TAG0])

    def step(self, loops):
        assert loops == sc2.LOOPS_PER_STEP
        before = self._state()
        out = self.twin.step(self.pending)
        if out[2][0] or out[3][0]:
            self.final_units = self._final_units(out[4]["final"]["entities"][0], before["unit_type"])
        self.last = [np.array(x) for x in out[1:4]] + [{k: np.array(v) for k, v in out[4].items() if k != "final"}]
        self.pending[:] = 0
        after = self._state()
        died = (before["alive"] != 0) & (after["alive"] == 0)
        if died.any() and not (out[2][0] or out[3][0]):
            # A dead unit leaves the game's observation: the backend keeps it where it was last
            # seen, where the simulator has it where it died (it enters the position spread).
            pos = after["pos"].copy()
            pos[died] = before["pos"][died]
            self.twin.set_state(0, {"pos": pos})

    def close(self):
        pass


@pytest.mark.parametrize("name", ["sc2_3-8sz", "sc2_3-8MMM"])
def test_the_backend_scores_and_resets_with_the_simulators_own_rules(monkeypatch, name):
    """Against a game whose units move as the simulator's do, the backend gives that
    simulator's observations, rewards, ends, outcome flags and episode returns, across episode
    ends (the next episode drawn as a fresh simulator would)."""
    import cpfast
    from cpfast.policies import RandomPolicy

    games = []
    monkeypatch.setattr(sc2, "_Game", lambda seed: games.append(_TwinGame(name, seed)) or games[-1])
    backend = sc2.SC2VecEnv(name, 1, 7, "train", None, sc2.LOOPS_PER_STEP)
    fresh = cpfast.make_env(name, num_envs=1, seed=7, num_threads=1)
    twin, policy, ends = games[0].twin, RandomPolicy(backend.spec, 0), 0
    obs = backend.reset()
    for key, value in fresh.reset().items():
        np.testing.assert_array_equal(obs[key], value, err_msg=key)
    for _ in range(400):
        for key, value in twin.observation.items():
            np.testing.assert_array_equal(obs[key], value, err_msg=key)
        obs, reward, terminated, truncated, info = backend.step(policy(obs))
        twin_reward, twin_terminated, twin_truncated, twin_info = games[0].last
        # At an episode's end the game's last units came back through float32 (_final_units).
        same = functools.partial(np.testing.assert_allclose, rtol=1e-5) if terminated[0] or truncated[0] \
            else np.testing.assert_array_equal
        same(reward, twin_reward)
        np.testing.assert_array_equal(terminated, twin_terminated)
        np.testing.assert_array_equal(truncated, twin_truncated)
        for key, value in twin_info.items():
            same(info[key], value, err_msg=key)
        ends += int(terminated[0] or truncated[0])
    assert ends >= 2 and reward.dtype == np.float32


def test_the_backend_checks_actions_as_the_simulator_does(monkeypatch):
    monkeypatch.setattr(sc2, "_Game", lambda seed: _TwinGame("sc2_3-8sz", seed))
    backend = sc2.SC2VecEnv("sc2_3-8sz", 1, 0, "train", None, sc2.LOOPS_PER_STEP)
    obs = backend.reset()
    unavailable = np.flatnonzero(obs["avail_actions"][0, 0] == 0)[0]
    before = backend._sim.get_state(0)
    with pytest.raises(ValueError, match="slot 0: action .* is not available"):
        backend.step(np.full((1, 8), unavailable))
    with pytest.raises(ValueError, match="shape"):
        backend.step(np.zeros((2, 8), np.int64))
    after = backend._sim.get_state(0)
    assert all(np.array_equal(before[k], after[k]) for k in before)

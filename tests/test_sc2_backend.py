"""The optional real-StarCraft II backend: a clear error without the game; a smoke test with it."""

import numpy as np
import pytest

from cpfast.envs import sc2


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
    import cpfast
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

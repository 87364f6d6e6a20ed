"""Resource Collection rules in isolation, each set up with set_state."""

import numpy as np

from helpers import make_rc

FAR_RESOURCES = np.array([[0.7, 0.7], [0.7, -0.7], [-0.7, 0.7], [-0.7, -0.7], [0.0, 0.8], [0.0, -0.8]])
NOOP = np.zeros((1, 6), dtype=np.int64)
INVADER_ROW = 13


def scene(agent_pos, attrs=None, resources=FAR_RESOURCES, invader=(0.85, -0.3), invader_alive=1, hold=None):
    """A state with agents at `agent_pos` (the rest absent), resting, holding `hold`."""
    n = len(agent_pos)
    pos = np.zeros((6, 2))
    pos[:n] = agent_pos
    attr = np.full((6, 4), 0.5)
    if attrs is not None:
        attr[:n] = attrs
    lm = np.zeros((8, 2))
    lm[1:7] = resources
    lm[7] = invader
    held = np.zeros(6, dtype=np.int8)
    if hold is not None:
        held[:n] = hold
    return {
        "agent_pos": pos, "agent_vel": np.zeros((6, 2)), "agent_alive": np.arange(6) < n,
        "agent_hold": held, "agent_at": np.full(6, -1), "agent_attr": attr, "lm_pos": lm,
        "lm_alive": [1, 1, 1, 1, 1, 1, 1, invader_alive], "invader_timer": 0, "episode_step": 0,
    }


def step_scene(state, actions=NOOP):
    env = make_rc()
    env.set_state(0, state)
    obs, reward, _, _, info = env.step(actions)
    return env, obs, float(reward[0]), info["agent_rewards"][0].copy(), env.get_state(0)


def test_pickup_rewards_skill_and_shows_one_step_late():
    # Resource 2 is type 2; agent 0 is 0.095 from it (contact starts at 0.09, pick-up within 0.10).
    resources = FAR_RESOURCES.copy()
    resources[1] = [0.3, 0.0]
    env, obs, reward, per_agent, state = step_scene(
        scene([[0.205, 0.0], [-0.5, 0.0]], attrs=[[0.1, 0.9, 0.5, 0.5], [0.5] * 4], resources=resources))
    assert reward == np.float32(9.0) and per_agent[0] == np.float32(9.0) and per_agent[1] == 0
    assert state["agent_hold"][0] == 2 and state["agent_at"][0] == 2
    assert state["lm_alive"][2] == 1 and not np.allclose(state["lm_pos"][2], [0.3, 0.0])  # respawned at once
    row = obs["entities"][0, 0]
    assert row[4] == 1 and row[8] == 1  # this step's output still shows hold nothing, at -1
    obs, *_ = env.step(NOOP)
    row = obs["entities"][0, 0]
    assert row[4 + 2] == 1 and row[8 + 2 + 1] == 1  # the next output shows hold 2, at 2


def test_lower_slot_wins_a_contested_resource():
    resources = FAR_RESOURCES.copy()
    resources[0] = [0.3, 0.0]
    _, _, reward, per_agent, state = step_scene(
        scene([[0.3, -0.095], [0.3, 0.095]], attrs=[[0.9, 0.1, 0.1, 0.5], [0.9, 0.1, 0.1, 0.5]], resources=resources))
    assert per_agent[0] == np.float32(9.0) and per_agent[1] == 0 and reward == np.float32(9.0)
    assert state["agent_hold"].tolist()[:2] == [1, 0] and state["agent_at"].tolist()[:2] == [1, -1]


def test_drop_off_at_home():
    _, _, reward, per_agent, state = step_scene(scene([[0.125, 0.0]], hold=[3]))
    assert reward == 1.0 and per_agent[0] == 1.0
    assert state["agent_hold"][0] == 0 and state["agent_at"][0] == 0


def test_holding_agent_does_not_pick_up():
    resources = FAR_RESOURCES.copy()
    resources[0] = [0.3, 0.0]
    _, _, reward, _, state = step_scene(scene([[0.205, 0.0]], hold=[2], resources=resources))
    assert reward == 0 and state["agent_hold"][0] == 2 and state["agent_at"][0] == -1


def test_catch_invader():
    env, obs, reward, per_agent, state = step_scene(scene([[0.5, 0.0]], invader=(0.575, 0.0)))
    assert reward == 4.0 and state["agent_at"][0] == 4
    assert state["lm_alive"][7] == 0 and np.array_equal(state["lm_pos"][7], [0.0, 0.0])
    assert 0 <= state["invader_timer"] <= 9
    assert obs["entity_present"][0, INVADER_ROW] == 0 and not obs["obs_mask"][0, :, INVADER_ROW].any()


def test_invader_at_home_is_charged_to_first_present_agent_who_may_still_pick_up():
    resources = FAR_RESOURCES.copy()
    resources[0] = [0.3, 0.0]
    state = scene([[0.0, 0.6], [0.205, 0.0]], attrs=[[0.5] * 4, [0.1, 0.1, 0.1, 0.5]], resources=resources,
                  invader=(0.0, -0.11))
    state["agent_alive"] = [0, 1, 0, 0, 0, 0]  # slot 0 absent: slot 1 is the first present agent
    state["agent_pos"][0] = 0
    _, _, reward, per_agent, after = step_scene(state)
    np.testing.assert_allclose(per_agent, [0, -4 + 1, 0, 0, 0, 0], atol=1e-6)
    assert after["lm_alive"][7] == 0 and after["agent_hold"][1] == 1


def test_invader_timer_semantics():
    """Killed in step t with timer k: hidden in outputs t..t+k-1, visible at t+k, moves at t+k+1."""
    env, obs, _, _, state = step_scene(scene([[0.5, 0.0]], invader=(0.575, 0.0)))
    remaining = int(state["invader_timer"])  # k - 1 after this step's count-down
    for _ in range(remaining):
        obs, *_ = env.step(NOOP)
        assert obs["entity_present"][0, INVADER_ROW] == 0
    obs, *_ = env.step(NOOP)
    assert obs["entity_present"][0, INVADER_ROW] == 1
    spawn = env.get_state(0)["lm_pos"][7].copy()
    assert np.abs(spawn).max() == 0.99
    env.step(NOOP)
    moved = env.get_state(0)["lm_pos"][7]
    np.testing.assert_allclose(moved, spawn - 0.05 * spawn / np.linalg.norm(spawn), atol=1e-12)


def test_dead_invader_survives_reset_with_its_timer():
    state = scene([[0.5, 0.0], [-0.5, 0.0]], invader_alive=0)
    state.update(invader_timer=6, episode_step=144, team_size_counter=2)
    env = make_rc()
    env.set_state(0, state)
    obs, _, _, truncated, _ = env.step(NOOP)
    assert truncated[0] == 1
    after = env.get_state(0)
    assert obs["entity_present"][0, INVADER_ROW] == 0 and after["lm_alive"][7] == 0
    assert after["invader_timer"] == 5  # counted down once in the final step, not reset
    assert np.abs(after["lm_pos"][7]).max() == 0.99  # yet its position was redrawn
    assert obs["agent_present"][0].sum() == 3  # rotation 2 -> 3


def test_team_size_rotates_2_3_4():
    env = make_rc(num_envs=3)
    sizes = [env.reset()["agent_present"].sum(axis=1).tolist() for _ in range(6)]
    # make_rc already reset once (size 2), so these continue 3, 4, 2, ...
    assert sizes == [[3] * 3, [4] * 3, [2] * 3, [3] * 3, [4] * 3, [2] * 3]


def test_reset_skips_the_preceding_resource_in_its_distance_check():
    env = make_rc(num_envs=256, seed=3)
    adjacent_close = 0
    for _ in range(40):
        env.reset()
        for i in range(env.num_envs):
            lm = env.get_state(i)["lm_pos"][1:7]
            gaps = np.linalg.norm(lm[:, None] - lm[None], axis=-1)
            for j in range(6):
                for k in range(j):
                    if k == j - 1:
                        adjacent_close += gaps[j, k] < 0.1
                    else:
                        assert gaps[j, k] >= 0.1
            radius = np.linalg.norm(lm, axis=1)
            assert (radius >= 0.4).all() and (radius <= 0.95).all()
    assert adjacent_close > 0


def test_absent_slot_actions_are_ignored():
    state = scene([[0.3, 0.3]])
    env_a, obs_a, *_ = step_scene(state, NOOP)
    env_b, obs_b, *_ = step_scene(state, np.array([[0, 4, 3, 2, 1, 4]]))
    np.testing.assert_array_equal(obs_a["entities"], obs_b["entities"])

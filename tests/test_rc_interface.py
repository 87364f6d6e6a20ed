"""The common interface on Resource Collection: determinism, invariants, compositions,
seeding, episode bookkeeping and input validation."""

import numpy as np
import pytest

import cpfast
from cpfast.envs.tables import rc_zero_shot_table
from cpfast.policies import RandomPolicy
from helpers import copy_obs, make_rc

COMPOSITIONS = ("train", "n5", "n6", "dynamic")
TRAIN_P, TRAIN_S = {0.1, 0.5, 0.9}, {0.3, 0.5, 0.7}


def rollout(env, steps, seed=0):
    """Random rollout; returns the list of (obs, reward, truncated, agent_rewards) copies."""
    policy = RandomPolicy(env.spec, seed)
    obs = env.reset()
    trace = [copy_obs(obs)]
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        trace.append(copy_obs(obs) | {"reward": reward.copy(), "truncated": truncated.copy(),
                                      "agent_rewards": info["agent_rewards"].copy(),
                                      "final_entities": info["final"]["entities"].copy()})
    return trace


@pytest.mark.parametrize("composition", COMPOSITIONS)
def test_interface_invariants(composition):
    env = make_rc(num_envs=6, seed=3, composition=composition, num_threads=2)
    absent_row = np.zeros(14, dtype=np.float32)
    absent_row[[4, 8]] = 1
    for t, obs in enumerate(rollout(env, 400)):
        present, ent_present = obs["agent_present"].astype(bool), obs["entity_present"].astype(bool)
        np.testing.assert_array_equal(ent_present[:, :6], present)
        np.testing.assert_array_equal(obs["full_mask"], present[:, :, None] & ent_present[:, None, :])
        assert (obs["obs_mask"] <= obs["full_mask"]).all()
        diag = obs["obs_mask"][:, np.arange(6), np.arange(6)]
        np.testing.assert_array_equal(diag, present)
        assert ent_present[:, 6:13].all()  # home and the six resources always exist
        avail = obs["avail_actions"]
        assert (avail[present] == 1).all() and (avail[~present] == [1, 0, 0, 0, 0]).all()
        np.testing.assert_array_equal(obs["entities"][:, :6][~present], np.broadcast_to(absent_row, (np.sum(~present), 14)))
        assert not obs["entities"][:, 6:, 7:].any()
        if t:
            np.testing.assert_allclose(obs["agent_rewards"].sum(axis=1), obs["reward"], atol=1e-5)
            assert (obs["agent_rewards"][~present] == 0).all() or composition == "dynamic"


def test_train_composition_sizes_and_attribute_grid():
    env = make_rc(num_envs=4, seed=5)
    for expected in (3, 4, 2, 3):
        obs = env.reset()
        assert (obs["agent_present"].sum(axis=1) == expected).all()
        assert (obs["agent_present"][:, :expected] == 1).all()
        attr = obs["attributes"].astype(np.float64).round(6)
        assert set(attr[..., :3].ravel()) <= TRAIN_P and set(attr[..., 3].ravel()) <= TRAIN_S


@pytest.mark.parametrize("composition,size", [("n5", 5), ("n6", 6)])
def test_fixed_size_compositions_use_the_zero_shot_table(composition, size):
    env = cpfast.make_env("resource_collection", num_envs=3, composition=composition, eval_seed=123)
    table = rc_zero_shot_table()
    for j in range(3):  # env i's j-th episode is k = i + 3 j
        obs = env.reset()
        assert (obs["agent_present"].sum(axis=1) == size).all()
        for i in range(3):
            np.testing.assert_array_equal(obs["attributes"][i], table[i + 3 * j].astype(np.float32))
    obs = env.reset(episode_seeds=[998, 999, 1000])  # explicit k, row k mod 1000
    for i, row in enumerate((998, 999, 0)):
        np.testing.assert_array_equal(obs["attributes"][i], table[row].astype(np.float32))


def test_zero_shot_table_is_the_documented_generation():
    from cpfast.envs.tables import generate_rc_zero_shot_table

    table = rc_zero_shot_table()
    np.testing.assert_array_equal(table, generate_rc_zero_shot_table())
    assert table.shape == (1000, 6, 4)
    assert table[..., :3].min() >= 0 and table[..., :3].max() < 1
    assert table[..., 3].min() >= 0.2 and table[..., 3].max() < 0.8


def dynamic_sizes(seed_policy, eval_seed=42, episodes=3):
    """Team sizes [episodes, 146, envs]: at the start and after each step (final obs at the end)."""
    env = cpfast.make_env("resource_collection", num_envs=2, composition="dynamic", eval_seed=eval_seed)
    policy = RandomPolicy(env.spec, seed_policy)
    obs = env.reset()
    sizes = np.zeros((episodes, 146, 2), dtype=np.int64)
    for e in range(episodes):
        sizes[e, 0] = obs["agent_present"].sum(axis=1)
        for t in range(1, 146):
            obs, _, _, truncated, info = env.step(policy(obs))
            shown = info["final"] if t == 145 else obs
            assert truncated.all() == (t == 145)
            sizes[e, t] = shown["agent_present"].sum(axis=1)
            absent = shown["agent_present"] == 0
            assert not shown["obs_mask"][absent].any() and not shown["full_mask"][absent].any()
            assert not shown["full_mask"][:, :, :6].transpose(0, 2, 1)[absent].any()
    return sizes


def test_dynamic_joins_and_leaves_every_tenth_step():
    sizes = dynamic_sizes(seed_policy=0)
    assert sizes.min() >= 4 and sizes.max() <= 6
    assert (sizes[:, 0] == 4).all()
    changes = np.diff(sizes, axis=1)  # changes[:, k - 1]: the change made by step k
    for k in range(1, 146):
        expected_event = k % 10 == 0 and k < 145
        assert (np.abs(changes[:, k - 1]) == int(expected_event)).all(), f"step {k}"
    assert (changes > 0).any() and (changes < 0).any()


def test_dynamic_schedule_does_not_depend_on_the_policy():
    np.testing.assert_array_equal(dynamic_sizes(seed_policy=0), dynamic_sizes(seed_policy=1))


def test_eval_episode_numbering_matches_explicit_episode_seeds():
    numbered = cpfast.make_env("resource_collection", num_envs=4, composition="n5", eval_seed=9)
    numbered.reset()
    second = numbered.reset()  # env i's second episode is k = i + 4
    explicit = make_rc(num_envs=1, composition="n5", eval_seed=9)
    first_of_k5 = explicit.reset(episode_seeds=[5])
    for key in ("entities", "attributes", "agent_present"):
        np.testing.assert_array_equal(second[key][1], first_of_k5[key][0])


def test_episode_bookkeeping():
    env = make_rc(num_envs=3, seed=1)
    policy = RandomPolicy(env.spec, 1)
    obs = env.reset()
    total = np.zeros(3)
    for t in range(1, 146):
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        total += reward
        assert not terminated.any()
        if t < 145:
            assert not truncated.any() and (info["episode_step"] == t).all()
    assert truncated.all() and (info["episode_length"] == 145).all() and (info["episode_step"] == 0).all()
    np.testing.assert_allclose(info["episode_return"], total, rtol=1e-5, atol=1e-3)


def test_random_policy_matches_reference_reward_scale():
    """Reference: -4.38 +- 0.35 s.e. on the training mix; -9.84 / -4.17 / +1.04 per size."""
    from cpfast.envs.episodes import run_episodes

    env = make_rc(num_envs=60, seed=2024, num_threads=2)
    result = run_episodes(env, RandomPolicy(env.spec, 2024), 1500)
    returns, sizes = result["returns"], result["team_sizes"]
    se = returns.std() / np.sqrt(len(returns))
    assert abs(returns.mean() - (-4.38)) < 3.5 * np.hypot(se, 0.35)
    for size, reference in ((2, -9.84), (3, -4.17), (4, 1.04)):
        part = returns[sizes == size]
        se_part = part.std() / np.sqrt(len(part))
        assert abs(part.mean() - reference) < 4 * np.hypot(se_part, 0.35 * np.sqrt(3)), (size, part.mean())


# ---------------------------------------------------------------------------- bad input
def test_unknown_env_and_composition_raise():
    with pytest.raises(ValueError, match="unknown environment 'nope'"):
        cpfast.make_env("nope")
    with pytest.raises(ValueError, match="unknown composition 'n7'"):
        cpfast.make_env("resource_collection", composition="n7")
    with pytest.raises(ValueError, match="num_envs"):
        cpfast.make_env("resource_collection", num_envs=0)


@pytest.mark.parametrize(
    "patch,message",
    [
        ({"no_such_key": 1}, "unknown state key 'no_such_key'"),
        ({"agent_pos": np.zeros((5, 2))}, r"agent_pos.*shape \(6, 2\)"),
        ({"agent_hold": [7, 0, 0, 0, 0, 0]}, r"agent_hold.*\[0, 3\]"),
        ({"agent_at": [0, 0, 0, 0, 0, -2]}, "agent_at"),
        ({"agent_pos": np.full((6, 2), np.nan)}, "agent_pos.*finite"),
        ({"lm_alive": np.full(8, 0.5)}, "lm_alive.*integer"),
        ({"invader_timer": 11}, "invader_timer"),
        ({"world_rng": np.zeros(4, dtype=np.uint64)}, "world_rng"),
        ({"agent_vel": "fast"}, "agent_vel"),
    ],
)
def test_bad_set_state_raises_and_changes_nothing(patch, message):
    env = make_rc(num_envs=2)
    before = env.get_state(1)
    good_part = {"agent_pos": np.full((6, 2), 0.3)}
    with pytest.raises(ValueError, match=message):
        env.set_state(1, good_part | patch)
    for key, value in env.get_state(1).items():
        np.testing.assert_array_equal(value, before[key])
    with pytest.raises(ValueError, match="env index"):
        env.set_state(2, {})


def test_set_state_converts_by_value():
    env = make_rc()
    env.set_state(0, {"agent_alive": np.array([True, True, True, False, False, False]),
                      "agent_pos": np.zeros((6, 2), dtype=np.float32), "invader_timer": np.int64(3),
                      "lm_alive": [1, 1, 1, 1, 1, 1, 1, 0]})
    state = env.get_state(0)
    assert state["agent_alive"].dtype == np.int8 and state["agent_alive"].tolist() == [1, 1, 1, 0, 0, 0]
    assert state["invader_timer"] == 3
    assert env.observation["agent_present"][0].tolist() == [1, 1, 1, 0, 0, 0]  # observation rewritten
    assert env.observation["entity_present"][0, 13] == 0

"""The common interface on the Rescue Game: determinism, invariants, compositions, seeding,
episode bookkeeping, input validation, reference policies, rendering and PettingZoo."""

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test

import cpfast
from cpfast.envs.pettingzoo_adapter import CpfastParallelEnv
from cpfast.envs.tables import generate_rescue_zero_shot_table, rescue_zero_shot_table
from cpfast.policies import GreedyRescuePolicy, RandomPolicy
from helpers import copy_obs

A, E, LIMIT = 6, 14, 100
COMPOSITIONS = ("train", "n5", "n6", "dynamic")
TRAIN_E, TRAIN_S = np.float32([1 / 6, 1 / 2, 5 / 6]), np.float32([1 / 6, 7 / 12, 1.0])


def make_rescue(num_envs=1, seed=0, composition="train", num_threads=1, **kwargs):
    env = cpfast.make_env("rescue", num_envs=num_envs, seed=seed, composition=composition,
                          num_threads=num_threads, **kwargs)
    env.reset()
    return env


def rollout(env, steps, policy=None):
    policy = policy or RandomPolicy(env.spec, 0)
    obs = env.reset()
    trace = [copy_obs(obs)]
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        trace.append(copy_obs(obs) | {"reward": reward.copy(), "truncated": truncated.copy(),
                                      "terminated": terminated.copy(),
                                      "n_extinguished": info["n_extinguished"].copy(),
                                      "n_destroyed": info["n_destroyed"].copy(),
                                      "final_entities": info["final"]["entities"].copy()})
    return trace


def test_spec_dims():
    spec = make_rescue().spec
    assert (spec.name, spec.max_agents, spec.max_entities, spec.feat_dim, spec.agent_feat_dim, spec.other_feat_dim,
            spec.attr_dim, spec.n_actions, spec.episode_limit) == ("rescue", 6, 14, 5, 3, 5, 2, 5, 100)


@pytest.mark.parametrize("composition", COMPOSITIONS)
def test_interface_invariants(composition):
    env = make_rescue(num_envs=6, seed=3, composition=composition, num_threads=2)
    for t, obs in enumerate(rollout(env, 230, GreedyRescuePolicy(env.spec))):
        present, ent_present = obs["agent_present"].astype(bool), obs["entity_present"].astype(bool)
        np.testing.assert_array_equal(ent_present[:, :A], present)
        np.testing.assert_array_equal(obs["full_mask"], present[:, :, None] & ent_present[:, None, :])
        assert (obs["obs_mask"] <= obs["full_mask"]).all()
        np.testing.assert_array_equal(obs["obs_mask"][:, np.arange(A), np.arange(A)], present)
        avail = obs["avail_actions"]
        assert (avail[present] == 1).all() and (avail[~present] == [1, 0, 0, 0, 0]).all()
        ents = obs["entities"]
        assert not ents[~ent_present].any() and not obs["attributes"][~present].any()
        assert not ents[:, :A, 3:].any()
        cells = np.rint(ents[..., :2] * 9)
        np.testing.assert_array_equal(ents[..., :2], (cells / 9).astype(np.float32))
        # Partial view: Chebyshev distance <= 2 between present entities.
        cheb = np.abs(cells[:, :A, None, :] - cells[:, None, :, :]).max(axis=-1)
        np.testing.assert_array_equal(obs["obs_mask"], obs["full_mask"] & (cheb <= 2))
        # Intact buildings hold distinct cells; burning iff intensity > 0.
        for b in range(len(ents)):
            intact = cells[b, A:][ent_present[b, A:]]
            assert len({tuple(c) for c in intact}) == len(intact)
        bld = ents[:, A:]
        np.testing.assert_array_equal(bld[..., 3] == 1, bld[..., 4] > 0)
        assert (bld[..., 2] >= 0).all() and (bld[..., 2] <= 1).all() and (bld[..., 4] <= 1).all()
        if t:
            n_ext, n_des, r = obs["n_extinguished"], obs["n_destroyed"], obs["reward"].astype(np.float64)
            assert (r + 2 * n_des >= n_ext - 1e-5).all() and (r + 2 * n_des <= 1.5 * n_ext + 1e-5).all()
            assert not obs["terminated"].any()


def test_train_composition_sizes_and_attribute_grid():
    env = make_rescue(num_envs=4, seed=5)
    for expected in (3, 4, 2, 3):
        obs = env.reset()
        assert (obs["agent_present"].sum(axis=1) == expected).all()
        assert (obs["agent_present"][:, :expected] == 1).all()
        attr = obs["attributes"][:, :expected]
        assert np.isin(attr[..., 0], TRAIN_E).all() and np.isin(attr[..., 1], TRAIN_S).all()
        state = env.get_state(0)
        assert np.isin(state["agent_attr"][:, 0], [0.1, 0.2, 0.3]).all()
        assert np.isin(state["agent_attr"][:, 1], [0.5, 0.75, 1.0]).all()


@pytest.mark.parametrize("composition,size", [("n5", 5), ("n6", 6), ("dynamic", 4)])
def test_zero_shot_compositions_use_the_table(composition, size):
    env = cpfast.make_env("rescue", num_envs=3, composition=composition, eval_seed=123)
    table = rescue_zero_shot_table()
    for j in range(2):  # env i's j-th episode is k = i + 3 j
        obs = env.reset()
        assert (obs["agent_present"].sum(axis=1) == size).all()
        for i in range(3):
            row = table[i + 3 * j]
            np.testing.assert_array_equal(env.get_state(i)["agent_attr"], row)
            expected = np.stack([(row[:, 0] - 0.05) / 0.30, (row[:, 1] - 0.40) / 0.60], axis=1).astype(np.float32)
            np.testing.assert_array_equal(obs["attributes"][i, :size], expected[:size])
    obs = env.reset(episode_seeds=[998, 999, 1000])
    for i, row in enumerate((998, 999, 0)):
        np.testing.assert_array_equal(env.get_state(i)["agent_attr"], table[row])


def test_zero_shot_table_is_the_documented_generation():
    table = rescue_zero_shot_table()
    np.testing.assert_array_equal(table, generate_rescue_zero_shot_table())
    assert table.shape == (1000, 6, 2)
    assert table[..., 0].min() >= 0.05 and table[..., 0].max() < 0.35
    assert table[..., 1].min() >= 0.4 and table[..., 1].max() < 1.0


def dynamic_sizes(policy_factory, eval_seed=42, episodes=2):
    """Team sizes [episodes, 101, envs] at the start and after each step (final obs at the end)."""
    env = cpfast.make_env("rescue", num_envs=2, composition="dynamic", eval_seed=eval_seed, num_threads=1)
    policy = policy_factory(env.spec)
    obs = env.reset()
    sizes = np.zeros((episodes, LIMIT + 1, 2), dtype=np.int64)
    attrs = []
    for e in range(episodes):
        sizes[e, 0] = obs["agent_present"].sum(axis=1)
        for t in range(1, LIMIT + 1):
            obs, _, _, truncated, info = env.step(policy(obs))
            shown = info["final"] if t == LIMIT else obs
            assert truncated.all() == (t == LIMIT)
            sizes[e, t] = shown["agent_present"].sum(axis=1)
            attrs.append(shown["attributes"].copy())
    return sizes, np.array(attrs)


def test_dynamic_joins_and_leaves_every_tenth_step():
    sizes, _ = dynamic_sizes(lambda spec: RandomPolicy(spec, 0))
    assert sizes.min() >= 4 and sizes.max() <= 6 and (sizes[:, 0] == 4).all()
    changes = np.diff(sizes, axis=1)
    for k in range(1, LIMIT + 1):
        assert (np.abs(changes[:, k - 1]) == int(k % 10 == 0 and k < LIMIT)).all(), f"step {k}"
    assert (changes > 0).any() and (changes < 0).any()


def test_composition_schedule_is_identical_under_random_and_greedy_policies():
    sizes_r, attrs_r = dynamic_sizes(lambda spec: RandomPolicy(spec, 0))
    sizes_g, attrs_g = dynamic_sizes(GreedyRescuePolicy)
    np.testing.assert_array_equal(sizes_r, sizes_g)
    np.testing.assert_array_equal(attrs_r, attrs_g)


def test_episode_bookkeeping_and_info_counters():
    env = make_rescue(num_envs=3, seed=1)
    policy = GreedyRescuePolicy(env.spec)
    obs = env.reset()
    total, extinguished = np.zeros(3), 0
    for t in range(1, LIMIT + 1):
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        total += reward
        extinguished += info["n_extinguished"].sum()
        assert not terminated.any() and info["n_extinguished"].dtype == np.int32
        if t < LIMIT:
            assert not truncated.any() and (info["episode_step"] == t).all()
    assert truncated.all() and (info["episode_length"] == LIMIT).all() and (info["episode_step"] == 0).all()
    np.testing.assert_allclose(info["episode_return"], total, rtol=1e-5, atol=1e-3)
    assert extinguished > 0 and "agent_rewards" not in info


def test_reference_policies_order():
    """Greedy clearly beats random (the spec's reference lines); both are deterministic."""
    from cpfast.envs.episodes import run_episodes

    results = {}
    for name, factory in (("random", lambda spec: RandomPolicy(spec, 1)), ("greedy", GreedyRescuePolicy)):
        env = cpfast.make_env("rescue", num_envs=60, composition="train", eval_seed=5, num_threads=2)
        results[name] = run_episodes(env, factory(env.spec), 120)["returns"]
    assert results["greedy"].mean() > results["random"].mean() + 10
    assert results["random"].mean() < 0


def test_greedy_policy_rules():
    env = make_rescue()
    state = {
        "agent_cell": np.array([[2, 2], [5, 5], [0, 0], [9, 0], [0, 0], [0, 0]], dtype=np.int32),
        "agent_alive": [1, 1, 1, 1, 0, 0], "agent_acc": np.zeros(6), "agent_attr": np.full((6, 2), 0.5),
        # b0 at (2, 2) burns (agent 0 stays); b1 (5, 8): dist 3 from agent 1, intensity 0.8 -> 4/0.8 = 5;
        # b2 (7, 5): dist 2, intensity 0.3 -> 3/0.3 = 10; so agent 1 goes up (dy = 3 > dx = 0).
        "bld_cell": np.array([[2, 2], [5, 8], [7, 5], [9, 9], [8, 9], [7, 9], [6, 9], [4, 9]], dtype=np.int32),
        "bld_burning": [1, 1, 1, 0, 0, 0, 0, 0], "bld_intensity": [0.5, 0.8, 0.3, 0, 0, 0, 0, 0],
        "bld_health": np.ones(8), "bld_destroyed": np.zeros(8, dtype=np.int8), "bld_timer": np.zeros(8, dtype=np.int32),
    }
    env.set_state(0, state)
    actions = GreedyRescuePolicy(env.spec)(env.observation)[0]
    # Agent 2 at (0, 0): b0 scores 5/0.5 = 10, b1 14/0.8 = 17.5, b2 13/0.3: goes to b0, |dx| = |dy| -> along x.
    # Agent 3 at (9, 0): b2 scores 8/0.3 = 26.7, b0 10/0.5 = 20, b1 13/0.8 = 16.25 -> b1 at dx = -4, dy = 8: up.
    assert actions.tolist() == [0, 4, 2, 4, 0, 0]
    state["bld_burning"] = np.zeros(8, dtype=np.int8)
    state["bld_intensity"] = np.zeros(8)
    env.set_state(0, state)
    assert not GreedyRescuePolicy(env.spec)(env.observation).any()  # no fire: stay


def test_greedy_policy_ties_prefer_the_nearer_then_the_lower_index():
    env = make_rescue()
    env.set_state(0, {
        "agent_cell": np.array([[5, 5], [2, 0], [0, 0], [0, 0], [0, 0], [0, 0]], dtype=np.int32),
        "agent_alive": [1, 1, 0, 0, 0, 0], "agent_acc": np.zeros(6), "agent_attr": np.full((6, 2), 0.5),
        # Agent 0: b0 scores (3 + 1) / 0.4 and b1 (1 + 1) / 0.2, equal -> the nearer b1 (right).
        # Agent 1: b2 and b3 both score (2 + 1) / 0.3 at distance 2 -> the lower index b2 (left).
        "bld_cell": np.array([[5, 8], [6, 5], [0, 0], [4, 0], [9, 9], [8, 9], [7, 9], [6, 9]], dtype=np.int32),
        "bld_burning": [1, 1, 1, 1, 0, 0, 0, 0], "bld_intensity": [0.4, 0.2, 0.3, 0.3, 0, 0, 0, 0],
        "bld_health": np.ones(8), "bld_destroyed": np.zeros(8, dtype=np.int8), "bld_timer": np.zeros(8, dtype=np.int32),
    })
    assert GreedyRescuePolicy(env.spec)(env.observation)[0].tolist() == [2, 1, 0, 0, 0, 0]


# ---------------------------------------------------------------------------- bad input
def test_unknown_composition_raises():
    with pytest.raises(ValueError, match="unknown composition 'n7' for rescue"):
        cpfast.make_env("rescue", composition="n7")


@pytest.mark.parametrize(
    "patch,message",
    [
        ({"no_such_key": 1}, "unknown state key 'no_such_key'"),
        ({"agent_cell": np.zeros((5, 2))}, r"agent_cell.*shape \(6, 2\)"),
        ({"agent_cell": np.full((6, 2), 10)}, r"agent_cell.*\[0, 9\]"),
        ({"bld_health": np.full(8, 1.5)}, "bld_health"),
        ({"agent_acc": np.full(6, np.nan)}, "agent_acc.*finite"),
        ({"bld_burning": np.full(8, 0.5)}, "bld_burning.*integer"),
        ({"bld_timer": np.full(8, 21)}, "bld_timer"),
        ({"episode_step": 100}, "episode_step"),
        ({"world_rng": np.zeros(4, dtype=np.uint64)}, "world_rng"),
    ],
)
def test_bad_set_state_raises_and_changes_nothing(patch, message):
    env = make_rescue(num_envs=2)
    before = env.get_state(1)
    good_part = {"agent_cell": np.full((6, 2), 3)}
    with pytest.raises(ValueError, match=message):
        env.set_state(1, good_part | patch)
    for key, value in env.get_state(1).items():
        np.testing.assert_array_equal(value, before[key])


# ---------------------------------------------------------------------------- PettingZoo
@pytest.mark.filterwarnings("ignore:No agents present but not all possible_agents")
@pytest.mark.parametrize("composition", COMPOSITIONS)
def test_pettingzoo_parallel_api(composition):
    parallel_api_test(CpfastParallelEnv("rescue", composition=composition), num_cycles=150)


def test_pettingzoo_team_reward_and_views_match_vec_env():
    env = CpfastParallelEnv("rescue", composition="dynamic")
    vec = cpfast.make_env("rescue", 1, seed=7, composition="dynamic", num_threads=1)
    assert env.metadata["name"] == "cpfast_rescue_v0" and len(env.possible_agents) == 6 + 9
    observations, _ = env.reset(seed=7)
    vec_obs = vec.reset()
    rng = np.random.default_rng(1)
    nonzero = 0
    for _ in range(LIMIT + 10):
        assert sorted(env.agent_slot[a] for a in env.agents) == np.flatnonzero(vec_obs["agent_present"][0]).tolist()
        for a in env.agents:
            i = env.agent_slot[a]
            np.testing.assert_array_equal(observations[a]["entities"],
                                          vec_obs["entities"][0] * vec_obs["obs_mask"][0, i][:, None])
        actions = {a: int(rng.integers(0, 5)) for a in env.agents}
        dense = np.zeros((1, 6), dtype=np.int64)
        for a, act in actions.items():
            dense[0, env.agent_slot[a]] = act
        observations, rewards, _, _, _ = env.step(actions)
        vec_obs, reward, terminated, truncated, _ = vec.step(dense)
        assert all(r == float(reward[0]) for r in rewards.values())  # every agent gets the team reward
        nonzero += reward[0] != 0
        if terminated[0] or truncated[0]:
            observations, _ = env.reset()
            vec_obs = vec.reset()
    assert nonzero > 0


def test_greedy_policy_stays_on_a_burning_cell_even_when_another_fire_scores_better():
    env = make_rescue()
    env.set_state(0, {
        "agent_cell": np.array([[2, 2], [0, 0], [0, 0], [0, 0], [0, 0], [0, 0]], dtype=np.int32),
        "agent_alive": [1, 0, 0, 0, 0, 0], "agent_acc": np.zeros(6), "agent_attr": np.full((6, 2), 0.5),
        # Agent 0 stands on b0 (score (0 + 1) / 0.1 = 10); b1 next door scores (1 + 1) / 0.9 = 2.2.
        "bld_cell": np.array([[2, 2], [3, 2], [7, 5], [9, 9], [8, 9], [7, 9], [6, 9], [4, 9]], dtype=np.int32),
        "bld_burning": [1, 1, 0, 0, 0, 0, 0, 0], "bld_intensity": [0.1, 0.9, 0, 0, 0, 0, 0, 0],
        "bld_health": np.ones(8), "bld_destroyed": np.zeros(8, dtype=np.int8), "bld_timer": np.zeros(8, dtype=np.int32),
    })
    assert GreedyRescuePolicy(env.spec)(env.observation)[0].tolist() == [0, 0, 0, 0, 0, 0]

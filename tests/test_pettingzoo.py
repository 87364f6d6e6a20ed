"""PettingZoo ParallelEnv adapter: API conformance, agreement with VecEnv, joins and leaves."""

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test

import cpfast
from cpfast.envs import CpfastParallelEnv

EPISODE = 145  # Resource Collection episode_limit


def random_actions(rng, observations, agents):
    """A legal random action for each agent, from its action mask."""
    return {a: int(rng.choice(np.flatnonzero(observations[a]["action_mask"]))) for a in agents}


# Names an episode never uses (slots a composition never fills, joiner names beyond this
# episode's joins) are never terminated, so PettingZoo warns at episode end that not all
# possible_agents finished; that is expected here.
@pytest.mark.filterwarnings("ignore:No agents present but not all possible_agents")
@pytest.mark.parametrize("composition", ["train", "n5", "n6", "dynamic"])
def test_parallel_api(composition):
    # 300 cycles > one 145-step episode: the test also sees the episode end (agents -> []).
    # In `dynamic` it also checks that no finished agent comes back (joiners get fresh names).
    parallel_api_test(CpfastParallelEnv(composition=composition), num_cycles=300)


def test_dynamic_joins_and_leaves():
    env = CpfastParallelEnv(composition="dynamic", seed=3)
    assert env.possible_agents == [f"agent_{i}" for i in range(6 + 14)]  # 6 slots, 14 events
    rng = np.random.default_rng(0)
    joins = leaves = 0
    for _ in range(2):
        observations, infos = env.reset()
        assert env.agents == ["agent_0", "agent_1", "agent_2", "agent_3"]  # names restart
        seen = set(env.agents)
        next_name = 6
        for t in range(1, EPISODE + 1):
            before = list(env.agents)
            observations, rewards, terminations, truncations, infos = env.step(
                random_actions(rng, observations, before)
            )
            after = env.agents if t < EPISODE else [a for a in observations if not terminations[a]]
            left = [a for a in before if a not in after]
            joined = [a for a in after if a not in before]
            # Composition events happen only after every 10th step, one at a time.
            assert len(left) + len(joined) <= (1 if t % 10 == 0 else 0)
            leaves += len(left)
            joins += len(joined)
            for a in joined:  # fresh names in join order, in the lowest free slot
                assert a == f"agent_{next_name}" and a not in seen
                held = {env.agent_slot[b] for b in before if b in after}
                assert env.agent_slot[a] == min(set(range(6)) - held)
                next_name += 1
                seen.add(a)
            reported = [a for a in env.possible_agents if a in before or a in after]
            for d in (observations, rewards, terminations, truncations, infos):
                assert list(d) == reported
            for a in left:  # a leaver is reported once more, terminated, with an empty view
                assert terminations[a] and not truncations[a]
                assert not observations[a]["obs_mask"].any()
                assert observations[a]["action_mask"].tolist() == [1, 0, 0, 0, 0]
            for a in after:
                assert not terminations[a]
                assert observations[a]["obs_mask"][env.agent_slot[a]] == 1  # sees itself
                assert observations[a] in env.observation_space(a)
            if t < EPISODE:
                assert env.agents == after and not any(truncations.values())
        # Episode over: remaining agents truncated, none left to act.
        assert env.agents == []
        assert all(truncations[a] for a in after)
        with pytest.raises(RuntimeError, match="reset"):
            env.step({})
    assert joins >= 10 and leaves >= 5


@pytest.mark.parametrize("composition", ["train", "dynamic"])
def test_rewards_match_vec_env(composition):
    """Same seed and actions: per-agent rewards sum to the VecEnv's team reward, views agree."""
    env = CpfastParallelEnv(composition=composition)
    vec = cpfast.make_env("resource_collection", 1, seed=7, composition=composition, num_threads=1)
    observations, _ = env.reset(seed=7)
    vec_obs = vec.reset()
    rng = np.random.default_rng(1)
    nonzero = 0
    for _ in range(2 * EPISODE + 10):  # crosses two episode ends
        present = np.flatnonzero(vec_obs["agent_present"][0])
        assert sorted(env.agent_slot[a] for a in env.agents) == present.tolist()
        np.testing.assert_array_equal(env.state(), vec_obs["entities"][0].ravel())
        for a in env.agents:
            i = env.agent_slot[a]
            o = observations[a]
            np.testing.assert_array_equal(o["entities"], vec_obs["entities"][0] * vec_obs["obs_mask"][0, i][:, None])
            np.testing.assert_array_equal(o["attributes"], vec_obs["attributes"][0, i])
        actions = random_actions(rng, observations, env.agents)
        dense = np.zeros((1, 6), dtype=np.int64)
        for a, act in actions.items():
            dense[0, env.agent_slot[a]] = act
        observations, rewards, _, _, _ = env.step(actions)
        vec_obs, reward, terminated, truncated, _ = vec.step(dense)
        assert sum(rewards.values()) == pytest.approx(float(reward[0]), abs=1e-5)
        nonzero += reward[0] != 0
        if terminated[0] or truncated[0]:
            assert env.agents == []
            observations, _ = env.reset()
            vec_obs = vec.reset()
    assert nonzero > 0  # the comparison saw actual rewards


def test_spaces_seed_and_state():
    env = CpfastParallelEnv(composition="n5", seed=1)
    assert env.metadata["name"] == "cpfast_resource_collection_v0"
    first, _ = env.reset(seed=11)
    assert env.agents == [f"agent_{i}" for i in range(5)]
    for a in env.agents:
        assert first[a] in env.observation_space(a)
        assert env.action_space(a).n == 5
    assert env.state() in env.state_space
    obs, *_ = env.step({})  # missing actions default to the no-op
    again, _ = env.reset(seed=11)  # reseeding rebuilds the runner: same episode start
    for a in env.agents:
        for k in again[a]:
            np.testing.assert_array_equal(again[a][k], first[a][k])
    # Returned arrays are copies: stepping does not change what an earlier step returned.
    snapshot = {k: v.copy() for k, v in obs["agent_0"].items()}
    env.step({})
    for k in snapshot:
        np.testing.assert_array_equal(obs["agent_0"][k], snapshot[k])


def test_render():
    env = CpfastParallelEnv(render_mode="rgb_array")
    env.reset(seed=0)
    image = env.render()
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] > 0 and image.shape[1] > 0
    env.close()
    with pytest.warns(UserWarning, match="render_mode"):  # no render_mode: warns, renders nothing
        assert CpfastParallelEnv().render() is None

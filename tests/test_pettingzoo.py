"""PettingZoo ParallelEnv adapter: API conformance, agreement with VecEnv, joins and leaves."""

import copy
import pickle

import numpy as np
import pytest
from gymnasium import spaces
from pettingzoo.test import parallel_api_test, parallel_seed_test

import cpfast
from cpfast.envs import REGISTRY
from cpfast.envs.pettingzoo_adapter import CpfastParallelEnv
from cpfast.envs.episodes import OUTCOMES, episode_outcomes

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


# ---------------------------------------------------------------------------- every registered env
ENVS = sorted(REGISTRY)
PER_AGENT_REWARDS = {"resource_collection"}  # the only env whose agents have their own rewards
STARCRAFT = [name for name in ENVS if name.startswith("sc2_")]


def dense_actions(env, actions):
    """The adapter's action dict as the VecEnv's [1, max_agents] array (absent slots: no-op)."""
    dense = np.zeros((1, env._vec.spec.max_agents), dtype=np.int64)
    for a, act in actions.items():
        dense[0, env.agent_slot[a]] = act
    return dense


@pytest.mark.filterwarnings("ignore:No agents present but not all possible_agents")
@pytest.mark.parametrize("fixed_slots", [False, True], ids=["present", "fixed_slots"])
@pytest.mark.parametrize("name", ENVS)
def test_pettingzoo_api_and_seed_tests(name, fixed_slots):
    composition = "dynamic" if "dynamic" in REGISTRY[name].compositions else "train"
    parallel_api_test(CpfastParallelEnv(name, composition=composition, fixed_slots=fixed_slots), num_cycles=200)
    # The seed test samples action_space(a).sample() without masks: the adapter's spaces draw
    # among the actions available now, so StarCraft (whose alive units may not no-op) passes.
    parallel_seed_test(lambda: CpfastParallelEnv(name, composition=composition, fixed_slots=fixed_slots))


@pytest.mark.parametrize("name", ENVS)
def test_unmasked_samples_are_available(name):
    env = CpfastParallelEnv(name)
    observations, _ = env.reset(seed=3)
    for a in env.agents:
        env.action_space(a).seed(0)
    for _ in range(40):
        actions = {a: env.action_space(a).sample() for a in env.agents}
        for a, act in actions.items():
            assert observations[a]["action_mask"][act] == 1
        observations, *_ = env.step(actions)
        if not env.agents:
            observations, _ = env.reset()
    # An explicit mask is used as given; a copy of the space samples without one (no env inside).
    assert env.action_space(env.agents[0]).sample(mask=np.eye(env._vec.spec.n_actions, dtype=np.int8)[1]) == 1
    space = env.action_space(env.agents[0])
    for clone in (copy.deepcopy(space), pickle.loads(pickle.dumps(space))):
        assert 0 <= clone.sample() < env._vec.spec.n_actions


@pytest.mark.parametrize("fixed_slots", [False, True], ids=["present", "fixed_slots"])
@pytest.mark.parametrize("name", ENVS)
def test_rewards_match_vec_env_every_env(name, fixed_slots):
    """Same seed and actions as a VecEnv: per-agent rewards sum to the team reward (Resource
    Collection); elsewhere every (acting) agent receives the team reward itself."""
    assert REGISTRY[name].agent_rewards == (name in PER_AGENT_REWARDS)
    env = CpfastParallelEnv(name, fixed_slots=fixed_slots)
    vec = cpfast.make_env(name, 1, seed=5, num_threads=1)
    assert ("agent_rewards" in vec.info) == (name in PER_AGENT_REWARDS)
    observations, _ = env.reset(seed=5)
    vec_obs = vec.reset()
    rng = np.random.default_rng(2)
    nonzero = ends = 0
    for _ in range(2 * vec.spec.episode_limit + 10):  # crosses at least two episode ends
        present = vec_obs["agent_present"][0].astype(bool)
        actions = random_actions(rng, observations, env.agents)
        observations, rewards, terminations, truncations, _ = env.step(actions)
        vec_obs, reward, terminated, truncated, _ = vec.step(dense_actions(env, actions))
        team = float(reward[0])
        if name in PER_AGENT_REWARDS:
            assert sum(rewards.values()) == pytest.approx(team, abs=1e-5)
        elif fixed_slots:  # acting slots get the team reward, empty ones 0
            assert [rewards[a] for a in env.possible_agents] == [team if p else 0.0 for p in present]
        else:
            assert all(r == team for r in rewards.values())
        nonzero += team != 0
        if terminated[0] or truncated[0]:
            ends += 1
            assert env.agents == [] and all(terminations[a] == bool(terminated[0]) for a in terminations)
            observations, _ = env.reset()
            vec_obs = vec.reset()
    assert nonzero > 0 and ends >= 2  # the comparison saw actual rewards (StarCraft's were always 0)


@pytest.mark.parametrize("fixed_slots", [False, True], ids=["present", "fixed_slots"])
@pytest.mark.parametrize("name", STARCRAFT)
def test_starcraft_outcome_infos(name, fixed_slots):
    env = CpfastParallelEnv(name, composition="train", fixed_slots=fixed_slots)
    vec = cpfast.make_env(name, 1, seed=9, num_threads=1)
    keys = [*OUTCOMES, "timeout"]
    observations, infos = env.reset(seed=9)
    vec.reset()
    assert all(info == (dict.fromkeys(keys, False) if fixed_slots else {}) for info in infos.values())
    rng = np.random.default_rng(4)
    seen = []
    while len(seen) < 4:
        actions = random_actions(rng, observations, env.agents)
        observations, _, terminations, truncations, infos = env.step(actions)
        _, _, terminated, truncated, info = vec.step(dense_actions(env, actions))
        if not (terminated[0] or truncated[0]):
            assert all(i == (dict.fromkeys(keys, False) if fixed_slots else {}) for i in infos.values())
            continue
        outcome = episode_outcomes(info, [0])[0]
        for a, i in infos.items():  # every reported agent has the episode's outcome flags
            assert list(i) == keys and sum(i[k] for k in OUTCOMES) == 1 and i[outcome]
            assert i["timeout"] == truncations[a] == bool(truncated[0])
        seen.append(outcome)
        observations, _ = env.reset()
        vec.reset()
    assert "battle_lost" in seen or "battle_won" in seen


def test_missing_action_without_available_no_op():
    env = CpfastParallelEnv("sc2_3-8sz")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="no action for agent_0.*no-op"):  # alive units may not no-op
        env.step({})


@pytest.mark.parametrize("name,composition", [("resource_collection", "dynamic"), ("rescue", "dynamic"),
                                              ("sc2_3-8MMM", "train")])
def test_fixed_slots(name, composition):
    env = CpfastParallelEnv(name, composition=composition, seed=1, fixed_slots=True)
    vec = cpfast.make_env(name, 1, seed=1, composition=composition, num_threads=1)
    n_slots = vec.spec.max_agents
    assert env.possible_agents == [f"agent_{i}" for i in range(n_slots)]
    observations, _ = env.reset()
    vec_obs = vec.reset()
    rng = np.random.default_rng(6)
    absent_seen = changes = 0
    for _ in range(vec.spec.episode_limit):
        assert env.agents == env.possible_agents
        present = vec_obs["agent_present"][0].copy()  # a copy: the step overwrites the view
        for a in env.agents:
            o, i = observations[a], env.agent_slot[a]
            assert o in env.observation_space(a) and o["agent_present"][0] == present[i]
            if not present[i]:  # an empty slot: sees nothing, may only no-op
                absent_seen += 1
                assert not o["obs_mask"].any() and not o["entities"].any()
                assert o["action_mask"].tolist() == [1] + [0] * (vec.spec.n_actions - 1)
        actions = random_actions(rng, observations, env.agents)
        observations, rewards, terminations, truncations, infos = env.step(actions)
        vec_obs, reward, terminated, truncated, info = vec.step(dense_actions(env, actions))
        for a in env.possible_agents:
            assert terminations[a] == bool(terminated[0]) and truncations[a] == bool(truncated[0])
            if not present[env.agent_slot[a]] and name not in PER_AGENT_REWARDS:
                assert rewards[a] == 0.0
        assert sum(rewards.values()) == pytest.approx(float(reward[0]) * (1 if name in PER_AGENT_REWARDS
                                                                          else int(present.sum())), abs=1e-4)
        changes += not np.array_equal(present, (info["final"] if terminated[0] or truncated[0] else vec_obs)
                                      ["agent_present"][0])
        if terminated[0] or truncated[0]:
            assert env.agents == []
            break
    assert absent_seen > 0
    assert changes > 0 or composition != "dynamic"  # slots emptied and filled in place


@pytest.mark.parametrize("name", ENVS)
def test_torchrl_wrap(name, one_torch_thread):
    pytest.importorskip("torchrl")
    import torch
    from torchrl.envs import PettingZooWrapper
    from torchrl.envs.utils import check_env_specs

    composition = "dynamic" if "dynamic" in REGISTRY[name].compositions else "train"
    env = PettingZooWrapper(CpfastParallelEnv(name, composition=composition, fixed_slots=True), use_mask=True)
    check_env_specs(env)
    n_slots = REGISTRY[name].runner_cls.dims["max_agents"]
    assert env.group_map == {"agent": [f"agent_{i}" for i in range(n_slots)]}
    torch.manual_seed(0)  # the rollout's random actions
    td = env.rollout(40, break_when_any_done=False)
    actions, masks = td["agent", "action"], td["agent", "action_mask"]
    assert masks.gather(-1, actions.unsqueeze(-1)).all()  # random actions respect the action masks
    present = td["agent", "observation", "agent_present"][..., 0].bool()
    assert not masks[~present][:, 1:].any()  # empty slots: no-op only
    rewards = td["next", "agent", "reward"][..., 0]
    if name not in PER_AGENT_REWARDS:  # the team reward to every acting slot, 0 to empty ones
        team = rewards.sum(dim=-1, keepdim=True) / present.sum(dim=-1, keepdim=True)
        torch.testing.assert_close(rewards, team * present)
    assert rewards.abs().sum() > 0


# ---------------------------------------------------------------------------- VecEnv (gymnasium-style)
@pytest.mark.parametrize("name", ENVS)
def test_vec_env_spaces_seed_and_flags(name):
    vec = cpfast.make_env(name, 3, seed=2, num_threads=1)
    s = vec.spec
    assert isinstance(vec.observation_space, spaces.Dict) and set(vec.observation_space) == set(cpfast.envs.OBS_KEYS)
    assert vec.action_space == spaces.MultiDiscrete(np.full((3, s.max_agents), s.n_actions))
    assert vec.single_action_space == spaces.MultiDiscrete(np.full(s.max_agents, s.n_actions))
    obs = vec.reset()
    assert obs in vec.observation_space
    assert {k: v[0] for k, v in obs.items()} in vec.single_observation_space
    assert vec.observation_space["entities"].shape == (3, s.max_entities, s.feat_dim)

    def trace(env, steps):
        rng = np.random.default_rng(0)
        out = []
        for _ in range(steps):
            o = env.observation
            avail = o["avail_actions"]
            acts = np.array([[rng.choice(np.flatnonzero(avail[e, i])) for i in range(s.max_agents)] for e in range(3)])
            _, reward, terminated, truncated, _ = env.step(acts)
            assert terminated.dtype == np.bool_ and truncated.dtype == np.bool_ and terminated.shape == (3,)
            out.append((o["entities"].copy(), reward.copy(), terminated.copy(), truncated.copy()))
        return out

    trace(vec, 5)
    vec.reset(seed=11)  # re-seeds: the same episodes as a fresh make_env(..., seed=11)
    fresh = cpfast.make_env(name, 3, seed=11, num_threads=1)
    fresh.reset()
    for a, b in zip(trace(vec, 30), trace(fresh, 30)):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)

    # Bad arguments: clear errors, nothing changed.
    before = {k: v.copy() for k, v in vec.observation.items()}
    state = vec.get_state(0)
    for kwargs, match in (({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"), ({"seed": 3, "env_ids": [0]}, "env_ids"),
                          ({"seed": 3, "episode_seeds": [1, 2]}, "episode_seeds")):
        with pytest.raises(ValueError, match=match):
            vec.reset(**kwargs)
    with pytest.raises(ValueError, match="shape"):
        vec.step(np.zeros((2, s.max_agents), dtype=np.int64))
    for k, v in before.items():
        np.testing.assert_array_equal(vec.observation[k], v)
    for k, v in vec.get_state(0).items():
        np.testing.assert_array_equal(v, state[k])


def test_vec_env_reset_seed_keeps_eval_episodes():
    """With eval_seed, reset(seed=...) keeps evaluation episodes; episode_seeds still picks them."""
    vec = cpfast.make_env("rescue", 2, seed=0, eval_seed=4, num_threads=1)
    first = {k: v.copy() for k, v in vec.reset().items()}
    again = vec.reset(seed=123)  # evaluation episodes do not depend on the training seed
    for k in first:
        np.testing.assert_array_equal(again[k], first[k])
    picked = vec.reset(seed=5, episode_seeds=[1, 0])  # episodes k=1 and k=0: the two rows swapped
    for k in first:
        np.testing.assert_array_equal(picked[k], first[k][::-1])

"""The contract every registered environment keeps (docs/interface.md): a new env passes it by
being registered. Determinism across thread counts, exact state round trips, the common
invariants of the arrays, episode bookkeeping with same-step auto-reset, rendering, and bad
actions rejected with nothing changed. What is particular to one env lives in its own tests."""

import numpy as np
import pytest

import cpfast
from cpfast.envs import REGISTRY
from cpfast.policies import RandomPolicy
from helpers import record_steps, assert_traces_equal


def cases():
    """(env, composition): every named composition; for envs with indexed ones (StarCraft),
    ``train`` and the first index."""
    for name, entry in REGISTRY.items():
        named = [c for c in entry.compositions if not c.isdigit()]
        indexed = [c for c in entry.compositions if c.isdigit()]
        for composition in named + indexed[:1]:
            yield name, composition


CASES = list(cases())
IDS = [f"{name}-{composition}" for name, composition in CASES]
NAMES = list(REGISTRY)


def make(name, composition="train", num_envs=4, seed=0, num_threads=1, **kwargs):
    return cpfast.make_env(name, num_envs=num_envs, seed=seed, composition=composition, num_threads=num_threads,
                           **kwargs)


def random_actions(env, steps, seed=0):
    """Actions of the random policy along ``env``'s own trajectory (it reads availability)."""
    policy = RandomPolicy(env.spec, seed)
    obs, actions = env.reset(), []
    for _ in range(steps):
        actions.append(policy(obs))
        obs = env.step(actions[-1])[0]
    return actions


@pytest.mark.parametrize("name,composition", CASES, ids=IDS)
def test_same_seed_same_results_for_any_thread_count(name, composition):
    steps = 2 * make(name).spec.episode_limit + 7  # through at least one auto-reset
    traces = []
    for threads in (1, 3):
        env = make(name, composition, num_envs=7, seed=5, num_threads=threads)
        actions = random_actions(make(name, composition, num_envs=7, seed=5), steps)
        env.reset()
        traces.append(record_steps(env, actions))
    assert_traces_equal(traces[0], traces[1])
    assert any(step["terminated"].any() or step["truncated"].any() for step in traces[0])
    first_obs = [make(name, composition, num_envs=7, seed=seed).reset()["entities"] for seed in (5, 6)]
    assert not np.array_equal(*first_obs)  # another seed, other episodes


@pytest.mark.parametrize("name,composition", CASES, ids=IDS)
def test_state_round_trip_replays_exactly(name, composition):
    """get_state mid-episode -> k steps -> set_state into a fresh env of another seed -> the same
    k steps: every array identical, across auto-resets."""
    a = make(name, composition, num_envs=3, seed=11, num_threads=2)
    limit = a.spec.episode_limit
    warmup = random_actions(a, limit // 2 + 3)
    states = [a.get_state(i) for i in range(a.num_envs)]
    actions = random_actions(make(name, composition, num_envs=3, seed=11), limit // 2 + 3 + limit)[len(warmup):]
    first = record_steps(a, actions)
    b = make(name, composition, num_envs=3, seed=999)
    b.reset()
    for i, state in enumerate(states):
        b.set_state(i, state)
        for key, value in b.get_state(i).items():
            np.testing.assert_array_equal(value, state[key], err_msg=key)
    assert_traces_equal(first, record_steps(b, actions))


@pytest.mark.parametrize("name,composition", CASES, ids=IDS)
def test_common_invariants(name, composition):
    env = make(name, composition, num_envs=5, seed=3)
    spec = env.spec
    a, e = spec.max_agents, spec.max_entities
    shapes = {"entities": (e, spec.feat_dim), "attributes": (a, spec.attr_dim), "agent_present": (a,),
              "entity_present": (e,), "obs_mask": (a, e), "full_mask": (a, e), "avail_actions": (a, spec.n_actions)}
    policy = RandomPolicy(spec, 3)
    obs = env.reset()
    for _ in range(spec.episode_limit + 5):
        for key, shape in shapes.items():
            assert obs[key].shape == (env.num_envs, *shape), key
            assert np.isfinite(obs[key]).all(), key
        present, ent_present = obs["agent_present"].astype(bool), obs["entity_present"].astype(bool)
        np.testing.assert_array_equal(ent_present[:, :a], present)
        np.testing.assert_array_equal(obs["full_mask"], present[:, :, None] & ent_present[:, None, :])
        assert (obs["obs_mask"] <= obs["full_mask"]).all()
        np.testing.assert_array_equal(obs["obs_mask"][:, np.arange(a), np.arange(a)], present)
        avail = obs["avail_actions"].astype(bool)
        assert avail[present].any(-1).all()  # a present agent always has an action
        assert avail[~present][:, 0].all() and not avail[~present][:, 1:].any()  # absent slots: the no-op only
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        assert np.isfinite(reward).all() and reward.dtype == np.float32
        assert terminated.dtype == truncated.dtype == np.bool_ or terminated.dtype == np.uint8
        if "agent_rewards" in info:
            np.testing.assert_allclose(info["agent_rewards"].sum(axis=1), reward, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_episode_bookkeeping_and_same_step_auto_reset(name):
    env = make(name, num_envs=6, seed=2)
    policy = RandomPolicy(env.spec, 2)
    obs = env.reset()
    total, length, ended = np.zeros(6), np.zeros(6, dtype=np.int64), 0
    outcomes = REGISTRY[name].runner_cls.outcomes
    for _ in range(2 * env.spec.episode_limit + 3):
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        total += reward
        length += 1
        done = (terminated | truncated).astype(bool)
        assert (length[done] <= env.spec.episode_limit).all()
        np.testing.assert_array_equal(info["episode_length"][done], length[done])
        np.testing.assert_allclose(info["episode_return"][done], total[done], rtol=1e-5, atol=1e-3)
        np.testing.assert_array_equal(info["episode_step"][~done], length[~done])
        assert (info["episode_step"][done] == 0).all()  # the returned observation starts the next episode
        for key in ("entities", "agent_present"):  # and the final one is kept apart
            assert info["final"][key].shape == obs[key].shape
        # An env's declared outcome flags: exactly one on an ended episode's last step, none before.
        flags = np.stack([info[key] for key in REGISTRY[name].runner_cls.outcomes] + [np.zeros(6)], axis=-1)
        assert not outcomes or (flags[done].sum(axis=-1) == 1).all()
        assert (flags[~done] == 0).all()
        total[done], length[done] = 0, 0
        ended += int(done.sum())
    assert ended >= 6


@pytest.mark.parametrize("name", NAMES)
def test_declared_compositions_and_facts_are_the_envs_own(name):
    """The composition names a C++ env declares are exactly those it builds; its facts and
    outcome flags are numbers and info keys."""
    entry = REGISTRY[name]
    for composition in entry.compositions:
        assert make(name, composition, num_envs=1).reset()["agent_present"].any()
    with pytest.raises(ValueError, match="unknown composition"):
        make(name, "not-a-composition", num_envs=1)
    with pytest.raises(ValueError, match="unknown composition"):  # the C++ check behind the registry's
        entry.runner_cls(1, 0, 1, "not-a-composition", None, None, {})
    env = make(name, num_envs=1)
    assert set(entry.runner_cls.outcomes) <= set(env.info)
    assert all(isinstance(v, float) for values in entry.runner_cls.facts.values() for v in values)


@pytest.mark.parametrize("name", NAMES)
def test_render_gives_an_rgb_image(name):
    env = make(name, num_envs=2, seed=1)
    env.reset()
    image = env.render(1)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 4
    with pytest.raises((ValueError, IndexError), match="2"):
        env.render(2)


@pytest.mark.parametrize("name", NAMES)
def test_bad_actions_raise_and_change_nothing(name):
    env = make(name, num_envs=2, seed=4)
    spec = env.spec
    policy = RandomPolicy(spec, 0)
    env.step(policy(env.reset()))
    before = [env.get_state(i) for i in range(2)]
    obs_before = {k: v.copy() for k, v in env.observation.items()}
    good = policy(env.observation).astype(np.int64)  # available actions: only the bad part is wrong
    out_of_range = good.copy()
    out_of_range[1, 1] = spec.n_actions
    bad = [
        (good[:, :-1], "shape"),
        (good.astype(np.float32), "integer"),
        (good.astype(bool), "integer"),
        (out_of_range, rf"env 1, slot 1: action {spec.n_actions} is outside \[0, {spec.n_actions}\)"),
        (np.full((2, spec.max_agents), -1), "outside"),
        (np.full((2, spec.max_agents), 2**63 + 5, dtype=np.uint64), "outside|lie in"),
    ]
    for actions, message in bad:
        for call in (env.step, env.check_actions):  # check_actions: step's checks alone
            with pytest.raises(ValueError, match=message):
                call(actions)
    np.testing.assert_array_equal(env.check_actions(good), good)
    for i in range(2):
        for key, value in env.get_state(i).items():
            np.testing.assert_array_equal(value, before[i][key], err_msg=key)
    for key, value in env.observation.items():
        np.testing.assert_array_equal(value, obs_before[key], err_msg=key)


@pytest.mark.parametrize("name", NAMES)
def test_step_before_reset_raises(name):
    env = make(name, num_envs=1)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros((1, env.spec.max_agents), dtype=np.int64))

"""Bad input at every public entry point of every registered environment (make_env, reset, step,
get_state, set_state, render): a ValueError naming the argument, raised before anything changes."""

import numpy as np
import pytest

import cpfast
from cpfast.envs.registry import REGISTRY

ENV_NAMES = sorted(REGISTRY)
# A state of another environment: the StarCraft scenarios share every key and shape.
OTHER_ENV = {"resource_collection": "rescue", "rescue": "resource_collection",
             "sc2_3-8sz": "sc2_3-8MMM", "sc2_3-8MMM": "sc2_3-8sz"}


def _make(name, **kwargs):
    return cpfast.make_env(name, **({"num_envs": 3, "seed": 4, "num_threads": 1} | kwargs))


def _other_state(name):
    other = _make(OTHER_ENV[name])
    other.reset()
    return other.get_state(1)


def _first_available(env):
    return env.observation["avail_actions"].argmax(-1).astype(np.int64)


CASES = {
    # make_env: the runner takes C ints and uint64s
    "num_envs True": (lambda env, name: _make(name, num_envs=True), "num_envs must be an integer"),
    "num_envs 2**31": (lambda env, name: _make(name, num_envs=2**31), r"num_envs must be an integer in \[1, 2\*\*31\)"),
    "num_envs 2.0": (lambda env, name: _make(name, num_envs=2.0), "num_envs must be an integer"),
    "num_threads True": (lambda env, name: _make(name, num_threads=True), "num_threads must be an integer"),
    "num_threads 2**31": (lambda env, name: _make(name, num_threads=2**31), "num_threads must be an integer"),
    "seed None": (lambda env, name: _make(name, seed=None), r"seed must be an integer in \[0, 2\*\*64\), got None"),
    "seed True": (lambda env, name: _make(name, seed=True), "seed must be an integer"),
    "seed 2**64": (lambda env, name: _make(name, seed=2**64), "seed must be an integer"),
    "seed -1": (lambda env, name: _make(name, seed=-1), "seed must be an integer"),
    "eval_seed False": (lambda env, name: _make(name, eval_seed=False), "eval_seed must be an integer"),
    "composition True": (lambda env, name: _make(name, composition=True), "unknown composition True"),
    "name not a string": (lambda env, name: cpfast.make_env([name]), "unknown environment"),
    # reset
    "episode_seeds 2**63": (lambda env, name: env.reset(episode_seeds=[2**63] * 3),
                            r"episode_seeds must be 3 integers in \[0, 2\*\*63\)"),
    "episode_seeds uint64 max": (lambda env, name: env.reset(episode_seeds=np.full(3, 2**64 - 1, np.uint64)),
                                 "episode_seeds must be 3 integers"),
    "episode_seeds bools": (lambda env, name: env.reset(episode_seeds=[True, False, True]), "episode_seeds"),
    "episode_seeds negative": (lambda env, name: env.reset(episode_seeds=[0, -1, 2]), "episode_seeds"),
    "env_ids bools": (lambda env, name: env.reset(env_ids=[True]), "env_ids must be a 1-D integer array"),
    "env_ids out of range": (lambda env, name: env.reset(env_ids=[2**40]), r"env_ids must lie in \[0, 3\)"),
    "reset seed True": (lambda env, name: env.reset(seed=True), "seed must be an integer"),
    "reset seed 2**64": (lambda env, name: env.reset(seed=2**64), "seed must be an integer"),
    # step
    "actions bools": (lambda env, name: env.step(np.ones((3, env.spec.max_agents), bool)), "integer array"),
    "actions shape": (lambda env, name: env.step(np.zeros((2, env.spec.max_agents), np.int64)), "actions must have shape"),
    "actions 2**63": (lambda env, name: env.step(np.full((3, env.spec.max_agents), 2**63, np.uint64)), "actions must lie"),
    # env index
    "get_state True": (lambda env, name: env.get_state(True), "env index must be an integer"),
    "get_state 3": (lambda env, name: env.get_state(3), r"env index must be an integer in \[0, 3\)"),
    "set_state True": (lambda env, name: env.set_state(True, env.get_state(0)), "env index must be an integer"),
    "render False": (lambda env, name: env.render(False), "env index must be an integer"),
    "render 2**64": (lambda env, name: env.render(2**64), "env index must be an integer"),
    # set_state
    "state of another env": (lambda env, name: env.set_state(0, _other_state(name)),
                             "state is from environment '.*', not '.*': it cannot be loaded"),
    "state env name wrong": (lambda env, name: env.set_state(0, env.get_state(0) | {"env": np.array("nope")}),
                             "state is from environment 'nope'"),
    "state env not a name": (lambda env, name: env.set_state(0, env.get_state(0) | {"env": 3}),
                             "state is from environment 3"),
    "state not a dict": (lambda env, name: env.set_state(0, [1, 2]), "state must be a dict"),
    "state unknown key": (lambda env, name: env.set_state(0, {"nope": 1}), "unknown state key 'nope'"),
    "state non-finite": (lambda env, name: env.set_state(0, {"running_return": np.inf}), "running_return.*finite"),
    "state out of range": (lambda env, name: env.set_state(0, {"running_return": 1e31}), "running_return.*within"),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", ENV_NAMES)
def test_bad_input_raises_a_clear_error_and_changes_nothing(name, case):
    call, message = CASES[case]
    env = _make(name)
    env.reset()
    env.step(_first_available(env))
    before = [env.get_state(i) for i in range(env.num_envs)]
    obs_before = {key: value.copy() for key, value in env.observation.items()}
    with pytest.raises(ValueError, match=message):
        call(env, name)
    for i, state in enumerate(before):
        after = env.get_state(i)
        assert after.keys() == state.keys()
        for key, value in state.items():
            np.testing.assert_array_equal(after[key], value, err_msg=f"{case}: env {i} {key} changed")
    for key, value in obs_before.items():
        np.testing.assert_array_equal(env.observation[key], value, err_msg=f"{case}: observation {key} changed")
    env.step(_first_available(env))  # still usable


def test_get_state_names_its_environment():
    for name in ENV_NAMES:
        env = _make(name)
        env.reset()
        assert env.get_state(0)["env"] == np.array(name)

"""Helpers shared by the tests: building envs, copying and recording what they return, and
comparing recordings."""

import numpy as np

import cpfast

# The world-state keys of a conformance record (tests/data/README.md).
CONFORMANCE_KEYS = (
    "agent_pos", "agent_vel", "agent_alive", "agent_hold", "agent_at",
    "agent_attr", "lm_pos", "lm_alive", "invader_timer",
)


def make_rc(num_envs=1, seed=0, composition="train", num_threads=1, **kwargs):
    """A reset Resource Collection env."""
    env = cpfast.make_env("resource_collection", num_envs=num_envs, seed=seed,
                          composition=composition, num_threads=num_threads, **kwargs)
    env.reset()
    return env


def copy_obs(obs):
    return {key: value.copy() for key, value in obs.items()}


def record_steps(env, actions):
    """Steps ``env`` through ``actions`` and copies every output array of every step (of
    ``info["final"]`` the rows of envs whose episode ended; the others are stale by design)."""
    trace = []
    for act in actions:
        obs, reward, terminated, truncated, info = env.step(act)
        ended = (terminated | truncated).astype(bool)
        trace.append({f"obs/{k}": v.copy() for k, v in obs.items()}
                     | {f"final/{k}": v[ended] for k, v in info["final"].items()}
                     | {k: np.array(v) for k, v in info.items() if k != "final"}
                     | {"reward": reward.copy(), "terminated": terminated.copy(), "truncated": truncated.copy()})
    return trace


def assert_traces_equal(a, b):
    assert len(a) == len(b)
    for t, (x, y) in enumerate(zip(a, b)):
        assert x.keys() == y.keys(), f"keys differ at step {t}"
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=f"{key} differs at step {t}")

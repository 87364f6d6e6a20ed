"""Helpers shared by the tests and the benchmarks: building envs, copying and recording what they
return, comparing recordings, and replay segments cut from random play."""

import numpy as np

import cpfast
from cpfast.policies import RandomPolicy
from cpfast.replay import SegmentWindows

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


def random_segments(env, period: int, stop, tail: str = "drop", truncation_is_terminal: bool = False, seed: int = 0):
    """The replay segments a random policy's play of ``env`` yields, cut by ``SegmentWindows``
    exactly as in training (the players' mask: the env's own view), one dict of [n, T + 1, ...]
    arrays per step that completed any, until ``stop(segments_so_far)`` says enough."""
    windows = SegmentWindows(env.spec, env.num_envs, period, tail, truncation_is_terminal)
    policy = RandomPolicy(env.spec, seed)
    obs, chunks, total = env.reset(), [], 0
    while not stop(total):
        before = {k: v.copy() for k, v in obs.items()}
        actions = policy(before)
        obs, reward, terminated, truncated, info = env.step(actions)
        final_mask = info["final"]["obs_mask"] if tail == "pad" else None  # the last observation's own view
        cut = windows.append(before, before["obs_mask"], actions, reward, terminated, truncated, info["final"],
                             final_mask)
        if cut:
            chunks.append(cut)
            total += len(cut["reward"])
    return chunks

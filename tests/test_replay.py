"""Segment replay (docs/method.md §8): the windows that cut episodes into segments (drop and
pad tails, overlaps, flags) and the FIFO ring with sampling without replacement."""

import dataclasses

import numpy as np
import pytest
import torch

import cpfast
from cpfast.replay import SegmentBuffer, SegmentWindows, slot_fields

SPEC = cpfast.make_env("resource_collection").spec


def synthetic_obs(n_envs, marker):
    """Observation dicts whose entities carry ``marker`` [n_envs] so slots can be identified."""
    a, e = SPEC.max_agents, SPEC.max_entities
    entities = np.zeros((n_envs, e, SPEC.feat_dim), np.float32)
    entities[:, :, 0] = np.asarray(marker, np.float32)[:, None]
    return {
        "entities": entities,
        "attributes": np.full((n_envs, a, SPEC.attr_dim), 0.5, np.float32),
        "agent_present": np.ones((n_envs, a), np.uint8),
        "entity_present": np.ones((n_envs, e), np.uint8),
        "obs_mask": np.ones((n_envs, a, e), np.uint8),
        "full_mask": np.ones((n_envs, a, e), np.uint8),
        "avail_actions": np.ones((n_envs, a, SPEC.n_actions), np.uint8),
    }


def drive(period, tail, lengths, n_envs=1, episodes=2, terminate=False, truncation_is_terminal=False):
    """Runs ``episodes`` episodes per env with per-env episode lengths ``lengths`` [n_envs]; slot
    markers are 1000 * episode + t (+ 0.5 for the final observation). Returns segments per env."""
    spec = dataclasses.replace(SPEC, episode_limit=max(lengths))
    windows = SegmentWindows(spec, n_envs, period, tail, truncation_is_terminal)
    t = np.zeros(n_envs, int)
    ep = np.zeros(n_envs, int)
    per_env = [[] for _ in range(n_envs)]
    while (ep < episodes).any():
        obs = synthetic_obs(n_envs, 1000 * ep + t + 10000 * np.arange(n_envs))
        ended = t == np.asarray(lengths) - 1
        term = ended & terminate
        trunc = ended & ~term
        final = synthetic_obs(n_envs, 1000 * ep + t + 10000 * np.arange(n_envs) + 0.5)
        final_mask = np.zeros((n_envs, SPEC.max_agents, SPEC.max_entities), np.uint8)
        final_mask[:, :, 0] = 1
        actions = np.tile((t % SPEC.n_actions)[:, None], (1, SPEC.max_agents))
        segs = windows.append(obs, obs["obs_mask"], actions, (t + 0.25).astype(np.float32), term, trunc, final, final_mask)
        if segs:
            env_of = (segs["entities"][:, 0, 0, 0] // 10000).astype(int)
            for i, env in enumerate(env_of):
                if ep[env] < episodes:
                    per_env[env].append({k: v[i] for k, v in segs.items()})
        t = np.where(ended, 0, t + 1)
        ep = ep + ended
    return per_env


def markers(seg):
    return seg["entities"][:, 0, 0] % 10000


@pytest.mark.parametrize("period,count", [(4, 36), (2, 72), (8, 18)])
def test_drop_mode_segment_counts_and_overlap(period, count):
    per_env = drive(period, "drop", [145, 145], n_envs=2, episodes=2)
    for segs in per_env:
        assert len(segs) == 2 * count
        for k, seg in enumerate(segs):
            m = markers(seg)
            episode, start = divmod(int(m[0]), 1000)
            assert start % period == 0
            np.testing.assert_array_equal(m, 1000 * episode + start + np.arange(period + 1))
            np.testing.assert_array_equal(seg["valid"], 1)
            np.testing.assert_array_equal(seg["done"], 0)
            np.testing.assert_allclose(seg["reward"], start + np.arange(period + 1) + 0.25)
            np.testing.assert_array_equal(seg["actions"][:, 0], (start + np.arange(period + 1)) % SPEC.n_actions)
        for prev, nxt in zip(segs, segs[1:]):
            if markers(prev)[-1] // 1000 == markers(nxt)[0] // 1000:  # same episode
                for name in prev:
                    np.testing.assert_array_equal(prev[name][-1], nxt[name][0])  # exactly one shared slot
                assert markers(nxt)[1] == markers(prev)[-1] + 1
        last = max(int(markers(s)[-1]) % 1000 for s in segs)
        assert last == (144 // period) * period  # the tail after the last multiple of T is dropped


def test_pad_mode_full_segments_when_length_fits():
    per_env = drive(4, "pad", [100], episodes=2, terminate=False, truncation_is_terminal=True)
    segs = per_env[0]
    assert len(segs) == 50
    for seg in segs:
        np.testing.assert_array_equal(seg["valid"][:4], 1)  # 25 full segments per episode
    tail = segs[24]
    np.testing.assert_array_equal(markers(tail), [96, 97, 98, 99, 99.5])  # final observation last
    np.testing.assert_array_equal(tail["valid"], [1, 1, 1, 1, 0])
    np.testing.assert_array_equal(tail["done"], [0, 0, 0, 1, 0])  # truncation counts as terminal here
    np.testing.assert_array_equal(tail["player_mask"][4, :, 0], 1)  # the final player mask
    np.testing.assert_array_equal(tail["player_mask"][4, :, 1:], 0)
    np.testing.assert_array_equal(markers(segs[25])[:2], [1000, 1001])  # next episode restarts at t = 0
    for name in tail:
        np.testing.assert_array_equal(segs[23][name][-1], tail[name][0])


@pytest.mark.parametrize("terminate,truncation_is_terminal,done", [(True, False, 1), (False, False, 0), (False, True, 1)])
def test_pad_tail_flags_and_zero_padding(terminate, truncation_is_terminal, done):
    per_env = drive(4, "pad", [102, 10], n_envs=2, episodes=1, terminate=terminate,
                    truncation_is_terminal=truncation_is_terminal)
    # Env 0: L = 102 -> 25 full windows, then a tail from s = 100 with 2 valid samples.
    segs = per_env[0]
    assert len(segs) == 26
    tail = segs[-1]
    np.testing.assert_array_equal(markers(tail)[:3], [100, 101, 101.5])
    np.testing.assert_array_equal(tail["valid"], [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(tail["done"], [0, done, 0, 0, 0])
    np.testing.assert_allclose(tail["reward"], [100.25, 101.25, 0, 0, 0])
    np.testing.assert_array_equal(tail["agent_present"][2], 1)  # the final observation
    for name in ("entities", "attributes", "agent_present", "entity_present", "player_mask", "avail_actions",
                 "actions", "reward", "valid", "done"):
        assert not tail[name][3:].any(), f"{name} must be zero-padded"
    # Env 1: L = 10 -> windows at t = 4, 8, then the tail 8, 9, final, zeros.
    short = per_env[1]
    assert len(short) == 3
    np.testing.assert_array_equal(markers(short[-1])[:3], [8, 9, 9.5])
    np.testing.assert_array_equal(short[-1]["valid"], [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(short[-1]["done"], [0, done, 0, 0, 0])


# ---------------------------------------------------------------------------- buffer
def _segments(ids, period=2):
    fields = slot_fields(SPEC)
    out = {name: np.zeros((len(ids), period + 1, *shape), dtype=torch.empty((), dtype=dtype).numpy().dtype)
           for name, (shape, dtype) in fields.items()}
    out["reward"][:] = np.asarray(ids, np.float32)[:, None]
    return out


def test_segment_buffer_fifo_wraparound_and_sampling_without_replacement():
    buf = SegmentBuffer(SPEC, 5, 2)
    buf.push(_segments([0, 1, 2]))
    assert len(buf) == 3
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        ids = buf.sample(3, gen)["reward"][:, 0].tolist()
        assert sorted(ids) == [0, 1, 2]  # only filled rows, no repeats
    buf.push(_segments([3, 4, 5, 6]))
    assert len(buf) == 5
    assert buf.data["reward"][:, 0].tolist() == [5, 6, 2, 3, 4]  # the two oldest were overwritten
    buf.push(_segments([7]))
    assert buf.data["reward"][:, 0].tolist() == [5, 6, 7, 3, 4]
    counts = np.zeros(8)
    for _ in range(600):
        ids = buf.sample(3, gen)["reward"][:, 0].long().tolist()
        assert len(set(ids)) == 3 and set(ids) <= {3, 4, 5, 6, 7}
        counts[ids] += 1
    assert counts[:3].sum() == 0
    assert (np.abs(counts[3:] - 360) < 60).all()  # uniform: each row 3/5 of 600 draws
    batch = buf.sample(5, gen)
    assert sorted(batch["reward"][:, 0].tolist()) == [3, 4, 5, 6, 7]
    assert batch["reward"].shape == (5, 3)



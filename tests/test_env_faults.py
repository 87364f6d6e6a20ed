"""Faults no caller may be able to turn into a crash, a hang or a NaN (issue 17): a worker thread
that cannot start, two Python threads on one env, and valid states at the edges of the physics
(coincident bodies, extreme speeds) in every registered environment."""

import resource
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cpfast
from cpfast.envs.registry import REGISTRY

ENV_NAMES = sorted(REGISTRY)


# ---------------------------------------------------------------------------- thread start failure
def _limit_address_space():
    # 2 GB of address space: torch and numpy fit, 2,000 thread stacks (8 MB each) do not.
    resource.setrlimit(resource.RLIMIT_AS, (2_000_000_000, 2_000_000_000))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc/self/status")
def test_make_env_raises_when_a_worker_thread_cannot_start():
    code = ("import cpfast\n"
            "try:\n"
            "    cpfast.make_env('resource_collection', num_envs=2000, num_threads=2000)\n"
            "except RuntimeError as error:\n"
            "    print('ERROR', error)\n"
            "else:\n"
            "    print('NO ERROR')\n"
            "status = open('/proc/self/status').read()\n"  # the started workers were joined
            "print('THREADS', next(int(l.split()[1]) for l in status.splitlines() if l.startswith('Threads:')))\n"
            "env = cpfast.make_env('resource_collection', num_envs=4, num_threads=2)\n"  # still usable
            "env.reset()\n"
            "print('AFTER OK')\n")
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              preexec_fn=_limit_address_space, cwd=Path(__file__).resolve().parents[1])
    except subprocess.TimeoutExpired:
        pytest.fail("make_env hung when a worker thread could not be created")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ERROR could not start worker thread" in done.stdout, done.stdout + done.stderr[-2000:]
    assert "num_threads" in done.stdout
    assert "AFTER OK" in done.stdout
    threads_left = int(done.stdout.split("THREADS")[1].split()[0])
    assert threads_left < 50, f"{threads_left} threads still running after the failed make_env"


# ---------------------------------------------------------------------------- concurrent use
def _run_threads(target, n=2):
    errors = []

    def guarded(k):
        try:
            target(k)
        except Exception as error:  # reported by the test
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors


def _valid_actions(obs, rng):
    """A random available action per agent (slot 0 where no agent)."""
    avail = obs["avail_actions"].astype(bool)
    scores = rng.random(avail.shape) * avail
    return scores.argmax(-1).astype(np.int64)


@pytest.mark.parametrize("name", ENV_NAMES)
def test_two_threads_hammering_one_env_do_not_crash(name):
    """Every entry point from two threads at once (docs/interface.md: calls on one env run one at
    a time). Actions chosen from an observation the other thread may have changed can be
    unavailable by the time they run: that is rejected before any change, like any bad action."""
    env = cpfast.make_env(name, num_envs=16, seed=3, num_threads=2)
    env.reset()

    def worker(k):
        rng = np.random.default_rng(k)
        for t in range(250):
            if t % 40 == 39:
                env.reset(env_ids=rng.choice(env.num_envs, 3, replace=False))
            elif t % 20 == 7:
                i = int(rng.integers(env.num_envs))
                env.set_state(i, env.get_state(i))
            elif t % 30 == 11:
                env.render(int(rng.integers(env.num_envs)))
            else:
                try:
                    env.step(_valid_actions(env.observation, rng))
                except ValueError as error:
                    assert "is not available" in str(error), error

    _run_threads(worker)
    # The env is intact: its states load into a fresh env, which then steps exactly like it.
    fresh = cpfast.make_env(name, num_envs=16, seed=99, num_threads=1)
    fresh.reset()
    for i in range(env.num_envs):
        fresh.set_state(i, env.get_state(i))
    rng = np.random.default_rng(0)
    for _ in range(20):
        actions = _valid_actions(env.observation, rng)
        a, b = env.step(actions), fresh.step(actions)
        np.testing.assert_array_equal(a[1], b[1])
        for key in a[0]:
            np.testing.assert_array_equal(a[0][key], b[0][key], err_msg=key)


@pytest.mark.parametrize("name", ["resource_collection", "rescue"])
def test_steps_from_two_threads_equal_the_same_steps_from_one(name):
    """Identical no-op steps commute, so two threads' 2 x 150 steps must leave every env where
    300 steps from one thread do, whatever the interleaving (torn steps would not)."""
    env = cpfast.make_env(name, num_envs=32, seed=5, num_threads=2)
    serial = cpfast.make_env(name, num_envs=32, seed=5, num_threads=1)
    env.reset(), serial.reset()
    actions = np.zeros((32, env.spec.max_agents), np.int64)  # 0 is always available here

    def worker(_):
        for _ in range(150):
            env.step(actions)

    _run_threads(worker)
    for _ in range(300):
        serial.step(actions)
    for i in range(env.num_envs):
        for key, value in serial.get_state(i).items():
            np.testing.assert_array_equal(env.get_state(i)[key], value, err_msg=f"env {i} {key}")


# ---------------------------------------------------------------------------- finite from any valid state
_FIELDS = {name: REGISTRY[name].runner_cls.state_fields() for name in ENV_NAMES}


@st.composite
def _edge_state(draw, name, base):
    """A valid state (every value within its documented range) near the physics' edges: some
    values at the range ends, zero or anywhere in range, and positions copied onto other
    positions (an agent exactly on home, on a resource, on another agent; units stacked)."""
    state = {key: np.array(value) for key, value in base.items() if key != "env"}
    fields = [f for f in _FIELDS[name] if f[1] != "uint64" and f[0] != "running_return"]
    for key, dtype, shape, lo, hi in draw(st.lists(st.sampled_from(fields), max_size=6, unique_by=lambda f: f[0])):
        flat = state[key].reshape(-1)
        for index in draw(st.lists(st.integers(0, flat.size - 1), min_size=1, max_size=4)):
            if np.dtype(dtype).kind == "f":
                flat[index] = draw(st.one_of(st.sampled_from([lo, hi, 0.0]),
                                             st.floats(lo, hi, allow_nan=False, allow_infinity=False)))
            else:
                flat[index] = draw(st.integers(int(lo), int(hi)))
    positions = [(f[0], f[1]) for f in _FIELDS[name] if len(f[2]) == 2 and f[2][1] == 2
                 and ("pos" in f[0] or "cell" in f[0])]  # [n, 2] coordinates: RC, StarCraft; Rescue's cells
    for _ in range(draw(st.integers(0, 4))):
        dst, dtype = draw(st.sampled_from(positions))
        src = draw(st.sampled_from([key for key, other in positions if other == dtype]))
        row = draw(st.integers(0, len(state[src]) - 1))
        state[dst][draw(st.integers(0, len(state[dst]) - 1))] = state[src][row]
    return state


def _assert_finite(arrays, where):
    for key, value in arrays.items():
        value = np.asarray(value)
        if value.dtype.kind == "f":
            assert np.isfinite(value).all(), f"{where}: non-finite {key}: {value}"


@pytest.mark.parametrize("name", ENV_NAMES)
def test_no_valid_state_gives_a_non_finite_observation_or_reward(name):
    env = cpfast.make_env(name, num_envs=1, seed=1, num_threads=1)
    env.reset()
    base = env.get_state(0)

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(state=_edge_state(name, base), seed=st.integers(0, 2**32 - 1))
    def check(state, seed):
        env.set_state(0, base)
        env.set_state(0, state)
        _assert_finite(env.observation, "after set_state")
        rng = np.random.default_rng(seed)
        for t in range(25):
            obs, reward, _, _, info = env.step(_valid_actions(env.observation, rng))
            _assert_finite(obs, f"step {t}")
            _assert_finite({"reward": reward, "episode_return": info["episode_return"],
                            **({"agent_rewards": info["agent_rewards"]} if "agent_rewards" in info else {}),
                            **info["final"]}, f"step {t}")
            _assert_finite(env.get_state(0), f"state after step {t}")

    check()

"""Environment throughput: env-steps/s of the batched C++ runner (one env step = one
environment advanced by one step), through the public ``VecEnv.step`` with its validation,
random actions drawn in advance.

StarCraft micro-sim (8v8): actions must be legal for the current observation, so a uniform
random policy over the available actions picks them every step and only ``VecEnv.step`` is
timed. JaxMARL's SMAX on 3s5z (also 8v8) is measured in the same run when ``jaxmarl`` is
installed (optional extra; skipped otherwise).

    pytest benchmarks/bench_envs.py
    pytest benchmarks/bench_envs.py -k "sc2 or smax"   # StarCraft and SMAX only
"""

import importlib.util
import time

import numpy as np
import pytest

import cpfast
from cpfast.policies import RandomPolicy

# The authors' Resource Collection env with the trainer's per-step getters, one process on a
# 2-core machine (shared/spec/performance.md).
REFERENCE_ENV_STEPS_PER_S = {"resource_collection": 490.0}
# performance.md targets (env-steps/s at N >= 1024 on 2 threads); Rescue has no reference code.
TARGET_ENV_STEPS_PER_S = {"resource_collection": 500_000.0, "rescue": 1_000_000.0}
ENV_COUNTS = (1, 64, 1024, 8192)
THREADS = (1, 2)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("num_envs", ENV_COUNTS)
@pytest.mark.parametrize("name", ["resource_collection", "rescue"])
def test_env_steps_per_second(benchmark, record_throughput, name, num_envs, threads):
    env = cpfast.make_env(name, num_envs=num_envs, seed=0, num_threads=threads)
    obs = env.reset()
    actions = [RandomPolicy(env.spec, k)(obs) for k in range(16)]
    # Whole episodes per round: per-step cost varies over an episode (agents start packed
    # around home, where every contact pair is live), so partial episodes would be biased.
    horizon = env.spec.episode_limit
    steps = horizon * max(1, round(65536 / (horizon * num_envs)))

    def run():
        for t in range(steps):
            env.step(actions[t % 16])

    run()  # warm-up
    benchmark.pedantic(run, rounds=9, iterations=1)
    rate = num_envs * steps / benchmark.stats.stats.median
    benchmark.extra_info["env_steps_per_s"] = rate
    record_throughput("env_steps", (name, num_envs, threads), rate)


def summarize_env_throughput(results: dict) -> list[str]:
    if not results:
        return []
    lines = ["", "env-steps/s (median)   threads=1     threads=2   1->2 scaling   vs reference"]
    for name, num_envs in sorted({(n, e) for n, e, _ in results}, key=lambda k: (k[0], k[1])):
        one, two = results.get((name, num_envs, 1)), results.get((name, num_envs, 2))
        cells = [f"{v:12,.0f}" if v else f"{'-':>12}" for v in (one, two)]
        scaling = f"{two / one:10.2f}x" if one and two else f"{'-':>11}"
        ref = REFERENCE_ENV_STEPS_PER_S.get(name)
        best = max(v for v in (one, two) if v)
        versus = f"{best / ref:10,.0f}x" if ref else ""
        target = TARGET_ENV_STEPS_PER_S.get(name)
        if target and num_envs >= 1024 and two:
            versus += f"  target {target:,.0f}: {'met' if two >= target else 'NOT met'}"
        lines.append(f"{name[:12]:12s} N={num_envs:<5d} {cells[0]}  {cells[1]}  {scaling}    {versus}")
    return lines


# --------------------------------------------------------------------------- StarCraft 8v8
# 8v8 compositions: 3 Stalkers + 5 Zealots (index 35, SMAX's 3s5z) and 5 Marines + 1 Marauder
# + 2 Medivacs (index 50, the 3-8MMM max scenario).
SC2_8V8 = {"sc2_3-8sz": "35", "sc2_3-8MMM": "50"}
SC2_ENV_COUNTS = (1, 64, 1024)
SC2_STEPS = 30_000  # env-steps per timed round (whole 150-step horizons)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("num_envs", SC2_ENV_COUNTS)
@pytest.mark.parametrize("name", list(SC2_8V8))
def test_sc2_env_steps_per_second(record_throughput, name, num_envs, threads):
    env = cpfast.make_env(name, num_envs=num_envs, seed=0, composition=SC2_8V8[name], num_threads=threads)
    policy = RandomPolicy(env.spec, 0)
    steps = 150 * max(1, round(SC2_STEPS / (150 * num_envs)))

    def run() -> float:
        obs, stepping = env.reset(), 0.0
        for _ in range(steps):
            actions = policy(obs)
            start = time.perf_counter()
            obs = env.step(actions)[0]
            stepping += time.perf_counter() - start
        return stepping

    run()  # warm-up
    seconds = float(np.median([run() for _ in range(5)]))
    rate = num_envs * steps / seconds
    record_throughput("sc2_env_steps", (name, num_envs, threads), rate)


def smax_steps_per_second(num_envs: int, steps: int) -> float:
    """JaxMARL SMAX 3s5z: a jitted, vmapped step of ``num_envs`` envs with uniform random legal
    actions drawn inside the step (SMAX auto-resets finished envs); wall time of ``steps`` calls."""
    import jax
    import jax.numpy as jnp
    from jaxmarl import make
    from jaxmarl.environments.smax import map_name_to_scenario

    env = make("SMAX", scenario=map_name_to_scenario("3s5z"))
    _, state = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), num_envs))

    def one(key, s):
        keys = jax.random.split(key, env.num_agents + 1)
        avail = env.get_avail_actions(s)
        actions = {a: jax.random.categorical(keys[i], jnp.log(avail[a])) for i, a in enumerate(env.agents)}
        return env.step(keys[-1], s, actions)[1]

    step = jax.jit(jax.vmap(one))
    key = jax.random.PRNGKey(1)
    state = step(jax.random.split(key, num_envs), state)  # compile
    jax.block_until_ready(state)
    start = time.perf_counter()
    for t in range(steps):
        state = step(jax.random.split(jax.random.fold_in(key, t), num_envs), state)
    jax.block_until_ready(state)
    return num_envs * steps / (time.perf_counter() - start)


@pytest.mark.parametrize("num_envs", SC2_ENV_COUNTS)
def test_smax_env_steps_per_second(record_throughput, num_envs):
    if importlib.util.find_spec("jaxmarl") is None:
        pytest.skip("jaxmarl is not installed (optional extra): no SMAX comparison in this run")
    steps = max(20, round(SC2_STEPS / num_envs))
    smax_steps_per_second(num_envs, min(steps, 200))  # warm-up
    rate = smax_steps_per_second(num_envs, steps)
    record_throughput("sc2_env_steps", ("smax_3s5z", num_envs, 0), rate)


def summarize_sc2_throughput(results: dict) -> list[str]:
    if not results:
        return []
    smax = {n: v for (name, n, _), v in results.items() if name == "smax_3s5z"}
    lines = ["", "StarCraft 8v8 env-steps/s   threads=1     threads=2   SMAX 3s5z (same N)   best / SMAX"]
    for name, num_envs in sorted({(n, e) for n, e, _ in results if n != "smax_3s5z"}):
        one, two = results.get((name, num_envs, 1)), results.get((name, num_envs, 2))
        cells = [f"{v:12,.0f}" if v else f"{'-':>12}" for v in (one, two)]
        ref = smax.get(num_envs)
        best = max(v for v in (one, two) if v)
        ref_cell = f"{ref:18,.0f}" if ref else f"{'not installed':>18}"
        ratio = f"{best / ref:10,.0f}x" if ref else f"{'-':>11}"
        lines.append(f"{name:12s} N={num_envs:<5d} {cells[0]}  {cells[1]}  {ref_cell}   {ratio}")
    return lines

"""Environment throughput: env-steps/s of the batched C++ runner (one env step = one
environment advanced by one step), through the public ``VecEnv.step`` with its validation,
random actions drawn in advance.

StarCraft micro-sim (8v8): actions must be legal for the current observation, so a uniform
random policy over the available actions picks them every step and only ``VecEnv.step`` is
timed. JaxMARL's SMAX on 3s5z (also 8v8) is measured in the same run, at the same N and
thread counts, when ``jaxmarl`` is installed (optional extra ``bench-smax``; skipped otherwise).
``BENCH_SMAX_STEPS`` sets SMAX's env-steps per timed round (a small value for a quick check).

    pytest benchmarks/bench_envs.py
    pytest benchmarks/bench_envs.py -k "sc2 or smax"   # StarCraft and SMAX only
"""

import importlib.util
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import cpfast
from cpfast.policies import RandomPolicy

# The authors' Resource Collection env with the trainer's per-step getters, one process on a
# 2-core machine (docs/performance.md).
REFERENCE_ENV_STEPS_PER_S = {"resource_collection": 490.0}
# docs/performance.md targets (env-steps/s at N >= 1024 on 2 threads); Rescue has no reference code.
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


# JaxMARL SMAX on 3s5z, the same armies as 3-8sz index 35. Two envs:
#   "HeuristicEnemySMAX" - the 8 allies act, the enemies follow JaxMARL's scripted heuristic:
#                          the same task as the micro-sim (8 agents against a built-in AI), and
#                          the env JaxMARL's own speed test (jaxmarl/environments/smax/speed.py) uses;
#   "SMAX"               - all 16 units act (uniform random legal actions on both sides, no
#                          enemy AI): less work per step, so the conservative comparison.
# and two ways of driving them:
#   "scan"   - steps fused with lax.scan on the device side, actions drawn there: JAX's fastest way,
#              as JaxMARL's speed test runs it (smax_steps_per_second);
#   "python" - one jitted step per Python call, actions in and observations out as numpy arrays:
#              the way the micro-sim is driven and timed above (smax_python_loop_steps_per_second).
# Each (case, N, threads) runs in a child process, because XLA reads its thread settings once
# per process: the child is pinned to ``threads`` cores and XLA's intra-op pool is sized to match
# (--xla_cpu_multi_thread_eigen=false for one thread), so SMAX gets the cores the micro-sim gets.
SMAX_VARIANTS = {"smax_3s5z": ("HeuristicEnemySMAX", "scan"), "smax_3s5z_no-enemy-ai": ("SMAX", "scan"),
                 "smax_3s5z_py-loop": ("HeuristicEnemySMAX", "python")}
SMAX_STEPS = int(os.environ.get("BENCH_SMAX_STEPS", 12_000))  # env-steps per timed round
SMAX_CHUNK = 150  # env steps fused into one jitted call (lax.scan), fewer when N is large


def smax_steps_per_second(variant: str, num_envs: int, steps: int, rounds: int = 3) -> float:
    """Env-steps/s of JaxMARL SMAX 3s5z in this process: ``num_envs`` envs vmapped, ``chunk``
    steps fused with ``lax.scan`` into one jitted call (JAX's fastest way to run it, with no
    per-step dispatch), each step drawing uniform random legal actions from
    ``get_avail_actions`` and calling ``env.step`` (which auto-resets finished envs, as JaxMARL
    does). Compilation and one warm-up call are excluded; median of ``rounds`` timed rounds of
    about ``steps`` env-steps, each ended by ``block_until_ready``."""
    import jax
    import jax.numpy as jnp
    from jaxmarl import make
    from jaxmarl.environments.smax import map_name_to_scenario

    env = make(variant, scenario=map_name_to_scenario("3s5z"))
    agents = env.agents  # the acting agents: 8 allies, or all 16 units for plain SMAX

    def env_step(carry, _):
        key, state = carry
        key, act_key, step_key = jax.random.split(key, 3)
        avail = env.get_avail_actions(state)
        act_keys = jax.random.split(act_key, len(agents))
        actions = {a: jax.random.categorical(act_keys[i], jnp.where(avail[a] > 0, 0.0, -jnp.inf))
                   for i, a in enumerate(agents)}
        _, state, _, _, _ = env.step(step_key, state, actions)
        return (key, state), None

    chunk = max(1, min(SMAX_CHUNK, steps // num_envs))
    calls = max(1, round(steps / (chunk * num_envs)))
    run = jax.jit(jax.vmap(lambda k, s: jax.lax.scan(env_step, (k, s), None, length=chunk)[0]))
    keys = jax.random.split(jax.random.PRNGKey(0), num_envs)
    carry = (keys, jax.vmap(env.reset)(keys)[1])
    # Warm-up: the first call compiles for reset's state, the second once more for the state
    # ``step`` returns (weak types differ); later calls reuse that.
    for _ in range(2):
        carry = jax.block_until_ready(run(*carry))
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            carry = run(*carry)
        jax.block_until_ready(carry)
        times.append(time.perf_counter() - start)
    return num_envs * chunk * calls / float(np.median(times))


def smax_python_loop_steps_per_second(variant: str, num_envs: int, steps: int, rounds: int = 3) -> float:
    """Env-steps/s of JaxMARL SMAX 3s5z stepped as the micro-sim is: one jitted, vmapped
    ``env.step`` per Python call, uniform random legal actions drawn with numpy from the
    availability the previous step returned (not timed, like the micro-sim's policy), and the
    observations, rewards, dones and availability copied to numpy arrays (timed: a learner on
    the host needs them). Median of ``rounds`` rounds of about ``steps`` env-steps, after a
    compiling warm-up round."""
    import jax
    import jax.numpy as jnp
    from jaxmarl import make
    from jaxmarl.environments.smax import map_name_to_scenario

    env = make(variant, scenario=map_name_to_scenario("3s5z"))
    agents = env.agents

    @jax.jit
    def step(keys, state, actions):
        obs, state, rewards, dones, _ = jax.vmap(env.step)(keys, state, {a: actions[:, i] for i, a in enumerate(agents)})
        avail = jax.vmap(env.get_avail_actions)(state)
        return (jnp.stack([obs[a] for a in agents], 1), jnp.stack([rewards[a] for a in agents], 1),
                dones["__all__"], jnp.stack([avail[a] for a in agents], 1)), state

    rng = np.random.default_rng(0)
    state = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), num_envs))[1]
    avail = np.stack([np.asarray(v) for v in jax.vmap(env.get_avail_actions)(state).values()], 1)
    calls = max(5, round(steps / num_envs))
    times = []
    for r in range(rounds + 1):
        elapsed = 0.0
        for k in range(calls):
            actions = np.where(avail > 0, rng.random(avail.shape), -1.0).argmax(-1).astype(np.int32)
            keys = jax.random.split(jax.random.PRNGKey(r * calls + k + 1), num_envs)
            start = time.perf_counter()
            outputs, state = step(keys, state, actions)
            outputs = [np.asarray(x) for x in outputs]
            elapsed += time.perf_counter() - start
            avail = outputs[-1]
        if r:  # round 0 compiles
            times.append(elapsed)
    return num_envs * calls / float(np.median(times))


def _smax_child(case: str, num_envs: int, threads: int, steps: int) -> None:
    """Child-process entry: restrict this process to ``threads`` cores and XLA to as many
    threads before JAX starts, then print the measured env-steps/s."""
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen="
                               + ("true" if threads > 1 else "false")
                               + f" intra_op_parallelism_threads={threads}").strip()
    variant, driver = SMAX_VARIANTS[case]
    measure = smax_steps_per_second if driver == "scan" else smax_python_loop_steps_per_second
    print(json.dumps({"env_steps_per_s": measure(variant, num_envs, steps)}))


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("num_envs", SC2_ENV_COUNTS)
@pytest.mark.parametrize("name", list(SMAX_VARIANTS))
def test_smax_env_steps_per_second(record_throughput, name, num_envs, threads):
    if importlib.util.find_spec("jaxmarl") is None:
        pytest.skip("jaxmarl is not installed (optional extra `pip install cpfast[bench-smax]`): "
                    "no SMAX comparison in this run")
    if threads > len(os.sched_getaffinity(0)):
        pytest.skip(f"{threads} threads need {threads} cores")
    code = (f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
            f"from bench_envs import _smax_child; "
            f"_smax_child({name!r}, {num_envs}, {threads}, {SMAX_STEPS})")
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert child.returncode == 0, child.stderr[-4000:]
    rate = json.loads(child.stdout.strip().splitlines()[-1])["env_steps_per_s"]
    record_throughput("sc2_env_steps", (name, num_envs, threads), rate)


def summarize_sc2_throughput(results: dict) -> list[str]:
    if not results:
        return []
    lines = ["", "StarCraft 8v8 env-steps/s         threads=1     threads=2"]
    order = [n for n in (*SC2_8V8, *SMAX_VARIANTS) if any(k[0] == n for k in results)]
    for name in order:
        for num_envs in sorted({e for n, e, _ in results if n == name}):
            cells = [results.get((name, num_envs, t)) for t in THREADS]
            cells = [f"{v:12,.0f}" if v else f"{'-':>12}" for v in cells]
            lines.append(f"{name:21s} N={num_envs:<5d} {cells[0]}  {cells[1]}")
    smax_names = [n for n in SMAX_VARIANTS if n in order]
    if not smax_names:
        return lines + ["SMAX: jaxmarl is not installed (optional extra bench-smax), no comparison"]
    lines += ["", "micro-sim / SMAX (same N, same threads)   threads=1     threads=2   target 100x"]
    for name in SC2_8V8:
        for ref in smax_names:
            for num_envs in sorted({e for n, e, _ in results if n == name}):
                ratios = [results.get((name, num_envs, t), 0) / results[(ref, num_envs, t)]
                          if results.get((ref, num_envs, t)) else None for t in THREADS]
                cells = [f"{r:11,.0f}x" if r else f"{'-':>12}" for r in ratios]
                met = "met" if all(r and r >= 100 for r in ratios) else "NOT met"
                lines.append(f"{name[4:]:10s}/ {ref[5:]:17s} N={num_envs:<5d} {cells[0]}  {cells[1]}   {met}")
    return lines

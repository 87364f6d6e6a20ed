"""Environment throughput: env-steps/s of the batched C++ runner (one env step = one
environment advanced by one step), through the public ``VecEnv.step`` with its validation,
random actions drawn in advance.

    pytest benchmarks/bench_envs.py
"""

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

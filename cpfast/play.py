"""Run a reference policy on an environment and report episode rewards and speed.

    python -m cpfast.play --policy scripted --composition train --episodes 64
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from .envs import REGISTRY, make_env
from .envs.render import record_episode_gif
from .episodes import run_episodes
from .policies import GreedyRescuePolicy, RandomPolicy, ScriptedResourcePolicy

POLICIES = {
    "random": lambda spec, seed: RandomPolicy(spec, seed),
    "scripted": lambda spec, seed: ScriptedResourcePolicy(spec),  # resource_collection
    "greedy": lambda spec, seed: GreedyRescuePolicy(spec),  # rescue
}
DEFAULT_POLICY = {"resource_collection": "scripted", "rescue": "greedy"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cpfast.play", description=__doc__.splitlines()[0])
    p.add_argument("--env", default="resource_collection", choices=sorted(REGISTRY))
    p.add_argument("--composition", default="train")
    p.add_argument("--policy", default=None, choices=sorted(POLICIES),
                   help="random (any env), scripted (resource_collection) or greedy (rescue); default: the env's scripted one")
    p.add_argument("--episodes", type=int, default=144, help="episodes to finish (default 144: three rounds of the 2-3-4 rotation)")
    p.add_argument("--num-envs", type=int, default=48, help="environments stepped together")
    p.add_argument("--threads", type=int, default=None, help="C++ threads (default: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speed-envs", type=int, default=1024, help="envs for the env-only speed check (0: skip)")
    p.add_argument("--gif", default=None, help="also write one episode of env 0 to this GIF")
    return p.parse_args(argv)


def env_speed(name: str, composition: str, num_envs: int, threads: int | None, steps: int = 100) -> float:
    """Env-steps per second of the batched runner alone (random actions drawn beforehand)."""
    env = make_env(name, num_envs=num_envs, seed=0, composition=composition, num_threads=threads)
    obs = env.reset()
    actions = [RandomPolicy(env.spec, k)(obs) for k in range(8)]
    env.step(actions[0])
    start = time.perf_counter()
    for t in range(steps):
        env.step(actions[t % 8])
    return num_envs * steps / (time.perf_counter() - start)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.policy is None:
        args.policy = DEFAULT_POLICY.get(args.env, "random")
    env = make_env(args.env, num_envs=args.num_envs, seed=args.seed, composition=args.composition, num_threads=args.threads)
    policy = POLICIES[args.policy](env.spec, args.seed)
    start = time.perf_counter()
    result = run_episodes(env, policy, args.episodes)
    elapsed = time.perf_counter() - start
    returns, sizes = result["returns"], result["team_sizes"]

    print(f"{args.env} / {args.composition} / {args.policy} policy, {len(returns)} episodes, {env.num_threads} threads")
    print(f"  mean episode reward {returns.mean():8.2f} ± {returns.std(ddof=1) / np.sqrt(len(returns)):.2f} (s.e.)")
    for size in np.unique(sizes):
        part = returns[sizes == size]
        print(f"    team of {size} at start: {part.mean():8.2f} over {len(part)} episodes")
    print(f"  rollout (policy + env): {result['env_steps'] / elapsed:,.0f} env-steps/s")
    if args.speed_envs > 0:
        speed = env_speed(args.env, args.composition, args.speed_envs, args.threads)
        print(f"  env alone, {args.speed_envs} envs: {speed:,.0f} env-steps/s")
    if args.gif:
        gif_env = make_env(args.env, num_envs=1, seed=args.seed, composition=args.composition, num_threads=1)
        path = record_episode_gif(gif_env, POLICIES[args.policy](gif_env.spec, args.seed), args.gif)
        print(f"  wrote {path}")


if __name__ == "__main__":
    main()

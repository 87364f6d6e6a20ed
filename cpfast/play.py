"""Run a reference policy or a trained team on an environment and report episode rewards and speed.

    python -m cpfast.play --policy scripted --composition train --episodes 64
    python -m cpfast.play --env sc2_3-8MMM --policy focus_fire --episodes 100 --gif battle.gif
    python -m cpfast.play --checkpoint runs/resource_collection_copa_s0 --composition n6 --gif team.gif

Every registered environment works through the common interface. Policies: ``random`` (any env)
and the env's scripted heuristic, ``scripted`` or by its own name (Resource Collection:
scripted; Rescue: greedy; StarCraft: focus_fire). StarCraft also reports win / draw / loss rates. ``--checkpoint RUN_DIR`` plays the trained team of
a run instead, as evaluation does (greedy players, mean strategies, adaptive communication with
``--beta``), on the run's environment.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from .checkpoint import CheckpointError
from .config import check_beta
from .envs import REGISTRY, make_env
from .envs.render import record_episode_gif
from .envs.episodes import OUTCOMES, run_episodes
from .evaluate import load_run
from .policies import RandomPolicy, make_policy, policy_names
from .rollout import Team, evaluate


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cpfast.play", description=__doc__.splitlines()[0])
    p.add_argument("--env", default="resource_collection", choices=sorted(REGISTRY))
    p.add_argument("--composition", default="train")
    p.add_argument("--policy", default=None,
                   help="random (any env), or the env's scripted heuristic: scripted (any env with one), "
                        "greedy (rescue), focus_fire (sc2_*); default: the env's scripted one")
    p.add_argument("--episodes", type=int, default=144, help="episodes to finish (default 144: three rounds of the 2-3-4 rotation)")
    p.add_argument("--num-envs", type=int, default=48, help="environments stepped together")
    p.add_argument("--threads", type=int, default=None, help="C++ threads (default: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speed-envs", type=int, default=1024, help="envs for the env-only speed check (0: skip)")
    p.add_argument("--gif", default=None, help="also write one episode of env 0 to this GIF")
    p.add_argument("--gif-frames", type=int, default=None,
                   help="stop the GIF after this many frames (default: the whole episode)")
    p.add_argument("--checkpoint", metavar="RUN_DIR", help="play the trained team of this run (its latest checkpoint)")
    p.add_argument("--beta", type=float, default=0.0, help="communication threshold of a trained coach (default 0)")
    args = p.parse_args(argv)
    counts = (("--episodes", args.episodes), ("--num-envs", args.num_envs), ("--gif-frames", args.gif_frames),
              ("--threads", args.threads))
    for flag, value in counts:
        if value is not None and value < 1:
            p.error(f"{flag} must be positive, got {value}")
    if args.speed_envs < 0:
        p.error(f"--speed-envs must be 0 (skip) or positive, got {args.speed_envs}")
    try:
        check_beta(args.beta, "--beta")
    except ValueError as error:
        p.error(str(error))
    if args.gif and not Path(args.gif).resolve().parent.is_dir():  # found out before the episodes, not after
        p.error(f"--gif {args.gif}: the folder {Path(args.gif).resolve().parent} does not exist")
    if args.checkpoint:
        return args
    names = policy_names(args.env)
    if args.policy is None:
        args.policy = names[-1]  # the env's own scripted heuristic, else random
    elif args.policy not in names:
        p.error(f"policy {args.policy!r} is not available for {args.env}; choose one of: {', '.join(names)}")
    return args


def env_speed(name: str, composition: str, num_envs: int, threads: int | None, steps: int = 100) -> float:
    """Env-steps per second of the batched runner alone: random available actions, drawn outside
    the timed calls (availability changes as StarCraft units die, so they are drawn per step)."""
    env = make_env(name, num_envs=num_envs, seed=0, composition=composition, num_threads=threads)
    policy = RandomPolicy(env.spec, 0)
    obs = env.step(policy(env.reset()))[0]
    elapsed = 0.0
    for _ in range(steps):
        actions = policy(obs)
        start = time.perf_counter()
        obs = env.step(actions)[0]
        elapsed += time.perf_counter() - start
    return num_envs * steps / elapsed


def play_trained(args) -> dict:
    """The trained team of ``args.checkpoint``: evaluation's statistics, and a GIF on request."""
    try:
        cfg, nets, payload = load_run(args.checkpoint)
        cfg = cfg.replace(num_threads=args.threads or 0)
        result = evaluate(nets, cfg, args.composition, args.beta, args.episodes, "cpu")
    except (CheckpointError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    beta = f", beta {args.beta:g}, communication {result['comm_frequency']:.1%}" if cfg.uses_coach else ""
    print(f"{cfg.env} / {args.composition} / trained {cfg.method} (seed {cfg.seed}, {payload.get('counter', 0):,} "
          f"env steps){beta}: mean episode reward {result['return']:.2f} ± {result['return_se']:.2f} (s.e.) over "
          f"{args.episodes} evaluation episodes")
    if "win_rate" in result:
        print(f"  win {result['win_rate']:.1%}, draw {result['draw_rate']:.1%}, loss {result['loss_rate']:.1%}")
    if args.gif:
        env = make_env(cfg.env, num_envs=1, seed=args.seed, composition=args.composition, num_threads=1)
        title = f"{cfg.env} / {args.composition}: {cfg.method} seed {cfg.seed}" + (f", beta {args.beta:g}" if cfg.uses_coach else "")
        path = record_episode_gif(env, Team(nets, cfg, 1, "cpu", beta=args.beta), args.gif,
                                  max_frames=args.gif_frames, title=title)
        print(f"  wrote {path}")
    return result


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.checkpoint:
        return play_trained(args)
    try:
        env = make_env(args.env, num_envs=args.num_envs, seed=args.seed, composition=args.composition,
                       num_threads=args.threads)
    except ValueError as error:  # an unknown composition or a bad count: a message, not a trace
        raise SystemExit(f"error: {error}") from None
    policy = make_policy(args.policy, env.spec, args.seed)
    start = time.perf_counter()
    result = run_episodes(env, policy, args.episodes)
    elapsed = time.perf_counter() - start
    returns, sizes = result["returns"], result["team_sizes"]

    print(f"{args.env} / {args.composition} / {args.policy} policy, {len(returns)} episodes, {env.num_threads} threads")
    print(f"  mean episode reward {returns.mean():8.2f} ± {returns.std(ddof=1) / np.sqrt(len(returns)):.2f} (s.e.)")
    for size in np.unique(sizes):
        part = returns[sizes == size]
        print(f"    team of {size} at start: {part.mean():8.2f} over {len(part)} episodes")
    if "outcomes" in result:
        rates = {rate: float(np.mean(result["outcomes"] == key)) for key, rate in OUTCOMES.items()}
        result.update(rates)
        print(f"  win {rates['win_rate']:.1%}, draw {rates['draw_rate']:.1%} (time-outs included), "
              f"loss {rates['loss_rate']:.1%}")
    print(f"  rollout (policy + env): {result['env_steps'] / elapsed:,.0f} env-steps/s")
    if args.speed_envs > 0:
        speed = env_speed(args.env, args.composition, args.speed_envs, args.threads)
        print(f"  env alone, {args.speed_envs} envs: {speed:,.0f} env-steps/s")
    if args.gif:
        gif_env = make_env(args.env, num_envs=1, seed=args.seed, composition=args.composition, num_threads=1)
        path = record_episode_gif(gif_env, make_policy(args.policy, gif_env.spec, args.seed), args.gif,
                                  max_frames=args.gif_frames, title=f"{args.env} / {args.composition}: {args.policy} policy")
        print(f"  wrote {path}")
    return result


if __name__ == "__main__":
    main()

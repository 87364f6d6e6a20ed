"""Train COPA or a baseline (method.md §9).

    python -m cpfast.train                              # COPA, paper settings (5M steps)
    python -m cpfast.train --preset quick --seed 1      # small networks, 300k steps
    python -m cpfast.train --run-dir runs/x --resume    # continue a killed run
    python -m cpfast.train --env sc2_3-8sz              # StarCraft micro-sim, starcraft preset (12M steps)
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import checkpoint
from .config import METHODS, PRESETS, Config, from_dict, make_config, to_dict
from .envs import REGISTRY, make_env
from .learner import Learner
from .replay import SegmentBuffer, SegmentWindows
from .rollout import Actor, epsilon, evaluate, to_tensors

LOG_FIELDS = ("iteration", "env_steps", "updates", "epsilon", "train_return", "loss", "td_loss", "vi_loss", "entropy",
              "wall_seconds", "env_steps_per_s")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but torch sees no CUDA device")
    return device


class Trainer:
    """The training loop of one run, with its logs and checkpoints in ``run_dir``."""

    def __init__(self, cfg: Config, run_dir: str | Path):
        self.cfg = cfg.validate()
        self.run_dir = Path(run_dir)
        self.device = resolve_device(cfg.device)
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        self.env = make_env(cfg.env, num_envs=cfg.n_envs, seed=cfg.seed, composition=cfg.composition,
                            num_threads=cfg.num_threads or None)
        self.spec = self.env.spec
        self.learner = Learner(self.spec, cfg, self.device, cfg.seed)
        state_dim = cfg.hidden_dim if cfg.player_memory == "recurrent" else 0
        self.buffer = SegmentBuffer(self.spec, cfg.buffer_size, cfg.period, self.device, state_dim)
        self.windows = SegmentWindows(self.spec, cfg.n_envs, cfg.period, cfg.segment_tail, cfg.truncation_is_terminal,
                                      state_dim)
        self.rollout_generator = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)
        self.sample_generator = torch.Generator().manual_seed(cfg.seed + 2)
        self.actor = Actor(self.learner.online, cfg, cfg.n_envs, self.device, self.rollout_generator)
        self.n_iters = max(1, cfg.total_steps // self.spec.episode_limit // cfg.n_envs)
        self.batch_size = cfg.effective_batch_size
        self.iteration = self.counter = self.last_update = 0
        self.recent_returns: collections.deque = collections.deque(maxlen=100)
        self.best_return = -float("inf")
        self.obs = None
        self.metrics: dict = {}  # the latest update's metrics, logged until the next update

    # ------------------------------------------------------------------ checkpoints
    def _payload(self, with_buffer: bool) -> dict:
        return {
            "config": to_dict(self.cfg), "learner": self.learner.state_dict(),
            "buffer": self.buffer.state_dict() if with_buffer else None,
            # Episodes may be under way at a checkpoint (StarCraft ends them early, so they do not line
            # up with episode-iterations): the envs, the cut of their segments and the players'
            # memory are all saved, and a resumed run continues bit-exactly.
            "env_states": [self.env.get_state(i) for i in range(self.env.num_envs)],
            "windows": self.windows.state_dict(), "actor": self.actor.state_dict(),
            "metrics": {k: float(v) for k, v in self.metrics.items()},
            "rollout_generator": self.rollout_generator.get_state(), "sample_generator": self.sample_generator.get_state(),
            "iteration": self.iteration, "counter": self.counter, "last_update": self.last_update,
            "recent_returns": list(self.recent_returns), "best_return": self.best_return,
        }

    def save(self) -> None:
        checkpoint.save_atomic(self._payload(with_buffer=True), self.run_dir / "checkpoint_latest.pt")
        train_return = np.mean(self.recent_returns) if self.recent_returns else -float("inf")
        if train_return > self.best_return:
            self.best_return = float(train_return)
            checkpoint.save_atomic(self._payload(with_buffer=False), self.run_dir / "checkpoint_best.pt")

    def restore(self, payload: dict) -> None:
        checkpoint.check_compatible(payload, to_dict(self.cfg), self.run_dir / "checkpoint_latest.pt")
        self.learner.load_state_dict(payload["learner"])
        self.buffer.load_state_dict(payload["buffer"])
        self.env.reset()
        for i, state in enumerate(payload["env_states"]):
            self.env.set_state(i, state)
        self.obs = self.env.observation  # rewritten from the restored states by set_state
        # Checkpoints from before these keys were saved resume with fresh windows and memory:
        # exact only when they were taken at episode boundaries (Resource Collection, Rescue).
        if "windows" in payload:
            self.windows.load_state_dict(payload["windows"])
            self.actor.load_state_dict(payload["actor"])
            self.metrics = dict(payload["metrics"])
        self.rollout_generator.set_state(payload["rollout_generator"])
        self.sample_generator.set_state(payload["sample_generator"])
        self.iteration, self.counter, self.last_update = payload["iteration"], payload["counter"], payload["last_update"]
        self.recent_returns.extend(payload["recent_returns"])
        self.best_return = payload["best_return"]

    # ------------------------------------------------------------------ loop
    def run(self, progress: bool = True, stop_at: int | None = None) -> dict:
        """Trains until the last episode-iteration (or ``stop_at``, checkpointing there)."""
        last = self.n_iters if stop_at is None else min(stop_at, self.n_iters)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.json").write_text(json.dumps(to_dict(self.cfg), indent=2))
        if self.obs is None:
            self.obs = self.env.reset()
        log_path = self.run_dir / "progress.csv"
        new_log = not log_path.exists() or self.iteration == 0
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(self.run_dir / "tb"))
        bar = tqdm(total=self.n_iters, initial=self.iteration, disable=not progress, unit="it", dynamic_ncols=True)
        start, start_counter = time.perf_counter(), self.counter
        with open(log_path, "w" if new_log else "a", newline="") as log_file:
            log = csv.DictWriter(log_file, fieldnames=LOG_FIELDS)
            if new_log:
                log.writeheader()
            while self.iteration < last:
                eps = epsilon(self.iteration, self.n_iters, self.cfg, self.counter)
                self.metrics = self._episode_iteration(eps) or self.metrics
                self.iteration += 1
                if self.iteration % self.cfg.log_every == 0 or self.iteration == last:
                    row = self._log_row(eps, self.metrics, start, start_counter)
                    log.writerow(row)
                    log_file.flush()
                    for key, value in row.items():
                        if key != "iteration" and value == value:
                            writer.add_scalar(key, value, self.counter)
                    bar.set_postfix(steps_s=f"{row['env_steps_per_s']:.0f}", reward=f"{row['train_return']:.1f}",
                                    loss=f"{row['loss']:.3f}", eps=f"{eps:.2f}")
                if self.iteration % self.cfg.checkpoint_every == 0 or self.iteration == last:
                    self.save()
                bar.update(1)
        bar.close()
        writer.close()
        return {"iterations": self.iteration, "env_steps": self.counter, "updates": self.learner.n_updates,
                "train_return": float(np.mean(self.recent_returns)) if self.recent_returns else float("nan")}

    def _episode_iteration(self, eps: float) -> dict:
        """``episode_limit`` steps of every env, with updates every ``update_every`` transitions.

        Fixed-length episodes (Resource Collection) make this one episode of every env in
        lockstep. Envs whose episodes end early (StarCraft) auto-reset on their own: each env
        keeps its own episode step, coach phase and player memory (method.md §9)."""
        cfg, env, actor = self.cfg, self.env, self.actor
        if not self.windows.t.any():
            actor.reset()
        metrics = {}
        recurrent = cfg.player_memory == "recurrent"
        for _ in range(self.spec.episode_limit):
            self.counter += cfg.n_envs
            obs_np = {k: v.copy() for k, v in self.obs.items()}
            obs = to_tensors(obs_np, self.device)
            steps = self.windows.t.copy()  # each env's episode step
            with torch.no_grad():
                deciding = steps % cfg.period == 0
                if cfg.uses_coach and deciding.all():
                    actor.strategy = actor.coach_strategy(obs, sample=True)
                elif cfg.uses_coach and deciding.any():
                    fresh = actor.coach_strategy(obs, sample=True)
                    index = torch.as_tensor(np.flatnonzero(deciding), device=self.device)
                    actor.strategy[index] = fresh[index]
                mask = actor.player_mask(obs, steps)
                behaviour = (actor.state.cpu().numpy(), actor.prev_actions.cpu().numpy()) if recurrent else (None, None)
                actions = actor.act(obs, mask, eps).cpu().numpy()
            self.obs, reward, terminated, truncated, info = env.step(actions)
            final_mask = self._final_player_mask(info["final"], steps + 1) if cfg.segment_tail == "pad" else None
            segments = self.windows.append(obs_np, mask.to(torch.uint8).cpu().numpy(), actions, reward, terminated,
                                           truncated, info["final"], final_mask, *behaviour)
            if segments:
                self.buffer.push(segments)
            ended = np.flatnonzero(terminated | truncated)
            self.recent_returns.extend(info["episode_return"][ended].tolist())
            if len(ended):
                actor.reset(ended)
            if self.counter - self.last_update >= cfg.update_every:
                self.last_update = self.counter
                if len(self.buffer) >= self.batch_size:
                    metrics = self.learner.update(self.buffer.sample(self.batch_size, self.sample_generator))
        return metrics

    def _final_player_mask(self, final_obs: dict, steps: np.ndarray) -> np.ndarray:
        obs = to_tensors(final_obs, self.device)
        return self.actor.player_mask(obs, steps).to(torch.uint8).cpu().numpy()

    def _log_row(self, eps: float, metrics: dict, start: float, start_counter: int) -> dict:
        elapsed = time.perf_counter() - start
        value = lambda key: float(metrics[key]) if key in metrics else float("nan")  # noqa: E731
        return {
            "iteration": self.iteration, "env_steps": self.counter, "updates": self.learner.n_updates,
            "epsilon": eps, "train_return": float(np.mean(self.recent_returns)) if self.recent_returns else float("nan"),
            "loss": value("loss"), "td_loss": value("td_loss"), "vi_loss": value("vi_loss"), "entropy": value("entropy"),
            "wall_seconds": elapsed, "env_steps_per_s": (self.counter - start_counter) / max(elapsed, 1e-9),
        }


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cpfast.train", description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="settings to start from (default: the env's own, paper for resource_collection, "
                        "starcraft for sc2_3-8sz / sc2_3-8MMM)")
    p.add_argument("--env", choices=sorted(REGISTRY), help="environment (default resource_collection)")
    p.add_argument("--composition", help="training composition (default train)")
    p.add_argument("--method", choices=METHODS, help="default copa")
    p.add_argument("--seed", type=int)
    p.add_argument("--steps", type=int, dest="total_steps", help="total env transitions")
    p.add_argument("--period", type=int, help="coach period T")
    p.add_argument("--beta", type=float, help="communication threshold of the final evaluation")
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument("--kernels", choices=("fused", "torch"),
                   help="fused (default): compiled attention/mixing kernels where they can run; torch: pure PyTorch")
    p.add_argument("--threads", type=int, dest="num_threads", help="CPU threads for torch and the envs")
    p.add_argument("--eval-episodes", type=int, dest="eval_episodes")
    p.add_argument("--run-dir", help="where logs and checkpoints go (default runs/<env>_<method>_s<seed>)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint_latest.pt")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    overrides = {k: v for k, v in vars(args).items()
                 if v is not None and k not in ("preset", "run_dir", "resume", "no_progress")}
    if args.resume:
        if not args.run_dir:
            raise SystemExit("--resume needs --run-dir")
        payload = checkpoint.load(Path(args.run_dir) / "checkpoint_latest.pt")
        cfg = from_dict(payload["config"])
        if overrides:
            cfg = cfg.replace(**{k: v for k, v in overrides.items() if k in ("device", "num_threads", "kernels")})
        trainer = Trainer(cfg, args.run_dir)
        trainer.restore(payload)
    else:
        cfg = make_config(overrides.pop("env", None), args.preset, **overrides)
        run_dir = args.run_dir or os.path.join("runs", f"{cfg.env}_{cfg.method}_s{cfg.seed}")
        trainer = Trainer(cfg, run_dir)
    summary = trainer.run(progress=not args.no_progress)
    result = evaluate(trainer.learner.online, cfg, cfg.composition, cfg.beta, cfg.eval_episodes, trainer.device)
    summary["evaluation"] = result
    (trainer.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    win_rate = (f", win rate {result['win_rate']:.1%} (draws {result['draw_rate']:.1%}, "
                f"losses {result['loss_rate']:.1%})" if "win_rate" in result else "")
    print(f"{cfg.method} seed {cfg.seed}: {summary['env_steps']:,} env steps, {summary['updates']:,} updates; "
          f"evaluation on {cfg.composition} ({cfg.eval_episodes} episodes, beta {cfg.beta}): "
          f"{result['return']:.2f} ± {result['return_se']:.2f}{win_rate}, communication {result['comm_frequency']:.1%}")
    return summary


if __name__ == "__main__":
    main()

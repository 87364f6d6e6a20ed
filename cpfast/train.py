"""Train COPA or a baseline (docs/method.md §9).

    python -m cpfast.train                              # COPA, paper settings (5M steps)
    python -m cpfast.train --preset quick --seed 1      # small networks, 400k steps (~12 min on 2 cores)
    python -m cpfast.train --preset fast                # the same networks, 1.1M steps, linear epsilon
    python -m cpfast.train --run-dir runs/x --resume    # continue a killed run
    python -m cpfast.train --env sc2_3-8sz              # StarCraft micro-sim, starcraft preset (12M steps)
"""

from __future__ import annotations

import argparse
import collections
import csv
import io
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import checkpoint
from .config import MACHINE_FIELDS, METHODS, PRESETS, Config, from_dict, parse_overrides, to_dict
from .devices import resolve_device
from .envs import REGISTRY, make_env
from .envs.episodes import OUTCOMES
from .experiment import make_config
from .learner import Learner
from .replay import SegmentBuffer, SegmentWindows, check_buffer_fits
from .rollout import Team, epsilon, evaluate, to_tensors

LOG_FIELDS = ("iteration", "env_steps", "updates", "epsilon", "train_return", "loss", "td_loss", "vi_loss", "entropy",
              "wall_seconds", "env_steps_per_s")
EVAL_FIELDS = ("iteration", "env_steps", "updates", "wall_seconds", "composition", "beta", "episodes", "return",
               "return_se", "comm_frequency") + tuple(OUTCOMES.values()) + ("return_by_team_size",)
SHORT_RUN_HINT = "for a short first run use --preset quick (~12 min on 2 cores)"


def planned_iterations(cfg: Config, episode_limit: int) -> int:
    """The episode-iterations a run of ``cfg`` trains: ``total_steps`` rounded down to whole
    iterations of ``n_envs`` x ``episode_limit`` steps (at least one)."""
    return max(1, cfg.total_steps // episode_limit // cfg.n_envs)


class TrainingStopped(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped a run at an iteration boundary, after writing its checkpoint."""


class _StopSignals:
    """Turns SIGINT / SIGTERM into a request the training loop honours between iterations
    (outside the main thread, where handlers cannot be set, signals act as usual)."""

    def __init__(self):
        self.received = None

    def __enter__(self):
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


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
        check_buffer_fits(self.spec, cfg.buffer_size, cfg.period, self.device, state_dim, cfg.checkpoint_buffer)
        self.buffer = SegmentBuffer(self.spec, cfg.buffer_size, cfg.period, self.device, state_dim)
        self.windows = SegmentWindows(self.spec, cfg.n_envs, cfg.period, cfg.segment_tail, cfg.truncation_is_terminal,
                                      state_dim)
        self.rollout_generator = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)
        self.sample_generator = torch.Generator().manual_seed(cfg.seed + 2)
        self.team = Team(self.learner.online, cfg, cfg.n_envs, self.device, self.rollout_generator, beta=None,
                         sample_strategies=True)
        self.n_iters = planned_iterations(cfg, self.spec.episode_limit)
        self.steps_per_iteration = self.spec.episode_limit * cfg.n_envs
        self.eval_every = cfg.eval_every or max(1, self.n_iters // 5)
        self.wall_seconds = 0.0  # training time over all sessions of this run (resumes add to it)
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
            "windows": self.windows.state_dict(), "team": self.team.state_dict(),
            "metrics": {k: float(v) for k, v in self.metrics.items()},
            "rollout_generator": self.rollout_generator.get_state(), "sample_generator": self.sample_generator.get_state(),
            "iteration": self.iteration, "counter": self.counter, "last_update": self.last_update,
            "recent_returns": list(self.recent_returns), "best_return": self.best_return,
            "wall_seconds": self.wall_seconds,
        }

    def save(self) -> None:
        # best_return first, so that the latest checkpoint (what a resume starts from) knows the best;
        # the best file before the latest, so that a kill between the two writes resumes from the
        # previous latest, which redoes the iteration and writes the same best again.
        train_return = np.mean(self.recent_returns) if self.recent_returns else -float("inf")
        improved = train_return > self.best_return
        if improved:
            self.best_return = float(train_return)
            checkpoint.save_atomic(self._payload(with_buffer=False), self.run_dir / "checkpoint_best.pt")
        checkpoint.save_atomic(self._payload(with_buffer=self.cfg.checkpoint_buffer),
                               self.run_dir / "checkpoint_latest.pt")

    def restore(self, payload: dict) -> None:
        path = self.run_dir / "checkpoint_latest.pt"
        checkpoint.check_compatible(payload, to_dict(self.cfg), path)
        checkpoint.require(payload, path, RESUME_KEYS)
        try:
            self._restore(payload)
        except checkpoint.CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError) as error:  # a damaged or foreign payload
            raise checkpoint.CheckpointError(f"checkpoint {path} cannot be resumed: {error!r}") from error

    def _team_from_actor(self, actor: dict) -> dict:
        """The acting state of a checkpoint written before training acted through ``Team`` (its
        ``actor`` held memory, previous actions and strategies): the episode steps are the
        windows', the slots present those of the restored observation (so no join is seen), and a
        present slot past its episode's first step has had its strategy. Resumes exactly."""
        t = torch.as_tensor(self.windows.t.copy())
        present = torch.tensor(self.obs["agent_present"]).bool()  # a copy: the view is read-only
        received = present & (t > 0)[:, None] if self.cfg.uses_coach else torch.zeros_like(present)
        return dict(actor, t=t, present=present, received=received)

    def _restore(self, payload: dict) -> None:
        self.learner.load_state_dict(payload["learner"])
        if payload["buffer"] is None:  # a light checkpoint (checkpoint_buffer false)
            print(f"notice: {self.run_dir / 'checkpoint_latest.pt'} holds no replay buffer (checkpoint_buffer=false): "
                  "the run goes on with an empty one, so it will not match an uninterrupted run", file=sys.stderr)
        else:
            self.buffer.load_state_dict(payload["buffer"])
        self.env.reset()
        for i, state in enumerate(payload["env_states"]):
            self.env.set_state(i, state)
        self.obs = self.env.observation  # rewritten from the restored states by set_state
        # Checkpoints from before these keys were saved resume with fresh windows and memory:
        # exact only when they were taken at episode boundaries (Resource Collection, Rescue).
        if "windows" in payload:
            self.windows.load_state_dict(payload["windows"])
            self.team.load_state_dict(payload["team"] if "team" in payload else self._team_from_actor(payload["actor"]))
            self.metrics = dict(payload["metrics"])
        self.rollout_generator.set_state(payload["rollout_generator"])
        self.sample_generator.set_state(payload["sample_generator"])
        self.iteration, self.counter, self.last_update = payload["iteration"], payload["counter"], payload["last_update"]
        self.recent_returns.extend(payload["recent_returns"])
        self.best_return = payload["best_return"]
        self.wall_seconds = payload.get("wall_seconds", 0.0)
        for name in ("progress.csv", "evals.csv"):  # rows logged after the checkpoint are logged again
            _truncate_log(self.run_dir / name, self.iteration)

    # ------------------------------------------------------------------ loop
    @property
    def total_env_steps(self) -> int:
        """What ``total_steps`` becomes: whole episode-iterations of every env."""
        return self.n_iters * self.steps_per_iteration

    def describe(self) -> str:
        cfg = self.cfg
        text = (f"{cfg.method} on {cfg.env} ({cfg.composition}), seed {cfg.seed}: {self.total_env_steps:,} env steps "
                f"= {self.n_iters:,} iterations of {cfg.n_envs} envs x {self.spec.episode_limit} steps")
        if self.total_env_steps != cfg.total_steps:
            text += f" (total_steps {cfg.total_steps:,} rounded to whole iterations)"
        return text + f"; greedy evaluation every {self.eval_every} iterations"

    def run(self, progress: bool = True, stop_at: int | None = None) -> dict:
        """Trains until the last episode-iteration (or ``stop_at``, checkpointing there), evaluating
        greedily every ``eval_every`` iterations and at the end. A finished run writes and returns
        ``summary.json``'s content (its totals and the final evaluation); a stopped one returns the
        totals only."""
        last = self.n_iters if stop_at is None else min(stop_at, self.n_iters)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.remove_stale_temporaries(self.run_dir)
        for stale in self.run_dir.glob(".*.tmp"):  # _write_atomic's, from a run killed while writing
            stale.unlink(missing_ok=True)
        _write_atomic(self.run_dir / "config.json", json.dumps(to_dict(self.cfg), indent=2))
        if self.obs is None:
            self.obs = self.env.reset()
        from torch.utils.tensorboard import SummaryWriter

        resumed = self.iteration > 0
        writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.counter if resumed else None)
        if not resumed:
            writer.add_text("config", "\n".join(f"    {k} = {v!r}" for k, v in to_dict(self.cfg).items()))
        bar = tqdm(total=self.total_env_steps, initial=self.counter, disable=not progress, unit="step",
                   unit_scale=True, dynamic_ncols=True)
        if progress:
            bar.write(self.describe())
        start, start_counter, start_wall, start_iteration = (time.perf_counter(), self.counter, self.wall_seconds,
                                                             self.iteration)
        evaluation = None
        with _CsvLog(self.run_dir / "progress.csv", LOG_FIELDS, fresh=not resumed) as log, \
                _CsvLog(self.run_dir / "evals.csv", EVAL_FIELDS, fresh=not resumed) as eval_log, _StopSignals() as stop:
            while self.iteration < last:
                if stop.received:
                    self.save()
                    bar.close()
                    writer.close()
                    raise TrainingStopped(f"{stop.received}: stopped at iteration {self.iteration:,} of "
                                          f"{self.n_iters:,} ({self.counter:,} env steps), checkpoint written")
                eps = epsilon(self.iteration, self.n_iters, self.cfg, self.counter)
                self.metrics = self._episode_iteration(eps) or self.metrics
                self.iteration += 1
                self.wall_seconds = start_wall + time.perf_counter() - start
                row = self._log_row(eps, self.metrics, start, start_counter)
                if self.iteration % self.cfg.log_every == 0 or self.iteration == last:
                    log.write(row)
                    for key, value in row.items():
                        if key != "iteration" and value == value:
                            writer.add_scalar(f"train/{key}", value, self.counter)
                if self.iteration % self.eval_every == 0 or self.iteration == self.n_iters:
                    evaluation = self.evaluate()
                    by_size = evaluation.get("return_by_team_size", {})
                    eval_log.write({k: evaluation.get(k, "") for k in EVAL_FIELDS}
                                   | {"return_by_team_size": " ".join(f"{n}:{r:.3f}" for n, r in by_size.items())})
                    for key in ("return", "comm_frequency", *OUTCOMES.values()):
                        if evaluation.get(key, "") not in ("", None) and evaluation[key] == evaluation[key]:
                            writer.add_scalar(f"eval/{key}", evaluation[key], self.counter)
                    for size, value in by_size.items():
                        writer.add_scalar(f"eval/return_team_of_{size}", value, self.counter)
                if self.iteration % self.cfg.checkpoint_every == 0 or self.iteration == last:
                    self.save()
                bar.update(self.counter - bar.n)
                bar.set_postfix(steps_s=f"{row['env_steps_per_s']:.0f}", ret=f"{row['train_return']:.1f}",
                                eps=f"{eps:.2f}", loss=f"{row['loss']:.3f}", refresh=False)
                if progress and self.iteration == start_iteration + 3:
                    bar.write(self._projection(row["env_steps_per_s"]))
        bar.close()
        summary = {"iterations": self.iteration, "env_steps": self.counter, "updates": self.learner.n_updates,
                   "train_return": float(np.mean(self.recent_returns)) if self.recent_returns else float("nan"),
                   "wall_seconds": self.wall_seconds}
        if self.iteration == self.n_iters:
            if evaluation is None:  # a finished run resumed: its final evaluation again, for the summary
                evaluation = self.evaluate()
            summary["evaluation"] = {k: v for k, v in evaluation.items() if k not in ("iteration", "env_steps")}
            writer.add_hparams({k: v for k, v in to_dict(self.cfg).items() if isinstance(v, (int, float, str, bool))},
                               {"hparam/final_return": evaluation["return"]}, run_name="hparams")
            _write_atomic(self.run_dir / "summary.json", json.dumps(summary, indent=2))
        writer.close()
        return summary

    def evaluate(self) -> dict:
        """The greedy evaluation of the online networks (the end-of-run one: the training
        composition, ``beta``, ``eval_episodes``); the training state is left untouched."""
        cfg = self.cfg
        result = evaluate(self.learner.online, cfg, cfg.composition, cfg.beta, cfg.eval_episodes, self.device)
        return {"iteration": self.iteration, "env_steps": self.counter, "updates": self.learner.n_updates,
                "wall_seconds": self.wall_seconds, "composition": cfg.composition, "beta": cfg.beta,
                "episodes": cfg.eval_episodes} | result

    def _projection(self, steps_per_s: float) -> str:
        remaining = (self.total_env_steps - self.counter) / max(steps_per_s, 1e-9)
        text = f"projected: {_duration(remaining)} more at {steps_per_s:,.0f} env-steps/s"
        return text + (f"; {SHORT_RUN_HINT}" if remaining > 1800 else "")

    def _episode_iteration(self, eps: float) -> dict:
        """``episode_limit`` steps of every env, with updates every ``update_every`` transitions.

        Fixed-length episodes (Resource Collection) make this one episode of every env in
        lockstep. Envs whose episodes end early (StarCraft) auto-reset on their own: each env
        keeps its own episode step, coach phase and player memory (docs/method.md §9)."""
        cfg, env, team = self.cfg, self.env, self.team
        if not self.windows.t.any():
            team.reset()
        team.eps = eps
        metrics = {}
        recurrent = cfg.player_memory == "recurrent"
        for _ in range(self.spec.episode_limit):
            self.counter += cfg.n_envs
            obs_np = {k: v.copy() for k, v in self.obs.items()}
            step = team.act(to_tensors(obs_np, self.device))
            actions = step.actions.cpu().numpy()
            behaviour = (step.state.cpu().numpy(), step.prev_actions.cpu().numpy()) if recurrent else (None, None)
            self.obs, reward, terminated, truncated, info = env.step(actions)
            final_mask = self._final_player_mask(info["final"]) if cfg.segment_tail == "pad" else None
            segments = self.windows.append(obs_np, step.mask.to(torch.uint8).cpu().numpy(), actions, reward, terminated,
                                           truncated, info["final"], final_mask, *behaviour)
            if segments:
                self.buffer.push(segments)
            ended = np.flatnonzero(terminated | truncated)
            self.recent_returns.extend(info["episode_return"][ended].tolist())
            team.end_episodes(ended)
            if self.counter - self.last_update >= cfg.update_every:
                self.last_update = self.counter
                if len(self.buffer) >= self.batch_size:
                    metrics = self.learner.update(self.buffer.sample(self.batch_size, self.sample_generator))
        return metrics

    def _final_player_mask(self, final_obs: dict) -> np.ndarray:
        """The mask players would act on in an episode's last observation (after the step)."""
        obs = to_tensors(final_obs, self.device)
        return self.team.player_mask(obs, self.team.t).to(torch.uint8).cpu().numpy()

    def _log_row(self, eps: float, metrics: dict, start: float, start_counter: int) -> dict:
        elapsed = time.perf_counter() - start
        value = lambda key: float(metrics[key]) if key in metrics else float("nan")  # noqa: E731
        return {
            "iteration": self.iteration, "env_steps": self.counter, "updates": self.learner.n_updates,
            "epsilon": eps, "train_return": float(np.mean(self.recent_returns)) if self.recent_returns else float("nan"),
            "loss": value("loss"), "td_loss": value("td_loss"), "vi_loss": value("vi_loss"), "entropy": value("entropy"),
            "wall_seconds": self.wall_seconds, "env_steps_per_s": (self.counter - start_counter) / max(elapsed, 1e-9),
        }


class _CsvLog:
    """A CSV log opened for appending (or fresh, with its header), flushed after every row."""

    def __init__(self, path: Path, fields: tuple[str, ...], fresh: bool):
        # An empty file is one a killed run opened before its header reached the disk.
        self.path, self.fields = path, fields
        self.fresh = fresh or not path.exists() or path.stat().st_size == 0

    def __enter__(self):
        self.file = open(self.path, "w" if self.fresh else "a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=self.fields)
        if self.fresh:
            self.writer.writeheader()
            self.file.flush()
        return self

    def write(self, row: dict) -> None:
        self.writer.writerow(row)
        self.file.flush()

    def __exit__(self, *exc):
        self.file.close()


def _truncate_log(path: Path, iteration: int) -> None:
    """Drops the rows of a CSV log past ``iteration`` (written after the checkpoint a run resumes from)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, [row for row in reader if int(row["iteration"]) <= iteration]
    if not fields:  # empty: killed before its header was written; _CsvLog starts it afresh
        return
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    _write_atomic(path, text.getvalue())


def _write_atomic(path: Path, text: str) -> None:
    """A kill mid-write leaves the old file, never a cut one (a cut config.json stops a resume,
    a cut summary.json makes a sweep take the run for finished)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _duration(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"

# What a checkpoint must hold to be resumed (windows, team and metrics are optional: old files).
RESUME_KEYS = ("config", "learner", "buffer", "env_states", "rollout_generator", "sample_generator", "iteration",
               "counter", "last_update", "recent_returns", "best_return")
RUN_FILES = ("checkpoint_latest.pt", "progress.csv", "summary.json")  # a run directory in use


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cpfast.train", description=__doc__.splitlines()[0],
                                epilog="Any Config field: --set FIELD=VALUE ... (fields: docs/method.md §17).")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="settings to start from (default: the env's own, paper for resource_collection, "
                        "starcraft for sc2_3-8sz / sc2_3-8MMM); try --preset quick first (~12 min on 2 cores)")
    p.add_argument("--env", choices=sorted(REGISTRY), help="environment (default resource_collection)")
    p.add_argument("--composition", help="training composition (default train)")
    p.add_argument("--method", choices=METHODS, help="default copa")
    p.add_argument("--seed", type=int)
    p.add_argument("--steps", type=int, dest="total_steps",
                   help="total env transitions (rounded down to whole iterations of n_envs x episode length; "
                        "the run says what it became)")
    p.add_argument("--period", type=int, help="coach period T")
    p.add_argument("--beta", type=float, help="communication threshold of the evaluations")
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument("--kernels", choices=("fused", "torch"),
                   help="fused (default): compiled attention/mixing kernels where they can run; torch: pure PyTorch")
    p.add_argument("--threads", type=int, dest="num_threads", help="CPU threads for torch and the envs")
    p.add_argument("--eval-episodes", type=int, dest="eval_episodes")
    p.add_argument("--eval-every", type=int, dest="eval_every",
                   help="episode-iterations between greedy evaluations (default: five per run)")
    p.add_argument("--log-every", type=int, dest="log_every", help="episode-iterations between log rows")
    p.add_argument("--set", nargs="+", default=[], metavar="FIELD=VALUE", dest="settings",
                   help="override any Config field, e.g. --set lr=1e-4 batch_size=128")
    p.add_argument("--run-dir", help="where logs and checkpoints go (default runs/<env>_<method>_s<seed>)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint_latest.pt")
    p.add_argument("--overwrite", action="store_true", help="start afresh in a RUN_DIR that holds a run")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> tuple[str | None, dict]:
    """The preset and the overrides the command line asks for (flags, then ``--set``)."""
    overrides = {k: v for k, v in vars(args).items()
                 if v is not None and k not in ("preset", "run_dir", "resume", "overwrite", "no_progress", "settings")}
    return args.preset, overrides | parse_overrides(args.settings)


def resume_trainer(run_dir: str | Path, changes: dict | None = None) -> Trainer:
    """A trainer restored from ``run_dir/checkpoint_latest.pt``, which must hold the run that
    ``run_dir/config.json`` describes. ``changes`` may set the machine fields (device, threads,
    kernels, checkpoint_buffer) and ``total_steps`` (to extend a run); other fields may be given
    only with the run's own values (the command that started the run, repeated with --resume)."""
    changes = dict(changes or {})
    path = Path(run_dir) / "checkpoint_latest.pt"
    payload = checkpoint.load(path)
    checkpoint.require(payload, path, ("config",))
    try:
        stored = from_dict(payload["config"])
    except (KeyError, TypeError, ValueError) as error:
        raise checkpoint.CheckpointError(f"checkpoint {path} holds no usable configuration ({error})") from None
    fixed = [f"{k} {v!r} (the run's: {getattr(stored, k, None)!r})" for k, v in sorted(changes.items())
             if k not in MACHINE_FIELDS and k != "total_steps" and getattr(stored, k, None) != v]
    if fixed:
        raise ValueError(f"a resumed run keeps its configuration; only {', '.join(MACHINE_FIELDS)} and total_steps "
                         f"(--steps) may change, got {', '.join(fixed)}")
    config_json = Path(run_dir) / "config.json"
    if config_json.is_file():
        try:
            run = to_dict(from_dict(json.loads(config_json.read_text())))
        except (ValueError, TypeError, AttributeError) as error:
            raise checkpoint.CheckpointError(f"{config_json} does not hold a run configuration: {error}") from None
        wrong = [f"{k}: checkpoint {v!r} vs config.json {run[k]!r}" for k, v in to_dict(stored).items()
                 if k not in MACHINE_FIELDS and run[k] != v]
        if wrong:
            raise checkpoint.CheckpointError(f"checkpoint {path} is not the run of {config_json} ({'; '.join(wrong)})")
    trainer = Trainer(stored.replace(**changes), run_dir)
    if trainer.n_iters < payload["iteration"]:
        raise ValueError(f"--steps {changes['total_steps']:,} is fewer than the {payload['counter']:,} env steps "
                         "this run has already taken")
    trainer.restore(payload)
    return trainer


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        preset_name, overrides = config_from_args(args)
        if args.resume:
            if not args.run_dir:
                raise SystemExit("error: --resume needs --run-dir")
            if not Path(args.run_dir).is_dir():
                raise SystemExit(f"error: --run-dir {args.run_dir} is not a folder, so there is no run to resume")
            trainer = resume_trainer(args.run_dir, overrides)
        else:
            cfg = make_config(overrides.pop("env", None), preset_name, **overrides)
            run_dir = Path(args.run_dir or os.path.join("runs", f"{cfg.env}_{cfg.method}_s{cfg.seed}"))
            if run_dir.exists() and not run_dir.is_dir():
                raise SystemExit(f"error: --run-dir {run_dir} is a file, not a folder")
            held = [name for name in RUN_FILES if (run_dir / name).exists()]
            if held and not args.overwrite:
                raise SystemExit(f"error: {run_dir} already holds a run ({', '.join(held)}); continue it with "
                                 f"--run-dir {run_dir} --resume, or start afresh there with --overwrite")
            trainer = Trainer(cfg, run_dir)
    except (ValueError, checkpoint.CheckpointError) as error:
        raise SystemExit(f"error: {error}") from None
    try:
        summary = trainer.run(progress=not args.no_progress)
    except TrainingStopped as stopped:
        print(f"{stopped}; continue with: python -m cpfast.train --run-dir {trainer.run_dir} --resume")
        raise SystemExit(130) from None
    cfg, result = trainer.cfg, summary["evaluation"]
    win_rate = (f", win rate {result['win_rate']:.1%} (draws {result['draw_rate']:.1%}, "
                f"losses {result['loss_rate']:.1%})" if "win_rate" in result else "")
    print(f"{cfg.method} seed {cfg.seed}: {summary['env_steps']:,} env steps, {summary['updates']:,} updates in "
          f"{_duration(summary['wall_seconds'])}; evaluation on {cfg.composition} ({cfg.eval_episodes} episodes, "
          f"beta {cfg.beta}): {result['return']:.2f} ± {result['return_se']:.2f}{win_rate}, "
          f"communication {result['comm_frequency']:.1%}; wrote {trainer.run_dir / 'summary.json'}")
    return summary


if __name__ == "__main__":
    main()

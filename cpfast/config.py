"""Run configuration: one dataclass, with the paper's settings as the ``paper`` preset."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass

METHODS = ("copa", "copa_novi", "aqmix", "aqmix_full", "aqmix_periodic", "aiqmix")
COACH_METHODS = ("copa", "copa_novi")


@dataclass
class Config:
    # What to run.
    env: str = "resource_collection"
    composition: str = "train"
    method: str = "copa"
    seed: int = 0
    total_steps: int = 5_000_000  # env transitions over all rollout envs
    n_envs: int = 8
    period: int = 4  # T: coach period, segment length
    # Networks (Table 3 and the reference code).
    hidden_dim: int = 128  # dh, also the strategy width dz
    n_heads: int = 4
    mixer_hidden_dim: int = 128
    mixer_embed_dim: int = 128
    player_memory: str = "reference"
    # Learning.
    gamma: float = 0.99
    lr: float = 3e-4
    optim_alpha: float = 0.99
    optim_eps: float = 1e-5
    grad_norm_clip: float = 10.0
    buffer_size: int = 100_000  # segments
    batch_size: int = 0  # 0: int(256 * 8 / T) for coach methods, 256 otherwise
    update_every: int = 100  # env transitions between updates
    update_target_every: int = 200  # updates between hard target syncs
    vi_lambda: float = 1e-3  # lambda_1; lambda_2 = lambda_1 / 10
    imaginary_lambda: float = 0.5  # AI-QMIX
    eps_start: float = 1.0
    eps_end: float = 0.05
    eps_schedule: str = "exp"  # exp: over all episode-iterations; linear: over eps_anneal_steps transitions
    eps_anneal_steps: int = 500_000
    segment_tail: str = "drop"
    truncation_is_terminal: bool = False
    # Evaluation.
    eval_episodes: int = 500
    eval_seed: int = 9999
    beta: float = 0.0  # adaptive-communication threshold used by the end-of-run evaluation
    # Machinery.
    device: str = "auto"
    kernels: str = "fused"  # "fused": compiled attention/mixing kernels where they can run; "torch": pure PyTorch
    num_threads: int = 0  # torch and env threads; 0 = all cores
    checkpoint_every: int = 100  # episode-iterations between checkpoints
    # False: checkpoint_latest.pt leaves out the replay buffer (far smaller); a resume then refills
    # an empty buffer and is no longer bit-exact with an uninterrupted run.
    checkpoint_buffer: bool = True
    log_every: int = 10  # episode-iterations between log rows
    eval_every: int = 0  # episode-iterations between greedy evaluations during training; 0: five per run

    @property
    def uses_coach(self) -> bool:
        return self.method in COACH_METHODS

    @property
    def entropy_lambda(self) -> float:
        return self.vi_lambda / 10

    @property
    def effective_batch_size(self) -> int:
        if self.batch_size:
            return self.batch_size
        return int(256 * 8 / self.period) if self.uses_coach else 256

    def validate(self) -> "Config":
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {', '.join(METHODS)}")
        if self.eps_schedule not in ("exp", "linear"):
            raise ValueError(f"eps_schedule must be 'exp' or 'linear', got {self.eps_schedule!r}")
        if self.segment_tail not in ("drop", "pad"):
            raise ValueError(f"segment_tail must be 'drop' or 'pad', got {self.segment_tail!r}")
        if self.kernels not in ("fused", "torch"):
            raise ValueError(f"kernels must be 'fused' or 'torch', got {self.kernels!r}")
        for name in ("total_steps", "n_envs", "period", "hidden_dim", "n_heads", "buffer_size", "update_every",
                     "update_target_every", "eval_episodes", "eps_anneal_steps", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("eval_every", "batch_size", "num_threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 or positive, got {getattr(self, name)}")
        # Float fields come from flags (--beta) as well as --set: nan and inf must not slip through.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{f.name} must be a finite number, got {value}")
        check_beta(self.beta)
        for name, low, high in (("gamma", 0.0, 1.0), ("eps_start", 0.0, 1.0), ("eps_end", 0.0, 1.0),
                                ("imaginary_lambda", 0.0, 1.0), ("optim_alpha", 0.0, 1.0)):
            if not low <= getattr(self, name) <= high:
                raise ValueError(f"{name} must lie in [{low:g}, {high:g}], got {getattr(self, name)}")
        for name in ("lr", "optim_eps", "grad_norm_clip"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.vi_lambda < 0:
            raise ValueError(f"vi_lambda must be 0 or positive, got {self.vi_lambda}")
        if self.player_memory not in ("reference", "recurrent"):
            raise ValueError(f"player_memory must be 'reference' or 'recurrent', got {self.player_memory!r}")
        return self

    def replace(self, **changes) -> "Config":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown config fields: {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes).validate()


def check_beta(beta, name: str = "beta") -> float:
    """A communication threshold: a finite number >= 0, or -1 (send every time). nan would
    silently never send and inf the same as a large number, so both are refused."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not (
            math.isfinite(beta) and (beta >= 0 or beta == -1)):
        raise ValueError(f"{name} must be a finite number >= 0, or -1 to send every time; got {beta!r}")
    return float(beta)


# What a resumed run may change: how it runs, not what it computes (checkpoint_buffer: what its
# checkpoints hold).
MACHINE_FIELDS = ("device", "num_threads", "kernels", "checkpoint_buffer")

# Paper Table 3 plus the reference code's defaults (docs/method.md §17): the dataclass defaults.
PAPER = Config()

PRESETS: dict[str, Config] = {
    "paper": PAPER,
    # A small budget for a 2-core CPU: narrower networks, a narrow mixer embedding (the
    # softmax-weighted mixer passes each q_i to Q_tot with a gain of about 1/E_mix, so a narrow
    # one learns far faster), more frequent updates of a smaller batch and a higher learning
    # rate; the schedule (epsilon decay, target syncs, evaluation) keeps the paper's shape.
    "quick": PAPER.replace(total_steps=400_000, hidden_dim=64, mixer_hidden_dim=64, mixer_embed_dim=8, lr=5e-4,
                           batch_size=64, update_every=25, buffer_size=20_000, checkpoint_every=50,
                           eval_episodes=150),  # 3 rounds of 50 envs: team sizes 2, 3, 4 alike
    # The quick networks trained longer, with epsilon annealed linearly to 0.05 over the first 300k
    # transitions instead of exponentially over the whole run (the team only takes off once most
    # actions are greedy): 1.1M steps, ~38 min of one thread on a shared 2-core VM, greedy ~75-85
    # on `train` (results/time_to_quality).
    "fast": PAPER.replace(total_steps=1_100_000, hidden_dim=64, mixer_hidden_dim=64, mixer_embed_dim=8, lr=5e-4,
                          batch_size=64, update_every=25, buffer_size=20_000, checkpoint_every=50,
                          eval_episodes=150, eps_schedule="linear", eps_anneal_steps=300_000),
    # StarCraft micro-sim (docs/method.md §17): 12M steps, lambda_1 = 5e-5 (lambda_2 = 5e-6), REFIL's linear
    # epsilon over 500k transitions, pad tails, time-outs terminal; win rate over 160 greedy episodes.
    # Use --env sc2_3-8MMM for the other scenario.
    "starcraft": PAPER.replace(env="sc2_3-8sz", total_steps=12_000_000, vi_lambda=5e-5, eps_schedule="linear",
                               eps_anneal_steps=500_000, segment_tail="pad", truncation_is_terminal=True,
                               eval_episodes=160),
}

# The preset ``python -m cpfast.train --env NAME`` starts from when no --preset is given.
ENV_PRESETS = {"sc2_3-8sz": "starcraft", "sc2_3-8MMM": "starcraft"}


def default_preset(env: str | None) -> str:
    return ENV_PRESETS.get(env, "paper")


def preset(name: str) -> Config:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name])


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_value(name: str, text: str):
    """``text`` as the type of Config field ``name``; a ValueError names the field otherwise."""
    kinds = typing.get_type_hints(Config)
    if name not in kinds:
        raise ValueError(f"unknown config field {name!r}; expected one of {', '.join(sorted(kinds))}")
    kind = kinds[name]
    if kind is bool:
        if text.lower() not in _TRUE + _FALSE:
            raise ValueError(f"{name} takes true or false, got {text!r}")
        return text.lower() in _TRUE
    if kind is str:
        return text
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{name} takes a{'n int' if kind is int else ' number'}, got {text!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} takes a finite number, got {text!r}")
    if kind is int:
        if number != int(number):
            raise ValueError(f"{name} takes an int, got {text!r}")
        return int(text) if text.lstrip("+-").isdigit() else int(number)
    return number


def parse_overrides(items) -> dict:
    """``["lr=1e-4", "batch_size=128"]`` (the command line's ``--set``) as typed Config values."""
    overrides = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--set takes FIELD=VALUE, got {item!r}")
        overrides[name.strip()] = parse_value(name.strip(), text.strip())
    return overrides


def to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)


def from_dict(values: dict) -> Config:
    return Config().replace(**values)


__all__ = ["COACH_METHODS", "check_beta", "Config", "ENV_PRESETS", "MACHINE_FIELDS", "METHODS", "PRESETS",
           "default_preset", "from_dict", "parse_overrides", "parse_value", "preset", "to_dict"]

"""The configuration of one run: a preset, then its environment's registered changes, then
overrides (what ``python -m cpfast.train`` runs, for use from Python)."""

from __future__ import annotations

from .config import Config, default_preset, preset
from .envs.registry import registered


def make_config(env: str | None = None, preset_name: str | None = None, **overrides) -> Config:
    """The configuration ``python -m cpfast.train`` runs, for use from Python: the preset
    (default: the environment's own, else ``paper``), then the environment's registered
    changes (e.g. Rescue's ``pad`` segment tails, docs/method.md §17), then ``overrides``.
    A bare ``Config(env=...)`` skips the middle layer."""
    cfg = preset(preset_name or default_preset(env))
    env = env or cfg.env
    return cfg.replace(env=env, **registered(env).train_defaults).replace(**overrides)


__all__ = ["make_config"]

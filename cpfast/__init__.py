"""cpfast: fast, faithful COPA (coach-player multi-agent RL with dynamic team composition)."""

from . import _native  # noqa: F401  (first: makes the compiled modules importable)
from .envs import EnvSpec, VecEnv, make_env

__all__ = ["EnvSpec", "VecEnv", "make_env"]
__version__ = "0.1.0"

"""Environment facade: ``make_env`` over the C++ batched runners, adapters and rendering."""

from .pettingzoo_adapter import CpfastParallelEnv
from .registry import REGISTRY, env_options, make_env
from .spec import EnvSpec
from .vec_env import OBS_KEYS, VecEnv

__all__ = ["CpfastParallelEnv", "REGISTRY", "EnvSpec", "OBS_KEYS", "VecEnv", "env_options", "make_env"]

"""Environment facade: ``make_env`` over the C++ batched runners, and rendering. The PettingZoo
adapter (``cpfast.envs.pettingzoo_adapter``) and the real-game StarCraft backend
(``cpfast.envs.sc2``) are imported only by those who use them."""

from ..spec import EnvSpec
from .registry import REGISTRY, env_facts, env_options, make_env
from .vec_env import OBS_KEYS, VecEnv

__all__ = ["REGISTRY", "EnvSpec", "OBS_KEYS", "VecEnv", "env_facts", "env_options", "make_env"]

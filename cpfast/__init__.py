"""cpfast: fast, faithful COPA (coach-player multi-agent RL with dynamic team composition)."""

from . import _native  # noqa: F401  (first: makes the compiled modules importable)
from .spec import EnvSpec

__all__ = ["EnvSpec", "VecEnv", "make_env"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # ``cpfast.make_env`` and ``cpfast.VecEnv`` load the environments when first used, so that
    # importing another layer (``cpfast.nn``, ``cpfast.ops``) loads no environment code.
    if name in ("make_env", "VecEnv"):
        from . import envs

        return getattr(envs, name)
    raise AttributeError(f"module 'cpfast' has no attribute {name!r}")

"""COPA's networks: entity attention, player, coach, mixers, variational posterior."""

from .attention import EntityAttention
from .networks import (AttentiveEncoder, BaselineMixer, Coach, CopaMixer, HyperNet, Networks, Player,
                       VariationalPosterior, agent_rows, full_mask, other_rows, set_kernels)

__all__ = [
    "AttentiveEncoder", "BaselineMixer", "Coach", "CopaMixer", "EntityAttention", "HyperNet", "Networks", "Player",
    "VariationalPosterior", "agent_rows", "full_mask", "other_rows", "set_kernels",
]

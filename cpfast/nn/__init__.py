"""COPA's networks: entity attention, player, coach, mixers, variational posterior."""

from .attention import EntityAttention, masked_attention_probs
from .mixing import qmix_combine
from .networks import (AttentiveEncoder, BaselineMixer, Coach, CopaMixer, HyperNet, Player, VariationalPosterior,
                       agent_rows, full_mask, other_rows)

__all__ = [
    "AttentiveEncoder", "BaselineMixer", "Coach", "CopaMixer", "EntityAttention", "HyperNet", "Player",
    "VariationalPosterior", "agent_rows", "full_mask", "masked_attention_probs", "other_rows", "qmix_combine",
]

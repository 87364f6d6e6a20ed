"""The static description of an environment (docs/interface.md §2)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EnvSpec:
    name: str
    composition: str
    max_agents: int
    max_entities: int
    feat_dim: int
    agent_feat_dim: int
    other_feat_dim: int
    attr_dim: int
    n_actions: int
    episode_limit: int

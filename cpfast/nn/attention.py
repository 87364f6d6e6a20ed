"""Entity attention (method.md §2), heads batched, computed with the exact-math levers of
performance.md: per head, scores = h_a (W_Q W_K^T) h^T, so keys are never projected, and
values are projected after aggregation, (A h) W_V, on the agent rows only; the head average
is one matmul over the concatenated heads."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def masked_attention_probs(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The reference semantics: softmax over every column, multiply by the 0/1 mask,
    renormalise by (sum + 1e-12). A row with nothing visible (or whose visible columns
    underflow) is exactly 0."""
    probs = torch.softmax(scores, dim=-1) * mask
    return probs / (probs.sum(dim=-1, keepdim=True) + 1e-12)


class EntityAttention(nn.Module):
    """``MHA(x, M)``: x [R, N_E, dh], M [R, N_A, N_E] (0/1) -> [R, N_A, dh]."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.dim, self.heads = dim, heads
        self.pre = nn.Linear(dim, dim)
        self.w_q = nn.Parameter(torch.randn(heads, dim, dim))
        self.w_k = nn.Parameter(torch.randn(heads, dim, dim))
        self.w_v = nn.Parameter(torch.randn(heads, dim, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n_agents = mask.shape[-2]
        rows, n_entities, dim = x.shape
        h = self.pre(F.leaky_relu(x, 0.01))
        # Per-head bilinear form G_k = W_Q^k W_K^k^T, laid out [dh, H*dh] for one matmul.
        bilinear = torch.matmul(self.w_q, self.w_k.transpose(1, 2)) / math.sqrt(dim)
        queries = torch.matmul(h[:, :n_agents], bilinear.transpose(0, 1).reshape(dim, self.heads * dim))
        queries = queries.view(rows, n_agents, self.heads, dim).transpose(1, 2)  # [R, H, A, dh]
        scores = torch.matmul(queries, h.transpose(1, 2).unsqueeze(1))  # [R, H, A, N_E]
        probs = masked_attention_probs(scores, mask.unsqueeze(1).to(scores.dtype))
        pooled = torch.matmul(probs, h.unsqueeze(1))  # [R, H, A, dh]
        pooled = pooled.transpose(1, 2).reshape(rows, n_agents, self.heads * dim)
        return torch.matmul(pooled, self.w_v.reshape(self.heads * dim, dim)) / self.heads

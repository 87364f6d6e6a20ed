"""Entity attention (method.md §2), heads batched, computed with the exact-math levers of
performance.md: per head, scores = h_a (W_Q W_K^T) h^T, so keys are never projected, and
values are projected after aggregation, (A h) W_V, on the agent rows only; the head average
is one matmul over the concatenated heads.

With ``kernels="fused"`` everything between the query projection and the value projection
(scores, softmax, mask, renormalisation, pooling, and their backward) is one call of the fused
``entity_attention`` kernel, keys and values being the shared rows h."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .. import ops
from ..ops import masked_attention_probs


class EntityAttention(nn.Module):
    """``MHA(x, M)``: x [R, N_E, dh], M [R, N_A, N_E] (0/1) -> [R, N_A, dh]."""

    def __init__(self, dim: int, heads: int, kernels: str = "fused"):
        super().__init__()
        self.dim, self.heads, self.kernels = dim, heads, ops.check_kernels(kernels)
        self.pre = nn.Linear(dim, dim)
        self.w_q = nn.Parameter(torch.randn(heads, dim, dim))
        self.w_k = nn.Parameter(torch.randn(heads, dim, dim))
        self.w_v = nn.Parameter(torch.randn(heads, dim, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n_agents = mask.shape[-2]
        rows, n_entities, dim = x.shape
        heads = self.heads
        h = self.pre(F.leaky_relu(x, 0.01))
        # Per-head bilinear form G_k = W_Q^k W_K^k^T, laid out [dh, H*dh] for one matmul.
        bilinear = torch.matmul(self.w_q, self.w_k.transpose(1, 2)) / math.sqrt(dim)
        bilinear = bilinear.transpose(0, 1).reshape(dim, heads * dim)
        w_v = self.w_v.reshape(heads * dim, dim) / heads
        # A query row whose mask row is all zero outputs exactly 0, so on the CPU the two
        # agent-side matmuls skip such rows (absent agents: about half the slots in training).
        # On GPUs the index needs a host sync, so every row is computed.
        agents = h[:, :n_agents].reshape(rows * n_agents, dim)
        active = mask.reshape(rows * n_agents, n_entities).any(-1).nonzero().squeeze(1) if x.is_cpu else None
        queries = _rows_matmul(agents, bilinear, active).view(rows, n_agents, heads, dim)
        shared = h.unsqueeze(2)  # [R, N_E, 1, dh]: keys and values shared by every head
        if ops.use_fused("entity_attention", self.kernels, ops.attention_fallback_reason(queries, shared, shared, mask)):
            pooled = ops.fused.entity_attention_op(queries, shared, None, mask, 1.0, False)[0]
        else:
            pooled = pooled_heads_torch(queries, h, mask)
        return _rows_matmul(pooled.reshape(rows * n_agents, heads * dim), w_v, active).view(rows, n_agents, dim)


def pooled_heads_torch(queries: torch.Tensor, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The pure-torch path between the projections: queries [R, A, H, dh] (already scaled),
    keys = values h [R, N_E, dh], mask [R, A, N_E] -> every head's pooled rows [R, A, H, dh].

    Agent-major, head-minor layout [R, A*H, dh] throughout: a query row's H heads sit next to
    each other, so the per-row products need no transposes and the pooled rows come out
    already concatenated over heads for the value projection."""
    rows, n_agents, heads, dim = queries.shape
    scores = torch.bmm(queries.reshape(rows, n_agents * heads, dim), h.transpose(1, 2)).view(rows, n_agents, heads, -1)
    probs = masked_attention_probs(scores, mask.unsqueeze(2).to(scores.dtype))
    return torch.bmm(probs.view(rows, n_agents * heads, -1), h).view(rows, n_agents, heads, dim)


def _rows_matmul(x: torch.Tensor, weight: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
    """x @ weight, computed only for ``rows`` (the others are 0) when given."""
    if rows is None:
        return x @ weight
    return x.new_zeros(x.shape[0], weight.shape[1]).index_copy(0, rows, x.index_select(0, rows) @ weight)

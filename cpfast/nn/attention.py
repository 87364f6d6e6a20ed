"""Entity attention (docs/method.md §2), heads batched, computed with the exact-math levers of
docs/performance.md: per head, scores = h_a (W_Q W_K^T) h^T, so keys are never projected, and
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
        shared = h.unsqueeze(2)  # [R, N_E, 1, dh]: keys and values shared by every head
        query_like = agents.view(rows, n_agents, 1, dim)  # what the dispatcher checks: device, dtype, width
        fused = ops.use_fused("entity_attention", self.kernels,
                              ops.attention_fallback_reason(query_like, shared, shared, mask))
        # The fused kernel never reads the query or output-gradient rows of a fully masked query,
        # so with it those rows of the [R*A, H*dh] tensors are left unwritten instead of zeroed.
        queries = _rows_matmul(agents, bilinear, active, fill=not fused).view(rows, n_agents, heads, dim)
        pooled = ops.entity_attention(queries, shared, shared, mask, 1.0, average=False,
                                      kernels="fused" if fused else "torch").reshape(rows * n_agents, heads * dim)
        if active is None:
            selected = pooled
        else:
            selected = _TakeRows.apply(pooled, active) if fused else pooled.index_select(0, active)
        out = selected @ w_v
        if active is not None:  # absent agents' outputs are read downstream: exact zeros
            out = out.new_zeros(rows * n_agents, dim).index_copy_(0, active, out)
        return out.view(rows, n_agents, dim)


def _rows_matmul(x: torch.Tensor, weight: torch.Tensor, rows: torch.Tensor | None, fill: bool = True) -> torch.Tensor:
    """x @ weight, computed only for ``rows`` when given; the other rows are 0, or left
    uninitialised with ``fill=False`` (for a consumer that never reads them)."""
    if rows is None:
        return x @ weight
    out = x.new_zeros(x.shape[0], weight.shape[1]) if fill else x.new_empty(x.shape[0], weight.shape[1])
    # In place: the out-of-place index_copy would first clone ``out``.
    return out.index_copy_(0, rows, x.index_select(0, rows) @ weight)


class _TakeRows(torch.autograd.Function):
    """``x.index_select(0, rows)`` whose backward leaves the gradient of the rows not taken
    uninitialised instead of zero-filling a [R*A, H*dh] tensor: only for the fused attention's
    output, whose backward never reads the rows of fully masked queries (the rows not taken)."""

    @staticmethod
    def forward(ctx, x, rows):
        ctx.save_for_backward(rows)
        ctx.n_rows = x.shape[0]
        return x.index_select(0, rows)

    @staticmethod
    def backward(ctx, grad):
        (rows,) = ctx.saved_tensors
        return grad.new_empty(ctx.n_rows, grad.shape[1]).index_copy_(0, rows, grad), None

"""Pure-torch twins of the fused operators: the semantics the kernels must reproduce, and the
path used wherever the fused one is unavailable."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def masked_attention_probs(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The reference semantics (docs/method.md §2): softmax over every column, multiply by the 0/1
    mask, renormalise by (sum + 1e-12). A row with nothing visible (or whose visible columns
    underflow) is exactly 0."""
    probs = torch.softmax(scores, dim=-1) * mask
    return probs / (probs.sum(dim=-1, keepdim=True) + 1e-12)


def entity_attention_reference(q, k, v, mask, scale: float, average: bool = True) -> torch.Tensor:
    """q [R, A, H, d]; k, v [R, N, KH, d] with KH in {1, H} (1: shared by every head);
    mask [R, A, N]. Returns [R, A, d] (heads averaged) or [R, A, H, d]."""
    if k.shape[2] == 1 and v.shape[2] == 1:
        return _shared_kv_attention(q, k[:, :, 0], v[:, :, 0], mask, scale, average)
    scores = torch.matmul(q.transpose(1, 2), k.permute(0, 2, 3, 1)) * scale  # [R, H, A, N]
    weights = masked_attention_probs(scores, mask.unsqueeze(1).to(scores.dtype))
    out = torch.matmul(weights, v.transpose(1, 2)).transpose(1, 2)  # [R, A, H, d]
    return out.mean(dim=2) if average else out


def _shared_kv_attention(q, k, v, mask, scale: float, average: bool) -> torch.Tensor:
    """Keys k and values v [R, N, d] shared by every head, in agent-major, head-minor layout
    [R, A*H, d]: a query row's H heads sit side by side, so the products need no transposes and
    the pooled rows come out already concatenated over heads (the fast torch formulation)."""
    rows, n_agents, heads, dim = q.shape
    scores = torch.bmm(q.reshape(rows, n_agents * heads, dim), k.transpose(1, 2)).view(rows, n_agents, heads, -1)
    if scale != 1.0:
        scores = scores * scale
    probs = masked_attention_probs(scores, mask.unsqueeze(2).to(scores.dtype))
    out = torch.bmm(probs.view(rows, n_agents * heads, -1), v).view(rows, n_agents, heads, v.shape[-1])
    return out.mean(dim=2) if average else out


def qmix_mix_reference(w1_logits, b1, w2_logits, b2, agent_q, present, pairs: bool = False) -> torch.Tensor:
    """Q_tot from per-agent hypernetwork outputs [..., N_A, E], agent values [..., N_A] and
    the present mask [..., N_A] (docs/method.md §5.1):

        W1_i = p_i softmax(w1_i),  b1 = sum_i p_i b1_i / n,  w2 = sum_i p_i softmax(w2_i) / n,
        b2 = mean_k(sum_i p_i b2_i / n),  Q_tot = ELU(sum_i p_i q_i W1_i + b1) . w2 + b2

    with n = sum_i p_i + 1e-12. With ``pairs`` the first dimension of ``w1_logits`` and
    ``agent_q`` stacks several (W1, q) pairs whose contributions are summed (AI-QMIX).
    """
    p = present.to(agent_q.dtype)
    n = p.sum(-1, keepdim=True) + 1e-12  # [..., 1]
    weights = p.unsqueeze(-1) * torch.softmax(w1_logits, dim=-1)
    mixed = ((p * agent_q).unsqueeze(-1) * weights).sum(-2)  # [(P,) ..., E]
    if pairs:
        mixed = mixed.sum(0)
    bias1 = (p.unsqueeze(-1) * b1).sum(-2) / n
    w2 = (p.unsqueeze(-1) * torch.softmax(w2_logits, dim=-1)).sum(-2) / n
    bias2 = ((p.unsqueeze(-1) * b2).sum(-2) / n).mean(-1)
    return (F.elu(mixed + bias1) * w2).sum(-1) + bias2

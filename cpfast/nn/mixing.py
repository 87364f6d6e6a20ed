"""The QMIX combination of method.md §5.1, shared by every mixer (pure-torch path)."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def qmix_combine(w1_logits, b1, w2_logits, b2, agent_q, present, pairs: bool = False) -> torch.Tensor:
    """Q_tot from per-agent hypernetwork outputs [..., N_A, E], agent values [..., N_A] and
    the present mask [..., N_A]:

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

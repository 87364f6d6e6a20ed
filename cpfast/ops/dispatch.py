"""One switch for every fused operator: ``kernels="fused"`` (the default) uses the compiled
kernel when it can run the call and otherwise falls back to the pure-torch twin, recording why;
``kernels="torch"`` always uses the twin."""

from __future__ import annotations

import logging
from collections import Counter

import torch

from . import reference

KERNEL_MODES = ("fused", "torch")
_logger = logging.getLogger("cpfast.ops")
_fallbacks: Counter = Counter()

try:
    from . import fused
    from .. import _kernels

    _IMPORT_ERROR: str | None = None
except ImportError as error:  # a source checkout without the compiled extension
    fused = _kernels = None
    _IMPORT_ERROR = f"the compiled extension cpfast._kernels could not be imported ({error})"


def check_kernels(kernels: str) -> str:
    if kernels not in KERNEL_MODES:
        raise ValueError(f"kernels must be one of {', '.join(KERNEL_MODES)}, got {kernels!r}")
    return kernels


def _common_reason(tensors, float_dtypes=(torch.float32, torch.float64)) -> str | None:
    if _IMPORT_ERROR is not None:
        return _IMPORT_ERROR
    first = tensors[0]
    if first.dtype not in float_dtypes:
        return f"dtype {first.dtype} is not supported (float32 or float64)"
    if any(t.dtype != first.dtype for t in tensors):
        return "inputs have different dtypes: " + ", ".join(sorted({str(t.dtype) for t in tensors}))
    if any(t.device != first.device for t in tensors):
        return "inputs are on different devices: " + ", ".join(sorted({str(t.device) for t in tensors}))
    if first.device.type == "cuda" and not _kernels.has_cuda():
        return "cpfast._kernels was built without CUDA (no CUDA compiler when it was installed)"
    if first.device.type not in ("cpu", "cuda"):
        return f"device {first.device.type} has no fused kernel"
    return None


def attention_fallback_reason(q, k, v, mask) -> str | None:
    """Why the fused entity_attention cannot run this call (None: it can)."""
    reason = _common_reason((q, k, v, mask))
    if reason is not None:
        return reason
    if k.shape[1] > _kernels.max_entities:
        return f"{k.shape[1]} entities exceed the kernel's limit of {_kernels.max_entities}"
    if q.is_cuda and q.shape[-1] > _kernels.max_dim_cuda:
        return f"head width {q.shape[-1]} exceeds the CUDA kernel's limit of {_kernels.max_dim_cuda}"
    if mask.requires_grad:
        return "the mask requires grad (the fused backward treats it as a constant)"
    return None


def mix_fallback_reason(w1, b1, w2, b2, q, present) -> str | None:
    """Why the fused qmix_mix cannot run this call (None: it can)."""
    reason = _common_reason((w1, b1, w2, b2, q, present))
    if reason is not None:
        return reason
    if w1.shape[-1] > _kernels.max_embed:
        return f"embedding width {w1.shape[-1]} exceeds the kernel's limit of {_kernels.max_embed}"
    if present.requires_grad:
        return "the present mask requires grad (the fused backward treats it as a constant)"
    return None


def use_fused(op: str, kernels: str, reason: str | None) -> bool:
    """Decides the path; a fallback under ``kernels="fused"`` is logged once per reason and
    counted in ``fallbacks()``."""
    if check_kernels(kernels) == "torch":
        return False
    if reason is None:
        return True
    key = f"{op}: {reason}"
    if key not in _fallbacks:
        _logger.warning("cpfast: fused %s unavailable, using pure torch: %s", op, reason)
    _fallbacks[key] += 1
    return False


def fallbacks() -> dict[str, int]:
    """Fallbacks so far under ``kernels="fused"``: '<op>: <reason>' -> number of calls."""
    return dict(_fallbacks)


def _check_attention_shapes(q, k, v, mask) -> None:
    if q.dim() != 4:
        raise ValueError(f"entity_attention: q must be [rows, agents, heads, dim], got shape {tuple(q.shape)}")
    rows, agents, heads, dim = q.shape
    if k.dim() != 4 or k.shape[0] != rows or k.shape[3] != dim or k.shape[2] not in (1, heads):
        raise ValueError(f"entity_attention: k must be [{rows}, entities, 1 or {heads}, {dim}], got {tuple(k.shape)}")
    if v.shape != k.shape:
        raise ValueError(f"entity_attention: v must have k's shape {tuple(k.shape)}, got {tuple(v.shape)}")
    if mask.shape != (rows, agents, k.shape[1]):
        raise ValueError(f"entity_attention: mask must be [{rows}, {agents}, {k.shape[1]}], got {tuple(mask.shape)}")


def entity_attention(q, k, v, mask, scale: float, average: bool = True, kernels: str = "fused") -> torch.Tensor:
    """Masked multi-head attention of A agent queries over N entity columns (docs/method.md §2).

    q [R, A, H, d] (projected per head); k, v [R, N, KH, d] with KH = H, or KH = 1 for keys and
    values shared by every head (no per-head copies), and v may be k itself; mask [R, A, N], 0/1 in q's dtype. Scores
    are ``q.k * scale``; softmax over all N columns, times the mask, renormalised by
    (sum + 1e-12). Returns the heads' average [R, A, d], or every head [R, A, H, d] with
    ``average=False``. A row with nothing visible outputs exactly 0."""
    _check_attention_shapes(q, k, v, mask)
    if use_fused("entity_attention", kernels, attention_fallback_reason(q, k, v, mask)):
        shared = v is k  # one buffer for keys and values, one gradient
        return fused.entity_attention_op(q, k, None if shared else v, mask, float(scale), bool(average))[0]
    return reference.entity_attention_reference(q, k, v, mask, scale, average)


def qmix_mix(w1_logits, b1, w2_logits, b2, agent_q, present, pairs: bool = False, kernels: str = "fused"):
    """Q_tot [...] of docs/method.md §5.1 from per-agent hypernetwork outputs [..., A, E], agent
    values [..., A] and the present mask [..., A]; with ``pairs`` a leading dimension of
    ``w1_logits`` and ``agent_q`` stacks (W1, q) pairs whose terms are summed (AI-QMIX)."""
    lead = present.shape[:-1]
    agents, embed = present.shape[-1], b1.shape[-1]
    expected_w1 = (w1_logits.shape[0], *lead, agents, embed) if pairs else (*lead, agents, embed)
    for name, t, shape in (("w1_logits", w1_logits, expected_w1), ("b1", b1, (*lead, agents, embed)),
                           ("w2_logits", w2_logits, (*lead, agents, embed)), ("b2", b2, (*lead, agents, embed)),
                           ("agent_q", agent_q, expected_w1[:-1])):
        if tuple(t.shape) != tuple(shape):
            raise ValueError(f"qmix_mix: {name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
    present = present.to(agent_q.dtype)
    if not use_fused("qmix_mix", kernels, mix_fallback_reason(w1_logits, b1, w2_logits, b2, agent_q, present)):
        return reference.qmix_mix_reference(w1_logits, b1, w2_logits, b2, agent_q, present, pairs)
    n_pairs = w1_logits.shape[0] if pairs else 1
    flat = lambda t: t.reshape(-1, agents, embed)  # noqa: E731
    out = fused.qmix_mix_op(w1_logits.reshape(n_pairs, -1, agents, embed), flat(b1), flat(w2_logits), flat(b2),
                            agent_q.reshape(n_pairs, -1, agents), present.reshape(-1, agents))
    return out.view(lead)

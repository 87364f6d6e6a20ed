"""The fused kernels of ``cpfast._kernels`` as torch operators (``torch.library.custom_op``)
with fake implementations for tracing and autograd formulas that call the fused backwards.

The extension never links libtorch: these wrappers allocate outputs with torch and pass data
pointers, sizes, the CPU thread count and (on CUDA) the current stream as integers."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import Tensor

from .. import _kernels


def _launch_context(t: Tensor) -> tuple[str, str, int, object]:
    """(device name, dtype name, stream, device guard) for a kernel call on t's device."""
    dtype = str(t.dtype).removeprefix("torch.")
    if t.is_cuda:
        return "cuda", dtype, torch.cuda.current_stream(t.device).cuda_stream, torch.cuda.device(t.device)
    return "cpu", dtype, 0, nullcontext()


def _ptr(t: Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


# ---------------------------------------------------------------------------- entity attention
@torch.library.custom_op("cpfast::entity_attention", mutates_args=())
def entity_attention_op(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, scale: float, average: bool) -> tuple[Tensor, Tensor]:
    """(out, softmax probabilities [R, A, H, N]); see ``cpfast.ops.entity_attention``."""
    q, k, v, mask = (t.contiguous() for t in (q, k, v, mask))
    rows, agents, heads, dim = q.shape
    entities, kv_heads = k.shape[1], k.shape[2]
    out = q.new_empty((rows, agents, dim) if average else (rows, agents, heads, dim))
    probs = q.new_empty(rows, agents, heads, entities)
    device, dtype, stream, guard = _launch_context(q)
    with guard:
        _kernels.attention_forward(device, dtype, rows, agents, heads, entities, dim, kv_heads, scale, average,
                                   _ptr(q), _ptr(k), _ptr(v), _ptr(mask), _ptr(out), _ptr(probs),
                                   torch.get_num_threads(), stream)
    return out, probs


@entity_attention_op.register_fake
def _(q, k, v, mask, scale, average):
    rows, agents, heads, dim = q.shape
    out = q.new_empty((rows, agents, dim) if average else (rows, agents, heads, dim))
    return out, q.new_empty(rows, agents, heads, k.shape[1])


@torch.library.custom_op("cpfast::entity_attention_backward", mutates_args=())
def entity_attention_backward_op(grad: Tensor, q: Tensor, k: Tensor, v: Tensor, mask: Tensor, probs: Tensor,
                                 scale: float, average: bool) -> tuple[Tensor, Tensor, Tensor]:
    grad, q, k, v, mask, probs = (t.contiguous() for t in (grad, q, k, v, mask, probs))
    rows, agents, heads, dim = q.shape
    entities, kv_heads = k.shape[1], k.shape[2]
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    # The CUDA backward sums dK/dV over queries in a second pass from these two buffers.
    d_scores = torch.empty_like(probs) if q.is_cuda else None
    weights = torch.empty_like(probs) if q.is_cuda else None
    device, dtype, stream, guard = _launch_context(q)
    with guard:
        _kernels.attention_backward(device, dtype, rows, agents, heads, entities, dim, kv_heads, scale, average,
                                    _ptr(grad), _ptr(q), _ptr(k), _ptr(v), _ptr(mask), _ptr(probs), _ptr(dq),
                                    _ptr(dk), _ptr(dv), _ptr(d_scores), _ptr(weights), torch.get_num_threads(), stream)
    return dq, dk, dv


@entity_attention_backward_op.register_fake
def _(grad, q, k, v, mask, probs, scale, average):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _attention_setup_context(ctx, inputs, output):
    q, k, v, mask, scale, average = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(q, k, v, mask, output[1])
    ctx.scale, ctx.average = scale, average


def _attention_backward(ctx, grad_out, _grad_probs):
    q, k, v, mask, probs = ctx.saved_tensors
    dq, dk, dv = entity_attention_backward_op(grad_out, q, k, v, mask, probs, ctx.scale, ctx.average)
    return dq, dk, dv, None, None, None


entity_attention_op.register_autograd(_attention_backward, setup_context=_attention_setup_context)


# ---------------------------------------------------------------------------- QMIX mixing
@torch.library.custom_op("cpfast::qmix_mix", mutates_args=())
def qmix_mix_op(w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, q: Tensor, present: Tensor) -> Tensor:
    """Q_tot [R] from w1 [P, R, A, E], b1/w2/b2 [R, A, E], q [P, R, A], present [R, A]."""
    w1, b1, w2, b2, q, present = (t.contiguous() for t in (w1, b1, w2, b2, q, present))
    pairs, rows, agents, embed = w1.shape
    out = q.new_empty(rows)
    device, dtype, stream, guard = _launch_context(q)
    with guard:
        _kernels.mix_forward(device, dtype, rows, pairs, agents, embed, _ptr(w1), _ptr(b1), _ptr(w2), _ptr(b2),
                             _ptr(q), _ptr(present), _ptr(out), torch.get_num_threads(), stream)
    return out


@qmix_mix_op.register_fake
def _(w1, b1, w2, b2, q, present):
    return q.new_empty(w1.shape[1])


@torch.library.custom_op("cpfast::qmix_mix_backward", mutates_args=())
def qmix_mix_backward_op(grad: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, q: Tensor,
                         present: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    grad, w1, b1, w2, b2, q, present = (t.contiguous() for t in (grad, w1, b1, w2, b2, q, present))
    pairs, rows, agents, embed = w1.shape
    grads = tuple(torch.empty_like(t) for t in (w1, b1, w2, b2, q))
    device, dtype, stream, guard = _launch_context(q)
    with guard:
        _kernels.mix_backward(device, dtype, rows, pairs, agents, embed, _ptr(w1), _ptr(b1), _ptr(w2), _ptr(b2),
                              _ptr(q), _ptr(present), _ptr(grad), *(_ptr(g) for g in grads),
                              torch.get_num_threads(), stream)
    return grads


@qmix_mix_backward_op.register_fake
def _(grad, w1, b1, w2, b2, q, present):
    return tuple(torch.empty_like(t) for t in (w1, b1, w2, b2, q))


def _mix_setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _mix_backward(ctx, grad_out):
    return (*qmix_mix_backward_op(grad_out, *ctx.saved_tensors), None)


qmix_mix_op.register_autograd(_mix_backward, setup_context=_mix_setup_context)

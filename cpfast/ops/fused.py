"""The fused kernels of ``cpfast._kernels`` as torch operators (``torch.library.custom_op``)
with fake implementations for tracing and autograd formulas that call the fused backwards.

The extension never links libtorch: these wrappers allocate outputs with torch and pass data
pointers, sizes, the CPU thread count and (on CUDA) the current stream as integers."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Optional

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
def entity_attention_op(q: Tensor, k: Tensor, v: Optional[Tensor], mask: Tensor, scale: float,
                        average: bool) -> tuple[Tensor, Tensor]:
    """(out, softmax probabilities [R, A, H, N]); see ``cpfast.ops.entity_attention``. ``v=None``:
    the keys are also the values (one buffer, one gradient)."""
    q, k, mask = (t.contiguous() for t in (q, k, mask))
    v = k if v is None else v.contiguous()
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
def entity_attention_backward_op(grad: Tensor, q: Tensor, k: Tensor, v: Optional[Tensor], mask: Tensor,
                                 probs: Tensor, scale: float, average: bool) -> list[Tensor]:
    """[dq, dk, dv], or [dq, d(k as keys and values)] when ``v`` is None."""
    grad, q, k, mask, probs = (t.contiguous() for t in (grad, q, k, mask, probs))
    shared = v is None
    v = k if shared else v.contiguous()
    rows, agents, heads, dim = q.shape
    entities, kv_heads = k.shape[1], k.shape[2]
    dq, dk = torch.empty_like(q), torch.empty_like(k)
    dv = dk if shared else torch.empty_like(v)  # the kernels add both parts into one buffer when aliased
    # The CUDA backward sums dK/dV over queries in a second pass from these two buffers.
    d_scores = torch.empty_like(probs) if q.is_cuda else None
    weights = torch.empty_like(probs) if q.is_cuda else None
    device, dtype, stream, guard = _launch_context(q)
    with guard:
        _kernels.attention_backward(device, dtype, rows, agents, heads, entities, dim, kv_heads, scale, average,
                                    _ptr(grad), _ptr(q), _ptr(k), _ptr(v), _ptr(mask), _ptr(probs), _ptr(dq),
                                    _ptr(dk), _ptr(dv), _ptr(d_scores), _ptr(weights), torch.get_num_threads(), stream)
    return [dq, dk] if shared else [dq, dk, dv]


@entity_attention_backward_op.register_fake
def _(grad, q, k, v, mask, probs, scale, average):
    return [torch.empty_like(t) for t in ((q, k) if v is None else (q, k, v))]


def _attention_setup_context(ctx, inputs, output):
    q, k, v, mask, scale, average = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.set_materialize_grads(False)
    ctx.save_for_backward(q, k, v, mask, output[1])
    ctx.scale, ctx.average = scale, average


def _attention_backward(ctx, grad_out, _grad_probs):
    if grad_out is None:
        return None, None, None, None, None, None
    q, k, v, mask, probs = ctx.saved_tensors
    grads = entity_attention_backward_op(grad_out, q, k, v, mask, probs, ctx.scale, ctx.average)
    return grads[0], grads[1], (grads[2] if v is not None else None), None, None, None


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

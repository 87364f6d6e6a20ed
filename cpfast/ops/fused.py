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
from . import reference


def _launch_context(t: Tensor) -> tuple[str, str, int, object]:
    """(device name, dtype name, stream, device guard) for a kernel call on t's device."""
    dtype = str(t.dtype).removeprefix("torch.")
    if t.is_cuda:
        return "cuda", dtype, torch.cuda.current_stream(t.device).cuda_stream, torch.cuda.device(t.device)
    return "cpu", dtype, 0, nullcontext()


def _ptr(t: Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


# ---------------------------------------------------------------------------- argument checks
# The kernels trust the sizes they are given, so every operator checks its arguments itself, in
# both the real and the fake implementation: direct torch.ops.cpfast calls and compiled graphs
# (which trace the fake one) get the same errors as cpfast.ops.
def _fail(op: str, message: str):
    raise ValueError(f"cpfast::{op}: {message}")


def _check_tensors(op: str, named: dict[str, Tensor]) -> None:
    """Same floating dtype (float32 or float64) and same device for every tensor."""
    first_name, first = next(iter(named.items()))
    for name, t in named.items():
        if not isinstance(t, Tensor):
            _fail(op, f"{name} must be a tensor, got {type(t).__name__}")
        if t.dtype not in (torch.float32, torch.float64):
            _fail(op, f"{name} must be float32 or float64, got {t.dtype}")
        if t.dtype != first.dtype:
            _fail(op, f"{name} has dtype {t.dtype} but {first_name} has {first.dtype} (all inputs must share one)")
        if t.device != first.device:
            _fail(op, f"{name} is on {t.device} but {first_name} is on {first.device}")
    if first.device.type not in ("cpu", "cuda"):
        _fail(op, f"device {first.device.type} has no kernel (cpu or cuda)")


def _check_shape(op: str, name: str, t: Tensor, expected: tuple, described: str | None = None) -> None:
    if tuple(t.shape) != tuple(expected):
        _fail(op, f"{name} must have shape {described or list(expected)}, got {list(t.shape)}")


def _check_attention(op: str, q, k, v, mask, extra: dict | None = None) -> tuple:
    """(rows, agents, heads, entities, dim, kv_heads) after checking q, k, v, mask (and ``extra``:
    name -> (tensor, expected shape))."""
    named = {"q": q, "k": k, "mask": mask}
    if v is not None:
        named["v"] = v
    for name, (t, _) in (extra or {}).items():
        named[name] = t
    _check_tensors(op, named)
    if q.dim() != 4:
        _fail(op, f"q must be 4-D [rows, agents, heads, dim], got shape {list(q.shape)}")
    rows, agents, heads, dim = q.shape
    if heads < 1:
        _fail(op, "q must have at least one head (shape [rows, agents, heads >= 1, dim])")
    if k.dim() != 4 or k.shape[0] != rows or k.shape[3] != dim or k.shape[2] not in (1, heads):
        _fail(op, f"k must have shape [{rows}, entities, 1 or {heads}, {dim}], got {list(k.shape)}")
    entities, kv_heads = k.shape[1], k.shape[2]
    if v is not None:
        _check_shape(op, "v", v, k.shape, f"{list(k.shape)} (k's)")
    _check_shape(op, "mask", mask, (rows, agents, entities))
    for name, (t, shape) in (extra or {}).items():
        _check_shape(op, name, t, shape)
    if entities > _kernels.max_entities:
        _fail(op, f"{entities} entities exceed the kernel's limit of {_kernels.max_entities}")
    if q.is_cuda:
        if not _kernels.has_cuda():
            _fail(op, "cpfast._kernels was built without CUDA")
        if dim > _kernels.max_dim_cuda:
            _fail(op, f"head width {dim} exceeds the CUDA kernel's limit of {_kernels.max_dim_cuda}")
    return rows, agents, heads, entities, dim, kv_heads


def _check_mix(op: str, w1, b1, w2, b2, q, present, grad=None) -> tuple:
    """(pairs, rows, agents, embed) after checking the mixer's inputs (and ``grad`` [rows])."""
    named = {"w1": w1, "b1": b1, "w2": w2, "b2": b2, "q": q, "present": present}
    if grad is not None:
        named["grad"] = grad
    _check_tensors(op, named)
    if w1.dim() != 4:
        _fail(op, f"w1 must be 4-D [pairs, rows, agents, embed], got shape {list(w1.shape)}")
    pairs, rows, agents, embed = w1.shape
    if pairs < 1 or embed < 1:
        _fail(op, f"w1 must have at least one pair and one embedding column, got shape {list(w1.shape)}")
    for name, t in (("b1", b1), ("w2", w2), ("b2", b2)):
        _check_shape(op, name, t, (rows, agents, embed))
    _check_shape(op, "q", q, (pairs, rows, agents))
    _check_shape(op, "present", present, (rows, agents))
    if grad is not None:
        _check_shape(op, "grad", grad, (rows,))
    if embed > _kernels.max_embed:
        _fail(op, f"embedding width {embed} exceeds the kernel's limit of {_kernels.max_embed}")
    if q.is_cuda and not _kernels.has_cuda():
        _fail(op, "cpfast._kernels was built without CUDA")
    return pairs, rows, agents, embed


# ---------------------------------------------------------------------------- entity attention
@torch.library.custom_op("cpfast::entity_attention", mutates_args=())
def entity_attention_op(q: Tensor, k: Tensor, v: Optional[Tensor], mask: Tensor, scale: float,
                        average: bool) -> tuple[Tensor, Tensor]:
    """(out, softmax probabilities [R, A, H, N]); see ``cpfast.ops.entity_attention``. ``v=None``:
    the keys are also the values (one buffer, one gradient)."""
    rows, agents, heads, entities, dim, kv_heads = _check_attention("entity_attention", q, k, v, mask)
    if rows * agents * entities * dim == 0:  # nothing for the kernel to do: the twin's (empty or zero) result
        probs = reference.masked_attention_probs(
            torch.matmul(q.transpose(1, 2), k.permute(0, 2, 3, 1)) * scale, mask.unsqueeze(1)).transpose(1, 2)
        return reference.entity_attention_reference(q, k, k if v is None else v, mask, scale, average), \
            probs.contiguous()
    q, k, mask = (t.contiguous() for t in (q, k, mask))
    v = k if v is None else v.contiguous()
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
    rows, agents, heads, _, dim, _ = _check_attention("entity_attention", q, k, v, mask)
    out = q.new_empty((rows, agents, dim) if average else (rows, agents, heads, dim))
    return out, q.new_empty(rows, agents, heads, k.shape[1])


@torch.library.custom_op("cpfast::entity_attention_backward", mutates_args=())
def entity_attention_backward_op(grad: Tensor, q: Tensor, k: Tensor, v: Optional[Tensor], mask: Tensor,
                                 probs: Tensor, scale: float, average: bool) -> list[Tensor]:
    """[dq, dk, dv], or [dq, d(k as keys and values)] when ``v`` is None."""
    rows, agents, heads, entities, dim, kv_heads = _check_attention(
        "entity_attention_backward", q, k, v, mask, _attention_backward_extra(grad, q, k, probs, average))
    shared = v is None
    if rows * agents * entities * dim == 0:  # the output is empty or constantly 0: zero gradients
        return [torch.zeros_like(t) for t in ((q, k) if shared else (q, k, v))]
    grad, q, k, mask, probs = (t.contiguous() for t in (grad, q, k, mask, probs))
    v = k if shared else v.contiguous()
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
    _check_attention("entity_attention_backward", q, k, v, mask, _attention_backward_extra(grad, q, k, probs, average))
    return [torch.empty_like(t) for t in ((q, k) if v is None else (q, k, v))]


def _attention_backward_extra(grad, q, k, probs, average) -> dict:
    """The backward's grad and probs with the shapes the forward gives them (q and k unchecked yet:
    a wrong rank there is reported by _check_attention before these shapes are compared)."""
    if q.dim() != 4 or k.dim() != 4:
        return {"grad": (grad, tuple(grad.shape)), "probs": (probs, tuple(probs.shape))}
    rows, agents, heads, dim = q.shape
    return {"grad": (grad, (rows, agents, dim) if average else (rows, agents, heads, dim)),
            "probs": (probs, (rows, agents, heads, k.shape[1]))}


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
    pairs, rows, agents, embed = _check_mix("qmix_mix", w1, b1, w2, b2, q, present)
    if rows * agents == 0:  # no rows, or nobody to mix: the twin's (empty or zero) result
        return reference.qmix_mix_reference(w1, b1, w2, b2, q, present, pairs=True)
    w1, b1, w2, b2, q, present = (t.contiguous() for t in (w1, b1, w2, b2, q, present))
    out = q.new_empty(rows)
    device, dtype, stream, guard = _launch_context(q)
    with guard:
        _kernels.mix_forward(device, dtype, rows, pairs, agents, embed, _ptr(w1), _ptr(b1), _ptr(w2), _ptr(b2),
                             _ptr(q), _ptr(present), _ptr(out), torch.get_num_threads(), stream)
    return out


@qmix_mix_op.register_fake
def _(w1, b1, w2, b2, q, present):
    _check_mix("qmix_mix", w1, b1, w2, b2, q, present)
    return q.new_empty(w1.shape[1])


@torch.library.custom_op("cpfast::qmix_mix_backward", mutates_args=())
def qmix_mix_backward_op(grad: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, q: Tensor,
                         present: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    pairs, rows, agents, embed = _check_mix("qmix_mix_backward", w1, b1, w2, b2, q, present, grad)
    if rows * agents == 0:  # every input is empty
        return tuple(torch.zeros_like(t) for t in (w1, b1, w2, b2, q))
    grad, w1, b1, w2, b2, q, present = (t.contiguous() for t in (grad, w1, b1, w2, b2, q, present))
    grads = tuple(torch.empty_like(t) for t in (w1, b1, w2, b2, q))
    device, dtype, stream, guard = _launch_context(q)
    with guard:
        _kernels.mix_backward(device, dtype, rows, pairs, agents, embed, _ptr(w1), _ptr(b1), _ptr(w2), _ptr(b2),
                              _ptr(q), _ptr(present), _ptr(grad), *(_ptr(g) for g in grads),
                              torch.get_num_threads(), stream)
    return grads


@qmix_mix_backward_op.register_fake
def _(grad, w1, b1, w2, b2, q, present):
    _check_mix("qmix_mix_backward", w1, b1, w2, b2, q, present, grad)
    return tuple(torch.empty_like(t) for t in (w1, b1, w2, b2, q))


def _mix_setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _mix_backward(ctx, grad_out):
    return (*qmix_mix_backward_op(grad_out, *ctx.saved_tensors), None)


qmix_mix_op.register_autograd(_mix_backward, setup_context=_mix_setup_context)

"""The fused kernels (cpfast._kernels through cpfast.ops) against their pure-torch twins:
forward and gradients in float64 over random shapes, fully masked rows, single visible
entities, absent agents in the mixer, torch.library.opcheck, torch.compile, the dispatcher's
fallbacks, thread-count determinism and one full learner update fused vs torch. CUDA cases run
when a GPU and a CUDA build are present and skip otherwise."""

import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cpfast import _kernels, ops
from cpfast.config import preset
from cpfast.learner import Learner
from cpfast.nn import EntityAttention
from cpfast.ops import fused

from test_learner import SPEC, rollout_batch

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not (torch.cuda.is_available() and _kernels.has_cuda()), reason="needs a GPU and a CUDA build of cpfast"))]
F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------- inputs
def attention_inputs(gen, rows, agents, heads, entities, dim, shared_kv, device="cpu", dtype=F64, visible=0.5,
                     spread=0.3):
    """Random q/k/v and a mask with one fully masked query row and one single-visible row."""
    kv_heads = 1 if shared_kv else heads
    q = torch.randn(rows, agents, heads, dim, generator=gen, dtype=dtype) * spread
    k = torch.randn(rows, entities, kv_heads, dim, generator=gen, dtype=dtype) * spread
    v = torch.randn(rows, entities, kv_heads, dim, generator=gen, dtype=dtype)
    mask = (torch.rand(rows, agents, entities, generator=gen) < visible).to(dtype)
    mask[0, 0] = 0
    if rows * agents > 1:
        flat = mask.view(rows * agents, entities)
        flat[-1] = 0
        flat[-1, entities - 1] = 1
    return [t.to(device) for t in (q, k, v, mask)]


def mix_inputs(gen, rows, pairs, agents, embed, device="cpu", dtype=F64):
    """Hypernetwork outputs and values with absent agents, including a row with nobody present."""
    w1 = torch.randn(pairs, rows, agents, embed, generator=gen, dtype=dtype) * 2
    b1, w2, b2 = (torch.randn(rows, agents, embed, generator=gen, dtype=dtype) * 2 for _ in range(3))
    q = torch.randn(pairs, rows, agents, generator=gen, dtype=dtype) * 3
    present = (torch.rand(rows, agents, generator=gen) < 0.6).to(dtype)
    present[0] = 0
    if rows > 1:
        present[1] = 1
    return [t.to(device) for t in (w1, b1, w2, b2, q, present)]


def grads(out, inputs, seed=0):
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype).to(out.device)
    return torch.autograd.grad(out, inputs, g)


def assert_all_close(a, b, rtol=1e-10, atol=1e-12):
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------- entity attention
@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 6), agents=st.integers(1, 16), entities=st.integers(0, 32),
       dim=st.sampled_from([32, 64, 128]), heads=st.sampled_from([1, 2, 4, 8]), shared_kv=st.booleans(),
       average=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_attention_matches_twin_forward_and_backward_float64(rows, agents, entities, dim, heads, shared_kv, average,
                                                            seed):
    gen = torch.Generator().manual_seed(seed)
    q, k, v, mask = attention_inputs(gen, rows, agents, heads, agents + entities, dim, shared_kv)
    inputs = [t.requires_grad_(True) for t in (q, k, v)]
    scale = dim ** -0.5
    fused_out = ops.entity_attention(q, k, v, mask, scale, average)
    twin_out = ops.entity_attention_reference(q, k, v, mask, scale, average)
    torch.testing.assert_close(fused_out, twin_out, rtol=1e-10, atol=1e-12)
    assert_all_close(grads(fused_out, inputs), grads(twin_out, inputs))
    assert (fused_out[0, 0] == 0).all(), "a fully masked row outputs exactly 0"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shared_kv,average", [(True, False), (False, True), (True, True)])
def test_attention_gradcheck_float64(device, shared_kv, average):
    gen = torch.Generator().manual_seed(1)
    q, k, v, mask = attention_inputs(gen, 2, 3, 2, 7, 32, shared_kv, device, spread=0.5)
    inputs = tuple(t.requires_grad_(True) for t in (q, k, v))
    fn = lambda q, k, v: ops.entity_attention(q, k, v, mask, 0.25, average)  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_attention_masked_rows_and_single_visible_entity(device):
    gen = torch.Generator().manual_seed(2)
    q, k, v, mask = attention_inputs(gen, 3, 4, 2, 9, 64, False, device)
    mask[1] = 0
    mask[2] = 0
    mask[2, :, 5] = 1
    inputs = [t.requires_grad_(True) for t in (q, k, v)]
    out = ops.entity_attention(q, k, v, mask, 0.125, False)
    assert (out[1] == 0).all()
    # Only entity 5 visible: every head returns that entity's value row for that head (up to
    # the renormaliser's 1e-12 floor).
    torch.testing.assert_close(out[2], v[2, 5].unsqueeze(0).expand(4, -1, -1), rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(out, ops.entity_attention_reference(q, k, v, mask, 0.125, False), rtol=1e-10,
                               atol=1e-12)
    dq, dk, dv = grads(out, inputs)
    assert torch.isfinite(dq).all() and torch.isfinite(dk).all() and torch.isfinite(dv).all()
    assert (dq[1] == 0).all() and (dk[1] == 0).all() and (dv[1] == 0).all()
    # One visible column: the output barely depends on the scores, so almost no gradient reaches q.
    assert dq[2].abs().max() < 1e-8


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("average", [False, True])
def test_attention_keys_doubling_as_values_get_one_summed_gradient(device, average):
    gen = torch.Generator().manual_seed(9)
    q, k, _, mask = attention_inputs(gen, 4, 5, 2, 11, 32, True, device)
    inputs = [t.requires_grad_(True) for t in (q, k)]
    fused_out = ops.entity_attention(q, k, k, mask, 0.3, average)  # v is k: the one-buffer path
    twin_out = ops.entity_attention_reference(q, k, k, mask, 0.3, average)
    torch.testing.assert_close(fused_out, twin_out, rtol=1e-10, atol=1e-12)
    assert_all_close(grads(fused_out, inputs), grads(twin_out, inputs))
    assert torch.autograd.gradcheck(lambda q, k: ops.entity_attention(q, k, k, mask, 0.3, average), tuple(inputs),
                                    eps=1e-6, atol=1e-7, rtol=1e-5)


def test_attention_float32_underflow_row_is_zero_like_the_twin():
    # A hidden column 200 above the visible one: float32 probabilities of the visible column
    # underflow, and the reference semantics give exactly 0, not the visible value.
    q = torch.zeros(1, 1, 1, 4)
    q[..., 0] = 1.0
    k = torch.zeros(1, 3, 1, 4)
    k[0, 1, 0, 0] = 200.0
    k[0, 2, 0, 1] = 1.0
    v = torch.randn(1, 3, 1, 4)
    mask = torch.tensor([[[0.0, 0.0, 1.0]]])
    out = ops.entity_attention(q, k, v, mask, 1.0)
    assert (out == 0).all()
    torch.testing.assert_close(out, ops.entity_attention_reference(q, k, v, mask, 1.0))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shared_kv,average", [(True, False), (False, True)])
def test_attention_opcheck(device, shared_kv, average):
    gen = torch.Generator().manual_seed(3)
    for dtype in (torch.float32, F64):
        q, k, v, mask = attention_inputs(gen, 3, 4, 2, 6, 32, shared_kv, device, dtype)
        for t in (q, k, v):
            t.requires_grad_(True)
        grad = torch.randn(q.shape[:2] + ((q.shape[3],) if average else q.shape[2:]), dtype=dtype, device=device)
        for values in (v, None):  # separate values, and keys doubling as values
            torch.library.opcheck(fused.entity_attention_op, (q, k, values, mask, 0.2, average))
            probs = fused.entity_attention_op(q, k, values, mask, 0.2, average)[1]
            torch.library.opcheck(fused.entity_attention_backward_op,
                                  (grad, q.detach(), k.detach(), None if values is None else v.detach(), mask, probs,
                                   0.2, average))


# ---------------------------------------------------------------------------- qmix mixing
@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 9), pairs=st.integers(1, 2), agents=st.integers(1, 16), embed=st.integers(1, 64),
       seed=st.integers(0, 2**31 - 1))
def test_mix_matches_twin_forward_and_backward_float64(rows, pairs, agents, embed, seed):
    gen = torch.Generator().manual_seed(seed)
    w1, b1, w2, b2, q, present = mix_inputs(gen, rows, pairs, agents, embed)
    inputs = [t.requires_grad_(True) for t in (w1, b1, w2, b2, q)]
    use_pairs = pairs > 1
    if not use_pairs:
        w1, q = w1[0], q[0]
    fused_out = ops.qmix_mix(w1, b1, w2, b2, q, present, pairs=use_pairs)
    twin_out = ops.qmix_mix_reference(w1, b1, w2, b2, q, present, pairs=use_pairs)
    torch.testing.assert_close(fused_out, twin_out, rtol=1e-10, atol=1e-12)
    fused_grads, twin_grads = grads(fused_out, inputs), grads(twin_out, inputs)
    assert_all_close(fused_grads, twin_grads)
    absent = present == 0
    assert (fused_grads[4][:, absent] == 0).all(), "absent agents' values get no gradient"
    assert (fused_grads[1][absent] == 0).all()
    assert fused_out[0] == 0, "nobody present: Q_tot = 0"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("pairs", [1, 2])
def test_mix_gradcheck_float64(device, pairs):
    gen = torch.Generator().manual_seed(4)
    w1, b1, w2, b2, q, present = mix_inputs(gen, 4, pairs, 5, 6, device)
    inputs = tuple(t.requires_grad_(True) for t in (w1, b1, w2, b2, q))
    fn = lambda *xs: fused.qmix_mix_op(*xs, present)  # noqa: E731
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_mix_opcheck(device):
    gen = torch.Generator().manual_seed(5)
    for dtype in (torch.float32, F64):
        for pairs in (1, 2):
            w1, b1, w2, b2, q, present = mix_inputs(gen, 6, pairs, 4, 8, device, dtype)
            for t in (w1, b1, w2, b2, q):
                t.requires_grad_(True)
            torch.library.opcheck(fused.qmix_mix_op, (w1, b1, w2, b2, q, present))
            grad = torch.randn(6, dtype=dtype, device=device)
            torch.library.opcheck(fused.qmix_mix_backward_op,
                                  (grad, *(t.detach() for t in (w1, b1, w2, b2, q)), present))


# ---------------------------------------------------------------------------- machinery
def test_results_do_not_depend_on_the_thread_count():
    gen = torch.Generator().manual_seed(6)
    q, k, v, mask = attention_inputs(gen, 64, 6, 4, 14, 32, True, dtype=torch.float32)
    w1, b1, w2, b2, mq, present = mix_inputs(gen, 64, 1, 6, 8, dtype=torch.float32)
    results = []
    for threads in (1, 2, 3):
        torch.set_num_threads(threads)
        inputs = [t.detach().requires_grad_(True) for t in (q, k, v)]
        out = ops.entity_attention(*inputs, mask, 0.1, False)
        mix_in = [t.detach().requires_grad_(True) for t in (w1[0], b1, w2, b2, mq[0])]
        mixed = ops.qmix_mix(*mix_in, present)
        results.append([out, *grads(out, inputs), mixed, *grads(mixed, mix_in)])
    torch.set_num_threads(1)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_kernels_share_torchs_openmp_runtime():
    """Two OpenMP runtimes in one process would give two sets of threads fighting for the cores."""
    runtimes = {line.split()[-1] for line in open("/proc/self/maps") if "gomp" in line.rsplit("/", 1)[-1]}
    assert len(runtimes) <= 1, runtimes


def test_dispatcher_falls_back_with_a_reason_and_rejects_bad_input():
    gen = torch.Generator().manual_seed(7)
    q, k, v, mask = attention_inputs(gen, 2, 3, 2, 5, 8, True, dtype=torch.float32)
    assert ops.attention_fallback_reason(q, k, v, mask) is None
    half = [t.half() for t in (q, k, v, mask)]
    assert "dtype torch.float16" in ops.attention_fallback_reason(*half)
    assert "different dtypes" in ops.attention_fallback_reason(q, k.double(), v, mask)
    wide = torch.zeros(2, _kernels.max_entities + 1, 1, 8)
    assert "entities exceed" in ops.attention_fallback_reason(q, wide, wide, torch.zeros(2, 3, wide.shape[1]))
    # A fallback still computes the right answer, and is recorded.
    out = ops.entity_attention(*[t.double() for t in (q, k, v)], mask.float(), 0.3)
    assert "entity_attention: inputs have different dtypes: torch.float32, torch.float64" in ops.fallbacks()
    torch.testing.assert_close(out, ops.entity_attention_reference(q.double(), k.double(), v.double(),
                                                                   mask.double(), 0.3))
    with pytest.raises(ValueError, match="kernels must be one of"):
        ops.entity_attention(q, k, v, mask, 0.3, kernels="triton")
    with pytest.raises(ValueError, match="mask must be"):
        ops.entity_attention(q, k, v, mask[:, :2], 0.3)
    with pytest.raises(ValueError, match="k must be"):
        ops.entity_attention(q, k.expand(-1, -1, 3, -1), v, mask, 0.3)
    w1, b1, w2, b2, mq, present = mix_inputs(gen, 3, 1, 4, 5)
    with pytest.raises(ValueError, match="agent_q must have shape"):
        ops.qmix_mix(w1[0], b1, w2, b2, mq[0, :, :3], present)
    wide_embed = torch.zeros(3, 4, _kernels.max_embed + 1, dtype=F64)
    assert "embedding width" in ops.mix_fallback_reason(wide_embed.unsqueeze(0), *(wide_embed,) * 3, mq, present)


def test_ops_work_under_torch_compile():
    gen = torch.Generator().manual_seed(8)
    q, k, v, mask = attention_inputs(gen, 4, 3, 2, 6, 32, True, dtype=torch.float32)
    w1, b1, w2, b2, mq, present = mix_inputs(gen, 4, 1, 3, 8, dtype=torch.float32)

    def step(q, k, v, w1):
        pooled = ops.entity_attention(q, k, v, mask, 0.2)
        return ops.qmix_mix(w1 + pooled.sum(-1, keepdim=True)[..., :1], b1, w2, b2, mq[0], present).sum()

    inputs = [q, k, v, w1[0]]
    fallbacks_before = ops.fallbacks()
    eager_in = [t.clone().requires_grad_(True) for t in inputs]
    compiled_in = [t.clone().requires_grad_(True) for t in inputs]
    eager = step(*eager_in)
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")(*compiled_in)
    torch.testing.assert_close(compiled, eager)
    assert_all_close(torch.autograd.grad(compiled, compiled_in), torch.autograd.grad(eager, eager_in),
                     rtol=1e-6, atol=1e-6)
    assert ops.fallbacks() == fallbacks_before, "the fused kernels must have run, eager and compiled"


def test_attention_block_under_torch_compile_matches_eager():
    """The network's fused path (rows of masked queries left unwritten, a custom row gather)
    traced by torch.compile gives eager's outputs and gradients."""
    torch.manual_seed(9)
    block = EntityAttention(32, 2)
    x = torch.randn(64, 10, 32, requires_grad=True)
    mask = (torch.rand(64, 4, 10) < 0.5).float()
    mask[:, 2:] = 0  # absent agents: fully masked query rows
    params = [x, block.w_q, block.pre.weight]
    eager = block(x, mask)
    compiled = torch.compile(block, backend="aot_eager")(x, mask)
    torch.testing.assert_close(compiled, eager)
    assert_all_close(torch.autograd.grad(compiled.square().sum(), params),
                     torch.autograd.grad(eager.square().sum(), params), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("method", ["copa", "aqmix", "aiqmix"])
def test_full_learner_update_fused_matches_torch(method):
    batch = rollout_batch()
    cfg = preset("quick").replace(method=method, hidden_dim=32, mixer_hidden_dim=16, mixer_embed_dim=8, n_heads=2,
                                  batch_size=batch["reward"].shape[0])
    results = {}
    for kernels in ops.KERNEL_MODES:
        learner = Learner(SPEC, cfg.replace(kernels=kernels), torch.device("cpu"), seed=0)
        metrics = learner.update({k: v.clone() for k, v in batch.items()})
        results[kernels] = (metrics, [p.detach().clone() for p in learner.online.parameters()])
    (fused_metrics, fused_params), (torch_metrics, torch_params) = results["fused"], results["torch"]
    for key in torch_metrics:
        torch.testing.assert_close(fused_metrics[key], torch_metrics[key], rtol=1e-4, atol=1e-5, msg=key)
    assert_all_close(fused_params, torch_params, rtol=1e-4, atol=1e-5)
    assert any((p != q).any() for p, q in zip(fused_params, Learner(SPEC, cfg, torch.device("cpu"), 0).online.parameters()))


@pytest.mark.skipif(torch.cuda.is_available() and _kernels.has_cuda(), reason="a GPU is present: run gpu_check.py itself")
def test_gpu_check_says_why_it_cannot_check_cuda(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    assert gpu_check.main(["--no-build", "--device", "cuda"]) == 2
    assert "cannot check CUDA" in capsys.readouterr().out


# ---------------------------------------------------------------------------- operators' own checks
def _attention_args(**changes):
    gen = torch.Generator().manual_seed(10)
    q, k, v, mask = attention_inputs(gen, 3, 4, 2, 6, 8, False)
    args = {"q": q, "k": k, "v": v, "mask": mask} | changes
    return args["q"], args["k"], args["v"], args["mask"], 0.3, True


def _mix_args(**changes):
    gen = torch.Generator().manual_seed(11)
    w1, b1, w2, b2, q, present = mix_inputs(gen, 5, 2, 4, 8)
    args = {"w1": w1, "b1": b1, "w2": w2, "b2": b2, "q": q, "present": present} | changes
    return tuple(args[n] for n in ("w1", "b1", "w2", "b2", "q", "present"))


BAD_ATTENTION = [
    ({"k": torch.zeros(3, 6, 2, 7, dtype=F64)}, r"k must have shape \[3, entities, 1 or 2, 8\], got \[3, 6, 2, 7\]"),
    ({"k": torch.zeros(2, 6, 2, 8, dtype=F64)}, r"k must have shape \[3, entities"),
    ({"v": torch.zeros(3, 5, 2, 8, dtype=F64)}, r"v must have shape \[3, 6, 2, 8\] \(k's\), got \[3, 5, 2, 8\]"),
    ({"mask": torch.zeros(3, 4, 7, dtype=F64)}, r"mask must have shape \[3, 4, 6\], got \[3, 4, 7\]"),
    ({"mask": torch.zeros(3, 4, dtype=F64)}, r"mask must have shape \[3, 4, 6\], got \[3, 4\]"),
    ({"q": torch.zeros(3, 4, 8, dtype=F64)}, r"q must be 4-D \[rows, agents, heads, dim\], got shape \[3, 4, 8\]"),
    ({"q": torch.zeros(3, 4, 0, 8, dtype=F64)}, "q must have at least one head"),
    ({"mask": torch.zeros(3, 4, 6, dtype=torch.float32)}, "mask has dtype torch.float32 but q has torch.float64"),
    ({"q": torch.zeros(3, 4, 2, 8, dtype=torch.int64)}, "q must be float32 or float64, got torch.int64"),
    ({"mask": torch.zeros(3, 4, 6, dtype=torch.bool)}, "mask must be float32 or float64, got torch.bool"),
    ({"k": torch.zeros(3, 65, 2, 8, dtype=F64), "v": torch.zeros(3, 65, 2, 8, dtype=F64),
      "mask": torch.zeros(3, 4, 65, dtype=F64)}, "65 entities exceed the kernel's limit"),
]


@pytest.mark.parametrize("changes,message", BAD_ATTENTION)
def test_attention_operator_rejects_bad_arguments_itself(changes, message):
    """Direct torch.ops calls (no cpfast.ops wrapper) get a clear error, never an out-of-bounds read."""
    with pytest.raises(ValueError, match=r"cpfast::entity_attention: " + message):
        torch.ops.cpfast.entity_attention(*_attention_args(**changes))


def test_attention_backward_operator_rejects_bad_grad_and_probs():
    q, k, v, mask, scale, average = _attention_args()
    out, probs = torch.ops.cpfast.entity_attention(q, k, v, mask, scale, average)
    with pytest.raises(ValueError, match=r"entity_attention_backward: grad must have shape \[3, 4, 8\], got \[3, 4, 7\]"):
        torch.ops.cpfast.entity_attention_backward(out[..., :7], q, k, v, mask, probs, scale, average)
    with pytest.raises(ValueError, match=r"entity_attention_backward: probs must have shape \[3, 4, 2, 6\]"):
        torch.ops.cpfast.entity_attention_backward(out, q, k, v, mask, probs[..., :5], scale, average)
    with pytest.raises(ValueError, match=r"entity_attention_backward: k must have shape"):
        torch.ops.cpfast.entity_attention_backward(out, q, k[:2], v, mask, probs, scale, average)


BAD_MIX = [
    ({"b1": torch.zeros(5, 4, 7, dtype=F64)}, r"b1 must have shape \[5, 4, 8\], got \[5, 4, 7\]"),
    ({"w2": torch.zeros(5, 3, 8, dtype=F64)}, r"w2 must have shape \[5, 4, 8\], got \[5, 3, 8\]"),
    ({"b2": torch.zeros(4, 4, 8, dtype=F64)}, r"b2 must have shape \[5, 4, 8\]"),
    ({"q": torch.zeros(1, 5, 4, dtype=F64)}, r"q must have shape \[2, 5, 4\], got \[1, 5, 4\]"),
    ({"present": torch.zeros(5, 3, dtype=F64)}, r"present must have shape \[5, 4\], got \[5, 3\]"),
    ({"w1": torch.zeros(5, 4, 8, dtype=F64)}, r"w1 must be 4-D \[pairs, rows, agents, embed\]"),
    ({"present": torch.ones(5, 4, dtype=torch.int64)}, "present must be float32 or float64, got torch.int64"),
    ({"q": torch.zeros(2, 5, 4, dtype=torch.float32)}, "q has dtype torch.float32 but w1 has torch.float64"),
    ({"w1": torch.zeros(0, 5, 4, 8, dtype=F64), "q": torch.zeros(0, 5, 4, dtype=F64)}, "w1 must have at least one pair"),
]


@pytest.mark.parametrize("changes,message", BAD_MIX)
def test_mix_operator_rejects_bad_arguments_itself(changes, message):
    with pytest.raises(ValueError, match=r"cpfast::qmix_mix: " + message):
        torch.ops.cpfast.qmix_mix(*_mix_args(**changes))


def test_mix_backward_operator_rejects_a_bad_grad():
    args = _mix_args()
    with pytest.raises(ValueError, match=r"qmix_mix_backward: grad must have shape \[5\], got \[4\]"):
        torch.ops.cpfast.qmix_mix_backward(torch.zeros(4, dtype=F64), *args)


def test_operators_return_correct_empty_results_for_zero_sizes():
    gen = torch.Generator().manual_seed(12)
    for rows, agents, entities, dim in ((0, 3, 4, 8), (2, 0, 4, 8), (2, 3, 0, 8), (2, 3, 4, 0)):
        q = torch.randn(rows, agents, 2, dim, generator=gen, dtype=F64)
        k, v = (torch.randn(rows, entities, 2, dim, generator=gen, dtype=F64) for _ in range(2))
        mask = torch.ones(rows, agents, entities, dtype=F64)
        for average in (True, False):
            out, probs = torch.ops.cpfast.entity_attention(q, k, v, mask, 0.5, average)
            torch.testing.assert_close(out, ops.entity_attention_reference(q, k, v, mask, 0.5, average))
            assert probs.shape == (rows, agents, 2, entities)
            grads = torch.ops.cpfast.entity_attention_backward(torch.ones_like(out), q, k, v, mask, probs, 0.5, average)
            assert [g.shape for g in grads] == [q.shape, k.shape, v.shape] and all((g == 0).all() for g in grads)
    for rows, agents in ((0, 4), (3, 0)):
        w1, b1, w2, b2, q, present = mix_inputs(gen, max(rows, 1), 1, max(agents, 1), 8)
        w1, b1, w2, b2 = (t[..., :rows, :agents, :] for t in (w1, b1, w2, b2))
        q, present = q[:, :rows, :agents], present[:rows, :agents]
        out = torch.ops.cpfast.qmix_mix(w1, b1, w2, b2, q, present)
        torch.testing.assert_close(out, ops.qmix_mix_reference(w1, b1, w2, b2, q, present, pairs=True))
        assert out.shape == (rows,)
        grads = torch.ops.cpfast.qmix_mix_backward(torch.ones(rows, dtype=F64), w1, b1, w2, b2, q, present)
        assert [g.shape for g in grads] == [t.shape for t in (w1, b1, w2, b2, q)]


def test_compiled_graph_with_a_bad_shape_fails_at_trace_time():
    q, k, v, mask, scale, average = _attention_args(mask=torch.zeros(3, 4, 5, dtype=F64))
    fn = torch.compile(lambda *a: torch.ops.cpfast.entity_attention(*a)[0].sum(), fullgraph=True, backend="aot_eager")
    with pytest.raises(Exception, match=r"mask must have shape \[3, 4, 6\], got \[3, 4, 5\]"):
        fn(q, k, v, mask, scale, average)

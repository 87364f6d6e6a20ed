"""Fused kernels vs pure torch at the paper's sizes: forward + backward of each operator and one
full COPA learner update, on the CPU (and on CUDA when torch sees a GPU).

    pytest benchmarks/bench_kernels.py

Sizes (docs/performance.md): rows = 512 segments x 5 slots, A = 6 agent slots, N = 14 entity rows
(6 + 8), d = 128, H = 4, E_mix = 128. The masks and present flags come from random-policy
rollouts of Resource Collection (team sizes 2-4 of 6 slots), as in training.

Attention paths, all computing the player's attention as the network does (keys = values = the
shared rows h, one output per head): ``fused`` (cpfast._kernels), ``torch`` (the operator's
pure-torch twin, ``cpfast.ops.entity_attention_reference``, on keys and values shared by every
head: the agent-major formulation that ``kernels="torch"`` runs) and ``twin`` (the same twin given
per-head copies of keys and values, its general layout). Ratios are against the faster of the two
pure-torch paths.
"""

import pytest
import torch

from cpfast import ops
from cpfast.config import preset
from cpfast.learner import prepare_batch
from cpfast.ops import fused

from bench_train import filled_buffer, median_update_seconds

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
SEGMENTS, HEADS, DIM, EMBED = 512, 4, 128, 128


def synchronize():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


@pytest.fixture(scope="module")
def paper_batch():
    cfg = preset("paper")
    buffer = filled_buffer(cfg, SEGMENTS)
    return prepare_batch(buffer.sample(SEGMENTS, torch.Generator().manual_seed(0)))


ATTENTION_PATHS = {  # queries come pre-scaled, as in the network (the scale is folded into W_Q W_K^T)
    "fused": lambda q, h, mask: fused.entity_attention_op(q, h.unsqueeze(2), None, mask, 1.0, False)[0],
    "torch": lambda q, h, mask: ops.entity_attention_reference(q, h.unsqueeze(2), h.unsqueeze(2), mask, 1.0, False),
    "twin": lambda q, h, mask: ops.entity_attention_reference(q, *[h.unsqueeze(2).expand(-1, -1, q.shape[2], -1)] * 2,
                                                              mask, 1.0, False),
}


def time_forward_backward(benchmark, fn, inputs):
    inputs = [t.detach().requires_grad_(True) for t in inputs]
    grad = torch.ones_like(fn(*inputs))

    def step():
        torch.autograd.grad(fn(*inputs), inputs, grad)
        synchronize()

    for _ in range(3):  # warm-up
        step()
    benchmark.pedantic(step, rounds=15, iterations=1)
    return benchmark.stats.stats.median


@pytest.mark.parametrize("path", list(ATTENTION_PATHS))
def test_entity_attention(benchmark, record_throughput, paper_batch, path):
    gen = torch.Generator().manual_seed(0)
    mask = paper_batch["player_mask"].flatten(0, 1).to(DEVICE)  # [2560, 6, 14]
    rows, agents, entities = mask.shape
    # Absent agents' query rows are zero in the network (their projections are skipped).
    active = mask.any(-1).to(torch.float32)[..., None, None]
    q = (torch.randn(rows, agents, HEADS, DIM, generator=gen) * 0.1 * DIM ** -0.5).to(DEVICE) * active
    h = torch.randn(rows, entities, DIM, generator=gen).to(DEVICE)
    seconds = time_forward_backward(benchmark, lambda q, h: ATTENTION_PATHS[path](q, h, mask), [q, h])
    record_throughput("kernels", ("entity_attention", path, str(DEVICE), torch.get_num_threads()), seconds)


@pytest.mark.parametrize("path", ["fused", "torch"])
def test_qmix_mix(benchmark, record_throughput, paper_batch, path):
    gen = torch.Generator().manual_seed(1)
    present = paper_batch["present"].flatten(0, 1).to(DEVICE)  # [2560, 6]
    rows, agents = present.shape
    hyper = [torch.randn(rows, agents, EMBED, generator=gen).to(DEVICE) for _ in range(4)]
    agent_q = torch.randn(rows, agents, generator=gen).to(DEVICE)
    fn = lambda *xs: ops.qmix_mix(*xs, present, kernels=path)  # noqa: E731
    seconds = time_forward_backward(benchmark, fn, [*hyper, agent_q])
    record_throughput("kernels", ("qmix_mix", path, str(DEVICE), torch.get_num_threads()), seconds)


@pytest.mark.parametrize("kernels", ["fused", "torch"])
def test_copa_update(benchmark, record_throughput, kernels):
    seconds = median_update_seconds(benchmark, preset("paper").replace(kernels=kernels), rounds=9)
    record_throughput("kernels", ("copa_update", kernels, str(DEVICE), torch.get_num_threads()), seconds)


def summarize_kernels(results: dict) -> list[str]:
    """Median ms of each path and fused's speed-up over the fastest pure-torch path."""
    by_case: dict[tuple, dict[str, float]] = {}
    for (op, path, device, threads), seconds in results.items():
        by_case.setdefault((op, device, threads), {})[path] = seconds
    lines = []
    for (op, device, threads), paths in sorted(by_case.items()):
        timings = ", ".join(f"{path} {seconds * 1e3:.2f} ms" for path, seconds in sorted(paths.items()))
        torch_paths = [s for p, s in paths.items() if p != "fused"]
        ratio = f"; fused {min(torch_paths) / paths['fused']:.2f}x the best pure-torch path" \
            if "fused" in paths and torch_paths else ""
        what = "one COPA learner update (paper sizes)" if op == "copa_update" else f"{op} forward+backward"
        lines.append(f"{what} on {device} ({threads} threads): {timings}{ratio}")
    return [""] + lines if lines else []

"""Learner speed: milliseconds (and GFLOP of matrix products) per update at paper sizes and
env-steps/s of the whole training loop, on Resource Collection and the StarCraft micro-sim at the
same network sizes, with the projected time of the full 5M-step paper run.

    pytest benchmarks/bench_train.py    # runs on CUDA when torch sees a GPU, else on the CPU
"""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import cpfast
from cpfast.config import preset
from cpfast.experiment import make_config
from cpfast.learner import Learner
from cpfast.replay import SegmentBuffer
from cpfast.train import Trainer
from helpers import random_segments  # tests/helpers.py (benchmarks/conftest.py puts tests/ on the path)

REFERENCE_UPDATE_S = {"copa": 3.85, "aqmix": 3.1}  # authors' code, 2-core CPU, 2 threads
PAPER_UPDATES = 48_000  # ~5M transitions / 100 per update
PAPER_STEPS = 5_000_000
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# Each env at its own preset; both keep the paper's network sizes (d = 128, H = 4, E_mix = 128).
LOOP_ENVS = {"resource_collection": "paper", "sc2_3-8sz": "starcraft"}


def filled_buffer(cfg, n_segments: int) -> SegmentBuffer:
    """Segments from random-policy rollouts, cut exactly as in training."""
    env = cpfast.make_env(cfg.env, num_envs=cfg.n_envs, seed=0)
    buffer = SegmentBuffer(env.spec, n_segments, cfg.period, DEVICE)
    for segments in random_segments(env, cfg.period, lambda n: n >= n_segments, cfg.segment_tail,
                                    cfg.truncation_is_terminal):
        buffer.push(segments)
    return buffer


def synchronize():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def median_update_seconds(benchmark, cfg, rounds: int = 5) -> float:
    """Median seconds of one learner update of ``cfg`` over batches cut from random rollouts;
    the warm-up update counts the matrix products' GFLOP (``extra_info["gflop"]``; the fused
    kernels' own arithmetic comes on top)."""
    learner = Learner(cpfast.make_env(cfg.env).spec, cfg, DEVICE, seed=0)
    buffer = filled_buffer(cfg, 2 * cfg.effective_batch_size)
    generator = torch.Generator().manual_seed(0)
    batches = [buffer.sample(cfg.effective_batch_size, generator) for _ in range(2)]
    step = iter(range(10**9))

    def update():
        learner.update(batches[next(step) % 2])
        synchronize()

    with FlopCounterMode(display=False) as flops:
        update()  # warm-up
    benchmark.extra_info["gflop"] = flops.get_total_flops() / 1e9
    benchmark.pedantic(update, rounds=rounds, iterations=1)
    return benchmark.stats.stats.median


@pytest.mark.parametrize("env_name,method", [("resource_collection", "copa"), ("resource_collection", "aqmix"),
                                             ("sc2_3-8sz", "copa")])
def test_update_ms(benchmark, record_throughput, env_name, method):
    cfg = make_config(env_name, LOOP_ENVS[env_name], method=method)
    seconds = median_update_seconds(benchmark, cfg)
    benchmark.extra_info.update(ms_per_update=seconds * 1e3, batch=cfg.effective_batch_size)
    record_throughput("update", (env_name, method, str(DEVICE), torch.get_num_threads()), seconds)
    record_throughput("update_gflop", (env_name, method, str(DEVICE), torch.get_num_threads()),
                      benchmark.extra_info["gflop"])


@pytest.mark.parametrize("kernels,precision", [("fused", "float32"), ("torch", "float32"), ("torch", "bfloat16")])
@pytest.mark.parametrize("preset_name", ["paper", "fast"])
def test_update_ms_by_precision(benchmark, record_throughput, preset_name, kernels, precision):
    """A COPA update in float32 against bfloat16 autocast (CPUs with AVX-512 BF16 or AMX; the
    fused kernels take float32 only, so autocast runs on the pure-torch path), same batches."""
    if precision == "bfloat16" and DEVICE.type == "cpu" and not torch.backends.mkldnn.is_available():
        pytest.skip("no oneDNN: bfloat16 matrix products would be emulated")
    cfg = preset(preset_name).replace(method="copa", kernels=kernels)
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
        seconds = median_update_seconds(benchmark, cfg)
    record_throughput("update_precision", (preset_name, kernels, precision, str(DEVICE), torch.get_num_threads()),
                      seconds)


@pytest.mark.parametrize("env_name", sorted(LOOP_ENVS))
def test_training_loop_env_steps(benchmark, record_throughput, tmp_path, env_name):
    limit = cpfast.make_env(env_name, num_envs=1, num_threads=1).spec.episode_limit
    cfg = make_config(env_name, LOOP_ENVS[env_name], total_steps=3 * limit * 8, eval_episodes=1,
                      checkpoint_every=10**6)
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.obs = trainer.env.reset()
    for _ in range(2):  # fill the buffer past one batch so every update is real
        trainer._episode_iteration(1.0)

    def iteration():
        trainer._episode_iteration(0.5)
        synchronize()

    benchmark.pedantic(iteration, rounds=1, iterations=1)
    steps_per_s = cfg.n_envs * trainer.spec.episode_limit / benchmark.stats.stats.median
    benchmark.extra_info["env_steps_per_s"] = steps_per_s
    record_throughput("loop", (env_name, str(DEVICE), torch.get_num_threads()), steps_per_s)


def summarize_training(results: dict) -> list[str]:
    lines = []
    for (env_name, method, device, threads), seconds in sorted(results.get("update", {}).items()):
        ref = REFERENCE_UPDATE_S.get(method) if env_name == "resource_collection" else None
        versus = f", {ref / seconds:.1f}x faster than the authors' {ref:.2f} s (2-core CPU)" if ref else ""
        gflop = results.get("update_gflop", {}).get((env_name, method, device, threads), float("nan"))
        lines.append(f"{env_name} {method:6s} update on {device} ({threads} threads): {seconds * 1e3:8.1f} ms, "
                     f"{gflop:.1f} GFLOP of matrix products = {gflop / seconds:.0f} GFLOP/s{versus}; "
                     f"{PAPER_UPDATES:,} updates = {PAPER_UPDATES * seconds / 3600:.1f} h")
    for (env_name, device, threads), rate in sorted(results.get("loop", {}).items()):
        lines.append(f"{env_name} training loop (COPA, paper sizes) on {device} ({threads} threads): "
                     f"{rate:,.0f} env-steps/s; projected 5M-step run: {PAPER_STEPS / rate / 3600:.1f} h")
    for (preset_name, kernels, precision, device, threads), seconds in sorted(results.get("update_precision", {}).items()):
        lines.append(f"COPA update, {preset_name} sizes, {kernels} kernels, {precision} on {device} ({threads} threads): "
                     f"{seconds * 1e3:8.1f} ms")
    return [""] + lines if lines else []

"""One command for a GPU machine: build cpfast with its CUDA kernels, check them against the
pure-torch path on the GPU, and time both, with the projected time of the paper's 5M-step run.

    python benchmarks/gpu_check.py                          # build, check, time on CUDA
    python benchmarks/gpu_check.py --no-build --device cpu  # the same checks and timings on the CPU

Exits non-zero when a check fails. Timings: medians over rounds after warm-up, synchronised.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--no-build", action="store_true", help="use the installed cpfast as it is")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--skip-compile", action="store_true", help="skip the torch.compile comparison")
    return p.parse_args(argv)


def build() -> None:
    """pip-installs this checkout (CMake builds the CUDA kernels when nvcc is present)."""
    cmd = [sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "-q", str(ROOT)]
    print("building:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


# ---------------------------------------------------------------------------- checks
def check_ops(torch, ops, device) -> list[tuple[str, float, float]]:
    """(case, max error, tolerance) of fused vs pure torch, forward and gradients."""
    from test_kernels import attention_inputs, mix_inputs  # the CPU test suite's input makers

    rows = []
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 2e-4)):
        gen = torch.Generator().manual_seed(0)
        for (r, a, h, n, d, shared, average) in ((7, 3, 4, 14, 128, True, False), (5, 16, 8, 48, 64, False, True),
                                                 (9, 6, 1, 14, 32, True, True), (2560, 6, 4, 14, 128, True, False)):
            q, k, v, mask = attention_inputs(gen, r, a, h, n, d, shared, device, dtype)
            inputs = [t.requires_grad_(True) for t in (q, k, v)]
            outs = {kern: ops.entity_attention(q, k, v, mask, d ** -0.5, average, kernels=kern) for kern in ops.KERNEL_MODES}
            grad = torch.randn_like(outs["torch"])
            grads = {kern: torch.autograd.grad(out, inputs, grad) for kern, out in outs.items()}
            error = max([(outs["fused"] - outs["torch"]).abs().max().item()] +
                        [(x - y).abs().max().item() for x, y in zip(grads["fused"], grads["torch"])])
            rows.append((f"entity_attention {str(dtype)[6:]} R={r} A={a} H={h} N={n} d={d} shared={shared}", error, tol))
        for (r, p, a, e) in ((11, 1, 6, 128), (7, 2, 16, 32), (2560, 1, 6, 128)):
            w1, b1, w2, b2, q, present = mix_inputs(gen, r, p, a, e, device, dtype)
            inputs = [t.requires_grad_(True) for t in (w1, b1, w2, b2, q)]
            args = (w1, b1, w2, b2, q) if p > 1 else (w1[0], b1, w2, b2, q[0])
            outs = {kern: ops.qmix_mix(*args, present, pairs=p > 1, kernels=kern) for kern in ops.KERNEL_MODES}
            grads = {kern: torch.autograd.grad(out.sum(), inputs) for kern, out in outs.items()}
            error = max([(outs["fused"] - outs["torch"]).abs().max().item()] +
                        [(x - y).abs().max().item() for x, y in zip(grads["fused"], grads["torch"])])
            rows.append((f"qmix_mix {str(dtype)[6:]} R={r} P={p} A={a} E={e}", error, tol))
    return rows


def check_update(torch, device) -> list[tuple[str, float, float]]:
    """One full COPA update at paper sizes, fused vs torch: losses and updated parameters."""
    from bench_train import filled_buffer
    import cpfast
    from cpfast.config import preset
    from cpfast.learner import Learner

    cfg = preset("paper")
    batch = filled_buffer(cfg, cfg.effective_batch_size).sample(cfg.effective_batch_size,
                                                                torch.Generator().manual_seed(0))
    results = {}
    for kernels in ("fused", "torch"):
        learner = Learner(cpfast.make_env(cfg.env).spec, cfg.replace(kernels=kernels), device, seed=0)
        metrics = learner.update(batch)
        results[kernels] = (metrics, [p.detach() for p in learner.online.parameters()])
    rows = []
    for key in ("td_loss", "vi_loss", "entropy"):
        a, b = results["fused"][0][key].item(), results["torch"][0][key].item()
        rows.append((f"COPA update {key} (relative)", abs(a - b) / max(abs(b), 1e-6), 1e-3))
    param_error = max((x - y).abs().max().item() for x, y in zip(results["fused"][1], results["torch"][1]))
    rows.append(("COPA update parameters after one step", param_error, 1e-4))
    return rows


# ---------------------------------------------------------------------------- timings
def median_seconds(torch, fn, device, rounds: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(rounds):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def time_ops(torch, ops, device, rounds, compile_too) -> dict[str, float]:
    """Forward + backward of each op at paper sizes: fused, torch eager, torch.compile."""
    from test_kernels import attention_inputs, mix_inputs

    gen = torch.Generator().manual_seed(0)
    q, h, _, mask = attention_inputs(gen, 2560, 6, 4, 14, 128, True, device, torch.float32)
    h = h[:, :, 0]
    present = (mask.sum(-1) > 0).float()
    w1, b1, w2, b2, mq, _ = mix_inputs(gen, 2560, 1, 6, 128, device, torch.float32)
    q = q * 128 ** -0.5  # pre-scaled, as in the network
    attention = {
        "fused": lambda q, h: ops.fused.entity_attention_op(q, h.unsqueeze(2), None, mask, 1.0, False)[0],
        "torch eager": lambda q, h: ops.entity_attention_reference(q, h.unsqueeze(2), h.unsqueeze(2), mask, 1.0, False),
    }
    mix = {
        "fused": lambda *xs: ops.qmix_mix(*xs, present, kernels="fused"),
        "torch eager": lambda *xs: ops.qmix_mix_reference(*xs, present),
    }
    if compile_too:
        mode = "reduce-overhead" if device.type == "cuda" else "default"
        attention[f"torch.compile({mode})"] = torch.compile(attention["torch eager"], mode=mode)
        mix[f"torch.compile({mode})"] = torch.compile(mix["torch eager"], mode=mode)
    out = {}
    for op, paths, inputs in (("entity_attention", attention, [q, h]), ("qmix_mix", mix, [w1[0], b1, w2, b2, mq[0]])):
        leaves = [t.detach().requires_grad_(True) for t in inputs]
        for name, fn in paths.items():
            def step(fn=fn):
                result = fn(*leaves)
                torch.autograd.grad(result, leaves, torch.ones_like(result))
            out[f"{op} fwd+bwd, {name}"] = median_seconds(torch, step, device, rounds)
    return out


def time_training(torch, device, rounds, compile_too) -> dict[str, float]:
    """One COPA update at paper sizes per path, and env-steps/s of the whole training loop."""
    from bench_train import filled_buffer
    import cpfast
    from cpfast.config import preset
    from cpfast.learner import Learner
    from cpfast.train import Trainer

    cfg = preset("paper")
    buffer = filled_buffer(cfg, 2 * cfg.effective_batch_size)
    batches = [buffer.sample(cfg.effective_batch_size, torch.Generator().manual_seed(i)) for i in range(2)]
    spec = cpfast.make_env(cfg.env).spec
    out = {}
    variants = [("fused", "fused", False), ("torch eager", "torch", False)]
    if compile_too:
        variants.append(("torch.compile(reduce-overhead)" if device.type == "cuda" else "torch.compile", "torch", True))
    for name, kernels, compiled in variants:
        learner = Learner(spec, cfg.replace(kernels=kernels), device, seed=0)
        if compiled:
            learner.losses = torch.compile(learner.losses, mode="reduce-overhead" if device.type == "cuda" else None)
        counter = iter(range(10**9))
        out[f"COPA update, {name}"] = median_seconds(torch, lambda: learner.update(batches[next(counter) % 2]), device,
                                                     rounds)
    trainer = Trainer(cfg.replace(device=device.type, total_steps=10**9, eval_episodes=1, checkpoint_every=10**6),
                      "/tmp/cpfast-gpu-check-run")
    trainer.obs = trainer.env.reset()
    for _ in range(2):
        trainer._episode_iteration(1.0)
    seconds = median_seconds(torch, lambda: trainer._episode_iteration(0.5), device, max(2, rounds // 4), warmup=0)
    out["training loop env-steps/s"] = cfg.n_envs * trainer.spec.episode_limit / seconds
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.no_build:
        build()
        # A fresh interpreter imports the freshly built extension.
        return subprocess.run([sys.executable, __file__, "--no-build", *sys.argv[1:]]).returncode
    sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tests")]
    import torch

    from cpfast import _kernels, ops

    device = torch.device(args.device)
    print(f"torch {torch.__version__}; cpfast._kernels CUDA build: {_kernels.has_cuda()}; device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" and torch.cuda.is_available() else ""))
    if device.type == "cuda" and not (torch.cuda.is_available() and _kernels.has_cuda()):
        print("cannot check CUDA: " + ("torch sees no GPU" if not torch.cuda.is_available()
                                       else "cpfast was built without CUDA (no nvcc at build time)"))
        return 2
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    failures = 0
    print("\n== correctness: fused vs pure torch ==")
    for case, error, tol in check_ops(torch, ops, device) + check_update(torch, device):
        ok = error <= tol
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {case}: max error {error:.2e} (tolerance {tol:.0e})")
    if ops.fallbacks():
        print("fallbacks to pure torch:", ops.fallbacks())

    print("\n== timings (median) ==")
    timings = time_ops(torch, ops, device, args.rounds, not args.skip_compile)
    timings.update(time_training(torch, device, args.rounds, not args.skip_compile))
    for name, value in timings.items():
        print(f"{name}: {value:,.0f}" if "env-steps" in name else f"{name}: {value * 1e3:.2f} ms")
    for op in ("entity_attention fwd+bwd", "qmix_mix fwd+bwd", "COPA update"):
        fused = timings.get(f"{op}, fused")
        for name, value in timings.items():
            if name.startswith(op) and not name.endswith("fused") and fused:
                print(f"{op}: fused is {value / fused:.2f}x {name.split(', ', 1)[1]}")
    update, rate = timings["COPA update, fused"], timings["training loop env-steps/s"]
    print(f"projected paper run (48,000 updates + 5M env steps, from the training loop): "
          f"{5_000_000 / rate / 60:.1f} min (updates alone {48_000 * update / 60:.1f} min)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Sweep overhead and runs per hour on this machine (a few minutes of both cores).

    python -m pytest benchmarks/bench_sweep.py -s

Four timings of the same two ~1-minute quick-preset runs, side by side in one session:
1. two `python -m cpfast.train` processes side by side, one thread each, each followed by
   `python -m cpfast.evaluate` at beta 0 as a sweep cell does (the direct baseline);
2. the same two runs as a `cpfast.sweep` on a local Ray, one thread each (overhead = 2 vs 1);
3. the two runs one after another, two threads each (what --threads-per-run 2 would do).
The summary prints the sweep's overhead and the runs per hour of 1-thread-side-by-side against
2-thread-one-after-another.
"""

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cpfast import sweep

ROOT = Path(__file__).resolve().parent.parent
STEPS = 30 * 8 * 145  # 34,800 env steps: about a minute of one thread with the quick preset
SETTINGS = {"total_steps": STEPS, "eval_episodes": 50}
_TIMES: dict[str, float] = {}


def train_command(seed: int, threads: int, run_dir: Path) -> list[str]:
    """Train, then evaluate on the env's compositions at beta 0: what one sweep cell does."""
    train = [sys.executable, "-m", "cpfast.train", "--preset", "quick", "--seed", str(seed), "--threads", str(threads),
             "--no-progress", "--run-dir", str(run_dir), "--set", *(f"{k}={v}" for k, v in SETTINGS.items())]
    evaluate = [sys.executable, "-m", "cpfast.evaluate", str(run_dir), "--betas", "0", "--episodes",
                str(SETTINGS["eval_episodes"]), "--threads", str(threads), "--out", str(run_dir)]
    return ["bash", "-c", " ".join(map(shlex.quote, train)) + " && " + " ".join(map(shlex.quote, evaluate))]


def timed(commands: list[list[str]], parallel: bool) -> float:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}
    start = time.perf_counter()
    if parallel:
        processes = [subprocess.Popen(c, cwd=ROOT, env=env, stdout=subprocess.DEVNULL) for c in commands]
        assert all(p.wait() == 0 for p in processes)
    else:
        for command in commands:
            subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


@pytest.mark.parametrize("mode", ["direct_1thread_side_by_side", "sweep_1thread_side_by_side",
                                  "direct_2threads_one_after_another"])
def test_sweep_overhead_and_runs_per_hour(benchmark, tmp_path, mode):
    if mode == "sweep_1thread_side_by_side":
        spec = {"methods": "copa", "seeds": "0-1", "preset": "quick", "set": SETTINGS, "out": str(tmp_path / "sweep"),
                "threads_per_run": 1}
        (tmp_path / "sweep.json").write_text(json.dumps(spec))
        command = [sys.executable, "-m", "cpfast.sweep", "--file", str(tmp_path / "sweep.json"), "--no-progress"]
        run = lambda: timed([command], parallel=False)  # noqa: E731
        cells = sweep.cells_from_spec(spec)
        assert len(cells) == 2
    else:
        threads = 1 if "1thread" in mode else 2
        commands = [train_command(seed, threads, tmp_path / f"s{seed}") for seed in (0, 1)]
        run = lambda: timed(commands, parallel="side_by_side" in mode)  # noqa: E731
    seconds = benchmark.pedantic(run, rounds=1, iterations=1)
    _TIMES[mode] = seconds
    benchmark.extra_info["wall_seconds"] = seconds
    benchmark.extra_info["runs_per_hour"] = 2 * 3600 / seconds
    print(f"\n{mode}: {seconds:.1f} s for 2 runs of {STEPS:,} env steps = {2 * 3600 / seconds:.0f} runs/hour")
    if len(_TIMES) == 3:
        direct, swept = _TIMES["direct_1thread_side_by_side"], _TIMES["sweep_1thread_side_by_side"]
        print(f"sweep overhead: {100 * (swept - direct) / direct:+.1f}% of wall time; 1-thread side by side vs "
              f"2-thread one after another: {_TIMES['direct_2threads_one_after_another'] / direct:.2f}x the runs per hour")

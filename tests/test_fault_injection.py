"""kill -9 a training run at random moments, during checkpoint writes too, resume it each time:
every checkpoint field, the best checkpoint, the logs and the summary must equal an
uninterrupted run's (wall-clock fields aside)."""

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cpfast import checkpoint
from cpfast.train import main as train_main

ROOT = Path(__file__).resolve().parent.parent
ITERATIONS = 12
ARGS = ["--preset", "quick", "--steps", str(ITERATIONS * 145 * 2), "--threads", "1", "--no-progress",
        "--eval-episodes", "2", "--eval-every", "3",
        # buffer_size 500 fills after 7 iterations: checkpoints of a partly filled and of a full buffer
        "--set", "n_envs=2", "hidden_dim=16", "mixer_hidden_dim=16", "mixer_embed_dim=16", "batch_size=8",
        "buffer_size=500", "update_every=20", "update_target_every=5", "checkpoint_every=1", "log_every=1"]
WALL_CLOCK = {"wall_seconds", "env_steps_per_s"}

# Runs the trainer, killing itself (SIGKILL) halfway through the n-th write of one checkpoint file:
# half the bytes in the temporary file, then gone, as a crash during a write would leave it.
CRASHING_TRAINER = """
import io, os, signal, sys
from pathlib import Path
import torch
import cpfast.checkpoint as ck
from cpfast.train import main
target, nth = os.environ["KILL_DURING_SAVE"].split(":")
real_atomic, real_save, writing, seen = ck.save_atomic, torch.save, [None], {}
def save_atomic(payload, path):
    writing[0] = Path(path).name
    return real_atomic(payload, path)
def save(obj, f):
    seen[writing[0]] = seen.get(writing[0], 0) + 1
    if writing[0] == target and seen[target] == int(nth):
        data = io.BytesIO()
        real_save(obj, data)
        f.write(data.getvalue()[: len(data.getvalue()) // 2])
        f.flush()
        os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    real_save(obj, f)
ck.save_atomic, torch.save = save_atomic, save
main(sys.argv[1:])
"""


def last_row(path: Path) -> str:
    try:
        return path.read_text().rstrip("\n").rsplit("\n", 1)[-1]
    except OSError:
        return ""


def run_with_fault(run_dir: Path, fault, rng: random.Random, resume: bool) -> int:
    """One session of the run; returns its exit status (-9 when killed)."""
    args = ARGS + ["--run-dir", str(run_dir)] + (["--resume"] if resume else [])
    env = dict(os.environ)
    if fault[0] == "save":
        env["KILL_DURING_SAVE"] = fault[1]
        command = [sys.executable, "-c", CRASHING_TRAINER, *args]
    else:
        command = [sys.executable, "-m", "cpfast.train", *args]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    if fault[0] == "timed":  # once this session has logged a row, a random moment within about an iteration
        start = last_row(run_dir / "progress.csv")
        deadline = time.time() + 120
        while process.poll() is None and last_row(run_dir / "progress.csv") == start and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.7))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
    _, err = process.communicate(timeout=300)
    assert process.returncode in (0, -signal.SIGKILL), err
    return process.returncode


def assert_same(a, b, where: str) -> None:
    """Equal field by field: tensors and arrays bit for bit, nan equal to nan."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for key in a:
            if key not in WALL_CLOCK:
                assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype, where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, float) and a != a:
        assert b != b, where
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k not in WALL_CLOCK} for row in csv.DictReader(f)]


def test_random_kills_and_resumes_give_the_uninterrupted_run(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    train_main(ARGS + ["--run-dir", str(straight)])
    rng = random.Random(2024)  # the kill moments; what is compared does not depend on them
    faults = [("save", "checkpoint_latest.pt:2"), ("timed",), ("save", "checkpoint_best.pt:1"), ("timed",),
              ("save", "checkpoint_latest.pt:3")]
    statuses, sessions = [], 0
    while not (killed / "summary.json").is_file():
        fault = faults[sessions] if sessions < len(faults) else ("none",)
        statuses.append(run_with_fault(killed, fault, rng, resume=sessions > 0))
        sessions += 1
        assert sessions <= len(faults) + 1, "the run does not finish"
    assert statuses.count(-signal.SIGKILL) >= 3, statuses  # most faults struck before the run ended
    assert not list(killed.glob(".*")), "temporary files left behind"
    for name in ("checkpoint_latest.pt", "checkpoint_best.pt"):
        a, b = (checkpoint.load(d / name) for d in (straight, killed))
        assert a["iteration"] == ITERATIONS or name == "checkpoint_best.pt"
        assert_same(a, b, name)  # weights, optimiser, replay buffer, env states, generators, counters
    for name in ("progress.csv", "evals.csv"):
        a, b = read_rows(straight / name), read_rows(killed / name)
        assert len(a) == {"progress.csv": ITERATIONS, "evals.csv": ITERATIONS // 3}[name]
        assert a == b, name
    a, b = (json.loads((d / "summary.json").read_text()) for d in (straight, killed))
    assert_same(a, b, "summary.json")
    assert (straight / "config.json").read_text() == (killed / "config.json").read_text()

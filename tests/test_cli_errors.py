"""Bad input to every CLI: a non-zero exit with one line that names the problem, no traceback,
and nothing created or changed on disk."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cpfast import checkpoint

ROOT = Path(__file__).resolve().parent.parent

# Checkpoints a run directory may hold that cannot be used: (folder name, how to make it, message).
BAD_CHECKPOINTS = {
    "missing": (None, "no checkpoint at"),
    "garbage": (lambda p: p.write_bytes(b"not a checkpoint"), "corrupt or unreadable"),
    "foreign": (lambda p: torch.save({"weights": 1}, p), "not a cpfast-checkpoint-v1 file"),
    "no_config": (lambda p: checkpoint.save_atomic({"learner": {}}, p), "lacks 'config'"),
    "unknown_env": (lambda p: checkpoint.save_atomic({"config": {"env": "bogus"}, "learner": {}}, p),
                    "unknown environment 'bogus'"),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_errors")
    for name, (make, _) in BAD_CHECKPOINTS.items():
        (root / name).mkdir()
        if make is not None:
            make(root / name / "checkpoint_latest.pt")
    (root / "a_file").write_text("x")
    (root / "bad_log").mkdir()  # a run directory whose progress.csv lacks the columns plot reads
    (root / "bad_log" / "config.json").write_text('{"method": "copa"}')
    (root / "bad_log" / "progress.csv").write_text("iteration,steps\n1,2\n")
    (root / "bad_eval.csv").write_text("run_dir,method\nx,copa\n")
    (root / "bad.yaml").write_text("methods: [copa, aqmix\n")
    return root


def case(module, argv, message, id):
    return pytest.param(module, argv, message, id=id)


CASES = [
    # train: bad values, names and folders
    case("train", ["--beta", "nan"], "beta must be a finite number, got nan", "train-beta-nan"),
    case("train", ["--beta", "inf"], "beta must be a finite number, got inf", "train-beta-inf"),
    case("train", ["--beta", "-2"], "beta must be a finite number >= 0, or -1", "train-beta-negative"),
    case("train", ["--threads", "-1"], "num_threads must be 0 or positive, got -1", "train-threads"),
    case("train", ["--period", "1000", "--set", "buffer_size=10000000"], "replay buffer would need", "train-huge-buffer"),
    case("train", ["--device", "foo"], "unknown device 'foo'", "train-device"),
    case("train", ["--composition", "bogus"], "unknown composition 'bogus'", "train-composition"),
    case("train", ["--env", "bogus"], "invalid choice: 'bogus'", "train-env"),
    case("train", ["--set", "lr=fast"], "lr takes a number", "train-set-type"),
    case("train", ["--set", "gamma=2"], "gamma must lie in [0, 1]", "train-set-range"),
    case("train", ["--set", "learning_rate=1"], "unknown config field 'learning_rate'", "train-set-name"),
    case("train", ["--steps", "0"], "total_steps must be positive", "train-steps"),
    case("train", ["--run-dir", "{a_file}"], "is a file, not a folder", "train-run-dir-file"),
    case("train", ["--resume"], "--resume needs --run-dir", "train-resume-no-dir"),
    case("train", ["--resume", "--run-dir", "{files}/nowhere"], "is not a folder", "train-resume-missing-dir"),
    *[case("train", ["--resume", "--run-dir", f"{{files}}/{name}"], message, f"train-resume-{name}")
      for name, (_, message) in BAD_CHECKPOINTS.items()],
    # evaluate
    *[case("evaluate", [f"{{files}}/{name}"], message, f"evaluate-{name}") for name, (_, message) in BAD_CHECKPOINTS.items()],
    case("evaluate", ["{files}/no_config", "--threads", "-1"], "--threads must be positive, got -1", "evaluate-threads"),
    case("evaluate", ["{files}/no_config", "--betas", "0", "nan"], "--betas must be a finite number", "evaluate-beta"),
    case("evaluate", ["{files}/no_config", "--episodes", "0"], "--episodes must be positive", "evaluate-episodes"),
    case("evaluate", ["{files}/no_config", "--comm-every", "0"], "--comm-every must be positive, got 0",
         "evaluate-comm-every"),
    case("evaluate", ["{files}/no_config", "--device", "foo"], "unknown device 'foo'", "evaluate-device"),
    case("evaluate", ["{files}/no_config", "--set", "period=8"], "period define the trained networks", "evaluate-set"),
    case("evaluate", ["{files}/no_config", "--out", "{a_file}"], "is a file, not a folder", "evaluate-out-file"),
    # play
    *[case("play", ["--checkpoint", f"{{files}}/{name}"], message, f"play-{name}")
      for name, (_, message) in BAD_CHECKPOINTS.items()],
    case("play", ["--beta", "nan"], "--beta must be a finite number", "play-beta-nan"),
    case("play", ["--checkpoint", "{files}/no_config", "--beta", "-0.5"], "--beta must be a finite number", "play-beta-neg"),
    case("play", ["--threads", "-1"], "--threads must be positive, got -1", "play-threads"),
    case("play", ["--checkpoint", "{files}/no_config", "--episodes", "0"], "--episodes must be positive", "play-episodes"),
    case("play", ["--gif", "{files}/nowhere/x.gif"], "does not exist", "play-gif-folder"),
    case("play", ["--policy", "bogus"], "policy 'bogus' is not available", "play-policy"),
    case("play", ["--composition", "bogus", "--episodes", "1"], "unknown composition 'bogus'", "play-composition"),
    # plot
    case("plot", ["{files}/bad_log"], "progress.csv lacks the columns env_steps, train_return; expected a progress.csv",
         "plot-bad-log"),
    case("plot", ["{files}/nowhere"], "is not a run directory: it has no config.json", "plot-missing-run"),
    case("plot", ["--eval-csv", "{files}/bad_eval.csv"], "bad_eval.csv lacks the columns seed, composition", "plot-bad-eval"),
    case("plot", ["--eval-csv", "{files}/nowhere.csv"], "no such file", "plot-missing-eval"),
    case("plot", [], "give at least one RUN_DIR or --eval-csv", "plot-nothing"),
    # report, sweep, search
    case("report", ["{files}/nowhere"], "nowhere does not exist", "report-missing"),
    case("report", ["{files}", "--reps", "0"], "--reps must be positive", "report-reps"),
    case("report", ["{files}", "--compare", "copa-aqmix"], "--compare takes METHOD:METHOD", "report-compare"),
    case("sweep", ["--methods", "bogus", "--list"], "unknown methods bogus", "sweep-method"),
    case("sweep", ["--file", "{files}/nowhere.yaml", "--list"], "no sweep file at", "sweep-missing-file"),
    case("sweep", ["--file", "{files}/bad.yaml", "--list"], "bad.yaml is not valid YAML", "sweep-bad-yaml"),
    case("sweep", ["--betas", "nan", "--list"], "betas must be a finite number", "sweep-beta"),
    case("sweep", ["--set", "lr=x", "--list"], "lr takes a number", "sweep-set"),
    case("sweep", ["--seeds", "a-b", "--list"], "seeds take a list", "sweep-seeds"),
    case("sweep", ["--eval-episodes", "0", "--list"], "eval episodes must be positive", "sweep-episodes"),
    case("sweep", ["--max-concurrent", "0", "--list"], "max concurrent runs must be a positive integer, got 0",
         "sweep-max-concurrent"),
    case("search", ["{files}/nowhere.yaml"], "no sweep file at", "search-missing-file"),
    case("search", ["{files}/bad.yaml"], "not valid YAML", "search-bad-yaml"),
]


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("module, argv, message", CASES)
def test_bad_input_gives_one_clear_line_and_changes_nothing(module, argv, message, files, tmp_path, capsys,
                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)  # default run and output folders land here: there must be none
    argv = [a.format(files=files, a_file=files / "a_file") for a in argv]
    if module == "train" and "--run-dir" not in argv and "--resume" not in argv:
        argv += ["--run-dir", str(tmp_path / "run")]
    if module in ("evaluate", "plot", "report") and "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    if module == "play":
        argv += ["--speed-envs", "0"]
    before = snapshot(files)
    with pytest.raises(SystemExit) as stopped:
        importlib.import_module(f"cpfast.{module}").main(argv)
    err = capsys.readouterr().err
    # SystemExit("error: ...") exits 1 with that line; argparse's error exits 2 after the usage.
    text = err if isinstance(stopped.value.code, int) else str(stopped.value.code)
    assert stopped.value.code not in (0, None)
    assert message in text, text
    assert "Traceback" not in err
    last = text.strip().splitlines()[-1]
    assert "error:" in last and message in last, "the message is one line"
    assert snapshot(files) == before
    assert list(tmp_path.iterdir()) == [], "nothing created"


def test_a_buffer_larger_than_memory_is_refused_with_its_estimate(tmp_path, monkeypatch, capsys):
    """The issue's case: --period 1000 on the quick preset is a 20.5 GB buffer (20,000 segments x
    1001 slots x 1,026 bytes), on a machine with 16 GB free."""
    from cpfast import replay, train

    monkeypatch.setattr(replay, "available_memory", lambda device: 16 * 10**9)
    with pytest.raises(SystemExit) as stopped:
        train.main(["--preset", "quick", "--period", "1000", "--run-dir", str(tmp_path / "run")])
    text = str(stopped.value.code)
    assert "20.5 GB (20,000 segments x 1001 slots x 1,026 bytes)" in text and "16.0 GB" in text
    fits = int(text.split("buffer_size=")[1].split()[0])
    assert 0 < fits and 2 * replay.buffer_bytes(train.make_env("resource_collection").spec, fits, 1000) <= 16 * 10**9
    assert not (tmp_path / "run").exists()
    # Without the buffer in checkpoints only the buffer itself must fit.
    monkeypatch.setattr(replay, "available_memory", lambda device: 25 * 10**9)
    with pytest.raises(SystemExit, match="as much again to write it into a checkpoint"):
        train.main(["--preset", "quick", "--period", "1000", "--run-dir", str(tmp_path / "run")])
    replay.check_buffer_fits(train.make_env("resource_collection").spec, 20_000, 1000, "cpu", checkpointed=False)


@pytest.mark.parametrize("argv, message", [
    (["cpfast.train", "--beta", "nan", "--run-dir", "{tmp}/run"], "error: beta must be a finite number, got nan"),
    (["cpfast.plot", "{files}/bad_log", "--out", "{tmp}/out"], "progress.csv lacks the columns env_steps"),
], ids=["train", "plot"])
def test_the_command_line_prints_only_the_error_line(argv, message, files, tmp_path):
    argv = [a.format(tmp=tmp_path, files=files) for a in argv]
    done = subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(lines) == 1 and message in lines[0], done.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "out").exists()

"""End to end: train tiny runs, evaluate them (python -m cpfast.evaluate) and plot them (cpfast.plot)."""

import csv
import json
import math
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import cpfast
from cpfast import evaluate, plot, train
from cpfast.checkpoint import CheckpointError
from cpfast.rollout import evaluate as evaluate_policy

EPISODES = 4
COMPOSITIONS = ["n5", "dynamic"]
HUGE_BETA = 1e6
BETAS = [-1.0, HUGE_BETA]  # every decision point sends / only the forced sends
RUNS = [("copa", 0), ("copa", 1), ("aqmix", 0)]
CSV_COLUMNS = ["run_dir", "env", "method", "seed", "checkpoint", "env_steps", "composition", "beta", "episodes", "return",
               "return_se", "comm_frequency", "comm_every"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    dirs = []
    for method, seed in RUNS:
        run_dir = root / f"{method}_s{seed}"
        # One thread: two torch threads next to another busy process slow updates ~20x.
        train.main(["--preset", "quick", "--steps", "2400", "--eval-episodes", "4", "--no-progress", "--threads", "1",
                    "--device", "cpu", "--method", method, "--seed", str(seed), "--run-dir", str(run_dir)])
        dirs.append(run_dir)
    torch.set_num_threads(threads)  # train sets it process-wide
    return dirs


def forced_frequency(composition, episodes, period=4, eval_seed=9999):
    """Sends / decision points when only forced sends happen (docs/method.md §13), counted from the
    presence schedule alone: a slot present at a decision time sends iff it has not received a
    strategy since it (re)appeared. Presence does not depend on the actions, so no-ops do."""
    env = cpfast.make_env("resource_collection", num_envs=episodes, composition=composition, eval_seed=eval_seed,
                          num_threads=1)
    present = env.reset()["agent_present"].astype(bool).copy()
    received = np.zeros_like(present)
    sends = decisions = 0
    for t in range(env.spec.episode_limit):
        if t % period == 0:
            sends += int((present & ~received).sum())
            decisions += int(present.sum())
            received |= present
        obs, _, terminated, truncated, _ = env.step(np.zeros(present.shape, dtype=np.int64))
        now = obs["agent_present"].astype(bool)
        received &= now == present  # a join or a leave: that slot must be sent to afresh
        present = now.copy()
    assert (terminated | truncated).all()  # exactly one episode per env
    return sends / decisions


def test_evaluate_and_plot(runs, tmp_path):
    out = tmp_path / "results"
    rows = evaluate.main([*map(str, runs), "--compositions", *COMPOSITIONS, "--betas", *map(str, BETAS),
                          "--episodes", str(EPISODES), "--device", "cpu", "--threads", "1", "--out", str(out)])

    with open(out / "eval.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == CSV_COLUMNS
        table = list(reader)
    # copa: 2 seeds x 2 compositions x 2 betas; aqmix: one row per composition.
    assert len(table) == len(rows) == 2 * 2 * 2 + 2
    copa = [r for r in table if r["method"] == "copa"]
    aqmix = [r for r in table if r["method"] == "aqmix"]
    assert len(copa) == 8 and len(aqmix) == 2
    assert {(r["composition"], r["beta"], r["comm_frequency"]) for r in aqmix} == {(c, "n/a", "n/a") for c in COMPOSITIONS}
    for r in table:
        assert int(r["episodes"]) == EPISODES and r["checkpoint"] == "latest" and int(r["env_steps"]) == 2320
        assert math.isfinite(float(r["return"]))
    for r in copa:
        frequency = float(r["comm_frequency"])
        assert 0.0 <= frequency <= 1.0
        if float(r["beta"]) == -1:
            assert frequency == 1.0
        else:
            assert frequency == pytest.approx(forced_frequency(r["composition"], EPISODES), abs=1e-12)
    # 145 steps, T = 4 and a fixed team: one forced send per agent in 37 decision points.
    assert forced_frequency("n5", EPISODES) == pytest.approx(1 / 37)

    # Grouped table: mean ± sample std/sqrt(n) over seeds; for two seeds that s.e. is |a - b| / 2. One seed
    # shows its within-run s.e. over episodes.
    markdown = (out / "eval.md").read_text()
    for composition in COMPOSITIONS:
        for beta in BETAS:
            a, b = (float(r["return"]) for r in copa if r["composition"] == composition and float(r["beta"]) == beta)
            fa, fb = (float(r["comm_frequency"]) for r in copa
                      if r["composition"] == composition and float(r["beta"]) == beta)
            cells = ["resource_collection", "copa", composition, f"{beta:g}", "2",
                     f"{(a + b) / 2:.2f} ± {abs(a - b) / 2:.2f}", f"{(fa + fb) / 2:.1%} ± {abs(fa - fb) / 2:.1%}"]
            assert any([c.strip() for c in line.strip("|").split("|")] == cells for line in markdown.splitlines()), cells
        (single,) = ((float(r["return"]), float(r["return_se"])) for r in aqmix if r["composition"] == composition)
        cells = ["resource_collection", "aqmix", composition, "n/a", "1", f"{single[0]:.2f} ± {single[1]:.2f}", "n/a"]
        assert any([c.strip() for c in line.strip("|").split("|")] == cells for line in markdown.splitlines()), cells
    summary = evaluate.summarise(evaluate.read_csv(out / "eval.csv"))
    assert len(summary) == 2 * 2 + 2

    figures = plot.main([*map(str, runs), "--eval-csv", str(out / "eval.csv"), "--out", str(out)])
    assert sorted(p.name for p in figures) == ["learning_curves.png", "reward_vs_communication.png"]
    for name in ("learning_curves.png", "reward_vs_communication.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.size[0] > 100 and image.size[1] > 100
            image.verify()
    for run in runs:  # the learning curves read each run's periodic greedy evaluations too
        with open(run / "evals.csv") as f:
            expected = {float(r["env_steps"]): float(r["return"]) for r in csv.DictReader(f)}
        assert expected and plot.read_evals(run) == expected
    (out / "bad").mkdir()
    (out / "bad" / "evals.csv").write_text("iteration,steps\n1,2\n")
    with pytest.raises(ValueError, match="evals.csv lacks the columns env_steps, return"):
        plot.read_evals(out / "bad")
    assert plot.read_evals(tmp_path / "nowhere") == {}


def test_frequency_counts_only_requested_episodes(runs):
    # 6 episodes on 4 envs: the batch plays 8, the last 2 must not count (dynamic episodes differ).
    cfg, nets, _ = evaluate.load_run(runs[0])
    cfg = cfg.replace(num_threads=1)
    result = evaluate_policy(nets, cfg, "dynamic", HUGE_BETA, 6, torch.device("cpu"), n_envs=4)
    assert result["comm_frequency"] == pytest.approx(forced_frequency("dynamic", 6), abs=1e-12)


def copy_run(run_dir, dest):
    dest.mkdir()
    for name in ("config.json", "progress.csv", "checkpoint_latest.pt"):
        shutil.copy(run_dir / name, dest / name)
    return dest / "checkpoint_latest.pt"


def test_corrupt_checkpoint_fails_with_its_name(runs, tmp_path):
    path = copy_run(runs[0], tmp_path / "corrupt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        evaluate.evaluate_runs([path.parent], ["n5"], [0.0], 2, device="cpu")
    # The CLI: exit status 1 and a one-line message naming the file, no traceback.
    done = subprocess.run([sys.executable, "-m", "cpfast.evaluate", str(path.parent), "--compositions", "n5",
                           "--episodes", "2", "--device", "cpu", "--out", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1
    assert str(path) in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "eval.csv").exists()


def test_mismatched_checkpoint_fails(runs, tmp_path):
    path = copy_run(runs[0], tmp_path / "mismatch")
    config = json.loads((path.parent / "config.json").read_text())
    (path.parent / "config.json").write_text(json.dumps({**config, "hidden_dim": 32}))
    with pytest.raises(SystemExit, match="different configuration") as error:
        evaluate.main([str(path.parent), "--compositions", "n5", "--episodes", "2", "--device", "cpu"])
    assert str(path) in str(error.value.code)


def test_summary_keys_by_env_and_warns_on_repeated_seeds():
    row = {"method": "aqmix", "composition": "train", "beta": None, "return_se": 0.5, "comm_frequency": None}
    rows = [row | {"env": "resource_collection", "seed": 0, "return": 10.0},
            row | {"env": "resource_collection", "seed": 1, "return": 14.0},
            row | {"env": "rescue", "seed": 0, "return": 2.0},
            row | {"env": "rescue", "seed": 0, "return": 4.0}]
    summary = {s["env"]: s for s in evaluate.summarise(rows)}
    assert summary["resource_collection"]["return"] == 12.0
    assert summary["resource_collection"]["return_se"] == pytest.approx(np.std([10, 14], ddof=1) / math.sqrt(2))
    assert summary["rescue"]["return"] == 3.0
    warnings = evaluate.duplicate_seeds(rows)
    assert len(warnings) == 1 and warnings[0].startswith("rescue aqmix")
    single = evaluate.summarise(rows[:1])[0]
    assert single["return_se"] == 0.5  # one seed: its within-run standard error
    coach = [r | {"method": "copa", "beta": 0.0, "comm_frequency": 1.0} for r in rows[1:3]]
    with pytest.raises(ValueError, match="one environment"):
        plot.plot_reward_vs_communication(coach, "unused.png")


def test_evaluate_set_changes_evaluation_settings_only(runs, tmp_path):
    base = evaluate.evaluate_runs(runs[2:], ["n5"], [0.0], 3, device="cpu", threads=1)
    other = evaluate.evaluate_runs(runs[2:], ["n5"], [0.0], 3, device="cpu", threads=1,
                                   overrides={"eval_seed": 123})
    assert base[0]["return"] != other[0]["return"]  # other episodes
    with pytest.raises(SystemExit, match="hidden_dim define the trained networks"):
        evaluate.main([str(runs[2]), "--set", "hidden_dim=32", "--out", str(tmp_path)])


def test_play_a_trained_team_with_a_gif(runs, tmp_path, capsys):
    from cpfast.play import main as play_main

    result = play_main(["--checkpoint", str(runs[0]), "--composition", "n5", "--episodes", "3", "--threads", "1",
                        "--gif", str(tmp_path / "team.gif"), "--gif-frames", "5"])
    assert "trained copa" in capsys.readouterr().out and math.isfinite(result["return"])
    with Image.open(tmp_path / "team.gif") as gif:
        assert gif.n_frames == 5
    with pytest.raises(SystemExit, match="no checkpoint"):
        play_main(["--checkpoint", str(tmp_path / "nowhere")])


def test_win_rate_figure_for_starcraft_rows(tmp_path):
    rows = [{"env": "sc2_3-8sz", "method": m, "seed": seed, "composition": "train", "beta": None, "return": 10.0,
             "return_se": 0.1, "comm_frequency": None, "win_rate": w, "draw_rate": 0.1, "loss_rate": 0.9 - w}
            for m, w in (("aqmix", 0.2), ("aqmix", 0.4)) for seed in (0,)] + \
           [{"env": "sc2_3-8sz", "method": "aqmix_full", "seed": 0, "composition": "train", "beta": None,
             "return": 12.0, "return_se": 0.1, "comm_frequency": None, "win_rate": 0.5, "draw_rate": 0.1,
             "loss_rate": 0.4}]
    path = plot.plot_win_rates(rows, tmp_path / "win.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 100
    assert plot.plot_win_rates([{**rows[0], "win_rate": None, "draw_rate": None, "loss_rate": None}],
                               tmp_path / "none.png") is None


def test_learning_curves_never_average_runs_of_different_settings(tmp_path):
    from cpfast.config import preset, to_dict

    settings = {"a": to_dict(preset("fast")), "b": to_dict(preset("fast")) | {"seed": 1, "num_threads": 2},
                "c": to_dict(preset("paper")), "d": to_dict(preset("fast")) | {"lr": 1e-3}}
    for name, config in settings.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(config))
        (tmp_path / name / "progress.csv").write_text("iteration,env_steps,train_return\n1,100,1.0\n2,200,2.0\n")
    groups = plot.curve_groups([tmp_path / name for name in settings])
    assert {label: len(runs) for label, runs in groups["resource_collection"].items()} == {
        "copa fast": 2, "copa paper": 1, "copa fast lr=0.001": 1}
    assert plot.plot_learning_curves([tmp_path / name for name in settings], tmp_path / "curves.png").is_file()


def test_fixed_schedules_are_their_own_groups_and_their_own_line(tmp_path):
    """Rows of ``--betas -1 --comm-every K`` are summarised per K, never with the adaptive rule's
    beta = -1 rows, and drawn as a second line."""
    rows = []
    for seed in range(2):
        for beta, every, value, frequency in ((0.0, 1, 60.0, 1.0), (2.0, 1, 50.0, 0.3), (-1.0, 1, 61.0, 1.0),
                                              (-1.0, 4, 45.0, 0.27), (-1.0, 8, 40.0, 0.135)):
            rows.append({"env": "resource_collection", "method": "copa", "seed": seed, "composition": "train",
                         "beta": beta, "return": value + seed, "return_se": 1.0, "comm_frequency": frequency,
                         "comm_every": every})
    assert not evaluate.duplicate_seeds(rows)
    summary = {(s["beta"], s["comm_every"]): s for s in evaluate.summarise(rows)}
    assert set(summary) == {(0.0, 1), (2.0, 1), (-1.0, 1), (-1.0, 4), (-1.0, 8)}
    assert summary[(-1.0, 4)]["return"] == pytest.approx(45.5) and summary[(-1.0, 8)]["seeds"] == [0, 1]
    assert re.search(r"\| -1, K=4 +\|", evaluate.markdown_table(evaluate.summarise(rows)))
    figure = plot.plot_reward_vs_communication(rows, tmp_path / "rc.png")
    with Image.open(figure) as image:
        image.verify()

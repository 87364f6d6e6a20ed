"""The sweep tool on a local Ray and the report's statistics."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch

from cpfast import checkpoint, report, search, sweep
from cpfast.train import Trainer

ray = pytest.importorskip("ray", reason="the sweep extra (pip install '.[sweep]') is part of the test extras")
ROOT = Path(__file__).resolve().parent.parent
TINY = {"total_steps": 2 * 145 * 2, "n_envs": 2, "hidden_dim": 16, "mixer_hidden_dim": 16, "mixer_embed_dim": 8,
        "batch_size": 8, "buffer_size": 200, "update_every": 20, "update_target_every": 5, "checkpoint_every": 1,
        "log_every": 1, "eval_episodes": 2}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def tiny_cells(methods=("copa", "aqmix"), seeds=(0, 1), **axes):
    return sweep.grid(["resource_collection"], list(methods), list(seeds), ["quick"], dict(TINY),
                      {k: list(v) for k, v in axes.items()})


def weights(run_dir):
    return checkpoint.load(Path(run_dir) / "checkpoint_latest.pt")["learner"]["online"]


def test_sweep_runs_equal_the_same_runs_made_one_by_one(local_ray, tmp_path):
    cells = tiny_cells()
    results = sweep.run_sweep(cells, tmp_path / "sweep", threads=1, progress=False)
    assert set(results.values()) == {"done"} and len(results) == 4
    for cell in cells:
        alone = tmp_path / "alone" / cell.name
        Trainer(cell.config(1, "auto"), alone).run(progress=False)
        swept = tmp_path / "sweep" / cell.name
        a, b = weights(swept), weights(alone)
        assert all(torch.equal(a[k], b[k]) for k in a), cell.name
        assert json.loads((swept / "summary.json").read_text())["evaluation"]["return"] == \
            json.loads((alone / "summary.json").read_text())["evaluation"]["return"]
        assert (swept / "eval.csv").is_file()
    # Run again: nothing to do, nothing rewritten.
    stamps = {c: (tmp_path / "sweep" / c.name / "summary.json").stat().st_mtime_ns for c in cells}
    sweep.run_sweep(cells, tmp_path / "sweep", threads=1, progress=False)
    assert stamps == {c: (tmp_path / "sweep" / c.name / "summary.json").stat().st_mtime_ns for c in cells}


def test_a_failing_run_is_recorded_and_the_others_finish(local_ray, tmp_path):
    cells = tiny_cells(methods=("aqmix",), seeds=(0,), composition=("train", "no_such_composition"))
    results = sweep.run_sweep(cells, tmp_path, threads=1, progress=False)
    good, bad = cells
    assert results[good.name] == "done"
    assert results[bad.name].startswith("failed") and "no_such_composition" in results[bad.name]
    assert "no_such_composition" in (tmp_path / bad.name / "error.txt").read_text()
    assert sweep.cell_status(tmp_path / bad.name) == "failed"


def test_max_concurrent_runs_cells_one_at_a_time_in_order(local_ray, tmp_path):
    cells = tiny_cells(methods=("aqmix",), seeds=(0, 1, 2))
    results = sweep.run_sweep(cells, tmp_path, threads=1, progress=False, max_concurrent=1)
    assert set(results.values()) == {"done"}
    # Each run from its config.json (written first) to its eval.csv (written last): no overlap, in order.
    spans = [((tmp_path / c.name / "config.json").stat().st_mtime_ns, (tmp_path / c.name / "eval.csv").stat().st_mtime_ns)
             for c in cells]
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), spans
    with pytest.raises(ValueError, match="max concurrent runs must be a positive integer, got 0"):
        sweep.run_sweep(cells, tmp_path, max_concurrent=0)


def test_bad_overrides_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="learning_rate"):
        sweep.cells_from_spec({"methods": "copa", "set": {"learning_rate": 1e-3}})
    with pytest.raises(ValueError, match="unknown methods"):
        sweep.cells_from_spec({"methods": "copa,qmix"})
    with pytest.raises(ValueError, match="seeds"):
        sweep.parse_seeds("0-x")
    assert sweep.parse_seeds("0-2,7") == [0, 1, 2, 7]


def test_a_run_directory_of_another_configuration_is_not_taken_over(local_ray, tmp_path):
    cell, = tiny_cells(methods=("aqmix",), seeds=(0,))
    run_dir = tmp_path / cell.name
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"env": "resource_collection", "method": "aqmix", "lr": 1.0}))
    with pytest.raises(ValueError, match="holds another run"):
        sweep.run_cell(cell, str(run_dir), 1, "cpu", (0.0,), None)


def test_a_killed_sweep_resumes_with_nothing_run_twice_and_nothing_lost(tmp_path):
    spec = {"env": "resource_collection", "methods": "copa,aqmix", "seeds": "0", "preset": "quick",
            "set": TINY | {"total_steps": 12 * 145 * 2}, "out": str(tmp_path / "killed"), "threads_per_run": 1}
    (tmp_path / "sweep.json").write_text(json.dumps(spec))
    command = [sys.executable, "-m", "cpfast.sweep", "--file", str(tmp_path / "sweep.json"), "--no-progress"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    cells = sweep.cells_from_spec(spec)
    deadline = time.time() + 240
    while time.time() < deadline and not any(
            sweep._env_steps(tmp_path / "killed" / c.name) >= 3 * 145 * 2 for c in cells):
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert any(sweep.cell_status(tmp_path / "killed" / c.name) == "resumable" for c in cells)
    rerun = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    for cell in cells:
        killed = tmp_path / "killed" / cell.name
        assert sweep.cell_status(killed) == "done"
        straight = tmp_path / "straight" / cell.name
        Trainer(cell.config(1, "auto"), straight).run(progress=False)
        a, b = weights(killed), weights(straight)
        assert all(torch.equal(a[k], b[k]) for k in a), cell.name  # resumed bit-exactly: nothing lost
        rows = (killed / "progress.csv").read_text().splitlines()[1:]
        assert [int(r.split(",")[0]) for r in rows] == list(range(1, 13))  # every iteration logged once


# ---------------------------------------------------------------------- report, on hand-made runs
def fake_run(root: Path, name: str, returns: dict, **config):
    """A finished run directory whose eval.csv holds ``returns`` (composition -> return)."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    cfg = {"env": "resource_collection", "method": "copa", "seed": 0} | config
    (run_dir / "config.json").write_text(json.dumps(cfg))
    (run_dir / "summary.json").write_text(json.dumps({"evaluation": {"return": returns["train"]}}))
    coach = cfg["method"].startswith("copa")
    lines = ["run_dir,method,seed,checkpoint,env_steps,composition,beta,episodes,return,return_se,comm_frequency,"
             "comm_every"]
    lines += [f"{run_dir},{cfg['method']},{cfg['seed']},latest,100,{c},{'0.0' if coach else 'n/a'},10,{r},0.1,"
              f"{'1.0,1' if coach else 'n/a,n/a'}" for c, r in returns.items()]
    (run_dir / "eval.csv").write_text("\n".join(lines) + "\n")
    return run_dir


def test_report_statistics_on_hand_made_results(tmp_path):
    copa = [10.0, 12.0, 50.0, 14.0, 11.0]
    aqmix = [1.0, 2.0, 3.0, 20.0, 4.0]
    for seed, (a, b) in enumerate(zip(copa, aqmix)):
        fake_run(tmp_path, f"copa_s{seed}", {"train": a}, seed=seed)
        fake_run(tmp_path, f"aqmix_s{seed}", {"train": b}, seed=seed, method="aqmix")
    runs, notes = report.find_runs([tmp_path])
    table, warnings = report.summarise(runs, reps=1000)
    assert not notes and not warnings
    rows = {t["method"]: t for t in table}
    assert rows["copa"]["mean"] == pytest.approx(np.mean(copa))
    assert rows["copa"]["iqm"] == pytest.approx(scipy.stats.trim_mean(copa, 0.25))
    for t, values in ((rows["copa"], copa), (rows["aqmix"], aqmix)):
        assert min(values) <= t["mean_low"] <= t["mean"] <= t["mean_high"] <= max(values)
        assert min(values) <= t["iqm_low"] <= t["iqm"] <= t["iqm_high"] <= max(values)
    compare, = report.comparisons(table, [("copa", "aqmix")], reps=1000)
    by_hand = np.mean([(x > y) + 0.5 * (x == y) for x in copa for y in aqmix])
    assert compare["probability"] == pytest.approx(by_hand)
    assert compare["low"] <= by_hand <= compare["high"]


def test_report_never_mixes_environments_or_settings(tmp_path):
    fake_run(tmp_path, "rc_s0", {"train": 1.0})
    fake_run(tmp_path, "rc_lr_s0", {"train": 5.0}, lr=1e-3)
    fake_run(tmp_path, "rescue_s0", {"train": 9.0}, env="rescue")
    fake_run(tmp_path, "rescue_s0_again", {"train": 7.0}, env="rescue")
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "config.json").write_text(json.dumps({"env": "rescue", "method": "copa", "seed": 3}))
    runs, notes = report.find_runs([tmp_path])
    table, warnings = report.summarise(runs, reps=200)
    assert sorted((t["env"], t["mean"]) for t in table) == [("rescue", 8.0), ("resource_collection", 1.0),
                                                           ("resource_collection", 5.0)]
    assert any("duplicate seeds" in w for w in warnings)
    assert any(n.startswith("unfinished") for n in notes)
    labels = {t["cell"] for t in table if t["env"] == "resource_collection"}
    assert labels == {"copa lr=0.0003", "copa lr=0.001"}


def test_cells_from_different_presets_are_named_by_their_preset(tmp_path):
    """Runs of one method at two presets are two cells, named by preset and the fields their
    presets do not explain, not by every field in which the presets differ."""
    from cpfast.cells import nearest_preset
    from cpfast.config import preset, to_dict

    fast, paper = to_dict(preset("fast")), to_dict(preset("paper")) | {"eval_every": 189}
    for seed in range(2):
        fake_run(tmp_path, f"fast_s{seed}", {"train": 60.0 + seed}, **(fast | {"seed": seed}))
    fake_run(tmp_path, "paper_s0", {"train": 5.0}, **paper)
    fake_run(tmp_path, "fast_n5_s0", {"train": 1.0}, **(fast | {"composition": "n5", "num_threads": 2}))
    assert nearest_preset(paper) == "paper" and nearest_preset(fast) == "fast"
    table, _ = report.summarise(report.find_runs([tmp_path])[0], reps=200)
    assert {t["cell"]: t["seeds"] for t in table} == {"copa fast": [0, 1], "copa paper eval_every=189": [0],
                                                      "copa fast composition=n5": [0]}


def test_report_keeps_fixed_schedules_apart_from_the_adaptive_rule(tmp_path):
    """Rows of ``evaluate --betas -1 --comm-every K`` are their own lines, one per K."""
    for seed in range(3):
        run_dir = fake_run(tmp_path, f"copa_s{seed}", {"train": 50.0 + seed}, seed=seed)
        with open(run_dir / "eval.csv", "a") as f:
            for k, value in ((1, 60.0), (4, 40.0), (8, 30.0)):
                f.write(f"{run_dir},copa,{seed},latest,100,train,-1.0,10,{value + seed},0.1,{1 / k},{k}\n")
    table, warnings = report.summarise(report.find_runs([tmp_path])[0], reps=200)
    assert not warnings
    rows = {(t["beta"], t["comm_every"]): t for t in table}
    assert set(rows) == {(0.0, 1), (-1.0, 1), (-1.0, 4), (-1.0, 8)}
    assert rows[(-1.0, 4)]["mean"] == pytest.approx(41.0) and rows[(-1.0, 4)]["comm_frequency"] == pytest.approx(0.25)
    assert rows[(-1.0, 8)]["mean"] == pytest.approx(31.0) and rows[(-1.0, 1)]["mean"] == pytest.approx(61.0)
    text = report.markdown(table, [], [], [])
    assert "| copa | train | -1, K=4 | 3 | 41.00 [" in text and "every K-th decision time" in text
    report.main([str(tmp_path), "--out", str(tmp_path / "out"), "--reps", "200"])
    assert not list((tmp_path / "out").glob("*.png"))  # runs without logs: no empty learning-curve figure


def test_report_command_writes_its_files(tmp_path):
    for seed in range(3):
        run_dir = fake_run(tmp_path / "runs", f"copa_s{seed}", {"train": 10.0 + seed, "n5": 20.0 + seed}, seed=seed)
        (run_dir / "progress.csv").write_text("iteration,env_steps,train_return\n1,100,1.0\n2,200,2.5\n")
    report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--reps", "200"])
    for name in ("report.md", "report.csv", "report.json", "comparisons.json", "curves_resource_collection.png"):
        assert (tmp_path / "out" / name).is_file(), name
    marl = json.loads((tmp_path / "out" / "report.json").read_text())
    assert marl["resource_collection"]["n5"]["copa"]["seed_2"]["absolute_metrics"]["return"] == [22.0]


def test_search_ranks_configurations_and_writes_a_preset_candidate(local_ray, tmp_path):
    spec = {"env": "resource_collection", "method": "aqmix", "preset": "quick", "seeds": "0-1",
            "set": TINY | {"total_steps": 4 * 145 * 2}, "space": {"lr": {"choice": [1e-4, 1e-3]}},
            "num_samples": 2, "evaluations": 2, "grace": 1}
    ranked = search.run_search(spec, tmp_path)
    assert len(ranked) == 2 and {r["overrides"]["lr"] for r in ranked} <= {1e-4, 1e-3}
    assert ranked[0]["evaluations"] >= ranked[1]["evaluations"]
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["ranked"][0]["overrides"] == ranked[0]["overrides"]
    for run_dir in ranked[0]["run_dirs"]:  # ordinary run directories, one per seed
        assert (Path(run_dir) / "evals.csv").is_file()
    with pytest.raises(ValueError, match="learning_rate"):
        search.run_search(spec | {"space": {"learning_rate": {"choice": [1e-3]}}}, tmp_path / "bad")

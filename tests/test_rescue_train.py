"""`python -m cpfast.train --env rescue` end to end with a tiny budget."""

import json
import subprocess
import sys

from cpfast.envs import REGISTRY


def test_train_cli_runs_on_rescue_with_its_preset_changes(tmp_path):
    run_dir = tmp_path / "run"
    steps = 2 * 100 * 8  # two episode-iterations of the 8 rollout envs
    out = subprocess.run([sys.executable, "-m", "cpfast.train", "--env", "rescue", "--preset", "quick", "--steps",
                          str(steps), "--eval-episodes", "2", "--run-dir", str(run_dir), "--no-progress", "--threads", "1"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "evaluation on train" in out.stdout
    config = json.loads((run_dir / "config.json").read_text())
    assert config["env"] == "rescue" and config["method"] == "copa"
    assert REGISTRY["rescue"].train_defaults["segment_tail"] == "pad"  # docs/method.md §17
    for key, value in REGISTRY["rescue"].train_defaults.items():
        assert config[key] == value
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["iterations"] == 2 and summary["env_steps"] == steps and summary["updates"] > 0
    assert (run_dir / "checkpoint_latest.pt").exists()

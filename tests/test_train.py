"""Training loop: resume exactness, checkpoints, update cadence, adaptive communication."""

import csv
import json
import math

import numpy as np
import pytest
import torch

import cpfast
from cpfast import checkpoint
from cpfast.config import preset
from cpfast.rollout import evaluate
from cpfast.train import Trainer, main as train_main


def tiny(**changes):
    base = dict(n_envs=2, total_steps=3 * 145 * 2, hidden_dim=16, mixer_hidden_dim=16, mixer_embed_dim=16,
                batch_size=8, buffer_size=500, update_every=20, update_target_every=5, checkpoint_every=1, log_every=1,
                eval_episodes=2, num_threads=1)
    return preset("quick").replace(**(base | changes))


def read_log(run_dir):
    with open(run_dir / "progress.csv") as f:
        return list(csv.DictReader(f))


def straight_killed_resumed(cfg, tmp_path, stop_at: int):
    """An uninterrupted run, a run stopped after ``stop_at`` iterations, and a trainer restored
    from the stopped run's latest checkpoint (not yet run on)."""
    straight = Trainer(cfg, tmp_path / "straight")
    straight.run(progress=False)
    killed = Trainer(cfg, tmp_path / "killed")
    killed.run(progress=False, stop_at=stop_at)
    resumed = Trainer(cfg, tmp_path / "killed")
    resumed.restore(checkpoint.load(tmp_path / "killed" / "checkpoint_latest.pt"))
    return straight, killed, resumed


@pytest.mark.parametrize("method", ["copa", "aqmix_periodic"])
def test_resume_gives_the_identical_next_updates(tmp_path, method):
    straight, killed, resumed = straight_killed_resumed(tiny(method=method), tmp_path, stop_at=2)
    assert resumed.iteration == 2
    resumed.run(progress=False)
    a, b = read_log(tmp_path / "straight"), read_log(tmp_path / "killed")
    assert len(a) == len(b) == 3
    for key in ("env_steps", "updates", "train_return", "loss", "td_loss", "vi_loss"):
        assert a[2][key] == b[2][key], key
    for (name, p), q in zip(straight.learner.online.named_parameters(), resumed.learner.online.parameters()):
        assert torch.equal(p, q), name


@pytest.mark.parametrize("method", ["copa", "aqmix"])
def test_starcraft_resume_mid_episode_gives_the_identical_run(tmp_path, method):
    """StarCraft episodes end early, so a checkpoint falls mid-episode: the resumed run must carry
    on the same episodes (env and runner state, segment windows, player memory and strategies)
    and give the same logs, returns, replay contents and parameters as an uninterrupted run."""
    cfg = preset("starcraft").replace(method=method, n_envs=3, total_steps=3 * 150 * 3, hidden_dim=16,
                                      mixer_hidden_dim=16, mixer_embed_dim=8, batch_size=8, buffer_size=400,
                                      update_every=40, update_target_every=5, eval_episodes=2, num_threads=1,
                                      log_every=1, checkpoint_every=1, device="cpu")
    straight, killed, resumed = straight_killed_resumed(cfg, tmp_path, stop_at=1)
    assert resumed.iteration == 1 and killed.windows.t.any()  # episodes under way at the checkpoint
    np.testing.assert_array_equal(resumed.windows.t, killed.windows.t)
    held, restored = killed.team.state_dict(), resumed.team.state_dict()
    assert held.keys() == restored.keys() and ("strategy" in held) == (method == "copa")
    assert all(torch.equal(held[k], restored[k]) for k in held)
    resumed.run(progress=False)
    a, b = read_log(tmp_path / "straight"), read_log(tmp_path / "killed")
    assert len(a) == len(b) == 3
    for row_a, row_b in zip(a[1:], b[1:]):
        for key in ("env_steps", "updates", "train_return", "loss", "td_loss", "vi_loss"):
            assert row_a[key] == row_b[key], (row_a["iteration"], key)
    assert list(straight.recent_returns) == list(resumed.recent_returns)
    for name, storage in straight.buffer.data.items():
        assert torch.equal(storage, resumed.buffer.data[name]), name
    for i in range(cfg.n_envs):
        for key, value in straight.env.get_state(i).items():
            np.testing.assert_array_equal(value, resumed.env.get_state(i)[key], err_msg=f"env {i} {key}")
    for (name, p), q in zip(straight.learner.online.named_parameters(), resumed.learner.online.parameters()):
        assert torch.equal(p, q), name


def test_cli_resume_continues_a_run(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["--preset", "quick", "--steps", str(2 * 145 * 8), "--eval-episodes", "2", "--run-dir", str(run_dir),
            "--no-progress", "--threads", "1"]
    train_main(args)
    summary = train_main(["--run-dir", str(run_dir), "--resume", "--no-progress"])
    assert summary["iterations"] == 2  # nothing left to do: the resumed run ends at once
    assert "evaluation on train" in capsys.readouterr().out


def test_corrupt_and_mismatched_checkpoints_raise_clear_errors(tmp_path):
    cfg = tiny(total_steps=145 * 2)
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.run(progress=False)
    path = tmp_path / "run" / "checkpoint_latest.pt"
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="truncated.pt.*corrupt"):
        checkpoint.load(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match="garbage.pt"):
        checkpoint.load(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": 1}, foreign)
    with pytest.raises(checkpoint.CheckpointError, match="not a cpfast"):
        checkpoint.load(foreign)
    other = Trainer(tiny(method="aqmix"), tmp_path / "other")
    with pytest.raises(checkpoint.CheckpointError, match="method: checkpoint 'copa' vs run 'aqmix'"):
        other.restore(checkpoint.load(path))
    cut = checkpoint.load(path)  # acting state of another shape: named, and nothing of it copied
    cut["team"]["state"] = cut["team"]["state"][:1] + 1.0
    fresh = Trainer(cfg, tmp_path / "fresh")
    held = fresh.team.state_dict()
    with pytest.raises(checkpoint.CheckpointError, match="acting field 'state' has shape"):
        fresh.restore(cut)
    assert all(torch.equal(v, fresh.team.state_dict()[k]) for k, v in held.items())


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    checkpoint.save_atomic({"value": 1}, path)

    def failing_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save_atomic({"value": 2}, path)
    monkeypatch.undo()
    assert checkpoint.load(path)["value"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def expected_updates(n_iters, n_envs, horizon, period, update_every, batch):
    """docs/method.md §9 arithmetic, written out independently of the trainer."""
    counter = last = updates = segments = 0
    for _ in range(n_iters):
        for t in range(horizon):
            counter += n_envs
            if t % period == 0 and t > 0:
                segments += n_envs
            if counter - last >= update_every:
                last = counter
                if segments >= batch:
                    updates += 1
    return updates


def test_update_cadence_and_target_syncs_follow_the_schedule(tmp_path):
    cfg = tiny(n_envs=3, total_steps=2 * 145 * 3, update_every=37, update_target_every=4, batch_size=40)
    trainer = Trainer(cfg, tmp_path / "run")
    syncs = []
    original = trainer.learner.sync_targets
    trainer.learner.sync_targets = lambda: (syncs.append(trainer.learner.n_updates), original())
    trainer.run(progress=False)
    expected = expected_updates(2, 3, 145, cfg.period, 37, 40)
    assert trainer.learner.n_updates == expected > 0
    assert syncs == list(range(4, expected + 1, 4))
    assert trainer.counter == 2 * 145 * 3


def decision_counts(composition, eval_seed, episodes, n_envs, period):
    """Forced sends and decision points of docs/method.md §13 from the env's presence trace alone
    (compositions never depend on actions)."""
    env = cpfast.make_env("resource_collection", num_envs=n_envs, composition=composition, eval_seed=eval_seed)
    obs = env.reset()
    received = np.zeros((n_envs, 6), dtype=bool)
    forced = points = 0
    for _ in range(math.ceil(episodes / n_envs)):
        for t in range(145):
            present = obs["agent_present"].astype(bool)
            if t % period == 0:
                forced += int((present & ~received).sum())
                points += int(present.sum())
                received |= present
            before = present.copy()
            obs, _, _, truncated, _ = env.step(np.zeros((n_envs, 6), dtype=np.int64))
            changed = obs["agent_present"].astype(bool) != before
            received &= ~changed
            received[truncated == 1] = False
    return forced, points


@pytest.mark.parametrize("composition", ["train", "dynamic"])
def test_adaptive_communication_counts(composition):
    cfg = tiny(eval_seed=77)
    nets = cpfast.nn.Networks(cpfast.make_env("resource_collection").spec, cfg)
    forced, points = decision_counts(composition, 77, episodes=4, n_envs=4, period=cfg.period)
    never = evaluate(nets, cfg, composition, beta=float("inf"), episodes=4, device="cpu", n_envs=4)
    always = evaluate(nets, cfg, composition, beta=-1.0, episodes=4, device="cpu", n_envs=4)
    assert always["comm_frequency"] == 1.0
    assert never["comm_frequency"] == pytest.approx(forced / points)
    assert forced < points


@pytest.mark.parametrize("every", [2, 3, 4])
def test_a_fixed_communication_schedule_sends_at_every_kth_decision(every):
    """The control for adaptive communication: with beta = -1 and comm_every = k a coach sends at
    decision times 0, k, 2k, ... of an episode (and whatever is forced)."""
    cfg = tiny(eval_seed=77)
    nets = cpfast.nn.Networks(cpfast.make_env("resource_collection").spec, cfg)
    limit = cpfast.make_env("resource_collection").spec.episode_limit
    times = len(range(0, limit, cfg.period))  # decision times per episode
    scheduled = evaluate(nets, cfg, "train", beta=-1.0, episodes=4, device="cpu", n_envs=4, comm_every=every)
    assert scheduled["comm_frequency"] == pytest.approx(len(range(0, times, every)) / times)  # a fixed team
    forced, points = decision_counts("dynamic", 77, episodes=4, n_envs=4, period=cfg.period)
    joining = evaluate(nets, cfg, "dynamic", beta=-1.0, episodes=4, device="cpu", n_envs=4, comm_every=every)
    assert 1 / every - 0.05 < joining["comm_frequency"] <= 1 / every + forced / points
    with pytest.raises(ValueError, match="comm_every must be a positive integer"):
        evaluate(nets, cfg, "train", beta=-1.0, episodes=4, device="cpu", n_envs=4, comm_every=0)


def test_cli_refuses_to_overwrite_a_run_unless_asked(tmp_path):
    run_dir = tmp_path / "run"
    args = ["--preset", "quick", "--steps", str(145 * 8), "--eval-episodes", "2", "--run-dir", str(run_dir),
            "--no-progress", "--threads", "1", "--set", "hidden_dim=16"]
    train_main(args)
    rows = read_log(run_dir)
    with pytest.raises(SystemExit, match="already holds a run"):
        train_main(args)
    assert read_log(run_dir) == rows  # untouched
    train_main(args + ["--overwrite"])
    with pytest.raises(SystemExit, match="hidden_dim takes an int"):
        train_main(args + ["--overwrite", "--set", "hidden_dim=1.5"])


def test_resume_matches_an_uninterrupted_run_in_logs_best_checkpoint_and_summary(tmp_path):
    cfg = tiny(total_steps=4 * 145 * 2, eval_every=2)
    straight, killed, resumed = straight_killed_resumed(cfg, tmp_path, stop_at=2)
    (tmp_path / "killed" / "progress.csv").write_text((tmp_path / "killed" / "progress.csv").read_text()
                                                      + "3,0,0,0,0,0,0,0,0,0,0\n")  # a row logged after the checkpoint
    resumed.restore(checkpoint.load(tmp_path / "killed" / "checkpoint_latest.pt"))
    resumed.run(progress=False)
    for name in ("progress.csv", "evals.csv"):
        a, b = (read_rows(tmp_path / d / name) for d in ("straight", "killed"))
        assert [r["iteration"] for r in a] == [r["iteration"] for r in b], name
    best = [checkpoint.load(tmp_path / d / "checkpoint_best.pt") for d in ("straight", "killed")]
    assert best[0]["best_return"] == best[1]["best_return"] and best[0]["iteration"] == best[1]["iteration"]
    latest = checkpoint.load(tmp_path / "killed" / "checkpoint_latest.pt")
    assert latest["best_return"] == best[1]["best_return"]  # the latest knows the best it wrote
    assert all(torch.equal(best[0]["learner"]["online"][k], best[1]["learner"]["online"][k])
               for k in best[0]["learner"]["online"])
    a, b = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("straight", "killed"))
    assert a["evaluation"]["return"] == b["evaluation"]["return"] and a["updates"] == b["updates"]


def read_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_flipped_weight_bytes_are_detected(tmp_path):
    trainer = Trainer(tiny(total_steps=145 * 2), tmp_path / "run")
    trainer.run(progress=False)
    path = tmp_path / "run" / "checkpoint_best.pt"
    payload = torch.load(path, weights_only=False)
    weight = next(iter(payload["learner"]["online"].values()))
    weight.view(-1)[:4] += 1.0  # the file stays readable, the weights change
    torch.save(payload, path)
    with pytest.raises(checkpoint.CheckpointError, match="checksum"):
        checkpoint.load(path)


def test_stale_temporaries_are_removed_and_the_buffer_is_stored_compactly(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".checkpoint_latest.pt.abc123").write_bytes(b"x" * 100)
    trainer = Trainer(tiny(total_steps=145 * 2, buffer_size=100_000), run_dir)
    trainer.run(progress=False)
    assert not list(run_dir.glob(".checkpoint_*"))
    stored = checkpoint.load(run_dir / "checkpoint_latest.pt")["buffer"]["data"]["entities"]
    assert stored.shape[0] == trainer.buffer.size < 100_000
    assert stored.untyped_storage().nbytes() == stored.numel() * stored.element_size()  # not the whole ring


def test_resume_refuses_other_runs_and_fixed_flags_and_extends_with_steps(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["--preset", "quick", "--steps", str(145 * 8), "--eval-episodes", "2", "--run-dir", str(run_dir),
            "--no-progress", "--threads", "1", "--set", "hidden_dim=16"]
    train_main(args)
    with pytest.raises(SystemExit, match="only device, num_threads, kernels, checkpoint_buffer and total_steps.*seed 3 .the run's: 0"):
        train_main(["--run-dir", str(run_dir), "--resume", "--seed", "3"])
    summary = train_main(["--run-dir", str(run_dir), "--resume", "--no-progress", "--steps", str(2 * 145 * 8)])
    assert summary["iterations"] == 2 and summary["env_steps"] == 2 * 145 * 8
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps(config | {"lr": 0.123}))
    with pytest.raises(SystemExit, match="not the run of"):
        train_main(["--run-dir", str(run_dir), "--resume", "--no-progress"])


def test_sigint_stops_at_an_iteration_with_a_checkpoint_and_one_line(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    run_dir = tmp_path / "run"
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "cpfast.train", "--preset", "quick", "--steps", str(200 * 145 * 8),
               "--threads", "1", "--no-progress", "--run-dir", str(run_dir), "--set", "hidden_dim=16",
               "checkpoint_every=1000", "log_every=1"]
    process = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run_dir / "progress.csv").is_file() or \
            len((run_dir / "progress.csv").read_text().splitlines()) < 3:
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "--resume" in out
    stopped = checkpoint.load(run_dir / "checkpoint_latest.pt")
    assert stopped["iteration"] >= 2
    assert int(read_rows(run_dir / "progress.csv")[-1]["iteration"]) == stopped["iteration"]


def test_periodic_evaluations_are_logged_with_returns_per_team_size(tmp_path):
    cfg = tiny(total_steps=4 * 145 * 2, eval_every=2, eval_episodes=150)  # 50 envs x 3 rounds: sizes 2, 3, 4
    summary = Trainer(cfg, tmp_path / "run").run(progress=False)
    rows = read_rows(tmp_path / "run" / "evals.csv")
    assert [int(r["iteration"]) for r in rows] == [2, 4]
    by_size = dict(item.split(":") for item in rows[-1]["return_by_team_size"].split())
    assert set(by_size) == {"2", "3", "4"}  # `train` rotates team sizes 2, 3, 4
    evaluation = summary["evaluation"]
    assert evaluation["return"] == pytest.approx(float(rows[-1]["return"]))
    assert np.mean(list(evaluation["return_by_team_size"].values())) == pytest.approx(evaluation["return"])
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["evaluation"]["return"] == evaluation["return"]


@pytest.mark.parametrize("method,memory", [("copa", "reference"), ("copa", "recurrent"), ("copa_novi", "reference"),
                                           ("aqmix", "reference"), ("aqmix_full", "reference"),
                                           ("aqmix_periodic", "reference"), ("aiqmix", "reference")])
def test_acting_and_the_learner_see_the_same_inputs_across_joins_and_leaves(method, memory):
    """One acting loop (``Team``) and the learner's replay of what it stored must agree on every
    player's Q values, a joiner's first step included (memory restarted, previous action 0, no
    strategy until the next decision). In reference memory the learner starts each segment from
    a zero memory and previous action 0 by design (docs/method.md §18a), which reaches slot 1
    through the one-step memory: there slots 2.. are compared, in recurrent memory all. The
    baselines with other player views check that acting, storage and learning use one mask."""
    from cpfast.learner import Learner, held_strategies, prepare_batch, slot_range
    from cpfast.replay import SegmentWindows
    from cpfast.rollout import Team, to_tensors

    cfg = tiny(method=method, composition="dynamic", player_memory=memory)
    n_envs, state_dim = 2, cfg.hidden_dim if memory == "recurrent" else 0
    env = cpfast.make_env("resource_collection", num_envs=n_envs, seed=3, composition="dynamic")
    learner = Learner(env.spec, cfg, torch.device("cpu"), seed=0)
    team = Team(learner.online, cfg, n_envs, "cpu", beta=None, eps=0.0, sample_strategies=False, seed=1)
    windows = SegmentWindows(env.spec, n_envs, cfg.period, cfg.segment_tail, cfg.truncation_is_terminal, state_dim)
    acted, segments = [], []
    obs_np = env.reset()
    for _ in range(env.spec.episode_limit):
        obs_np = {k: v.copy() for k, v in obs_np.items()}
        step = team.act(to_tensors(obs_np, "cpu"))
        acted.append(step.q)
        actions = step.actions.numpy()
        next_obs, reward, terminated, truncated, info = env.step(actions)
        behaviour = (step.state.numpy(), step.prev_actions.numpy()) if state_dim else (None, None)
        cut = windows.append(obs_np, step.mask.to(torch.uint8).numpy(), actions, reward, terminated, truncated,
                             info["final"], None, *behaviour)
        # Resource Collection's envs run in lockstep: the windows cut now are every env's, in order,
        # covering episode steps t - T .. t
        t = len(acted) - 1
        segments += [(e, t - cfg.period, {k: v[e] for k, v in cut.items()}) for e in range(len(cut.get("reward", [])))]
        team.end_episodes(np.flatnonzero(terminated | truncated))
        obs_np = next_obs

    first = 0 if memory == "recurrent" else 2
    joiners_checked = compared = 0
    for e, t0, segment in segments:
        s = prepare_batch({k: torch.as_tensor(v).unsqueeze(0) for k, v in segment.items()})
        o = slot_range(s, 0, cfg.period)
        coach, strategy = learner.online.coach, None
        with torch.no_grad():
            if coach is not None:
                z0 = coach.strategy(coach.encode(o["entities"][:, 0], o["attributes"][:, 0], o["present"][:, 0],
                                                 o["entity_present"][:, 0]))[0]  # evaluation sends means
                strategy = held_strategies(z0, o["present"])
            q = learner.replay_q(learner.online, o, strategy)[0]
        present = o["present"][0].bool()
        for k in range(first, cfg.period):
            q_acted = acted[t0 + k][e]
            for i in np.flatnonzero(present[k].numpy()):
                torch.testing.assert_close(q[k, i], q_acted[i], rtol=1e-5, atol=1e-5)
                compared += 1
                joiners_checked += int(k > 0 and not present[k - 1, i])
    assert compared > 100 and joiners_checked >= 3


def test_light_checkpoints_leave_out_the_buffer_and_resume_with_a_notice(tmp_path, capsys):
    from cpfast.train import resume_trainer

    cfg = tiny(total_steps=3 * 145 * 2)
    Trainer(cfg, tmp_path / "full").run(progress=False, stop_at=2)
    Trainer(cfg.replace(checkpoint_buffer=False), tmp_path / "light").run(progress=False, stop_at=2)
    full, light = (tmp_path / d / "checkpoint_latest.pt" for d in ("full", "light"))
    assert checkpoint.load(light)["buffer"] is None and checkpoint.load(full)["buffer"]["size"] > 0
    assert light.stat().st_size < full.stat().st_size / 2
    capsys.readouterr()
    resumed = resume_trainer(tmp_path / "light", {"checkpoint_buffer": True})  # a machine field: may change
    notice = capsys.readouterr().err.strip().splitlines()
    assert len(notice) == 1 and "no replay buffer" in notice[0] and "not match an uninterrupted run" in notice[0]
    assert len(resumed.buffer) == 0 and resumed.iteration == 2
    updates = resumed.learner.n_updates
    summary = resumed.run(progress=False)  # refills the buffer, updates again once it holds a batch
    assert summary["iterations"] == 3 and len(resumed.buffer) > 0 and resumed.learner.n_updates > updates
    assert checkpoint.load(light)["buffer"]["size"] == len(resumed.buffer)  # buffered from now on


@pytest.mark.parametrize("method", ["copa", "aqmix"])
def test_checkpoints_from_before_the_one_acting_loop_resume_exactly(tmp_path, method):
    """A checkpoint whose acting state is the old ``actor`` (memory, previous actions, strategies)
    resumes into ``Team`` and gives the uninterrupted run's parameters."""
    cfg = tiny(method=method)
    straight = Trainer(cfg, tmp_path / "straight")
    straight.run(progress=False)
    Trainer(cfg, tmp_path / "old").run(progress=False, stop_at=2)
    path = tmp_path / "old" / "checkpoint_latest.pt"
    payload = checkpoint.load(path)
    team = payload.pop("team")
    payload["actor"] = {k: team[k] for k in ("state", "prev_actions", "strategy") if k in team}
    resumed = Trainer(cfg, tmp_path / "old")
    resumed.restore(payload)
    resumed.run(progress=False)
    for (name, p), q in zip(straight.learner.online.named_parameters(), resumed.learner.online.parameters()):
        assert torch.equal(p, q), name

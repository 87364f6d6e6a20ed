"""Reference policies, rendering, GIF export and the play entry point."""

import dataclasses

import numpy as np
import pytest
from PIL import Image

from cpfast.envs.render import record_episode_gif
from cpfast.envs.episodes import run_episodes
from cpfast.play import main as play_main
from cpfast.policies import RandomPolicy, ScriptedResourcePolicy
from helpers import make_rc


def test_random_policy_picks_only_available_actions():
    spec = make_rc().spec
    avail = np.zeros((50, 6, 5), dtype=np.uint8)
    avail[..., 0] = 1
    avail[:, :3, 3] = 1
    actions = RandomPolicy(spec, 0)({"avail_actions": avail})
    assert set(np.unique(actions[:, :3])) == {0, 3} and (actions[:, 3:] == 0).all()


def test_scripted_policy_clearly_beats_random():
    means = {}
    for name, policy_cls in (("random", lambda s: RandomPolicy(s, 0)), ("scripted", ScriptedResourcePolicy)):
        env = make_rc(num_envs=30, seed=5, num_threads=2)
        means[name] = run_episodes(env, policy_cls(env.spec), 90)["returns"].mean()
    assert means["scripted"] > means["random"] + 50, means


def test_scripted_policy_leaves_absent_slots_at_noop_and_rejects_other_envs():
    env = make_rc(num_envs=4)
    obs = env.reset()
    actions = ScriptedResourcePolicy(env.spec)(obs)
    assert (actions[obs["agent_present"] == 0] == 0).all() and actions.dtype.kind == "i"
    with pytest.raises(ValueError, match="resource_collection"):
        ScriptedResourcePolicy(dataclasses.replace(env.spec, name="rescue"))


def test_render_draws_the_state():
    env = make_rc()
    env.set_state(0, {"agent_pos": [[0.5, 0.5]] + [[0, 0]] * 5, "agent_alive": [1, 0, 0, 0, 0, 0],
                      "agent_attr": [[0.9, 0.1, 0.1, 0.5]] * 6, "lm_alive": [1, 1, 1, 1, 1, 1, 1, 0]})
    image = env.render(0)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    size = image.shape[0]
    to_pixel = lambda x, y: (int((1.05 - y) / 2.1 * size), int((x + 1.05) / 2.1 * size))
    agent = image[to_pixel(0.5, 0.5)].astype(int)
    assert agent[0] > agent[1] + 100 and agent[0] > agent[2] + 100  # skill (0.9, 0.1, 0.1) is red
    home = image[to_pixel(0.0, 0.0)]
    assert home[0] == home[1] == home[2] == 150
    assert (image[to_pixel(-1.0, 1.0)] == [250, 250, 245]).all()


def test_gif_of_an_episode(tmp_path):
    env = make_rc()
    path = record_episode_gif(env, ScriptedResourcePolicy(env.spec), tmp_path / "episode.gif")
    with Image.open(path) as gif:
        assert gif.n_frames == 145 and gif.size[0] == 420 and gif.size[1] > 420  # the map under a caption band
        gif.seek(0)
        first = np.asarray(gif.convert("RGB"))
        gif.seek(144)
        last = np.asarray(gif.convert("RGB"))
    band = gif.size[1] - 420
    assert (first[:band] < 100).any()  # caption text is drawn
    assert not np.array_equal(first[:band], last[:band])  # the step counter and score move


def test_play_reports_rewards_and_speed(capsys):
    play_main(["--episodes", "6", "--num-envs", "3", "--threads", "1", "--speed-envs", "16"])
    out = capsys.readouterr().out
    assert "mean episode reward" in out and "team of 2" in out and "env-steps/s" in out


def test_position_setting_expert_moves_at_most_s_over_20_per_axis_toward_targets():
    from cpfast.policies import PositionSettingExpert

    env = make_rc(num_envs=2, seed=3)
    expert = PositionSettingExpert(env)
    before = env.get_state(0)
    actions = expert(env.observation)
    after = env.get_state(0)
    assert (actions == 0).all()
    present = before["agent_alive"] == 1
    moved = np.abs(after["agent_pos"] - before["agent_pos"])[present]
    limit = before["agent_attr"][present, 3:4] / 20
    assert (moved <= limit + 1e-12).all() and (moved.max(axis=1) > 0).all()
    assert (after["agent_pos"][~present] == before["agent_pos"][~present]).all()
    returns = run_episodes(env, expert, 12)["returns"]
    assert returns.mean() > 30  # the random policy scores about -4 here


@pytest.mark.parametrize("env_name", ["resource_collection", "rescue", "sc2_3-8sz", "sc2_3-8MMM"])
def test_play_runs_every_registered_env_with_its_policies(env_name, tmp_path, capsys):
    from cpfast.envs import REGISTRY
    from cpfast.policies import policy_names

    assert env_name in REGISTRY
    for policy in policy_names(env_name):
        gif = tmp_path / f"{policy}.gif"
        result = play_main(["--env", env_name, "--policy", policy, "--episodes", "2", "--num-envs", "2",
                            "--threads", "1", "--speed-envs", "2", "--gif", str(gif), "--gif-frames", "3"])
        out = capsys.readouterr().out
        assert f"{env_name} / train / {policy} policy" in out and "mean episode reward" in out and "env-steps/s" in out
        assert len(result["returns"]) >= 2 and np.isfinite(result["returns"]).all()
        with Image.open(gif) as image:
            assert image.n_frames == 3
        if env_name.startswith("sc2_"):
            # Every finished episode has exactly one outcome, and the rates printed are theirs.
            assert len(result["outcomes"]) == len(result["returns"])
            rates = [result[k] for k in ("win_rate", "draw_rate", "loss_rate")]
            assert sum(rates) == pytest.approx(1.0)
            assert f"win {rates[0]:.1%}, draw {rates[1]:.1%}" in out
        else:
            assert "outcomes" not in result and "win " not in out


def test_play_default_policy_is_the_envs_scripted_one_and_bad_names_fail_clearly(capsys):
    from cpfast.play import parse_args

    assert [parse_args(["--env", e]).policy for e in ("resource_collection", "rescue", "sc2_3-8sz", "sc2_3-8MMM")] == \
        ["scripted", "greedy", "focus_fire", "focus_fire"]
    with pytest.raises(SystemExit):
        parse_args(["--env", "sc2_3-8sz", "--policy", "greedy"])
    assert "policy 'greedy' is not available for sc2_3-8sz; choose one of: random, scripted, focus_fire" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--env", "starcraft"])
    assert "invalid choice: 'starcraft'" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="unknown composition"):
        play_main(["--env", "sc2_3-8MMM", "--composition", "n5", "--speed-envs", "0"])
    with pytest.raises(SystemExit):
        parse_args(["--episodes", "0"])
    assert "--episodes must be positive" in capsys.readouterr().err

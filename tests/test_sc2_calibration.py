"""The simulator's calibrate parameters (make_env options) and the §12 calibration harness
(cpfast.sc2_calibration), all without StarCraft II: simulator against simulator."""

import csv
import hashlib
import json

import numpy as np
import pytest

import cpfast
from cpfast.envs import env_options, sc2
from cpfast import sc2_calibration as cal
from cpfast.policies import RandomPolicy, ScriptedFocusFirePolicy
from sc2_helpers import HP, MARAUDER, MARINE, MEDIVAC, RADIUS, SPEED_GS, STALKER, make, place, stop_actions

SZ, MMM = "sc2_3-8sz", "sc2_3-8MMM"
DEFAULTS = {"enemy_scan": 5.0, "enemy_leash": 2.0, "separation_firmness": 0.5, "spawn_gap": 0.1, "failed_order": 0.0,
            "enemy_medivac_speed": 2.75, "damage_scale": 1.0, "cooldown_scale": 1.0}  # the spec's values
SMALL = cal.CalibrationConfig(compositions=(0, 10, 30), episodes=8)  # 48 episodes per run, well under a second


# ---------------------------------------------------------------------------------- options
def trajectory_hash(name, **params):
    h = hashlib.sha256()
    env = cpfast.make_env(name, num_envs=16, seed=3, num_threads=1, **params)
    for policy in (RandomPolicy(env.spec, 1), ScriptedFocusFirePolicy(env.spec)):
        obs = env.reset()
        for _ in range(120):
            obs, reward, terminated, _, _ = env.step(policy(obs))
            h.update(obs["entities"].tobytes() + reward.tobytes() + terminated.tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("name", [SZ, MMM])
def test_options_default_to_the_spec_values_and_change_nothing(name):
    assert {k: v[0] for k, v in env_options(name).items()} == DEFAULTS
    assert trajectory_hash(name, **DEFAULTS) == trajectory_hash(name)
    assert trajectory_hash(name, enemy_leash=0.0) != trajectory_hash(name)


def test_bad_options_raise_errors_naming_the_option():
    with pytest.raises(ValueError, match=r"option enemy_leash=-1.0 for sc2_3-8sz must be a number in \[0, 32\]"):
        cpfast.make_env(SZ, enemy_leash=-1)
    with pytest.raises(ValueError, match="option damage_scale=nan"):
        cpfast.make_env(SZ, damage_scale=float("nan"))
    with pytest.raises(ValueError, match=r"option failed_order=0.5 for sc2_3-8MMM must be an integer in \[0, 1\]"):
        cpfast.make_env(MMM, failed_order=0.5)
    with pytest.raises(ValueError, match="unknown option 'leash' for sc2_3-8sz .known options: enemy_scan, enemy_"):
        cpfast.make_env(SZ, leash=3)
    with pytest.raises(ValueError, match="option spawn_gap for sc2_3-8sz must be a number"):
        cpfast.make_env(SZ, spawn_gap="wide")
    with pytest.raises(ValueError, match="unknown option 'enemy_leash' for rescue .it takes no options"):
        cpfast.make_env("rescue", enemy_leash=3)
    from cpfast import _envs  # the C++ side checks too

    with pytest.raises(ValueError, match="option cooldown_scale=20 for sc2_3-8MMM"):
        _envs.StarCraft3to8MMM(1, 0, 1, "train", None, None, {"cooldown_scale": 20.0})
    with pytest.raises(ValueError, match="unknown option 'x'"):
        _envs.ResourceCollection(1, 0, 1, "train", None, None, {"x": 1.0})
    assert cpfast.make_env(SZ, failed_order=True).params == {"failed_order": 1.0}


def test_enemy_scan_and_leash():
    # An ally Marine 6 edge to edge from an enemy Marine: beyond the default scan of 5, inside 6.5.
    centre = 6.0 + 2 * RADIUS[MARINE]
    for scan, expected in ((None, -1), (6.5, 0)):
        env = make(MMM, **({} if scan is None else {"enemy_scan": scan}))
        place(env, [(0, MARINE, (10.0 + centre, 10.0)), (8, MARINE, (10.0, 10.0))])
        env.step(stop_actions(env, 1))
        assert env.get_state(0)["order_target"][8] == expected
    # Holding that target 6.5 edge to edge: kept within scan 5 + leash 2, dropped with leash 1.
    centre = 6.5 + 2 * RADIUS[MARINE]
    for leash, expected in ((None, 0), (1.0, -1)):
        env = make(MMM, **({} if leash is None else {"enemy_leash": leash}))
        place(env, [(0, MARINE, (10.0 + centre, 10.0)), (8, MARINE, (10.0, 10.0), {"order_target": 0})])
        env.step(stop_actions(env, 1))
        assert env.get_state(0)["order_target"][8] == expected


def test_separation_firmness():
    gaps = []
    for firmness in (0.0, 0.5, 1.0):
        env = make(MMM, separation_firmness=firmness)
        place(env, [(0, MARINE, (10.0, 10.0)), (1, MARINE, (10.2, 10.0)), (8, MARINE, (29.0, 29.0), {"order": 0})])
        env.step(stop_actions(env, 2))
        pos = env.get_state(0)["pos"]
        gaps.append(pos[1, 0] - pos[0, 0])
    assert gaps[0] == pytest.approx(0.2) and gaps[0] < gaps[1] < gaps[2] <= 2 * RADIUS[MARINE] + 1e-9


def test_spawn_gap_spaces_the_spawn_spiral():
    # Composition 0 of 3-8sz: three Stalkers, the first three spiral points (a triangle of side `spacing`).
    for gap in (None, 1.0):
        env = make(SZ, composition="0", **({} if gap is None else {"spawn_gap": gap}))
        pos = env.get_state(0)["pos"][:3]
        d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)[np.triu_indices(3, 1)]
        np.testing.assert_allclose(d, 2 * RADIUS[STALKER] + (0.1 if gap is None else gap))


def test_failed_order_keeps_the_previous_order_when_asked():
    # A Marauder attacking an enemy Marine is told to attack an enemy Medivac (which it cannot hit).
    for keep in (0, 1):
        env = make(MMM, failed_order=keep)
        place(env, [(0, MARAUDER, (10.0, 10.0), {"order": 2, "order_target": 9}),
                    (8, MEDIVAC, (12.0, 10.0), {"order": 0}), (9, MARINE, (13.0, 10.0), {"order": 0})])
        actions = stop_actions(env, 1)
        actions[0, 0] = 6  # attack tag 0: the Medivac
        env.step(actions)
        state = env.get_state(0)
        assert (state["order"][0], state["order_target"][0]) == ((2, 9) if keep else (0, -1))
        assert (state["health"][9] < HP[MARINE]) == bool(keep)


def test_enemy_medivac_speed_applies_to_the_enemy_only():
    for speed in (None, 3.5):
        env = make(MMM, **({} if speed is None else {"enemy_medivac_speed": speed}))
        # Enemy Medivac flying to heal a far damaged friendly; ally Medivac moving east.
        place(env, [(0, MEDIVAC, (5.0, 20.0)), (1, MARINE, (3.0, 3.0)),
                    (8, MEDIVAC, (10.0, 10.0), {"order": 3, "order_target": 9}),
                    (9, MARINE, (25.0, 10.0), {"order": 0, "health": 20.0})])
        actions = stop_actions(env, 2)
        actions[0, 0] = 4
        env.step(actions)
        pos = env.get_state(0)["pos"]
        assert pos[8, 0] - 10.0 == pytest.approx((SPEED_GS[MEDIVAC] if speed is None else speed) / 2)
        assert pos[0, 0] - 5.0 == pytest.approx(SPEED_GS[MEDIVAC] / 2)


@pytest.mark.parametrize("option,value,shots", [(None, None, 1), ("damage_scale", 1.5, 1), ("cooldown_scale", 0.5, 2)])
def test_weapon_scales(option, value, shots):
    # A Marine fires on an enemy Marine in range for one step (8 loops, no jitter): one shot of 6
    # per 13.77 loops; half the period fits two shots in, 1.5 times the damage makes a shot 9.
    env = make(MMM, **({} if option is None else {option: value}))
    place(env, [(0, MARINE, (10.0, 10.0)), (8, MARINE, (14.0, 10.0), {"order": 0})])
    actions = stop_actions(env, 1)
    actions[0, 0] = 6
    env.step(actions)
    damage = 6 * (value if option == "damage_scale" else 1)
    assert env.get_state(0)["health"][8] == pytest.approx(HP[MARINE] - shots * damage)


# ---------------------------------------------------------------------------------- harness
def test_ks_distance_matches_hand_computed_cases():
    # F_a jumps by 1/4 at 1, 2, 3, 4; F_b by 1/5 at 3..7. At x = 4: F_a = 1, F_b = 2/5.
    assert cal.ks_distance([1, 2, 3, 4], [3, 4, 5, 6, 7]) == pytest.approx(0.6)
    assert cal.ks_distance([3, 4, 5, 6, 7], [4, 3, 2, 1]) == pytest.approx(0.6)
    # Ties: at x = 1, F_a = 2/3 and F_b = 1/3; at 2 both are 1.
    assert cal.ks_distance([1, 1, 2], [2, 1, 2]) == pytest.approx(1 / 3)
    # A survivor (inf) never enters the CDF: at x = 1, F_a = 1/2, F_b = 1.
    assert cal.ks_distance([1, np.inf], [1, 1]) == pytest.approx(0.5)
    assert cal.ks_distance([5, 6], [5, 6]) == 0.0 and cal.ks_distance([1], [2]) == 1.0
    assert cal.ks_distance([], []) == 0.0 and cal.ks_distance([], [1]) == 1.0


def test_identical_simulators_show_no_difference(tmp_path):
    a = cal.run_backend(cal.sim_backend(), SMALL)
    b = cal.run_backend(cal.sim_backend(num_threads=2), SMALL)
    assert len(a) == len(b) == 3 * 8 * 2
    assert {(e.policy, e.composition) for e in a} == {(p, c) for p in ("random", "focus_fire") for c in (0, 10, 30)}
    assert sorted(e.k for e in a if e.policy == "random" and e.composition == 10) == list(range(8))
    focus = [e for e in a if e.policy == "focus_fire"]
    assert any(e.outcome == "win" for e in focus) and any(np.isfinite(e.time_to_kill).any() for e in focus)
    team = {c: int(cpfast.make_env(SZ, composition=c).reset()["entity_present"][0, 8:].sum()) for c in (0, 10, 30)}
    for e in a:  # every enemy of the team is followed; a win kills them all
        assert len(e.time_to_kill) == team[e.composition]
        assert 1 <= e.length <= 150 and all(t <= e.length for t in e.time_to_kill if np.isfinite(t))
        if e.outcome == "win":  # in 3-8sz the last enemy dies on the final step
            assert np.isfinite(e.time_to_kill).all() and max(e.time_to_kill) == e.length
    comparisons = cal.compare(a, b)
    assert [c.policy for c in comparisons] == ["random", "focus_fire"]
    for c in comparisons:
        assert c.paired and c.win_diff == 0 and c.win_diff_se == 0
        assert c.ks_length == 0 and c.ks_ttk == 0 and c.mean_length_a == c.mean_length_b
        assert c.outcomes_a == c.outcomes_b
    assert cal.discrepancy(comparisons) == 0
    paths = cal.write_report(tmp_path, comparisons, a, b, "sim", "sim, 2 threads", SMALL)
    report = paths["report"].read_text()
    assert "+0.000 ± 0.000" in report and "**0.0000**" in report
    with paths["episodes"].open() as f:
        assert len(list(csv.DictReader(f))) == 2 * len(a)
    with paths["comparison"].open() as f:
        rows = list(csv.DictReader(f))
    assert [r["policy"] for r in rows] == ["random", "focus_fire"] and float(rows[1]["ks_length"]) == 0


@pytest.mark.parametrize("params", [{"damage_scale": 1.2}, {"enemy_leash": 0.0}])
def test_a_perturbed_parameter_shows_a_difference(tmp_path, params):
    reference = cal.run_backend(cal.sim_backend(), SMALL)
    perturbed = cal.run_backend(cal.sim_backend(**params), SMALL)
    comparisons = cal.compare(perturbed, reference)
    assert cal.discrepancy(comparisons) > 0.05
    assert max(c.ks_length for c in comparisons) > 0
    report = cal.write_report(tmp_path, comparisons, perturbed, reference, "perturbed", "sim", SMALL)["report"]
    assert "**0.0000**" not in report.read_text()


def test_fit_recovers_a_perturbed_parameter():
    reference = cal.sim_backend(damage_scale=1.2)
    result = cal.fit(reference, SMALL, {"damage_scale": (0.8, 1.0, 1.2, 1.4)})
    assert result.params == {"damage_scale": 1.2} and result.discrepancy == 0
    assert len(result.history) == 4 and all(d > 0 for p, d in result.history if p["damage_scale"] != 1.2)
    # The leash rarely matters in these episodes: 2 and 4 tie, and a tie keeps the current (default) value.
    result = cal.fit(cal.sim_backend(), SMALL, {"enemy_leash": (0.0, 2.0, 4.0)})
    assert result.params == {"enemy_leash": 2.0} and result.discrepancy == 0
    assert [(p["enemy_leash"], d == 0) for p, d in result.history] == [(2.0, True), (0.0, False), (4.0, True)]


def test_fit_recovers_two_parameters_by_coordinate_search():
    reference = cal.run_backend(cal.sim_backend(damage_scale=1.2, cooldown_scale=0.85), SMALL)
    result = cal.fit(reference, SMALL, {"cooldown_scale": (0.85, 1.0, 1.15), "damage_scale": (0.8, 1.0, 1.2)})
    assert result.params == {"cooldown_scale": 0.85, "damage_scale": 1.2} and result.discrepancy == 0


def test_cli_fit_writes_the_report(tmp_path, capsys):
    out = tmp_path / "calib"
    cal.main(["fit", "--reference", "sim:enemy_scan=7", "--params", "enemy_scan=4/5/6/7", "--compositions", "0,30",
              "--episodes", "6", "--policies", "focus_fire", "--out", str(out)])
    assert json.loads((out / "fit.json").read_text()) == {"params": {"enemy_scan": 7.0}, "discrepancy": 0.0}
    report = (out / "report.md").read_text()
    assert "| enemy_scan | 7 | 5 |" in report and "cpfast.make_env('sc2_3-8sz', enemy_scan=7)" in report
    assert "**0.0000**" in capsys.readouterr().out
    with (out / "fit.csv").open() as f:
        assert [float(r["enemy_scan"]) for r in csv.DictReader(f)] == [5.0, 4.0, 6.0, 7.0]
    with pytest.raises(ValueError, match="unknown option 'leash'"):
        cal.main(["compare", "--reference", "sim:leash=1", "--out", str(out)])
    with pytest.raises(ValueError, match="no default grid for"):
        cal.main(["fit", "--reference", "sim", "--params", "leash", "--out", str(out)])


def test_real_game_path_raises_the_adapter_error(monkeypatch, tmp_path):
    monkeypatch.delenv("SC2PATH", raising=False)
    with pytest.raises(sc2.SC2Unavailable, match="SC2PATH is not set"):
        cal.run_backend(cal.sc2_backend(), SMALL)
    with pytest.raises(sc2.SC2Unavailable, match="the real StarCraft II backend cannot run here"):
        cal.main(["compare", "--reference", "sc2", "--compositions", "0", "--episodes", "1", "--out", str(tmp_path)])
    assert not (tmp_path / "report.md").exists()


def test_outcome_names_come_from_the_env_outcomes():
    from cpfast.envs.episodes import OUTCOMES as EPISODE_OUTCOMES

    names = {rate.removesuffix("_rate") for rate in EPISODE_OUTCOMES.values()}
    assert set(cal.OUTCOMES) == names | {"timeout"} and len(cal.OUTCOMES) == len(names) + 1

"""StarCraft micro-sim rules (docs/environments.md, StarCraft §4-§8): analytic duels, shields,
healing, movement, availability, masks, entity features, reward and game end. Expected values
are computed here from the spec's unit data and formulas (sc2_helpers), not recorded outputs."""

import math

import numpy as np
import pytest

from sc2_helpers import (ENERGY_REGEN_PER_LOOP, FAR_CORNER, HEAL_PER_LOOP, HP, LOOPS_PER_STEP, MARAUDER, MARINE,
                         MEDIVAC, RADIUS, RANGE, SHIELD, SHIELD_DELAY_LOOPS, SHIELD_REGEN_PER_LOOP, SPEED_GS, STALKER,
                         ZEALOT, attack_trace, count_hits, make, period_loops, place, stop_actions)

SZ, MMM = "sc2_3-8sz", "sc2_3-8MMM"


OUTCOME_KEYS = ("battle_won", "battle_draw", "battle_lost", "timeout")


def outcome(info, i=0):
    """The outcome flags of env i's last step, e.g. {"battle_won": 1, ...}."""
    return {key: int(info[key][i]) for key in OUTCOME_KEYS}


def env_for(*types):
    return make(MMM if set(types) & {MARINE, MARAUDER, MEDIVAC} else SZ)


# ---------------------------------------------------------------------------------- duels
# (attacker, victim, hits stated in StarCraft §11 item 2); the test recomputes them from StarCraft §4.
DUELS = [
    (MARINE, MARINE, 8),
    (MARAUDER, MARAUDER, 7),
    (MARAUDER, MARINE, 5),  # no bonus against a Light unit: 10 per hit
    (ZEALOT, MARINE, 6),
    (STALKER, ZEALOT, 13),
    (STALKER, STALKER, 10),
    (ZEALOT, STALKER, 22),
    (MARINE, MEDIVAC, 30),
]


@pytest.mark.parametrize("attacker,victim,spec_hits", DUELS)
def test_duel_lasts_the_computed_number_of_steps(attacker, victim, spec_hits):
    """An enemy attacker (no jitter) placed just in range of a standing ally victim: the victim's
    shield and health after every step follow the spec's per-hit formula at one attack per
    ceil(period) loops, and it dies in the computed step."""
    trace = attack_trace(attacker, victim)
    assert count_hits(attacker, victim) == spec_hits

    env = env_for(attacker, victim)
    bystander = MARINE if env.spec.name == MMM else STALKER  # keeps the ally side in the game
    gap = RANGE[attacker] + RADIUS[attacker] + RADIUS[victim] - 0.01
    place(env, [(0, victim, (6.0, 6.0)), (1, bystander, FAR_CORNER), (8, attacker, (6.0 + gap, 6.0))])
    period = period_loops(attacker)
    kill_loop = (len(trace) - 1) * period  # first attack at loop 0
    kill_step = kill_loop // LOOPS_PER_STEP + 1
    for step in range(1, kill_step + 1):
        _, _, terminated, truncated, _ = env.step(stop_actions(env, 2))
        assert not terminated[0] and not truncated[0]
        state = env.get_state(0)
        attacks = (step * LOOPS_PER_STEP - 1) // period + 1
        if step < kill_step:
            assert state["alive"][0] == 1, f"died early, step {step}"
            expected_shield, expected_health = trace[attacks - 1]
            assert state["shield"][0] == pytest.approx(expected_shield, abs=1e-9)
            assert state["health"][0] == pytest.approx(expected_health, abs=1e-9)
            if expected_shield > 0:
                assert state["health"][0] == HP[victim]  # shields absorb before health
        else:
            assert state["alive"][0] == 0, f"alive after step {kill_step}"
    assert state["alive"][8] == 1


def test_cooldown_jitter_spreads_the_marine_duel_as_computed():
    """With the game's jitter each of the 7 intervals between a Marine's 8 shots lasts
    ceil(period + J) loops, J uniform in {-1, 0, 1, 2}: the kill lands between the all-(-1) and
    the all-(+2) extremes, with a mean of 7 x mean interval (checked over 96 seeds)."""
    n = 96
    env = make(MMM, num_envs=n, seed=4)
    gap = RANGE[MARINE] + 2 * RADIUS[MARINE] - 0.01
    for i in range(n):
        place(env, [(0, MARINE, (6.0, 6.0)), (1, MARINE, FAR_CORNER), (8, MARINE, (6.0 + gap, 6.0))], i=i, jitter=1)
    intervals = [math.ceil(0.8608 * 16 + j) for j in (-1, 0, 1, 2)]
    kill_step = np.zeros(n, dtype=int)
    for step in range(1, 20):
        env.step(np.where(env.observation["avail_actions"][..., 1] == 1, 1, 0))  # stop, the dead no-op
        for i in np.flatnonzero(kill_step == 0):
            if not env.get_state(int(i))["alive"][0]:
                kill_step[i] = step
    assert (kill_step > 0).all()
    lo, hi = 7 * min(intervals) // LOOPS_PER_STEP + 1, 7 * max(intervals) // LOOPS_PER_STEP + 1
    assert lo <= kill_step.min() and kill_step.max() <= hi and len(set(kill_step)) > 1
    mean_kill_loop = 7 * np.mean(intervals)  # the step boundary adds ~ +0.5 step on average
    assert abs(kill_step.mean() - (mean_kill_loop / LOOPS_PER_STEP + 0.5)) < 0.5


# ---------------------------------------------------------------------------------- shields
def test_shields_regenerate_only_after_the_delay():
    env = make(SZ)
    place(env, [(0, STALKER, (6.0, 6.0), {"shield": 30.0, "since_damage": 0}),
                (8, ZEALOT, FAR_CORNER, {"order": 0})])
    for step in range(1, 26):
        env.step(stop_actions(env, 1))
        loops = step * LOOPS_PER_STEP
        regen_ticks = max(0, loops - (SHIELD_DELAY_LOOPS - 1))
        expected = min(SHIELD[STALKER], 30.0 + regen_ticks * SHIELD_REGEN_PER_LOOP)
        assert env.get_state(0)["shield"][0] == pytest.approx(expected, abs=1e-9), step
    assert env.get_state(0)["shield"][0] > 30.0


def test_damage_restarts_the_shield_delay():
    env = make(SZ)
    gap = RANGE[STALKER] + RADIUS[STALKER] + RADIUS[ZEALOT] - 0.01
    place(env, [(0, ZEALOT, (6.0, 6.0), {"shield": 20.0, "since_damage": 150}),
                (1, STALKER, FAR_CORNER), (8, STALKER, (6.0 + gap, 6.0))])
    env.step(stop_actions(env, 2))
    state = env.get_state(0)
    assert state["shield"][0] == pytest.approx(20.0 - 13)  # hit at loop 0, no regeneration after it
    assert state["since_damage"][0] == LOOPS_PER_STEP


# ---------------------------------------------------------------------------------- healing
def test_medivac_heals_and_spends_energy():
    env = make(MMM)
    obs = place(env, [(0, MARINE, (6.0, 6.0), {"health": 20.0}), (1, MEDIVAC, (7.5, 6.0), {"energy": 50.0}),
                      (8, MARINE, FAR_CORNER, {"order": 0})])
    heal_action = 6 + 8  # heal the ally with tag 8 (slot 0)
    assert obs["avail_actions"][0, 1, heal_action]
    actions = stop_actions(env, 2)
    actions[0, 1] = heal_action
    env.step(actions)
    state = env.get_state(0)
    healed = LOOPS_PER_STEP * HEAL_PER_LOOP
    assert healed == 4.5
    assert state["health"][0] == pytest.approx(20.0 + healed)
    assert state["energy"][1] == pytest.approx(50.0 - healed / 3 + LOOPS_PER_STEP * ENERGY_REGEN_PER_LOOP)
    # Energy-limited: 0.1 energy buys 0.3 HP (plus what regeneration adds in later loops).
    place(env, [(0, MARINE, (6.0, 6.0), {"health": 20.0}), (1, MEDIVAC, (7.5, 6.0), {"energy": 0.1}),
                (8, MARINE, FAR_CORNER, {"order": 0})])
    env.step(actions)
    state = env.get_state(0)
    assert 20.3 < state["health"][0] < 20.3 + 3 * LOOPS_PER_STEP * ENERGY_REGEN_PER_LOOP + 1e-9
    # Never above full health.
    place(env, [(0, MARINE, (6.0, 6.0), {"health": HP[MARINE] - 1.0}), (1, MEDIVAC, (7.5, 6.0)),
                (8, MARINE, FAR_CORNER, {"order": 0})])
    env.step(actions)
    assert env.get_state(0)["health"][0] == HP[MARINE]


def test_medivac_flies_to_its_heal_target_first():
    env = make(MMM)
    # 5.9 apart: available (<= 6) but 0.775 beyond the heal reach 4 + radii = 5.125: the Medivac
    # flies until it is in reach (never past it), then heals for the remaining loops.
    place(env, [(0, MARINE, (6.0, 6.0), {"health": 20.0}), (1, MEDIVAC, (11.9, 6.0)),
                (8, MARINE, FAR_CORNER, {"order": 0})])
    actions = stop_actions(env, 2)
    actions[0, 1] = 14
    env.step(actions)
    state = env.get_state(0)
    reach = RANGE[MEDIVAC] + RADIUS[MEDIVAC] + RADIUS[MARINE]
    flying_loops = math.ceil((11.9 - 6.0 - reach) / (SPEED_GS[MEDIVAC] / 16))
    assert state["pos"][1, 0] == pytest.approx(6.0 + reach)
    assert state["health"][0] == pytest.approx(20.0 + (LOOPS_PER_STEP - flying_loops) * HEAL_PER_LOOP)


# ---------------------------------------------------------------------------------- movement
@pytest.mark.parametrize("unit", [MARINE, MARAUDER, MEDIVAC, STALKER, ZEALOT])
@pytest.mark.parametrize("action,direction", [(2, (0, 1)), (3, (0, -1)), (4, (1, 0)), (5, (-1, 0))])
def test_move_covers_speed_times_half_a_second(unit, action, direction):
    env = env_for(unit)
    other = MARINE if env.spec.name == MMM else STALKER
    place(env, [(0, unit, (16.0, 16.0)), (1, other, (3.0, 3.0)), (8, other, FAR_CORNER, {"order": 0})])
    actions = stop_actions(env, 2)
    actions[0, 0] = action
    env.step(actions)
    moved = env.get_state(0)["pos"][0] - 16.0
    per_step = SPEED_GS[unit] / 2
    assert per_step < 2.0  # a move never reaches its 2-unit point in one step
    np.testing.assert_allclose(moved, np.array(direction) * per_step, atol=1e-9)


def test_overlapping_units_are_pushed_apart_but_air_and_ground_are_not():
    env = make(MMM)
    place(env, [(0, MARINE, (10.0, 10.0)), (1, MARINE, (10.2, 10.0)), (2, MEDIVAC, (10.1, 10.0)),
                (8, MARINE, FAR_CORNER, {"order": 0})])
    env.step(stop_actions(env, 3))
    pos = env.get_state(0)["pos"]
    assert pos[1, 0] - pos[0, 0] > 0.2
    assert pos[1, 0] - pos[0, 0] <= 2 * RADIUS[MARINE] + 1e-9
    assert pos[2, 0] == 10.1  # the Medivac flies over them


def test_slightly_overlapping_medivacs_are_pushed_apart_every_tick():
    # Two Medivacs 1.4695 apart overlap by 0.0305 (radii 0.75). Each tick's separation closes
    # firmness (0.5) of the overlap, so after the step's 8 ticks 2^-8 of it is left. A float
    # pre-test at the air plane's height offset once missed exactly this pair.
    first, second = (9.13952062, 16.96342533), (9.41320681, 18.40717263)
    env = make(MMM)
    place(env, [(0, MEDIVAC, first), (1, MEDIVAC, second), (2, MARINE, (20.0, 5.0)),
                (8, MARINE, FAR_CORNER, {"order": 0})])
    overlap = 2 * RADIUS[MEDIVAC] - math.dist(first, second)
    assert 0.03 < overlap < 0.031
    env.step(stop_actions(env, 3))
    pos = env.get_state(0)["pos"]
    assert math.dist(pos[0], pos[1]) == pytest.approx(2 * RADIUS[MEDIVAC] - overlap / 2**8, abs=1e-12)


# ---------------------------------------------------------------------------------- availability
def test_attack_needs_a_living_enemy_within_six():
    env = make(MMM)
    obs = place(env, [(0, MARINE, (10.0, 10.0)), (1, MARINE, (10.0, 20.0)),
                      (8, MARINE, (16.0, 10.0), {"order": 0}),  # exactly 6: allowed
                      (9, MARINE, (10.0, 26.01), {"order": 0}),  # 6.01 from slot 1
                      (10, MARINE, (4.0, 10.0), {"order": 0, "alive": 0})])
    avail = obs["avail_actions"][0]
    assert avail[0, 6 + 0] and not avail[0, 6 + 2]  # tag 0 at 6.0; tag 2 dead
    assert not avail[1, 6 + 1]
    assert avail[0, 1] and not avail[0, 0]  # stop always; no-op only for the dead


def test_dead_and_padding_slots_only_no_op_and_moves_blocked_at_the_edge():
    env = make(MMM)
    obs = place(env, [(0, MARINE, (31.6, 16.0)), (1, MARINE, (16.0, 31.6)), (2, MARINE, (5.0, 5.0), {"alive": 0}),
                      (8, MARINE, FAR_CORNER, {"order": 0})])
    avail = obs["avail_actions"][0]
    expected_noop = np.zeros(env.spec.n_actions, np.uint8)
    expected_noop[0] = 1
    for slot in range(2, 8):
        np.testing.assert_array_equal(avail[slot], expected_noop)
    assert not avail[0, 4] and avail[0, 5] and avail[0, 2] and avail[0, 3]  # east blocked
    assert not avail[1, 2] and avail[1, 3]  # north blocked


def test_medivac_heal_excludes_air_itself_dead_and_far_units():
    env = make(MMM)
    obs = place(env, [(0, MARINE, (10.0, 10.0)), (1, MEDIVAC, (12.0, 10.0)), (2, MEDIVAC, (13.0, 10.0)),
                      (3, MARINE, (11.0, 11.0), {"alive": 0}), (4, MARAUDER, (18.0, 10.0)),
                      (5, MARAUDER, (18.01, 10.0)), (8, MARINE, (14.0, 10.0), {"order": 0})])
    heal = obs["avail_actions"][0, 1, 14:]
    assert heal.tolist() == [1, 0, 0, 0, 1, 0, 0, 0]  # tags 8 (slot 0) and 12 (slot 4, exactly 6)
    assert not obs["avail_actions"][0, 1, 6:14].any()  # a Medivac never attacks
    assert obs["avail_actions"][0, 0, 6]  # a Marine may attack the enemy (tag 0)


def test_attack_order_on_a_target_it_cannot_hit_leaves_the_unit_idle():
    env = make(MMM)
    obs = place(env, [(0, MARAUDER, (10.0, 10.0)), (8, MEDIVAC, (12.0, 10.0), {"order": 0}),
                      (9, MARINE, FAR_CORNER, {"order": 0})])
    assert obs["avail_actions"][0, 0, 6]  # REFIL offers it
    actions = stop_actions(env, 1)
    actions[0, 0] = 6
    env.step(actions)
    state = env.get_state(0)
    assert state["order"][0] == 0 and state["health"][8] == HP[MEDIVAC]


# ---------------------------------------------------------------------------------- masks, features
def test_sight_is_nine_and_dead_units_see_only_themselves():
    env = make(MMM)
    obs = place(env, [(0, MARINE, (10.0, 10.0)), (1, MARINE, (19.0, 10.0)), (2, MARINE, (10.0, 19.01)),
                      (3, MARINE, (11.0, 10.0), {"alive": 0}), (8, MARINE, (10.0, 1.0), {"order": 0})])
    m = obs["obs_mask"][0]
    assert m[0, 1] and m[1, 0] and m[0, 8]  # exactly 9
    assert not m[0, 2]
    assert not m[0, 3] and m[3].tolist() == [0, 0, 0, 1] + [0] * 12
    assert not m[4:].any() and not obs["full_mask"][0, 4:].any()
    np.testing.assert_array_equal(obs["full_mask"][0], np.outer(obs["agent_present"][0], obs["entity_present"][0]))
    assert obs["agent_present"][0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    assert obs["entity_present"][0, 8] and not obs["entity_present"][0, 9:].any()


def test_entity_rows_follow_the_refil_layout():
    env = make(SZ)
    obs = place(env, [(0, STALKER, (10.0, 12.0), {"health": 40.0, "shield": 20.0, "cooldown": 7.0}),
                      (1, ZEALOT, (14.0, 12.0), {"alive": 0}),
                      (8, ZEALOT, (16.0, 12.0), {"order": 0, "health": 50.0})])
    ents = obs["entities"][0]
    n_act = env.spec.n_actions
    col_type, col_health = 16 + n_act - 2, 16 + n_act - 2 + 2
    com = np.array([(10 + 14 + 16) / 3, 12.0])
    d = max(np.linalg.norm(np.array(p) - com) for p in ((10, 12), (14, 12), (16, 12)))
    row = ents[0]
    assert row[8] == 1 and row[:16].sum() == 1  # tag 8
    np.testing.assert_array_equal(row[16:col_type], obs["avail_actions"][0, 0, 2:])
    assert row[col_type:col_type + 2].tolist() == [0, 1]  # Stalker = column 1
    np.testing.assert_allclose(row[col_health:], [40 / 80, 20 / 80, 0, 7 / 35, (10 - 16) / 32, (12 - 16) / 32,
                                                  (10 - com[0]) / d, 0], rtol=1e-6, atol=1e-7)
    dead = ents[1]
    assert dead[9] == 1 and dead[col_type] == 1 and dead.sum() == 2  # tag and type only
    enemy = ents[8]
    assert enemy[0] == 1 and enemy[col_type] == 1  # tag 0, Zealot = column 0
    assert not enemy[16:col_type].any() and enemy[col_health + 2] == 0 and enemy[col_health + 3] == 0
    np.testing.assert_allclose(enemy[col_health:col_health + 2], [0.5, 1.0])
    assert obs["attributes"][0, :2].tolist() == [[0, 1], [1, 0]] and not obs["attributes"][0, 2:].any()
    assert not ents[2:8].any() and not ents[9:].any()


def test_mmm_rows_have_one_health_column_and_medivac_energy():
    env = make(MMM)
    obs = place(env, [(0, MEDIVAC, (10.0, 12.0), {"energy": 100.0}), (1, MARINE, (11.0, 12.0)),
                      (8, MARAUDER, (16.0, 12.0), {"order": 0})])
    assert env.spec.feat_dim == 46
    col_health = 16 + 20 + 3
    row = obs["entities"][0, 0]
    assert row[16 + 3:16 + 20].tolist() == obs["avail_actions"][0, 0, 5:].tolist()
    assert row[16 + 20:col_health].tolist() == [0, 0, 1]
    assert row[col_health] == 1.0 and row[col_health + 1] == 0.5 and row[col_health + 2] == 0


# ---------------------------------------------------------------------------------- reward, game end
def test_reward_counts_damage_kills_and_the_win_bonus():
    env = make(SZ)
    scale = 1550 / 20
    gap = 5.5  # in weapon range and within the availability range 6
    # Enemy Zealot at 1 HP and no shield dies to the first Stalker hit: its remaining 1 + 10 + win 200.
    place(env, [(0, STALKER, (10.0, 10.0)), (8, ZEALOT, (10.0 + gap, 10.0), {"health": 1.0, "shield": 0.0, "order": 0})])
    actions = stop_actions(env, 1)
    actions[0, 0] = 6
    _, reward, terminated, _, info = env.step(actions)
    assert terminated[0] and outcome(info) == {"battle_won": 1, "battle_draw": 0, "battle_lost": 0, "timeout": 0}
    assert reward[0] == pytest.approx((1 + 10 + 200) / scale, rel=1e-6)
    # Damage without a kill: 13 from the shield of a full-health Stalker, one hit per step.
    place(env, [(0, STALKER, (10.0, 10.0)), (8, STALKER, (10.0 + gap, 10.0), {"order": 0}),
                (9, STALKER, FAR_CORNER, {"order": 0})])
    _, reward, terminated, _, info = env.step(actions)
    assert not terminated[0] and reward[0] == pytest.approx(18 / scale, rel=1e-6)  # 13 + 5 vs Armored


def test_enemy_shield_regeneration_pays_through_abs():
    env = make(SZ)
    place(env, [(0, STALKER, (5.0, 5.0)), (8, STALKER, FAR_CORNER, {"order": 0, "shield": 10.0})])
    _, reward, *_ = env.step(stop_actions(env, 1))
    assert reward[0] == pytest.approx(LOOPS_PER_STEP * SHIELD_REGEN_PER_LOOP / (1550 / 20), rel=1e-6)


def test_ally_damage_is_not_rewarded_and_defeat_adds_nothing():
    env = make(SZ)
    gap = RANGE[STALKER] + 2 * RADIUS[STALKER] - 0.01
    place(env, [(0, STALKER, (10.0, 10.0), {"health": 1.0, "shield": 0.0}), (8, STALKER, (10.0 + gap, 10.0))])
    _, reward, terminated, _, info = env.step(stop_actions(env, 1))
    assert terminated[0] and reward[0] == 0
    assert outcome(info) == {"battle_won": 0, "battle_draw": 0, "battle_lost": 1, "timeout": 0}  # a defeat is a loss


def test_game_end_rules_for_wipes_and_medivac_only_sides():
    # Medivac-only ally side loses at once in 3-8MMM.
    env = make(MMM)
    place(env, [(0, MEDIVAC, (10.0, 10.0)), (8, MARINE, FAR_CORNER, {"order": 0})])
    _, reward, terminated, _, info = env.step(stop_actions(env, 1))
    assert terminated[0] and outcome(info) == {"battle_won": 0, "battle_draw": 0, "battle_lost": 1, "timeout": 0}
    # Medivac-only enemy side: a win with the bonus.
    place(env, [(0, MARINE, (10.0, 10.0)), (8, MEDIVAC, FAR_CORNER, {"order": 0})])
    _, reward, terminated, _, info = env.step(stop_actions(env, 1))
    assert terminated[0] and outcome(info) == {"battle_won": 1, "battle_draw": 0, "battle_lost": 0, "timeout": 0}
    assert reward[0] == pytest.approx(200 / (930 / 20))
    # Time-out after 150 steps: truncated with info timeout (a draw), never both flags.
    place(env, [(0, MARINE, (3.0, 3.0)), (8, MARINE, FAR_CORNER, {"order": 0})])
    env.set_state(0, {"episode_step": 148})
    _, _, terminated, truncated, info = env.step(stop_actions(env, 1))
    assert not truncated[0] and not any(outcome(info).values())
    _, _, terminated, truncated, info = env.step(stop_actions(env, 1))
    assert truncated[0] and not terminated[0] and info["episode_length"][0] == 150
    assert outcome(info) == {"battle_won": 0, "battle_draw": 1, "battle_lost": 0, "timeout": 1}


@pytest.mark.parametrize("name", [SZ, MMM])
def test_both_sides_empty_is_a_draw_in_sz_and_a_loss_in_mmm(name):
    """With instant damage the last units of both sides cannot die in one tick, so the state is
    set directly: both sides' units exist but are dead. The game ends without a win either way
    (sz: rule 3, a draw; MMM: rule 1 fires first, a loss), and nothing is rewarded."""
    env = make(name)
    kind = STALKER if name == SZ else MARINE
    place(env, [(0, kind, (10.0, 10.0), {"alive": 0}), (8, kind, (15.0, 10.0), {"alive": 0})])
    _, reward, terminated, truncated, info = env.step(np.zeros((1, 8), dtype=np.int64))
    assert terminated[0] and not truncated[0] and reward[0] == 0
    draw = name == SZ
    assert outcome(info) == {"battle_won": 0, "battle_draw": int(draw), "battle_lost": int(not draw), "timeout": 0}


@pytest.mark.parametrize("name", [SZ, MMM])
def test_a_battle_that_runs_out_of_time_is_a_draw_even_when_ahead(name):
    """A scripted episode of 150 steps: an ally kills one of two enemies, then stops out of reach
    of the other (idle, so it never comes). The episode ends by the time limit: a draw, not a win
    (and not a loss), although the allies took no damage and dealt all of it."""
    env = make(name)
    kind = STALKER if name == SZ else MARINE
    gap = 5.5  # in weapon range and within the availability range 6
    place(env, [(0, kind, (10.0, 10.0)), (8, kind, (10.0 + gap, 10.0), {"health": 1.0, "shield": 0.0, "order": 0}),
                (9, kind, FAR_CORNER, {"order": 0})])
    actions = stop_actions(env, 1)
    actions[0, 0] = 6  # attack enemy tag 0 (slot 8)
    total, ended_at = 0.0, None
    for t in range(1, 151):
        _, reward, terminated, truncated, info = env.step(actions)
        total += float(reward[0])
        actions[0, 0] = 1
        if terminated[0] or truncated[0]:
            ended_at = t
            break
        assert not any(outcome(info).values()), f"outcome flag before the end, step {t}"
    assert ended_at == 150 and truncated[0] and not terminated[0]
    assert total > 0 and info["episode_return"][0] == pytest.approx(total, rel=1e-6)
    assert outcome(info) == {"battle_won": 0, "battle_draw": 1, "battle_lost": 0, "timeout": 1}


def test_outcome_counters_reset_at_episode_start():
    """The flags belong to the step that ended an episode: after the same-step auto-reset the next
    step of the new episode shows none, and reset() clears them."""
    env = make(SZ, num_envs=2)
    gap = 5.5
    weak = {"health": 1.0, "shield": 0.0}
    for i in range(2):  # env 0 loses in one step, env 1 wins in one step
        place(env, [(0, STALKER, (10.0, 10.0), weak if i == 0 else {}),
                    (8, STALKER, (10.0 + gap, 10.0), {} if i == 0 else weak | {"order": 0})], i=i)
    actions = stop_actions(env, 1)
    actions[1, 0] = 6
    obs, _, terminated, _, info = env.step(actions)
    assert terminated.all() and outcome(info, 0)["battle_lost"] == 1 and outcome(info, 1)["battle_won"] == 1
    assert (info["episode_step"] == 0).all()  # auto-reset: a fresh composition (index 0 here)
    obs, _, terminated, truncated, info = env.step(stop_actions(env, 8) * obs["agent_present"])
    assert not (terminated | truncated).any()
    assert not any(outcome(info, 0).values()) and not any(outcome(info, 1).values())
    place(env, [(0, STALKER, (10.0, 10.0), {"health": 1.0, "shield": 0.0}), (8, STALKER, (10.0 + gap, 10.0))])
    env.step(stop_actions(env, 8) * env.observation["agent_present"])
    assert outcome(info, 0)["battle_lost"] == 1
    env.reset()
    assert not any(outcome(info, 0).values()) and not any(outcome(info, 1).values())
    assert (info["composition_index"] == 0).all()


def test_enemy_ai_acquires_the_nearest_armed_ally_and_prefers_its_attackers():
    env = make(MMM)
    # Enemy Marine at (10, 10); ally Medivac nearer than ally Marine: the Marine is picked (armed first).
    place(env, [(0, MEDIVAC, (12.0, 10.0)), (1, MARINE, (14.0, 10.0)), (2, MARINE, (10.0, 14.5)),
                (8, MARINE, (10.0, 10.0))])
    env.step(stop_actions(env, 3))
    assert env.get_state(0)["order_target"][8] == 1
    # An ally attacking it takes precedence over the nearer, passive one.
    place(env, [(0, MARINE, (12.0, 10.0)), (1, MARINE, (10.0, 14.0)), (8, MARINE, (10.0, 10.0))])
    actions = stop_actions(env, 2)
    actions[0, 1] = 6
    env.step(actions)
    assert env.get_state(0)["order_target"][8] == 1
    # Without a target in scan it walks to its attack point.
    place(env, [(0, MARINE, FAR_CORNER), (8, MARINE, (5.0, 5.0), {"order_point": (9.0, 5.0)})])
    env.step(stop_actions(env, 1))
    assert env.get_state(0)["pos"][8, 0] == pytest.approx(5.0 + SPEED_GS[MARINE] / 2)

"""StarCraft micro-sim on the common interface: scenario tables and enumeration, sampling,
placement and tags, invariants, determinism, bad input, the scripted policy, rendering."""

import itertools
from collections import Counter

import numpy as np
import pytest

import cpfast
from cpfast.envs.episodes import episode_outcomes
from cpfast.policies import RandomPolicy, ScriptedFocusFirePolicy
from sc2_helpers import HP, MARAUDER, MARINE, MEDIVAC, SHIELD, STALKER, ZEALOT, make

SZ, MMM = "sc2_3-8sz", "sc2_3-8MMM"
# docs/environments.md, StarCraft §2/§3: the scenarios' type order, REFIL ally sort ids and stock sort ids.
SPEC_TYPES = {SZ: [[STALKER, ZEALOT]], MMM: [[MARINE, MARAUDER], [MEDIVAC]]}
SIZES = {SZ: [(3, 8)], MMM: [(3, 6), (0, 2)]}
ALLY_ID = {MARINE: 1939, MARAUDER: 1938, MEDIVAC: 1940, STALKER: 1941, ZEALOT: 1942}
STOCK_ID = {MARINE: 48, MARAUDER: 51, MEDIVAC: 54, STALKER: 74, ZEALOT: 73}


def enumerate_compositions(name):
    """REFIL's enumeration written out with itertools: per sub-spec, sizes ascending,
    combinations_with_replacement in spec type order; Cartesian product of the sub-specs."""
    per_spec = []
    for types, (lo, hi) in zip(SPEC_TYPES[name], SIZES[name]):
        entries = []
        for k in range(lo, hi + 1):
            for combo in itertools.combinations_with_replacement(types, k):
                entries.append(Counter(combo))
        per_spec.append(entries)
    return [sum(parts, Counter()) for parts in itertools.product(*per_spec)]


def unit_counts(state, side):
    types = state["unit_type"][side * 8:(side + 1) * 8]
    return Counter(int(t) for t in types if t >= 0)


@pytest.mark.parametrize("name,n,per_size,dims", [
    (SZ, 39, [4, 5, 6, 7, 8, 9], (38, 2, 14)),
    (MMM, 66, [4, 9, 15, 18, 13, 7], (46, 3, 22)),
])
def test_scenario_tables(name, n, per_size, dims):
    expected = enumerate_compositions(name)
    assert len(expected) == n
    assert [sum(sum(c.values()) == k for c in expected) for k in range(3, 9)] == per_size
    spec = make(name).spec
    assert (spec.feat_dim, spec.attr_dim, spec.n_actions) == dims
    assert (spec.max_agents, spec.max_entities, spec.episode_limit) == (8, 16, 150)
    assert spec.agent_feat_dim == spec.other_feat_dim == spec.feat_dim
    # Every index spawns exactly REFIL's composition on both sides (the enemy mirrors it).
    for index, counts in enumerate(expected):
        state = make(name, composition=str(index)).get_state(0)
        assert state["composition_index"] == index
        assert unit_counts(state, 0) == counts and unit_counts(state, 1) == counts, index
    if name == SZ:
        assert expected[0] == Counter({STALKER: 3}) and expected[1] == Counter({STALKER: 2, ZEALOT: 1})
    else:
        assert all(c[MEDIVAC] == i % 3 for i, c in enumerate(expected))


@pytest.mark.parametrize("name,max_reward", [(SZ, 1550), (MMM, 930)])
def test_max_scenario_sets_the_reward_scale(name, max_reward):
    expected = enumerate_compositions(name)
    key = [(len(c), sum(c.values())) for c in expected]
    best = expected[key.index(max(key))]  # first with the most types, then the most units
    assert 10 * 8 + 200 + sum(n * (HP[t] + SHIELD[t]) for t, n in best.items()) == max_reward
    # The env's normaliser: a Medivac-only / wiped enemy side gives exactly 200 / (max_reward / 20).
    from sc2_helpers import FAR_CORNER, place, stop_actions
    env = make(name)
    kind = STALKER if name == SZ else MARINE
    place(env, [(0, kind, (5.0, 5.0)), (8, kind, FAR_CORNER, {"alive": 0})])
    _, reward, terminated, _, info = env.step(stop_actions(env, 1))
    assert info["battle_won"][0] == 1 and reward[0] == pytest.approx(200 / (max_reward / 20), rel=1e-6)


@pytest.mark.parametrize("name,n", [(SZ, 39), (MMM, 66)])
def test_compositions_are_sampled_uniformly(name, n):
    env = cpfast.make_env(name, num_envs=2000, seed=3, num_threads=2)
    counts = np.zeros(n)
    for _ in range(6):
        env.reset()
        for i in range(env.num_envs):
            counts[env.get_state(i)["composition_index"]] += 1
    expected = counts.sum() / n
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert counts.min() > 0
    assert chi2 < n - 1 + 6 * np.sqrt(2 * (n - 1))  # ~6 sigma of the chi-square with n-1 dof


@pytest.mark.parametrize("name", [SZ, MMM])
def test_placement_sorting_and_tags(name):
    env = cpfast.make_env(name, num_envs=200, seed=5, num_threads=1)
    obs = env.reset()
    for i in range(env.num_envs):
        s = env.get_state(i)
        for side, ids, tag_range in ((0, ALLY_ID, range(8, 16)), (1, STOCK_ID, range(0, 8))):
            units = [u for u in range(side * 8, side * 8 + 8) if s["unit_type"][u] >= 0]
            assert units == list(range(side * 8, side * 8 + len(units)))  # packed at the front
            keys = [(ids[int(s["unit_type"][u])], *s["pos"][u]) for u in units]
            assert keys == sorted(keys)
            tags = [int(s["tag"][u]) for u in units]
            assert len(set(tags)) == len(tags) and set(tags) <= set(tag_range)
            # the tag one-hot of each row
            assert (obs["entities"][i, units, :16].argmax(-1) == tags).all()
        ally = s["pos"][:8][s["unit_type"][:8] >= 0].mean(0)
        enemy = s["pos"][8:][s["unit_type"][8:] >= 0].mean(0)
        assert 10 < np.linalg.norm(ally - enemy) < 18  # centres 14 apart, +-1 jitter and formations
        assert (s["pos"] >= 0).all() and (s["pos"] <= 32).all()


def check_invariants(obs, spec):
    present, ent = obs["agent_present"].astype(bool), obs["entity_present"].astype(bool)
    np.testing.assert_array_equal(ent[:, :spec.max_agents], present)
    np.testing.assert_array_equal(obs["full_mask"], present[:, :, None] & ent[:, None, :])
    assert (obs["obs_mask"] <= obs["full_mask"]).all()
    idx = np.arange(spec.max_agents)
    assert (obs["obs_mask"][:, idx, idx] == present).all()
    avail = obs["avail_actions"]
    assert (avail.sum(-1) >= 1).all()
    absent = ~present
    assert (avail[absent][:, 0] == 1).all() and (avail[absent][:, 1:] == 0).all()
    assert (avail[present][:, 0] == (avail[present][:, 1] == 0)).all()  # no-op exactly for the dead
    assert not obs["entities"][~ent].any() and not obs["attributes"][absent].any()
    np.testing.assert_array_equal(obs["attributes"][present].sum(-1), 1)


def rollout(env, steps, seed=0):
    policy = RandomPolicy(env.spec, seed)
    obs = env.reset()
    trace = []
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        check_invariants(obs, env.spec)
        trace.append({k: v.copy() for k, v in obs.items()} | {
            "reward": reward.copy(), "terminated": terminated.copy(), "truncated": truncated.copy(),
            "battle_won": info["battle_won"].copy(), "final": info["final"]["entities"].copy()})
    return trace


@pytest.mark.parametrize("name", [SZ, MMM])
def test_starcraft_invariants_hold_through_episodes_that_end(name):
    trace = rollout(cpfast.make_env(name, num_envs=13, seed=7, num_threads=2), 200)  # checks every step
    assert any(x["terminated"].any() for x in trace)


def test_state_round_trip_and_evaluation_seeding():
    a = cpfast.make_env(SZ, num_envs=4, seed=1, num_threads=2)
    policy = RandomPolicy(a.spec, 0)
    obs = a.reset()
    for _ in range(30):
        obs = a.step(policy(obs))[0]
    b = cpfast.make_env(SZ, num_envs=4, seed=99, num_threads=1)
    b.reset()
    for i in range(4):
        b.set_state(i, a.get_state(i))
    for t in range(60):
        act = policy(a.observation)
        out_a, out_b = a.step(act), b.step(act)
        for key in out_a[0]:
            np.testing.assert_array_equal(out_a[0][key], out_b[0][key], err_msg=f"{key} at {t}")
        np.testing.assert_array_equal(out_a[1], out_b[1])
    # Evaluation episode k starts identically for any env count.
    e1 = cpfast.make_env(MMM, num_envs=3, seed=0, eval_seed=42, num_threads=1).reset()
    e2 = cpfast.make_env(MMM, num_envs=1, seed=5, eval_seed=42, num_threads=1).reset(episode_seeds=[2])
    np.testing.assert_array_equal(e1["entities"][2], e2["entities"][0])


def test_fixed_composition_for_evaluation():
    env = cpfast.make_env(MMM, num_envs=8, seed=0, composition=17, eval_seed=3, num_threads=1)
    obs = env.reset()
    assert env.spec.composition == "17"
    assert all(env.get_state(i)["composition_index"] == 17 for i in range(8))
    assert len({obs["entities"][i].tobytes() for i in range(8)}) == 8  # placements and tags still vary
    _, _, _, _, info = env.step(RandomPolicy(env.spec, 0)(obs))
    assert (info["composition_index"] == 17).all()


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="unknown composition '39' for sc2_3-8sz"):
        cpfast.make_env(SZ, composition="39")
    with pytest.raises(ValueError, match="unknown composition"):
        cpfast.make_env(MMM, composition="n5")
    with pytest.raises(ValueError, match="unknown environment"):
        cpfast.make_env("sc2_3-8zz")
    env = make(SZ, composition="train", num_envs=2)
    obs = env.observation
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros((2, 7), dtype=np.int64))
    with pytest.raises(ValueError, match="integer"):
        env.step(np.zeros((2, 8), dtype=np.float32))
    with pytest.raises(ValueError, match=r"outside \[0, 14\)"):
        env.step(np.full((2, 8), 14))
    acts = RandomPolicy(env.spec, 0)(obs)
    slot = int(np.flatnonzero(obs["agent_present"][1])[0])
    target = int(np.flatnonzero(obs["avail_actions"][1, slot, 6:] == 0)[0])  # at the start nobody is in range
    acts[1, slot] = 6 + target
    before = env.get_state(1)
    with pytest.raises(ValueError, match=f"env 1, slot {slot}: action {6 + target} is not available"):
        env.step(acts)
    for key, value in env.get_state(1).items():
        np.testing.assert_array_equal(value, before[key])  # nothing changed
    with pytest.raises(ValueError, match="unit_type"):
        env.set_state(0, {"unit_type": np.full(16, 7)})
    with pytest.raises(ValueError, match="pos"):
        env.set_state(0, {"pos": np.full((16, 2), 40.0)})


def play(make_policy, name, episodes_envs=48, steps=220):
    env = cpfast.make_env(name, num_envs=episodes_envs, seed=0, eval_seed=11, num_threads=2)
    policy = make_policy(env.spec)
    obs = env.reset()
    won = ended = 0
    for _ in range(steps):
        obs, _, terminated, truncated, info = env.step(policy(obs))
        done = (terminated | truncated).astype(bool)
        won += int(info["battle_won"][done].sum())
        ended += int(done.sum())
    return won / ended, ended


@pytest.mark.parametrize("name", [SZ, MMM])
def test_outcome_flags_partition_finished_episodes(name):
    """On the step that ends an episode exactly one of battle_won / battle_draw / battle_lost is
    1 (time-outs are draws), on every other step none; timeout mirrors truncated."""
    env = cpfast.make_env(name, num_envs=32, seed=2, num_threads=2)
    focus, random = ScriptedFocusFirePolicy(env.spec), RandomPolicy(env.spec, 0)
    obs = env.reset()
    counts = Counter()
    for t in range(400):
        acts = focus(obs) if t % 2 else random(obs)
        obs, _, terminated, truncated, info = env.step(acts)
        ended = (terminated | truncated).astype(bool)
        flags = np.stack([info[k] for k in ("battle_won", "battle_draw", "battle_lost")], axis=1)
        np.testing.assert_array_equal(flags.sum(axis=1), ended)
        np.testing.assert_array_equal(info["timeout"], truncated)
        assert (info["battle_draw"][truncated.astype(bool)] == 1).all()
        counts.update(np.array(["won", "draw", "lost"])[flags[ended].argmax(axis=1)].tolist())
    assert counts["won"] > 0 and counts["lost"] > 0, counts


def test_episode_outcomes_decode_the_flags_and_reject_ambiguous_ones():
    info = {"battle_won": np.array([1, 0, 0, 0]), "battle_draw": np.array([0, 1, 0, 0]),
            "battle_lost": np.array([0, 0, 1, 0])}
    assert episode_outcomes(info, [2, 0, 1]) == ["battle_lost", "battle_won", "battle_draw"]
    with pytest.raises(RuntimeError, match="outcome flags"):
        episode_outcomes(info, [0, 3])  # env 3 ended with no flag
    info["battle_lost"][0] = 1
    with pytest.raises(RuntimeError, match="outcome flags"):
        episode_outcomes(info, [0])  # two flags


@pytest.mark.parametrize("target", ["nearest", "lowest_health"])
@pytest.mark.parametrize("name", [SZ, MMM])
def test_scripted_focus_fire_beats_random_play(name, target):
    scripted, n_scripted = play(lambda spec: ScriptedFocusFirePolicy(spec, target), name)
    random, n_random = play(lambda spec: RandomPolicy(spec, 0), name)
    assert n_scripted > 40 and n_random > 40
    assert random < 0.05  # random play rarely wins
    assert scripted > random + 0.1


@pytest.mark.parametrize("name", [SZ, MMM])
def test_render_rgb(name):
    env = make(name, composition="train")
    image = env.render(0)
    assert image.shape == (384, 384, 3) and image.dtype == np.uint8
    pixels = image.reshape(-1, 3).astype(int)
    assert (pixels[:, 2] > pixels[:, 0] + 100).sum() > 50  # allies in blue
    assert (pixels[:, 0] > pixels[:, 2] + 100).sum() > 50  # enemies in red


def test_train_cli_runs_starcraft_end_to_end(tmp_path, capsys):
    """python -m cpfast.train --env sc2_3-8sz: the starcraft preset, a tiny budget, win rate reported."""
    from cpfast.config import preset
    from cpfast.rollout import epsilon
    from cpfast.train import main as train_main

    cfg = preset("starcraft")
    assert (cfg.env, cfg.total_steps, cfg.vi_lambda, cfg.entropy_lambda) == ("sc2_3-8sz", 12_000_000, 5e-5, 5e-6)
    assert cfg.truncation_is_terminal and cfg.segment_tail == "pad"
    assert epsilon(0, 10, cfg, 0) == 1.0 and epsilon(5, 10, cfg, 250_000) == pytest.approx(0.525)
    assert epsilon(9, 10, cfg, 10**7) == cfg.eps_end
    run_dir = tmp_path / "run"
    summary = train_main(["--env", "sc2_3-8MMM", "--steps", str(150 * 8), "--eval-episodes", "4",
                          "--run-dir", str(run_dir), "--no-progress", "--threads", "1", "--seed", "3"])
    out = capsys.readouterr().out
    result = summary["evaluation"]
    rates = [result["win_rate"], result["draw_rate"], result["loss_rate"]]
    assert all(0.0 <= r <= 1.0 for r in rates) and sum(rates) == pytest.approx(1.0)
    assert f"win rate {rates[0]:.1%} (draws {rates[1]:.1%}, losses {rates[2]:.1%})" in out
    import json
    config = json.loads((run_dir / "config.json").read_text())
    assert config["vi_lambda"] == 5e-5 and config["env"] == "sc2_3-8MMM" and config["eps_schedule"] == "linear"
    assert summary["env_steps"] == 150 * 8
    from cpfast import evaluate
    rows = evaluate.main([str(run_dir), "--episodes", "4", "--betas", "0", "--threads", "1", "--device", "cpu",
                          "--out", str(tmp_path / "eval")])
    assert [r["composition"] for r in rows] == ["train"]
    rates = [rows[0][k] for k in ("win_rate", "draw_rate", "loss_rate")]
    assert all(0.0 <= r <= 1.0 for r in rates) and sum(rates) == pytest.approx(1.0)
    (back,) = evaluate.read_csv(tmp_path / "eval" / "eval.csv")
    assert [back[k] for k in ("win_rate", "draw_rate", "loss_rate")] == pytest.approx(rates)
    table = (tmp_path / "eval" / "eval.md").read_text().splitlines()
    assert "win rate" in table[0] and "draw rate" in table[0] and "loss rate" in table[0]
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    assert all(f"{r:.1%}" in cells for r in rates)  # one seed: no spread over seeds to show


# Unused agent slots of a small team are never terminated (as in test_pettingzoo.py).
@pytest.mark.filterwarnings("ignore:No agents present but not all possible_agents")
def test_pettingzoo_parallel_api():
    from pettingzoo.test import parallel_api_test

    from cpfast.envs.pettingzoo_adapter import CpfastParallelEnv

    parallel_api_test(CpfastParallelEnv("sc2_3-8MMM"), num_cycles=200)


def test_trainer_learns_from_starcraft_episodes_that_end_early(tmp_path):
    """Tiny networks, two iterations: episodes end at different steps in different envs, segments
    are cut per env, updates run, and finished episodes reach the training return."""
    from cpfast.config import preset
    from cpfast.train import Trainer

    cfg = preset("starcraft").replace(n_envs=4, total_steps=2 * 150 * 4, hidden_dim=16, mixer_hidden_dim=16,
                                      mixer_embed_dim=8, batch_size=8, buffer_size=400, update_every=40,
                                      eval_episodes=2, num_threads=1, log_every=1, checkpoint_every=1)
    trainer = Trainer(cfg, tmp_path / "run")
    summary = trainer.run(progress=False)
    assert summary["env_steps"] == 2 * 150 * 4 and summary["updates"] > 0
    assert len(trainer.recent_returns) > 4  # random early play loses well before 150 steps
    assert np.isfinite(summary["train_return"])


@pytest.mark.parametrize("name", [SZ, MMM])
def test_declared_facts_describe_the_rows(name):
    """The columns, unit table and reward scale that Python reads from the C++ env (env_facts)."""
    from cpfast.envs import env_facts

    facts = env_facts(name)
    env = make(name, composition="train", num_envs=6)
    obs, spec = env.observation, env.spec
    ents, present = obs["entities"], obs["entity_present"].astype(bool)
    a = spec.max_agents
    col_type, col_health = int(facts["col_type"]), int(facts["col_health"])
    np.testing.assert_array_equal(ents[:, :a, col_type:col_type + spec.attr_dim], obs["attributes"])
    health = ents[..., col_health:col_health + int(facts["health_width"])]
    assert (health[present] > 0).all() and (health[present] <= 1).all()  # all alive and unhurt-or-less at the start
    np.testing.assert_array_equal(ents[..., int(facts["col_avail"]):col_type][:, :a] != 0,
                                  obs["avail_actions"][:, :, 2:] != 0)
    assert int(facts["col_pos"]) == spec.feat_dim - 4
    assert facts["max_reward"] == {SZ: 1550, MMM: 930}[name]
    assert len(env.spec.composition) and int(facts["n_compositions"]) == {SZ: 39, MMM: 66}[name]
    assert facts["ally_unit_id"][MARINE] == ALLY_ID[MARINE] and facts["enemy_unit_id"][STALKER] == STOCK_ID[STALKER]
    assert facts["max_health"][MARAUDER] == 125 and facts["max_shield"][ZEALOT] == 50


WORLD_KEYS = ("alive", "pos", "health", "shield", "energy", "cooldown")  # what a game shows of its units


@pytest.mark.parametrize("name", ["sc2_3-8sz", "sc2_3-8MMM"])
def test_an_external_step_is_scored_as_the_simulators_own(name):
    """step_external with the world a simulated step reached gives that step's reward, flags,
    info and observation exactly (steps that end an episode are resynchronised, as the world
    after them is the next episode's)."""
    sim, scored = (cpfast.make_env(name, num_envs=3, seed=4, num_threads=1) for _ in range(2))
    policy, obs, compared = RandomPolicy(sim.spec, 1), sim.reset(), 0
    scored.reset()
    for _ in range(120):
        obs, reward, terminated, truncated, info = sim.step(policy(obs))
        for i in range(3):
            if terminated[i] or truncated[i]:
                scored.set_state(i, sim.get_state(i))
                continue
            state = sim.get_state(i)
            out = scored.step_external(i, {k: state[k] for k in WORLD_KEYS})
            for ours, theirs in zip(out[1:4], (reward, terminated, truncated)):
                assert ours[i] == theirs[i]
            for key in ("battle_won", "battle_draw", "battle_lost", "timeout", "composition_index", "episode_step"):
                assert out[4][key][i] == info[key][i], key
            for key, value in obs.items():
                np.testing.assert_array_equal(out[0][key][i], value[i], err_msg=key)
            compared += 1
    assert compared > 200 and (sim.info["battle_won"] >= 0).all()


def test_external_steps_check_their_input_and_exist_only_where_scored():
    env = cpfast.make_env("sc2_3-8sz", num_envs=1, seed=0, num_threads=1)
    with pytest.raises(RuntimeError, match="reset"):
        env.step_external(0, {})
    env.reset()
    before = env.get_state(0)
    for world, message in (({"no_such_key": np.zeros(3)}, "unknown state key"),
                           ({"health": np.zeros(3)}, "shape"),
                           ({"pos": np.full((16, 2), np.nan)}, "finite")):
        with pytest.raises(ValueError, match=message):
            env.step_external(0, world)
    with pytest.raises(ValueError, match="env index"):
        env.step_external(1, {})
    after = env.get_state(0)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    rc = cpfast.make_env("resource_collection", num_envs=1, num_threads=1)
    rc.reset()
    with pytest.raises(NotImplementedError, match="resource_collection cannot score a step made outside it"):
        rc.step_external(0, {})

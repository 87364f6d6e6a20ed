"""Rescue Game rules in isolation (docs/environments.md, Rescue §12), each set up with set_state; expected
values come from the spec's formulas, and whole trajectories from the plain-Python model."""

import numpy as np
import pytest

import cpfast
from cpfast import _envs
from rescue_model import EPS, PyRng, RescueModel, model_reset, splitmix_words

A, NB = 6, 8
NOOP = np.zeros((1, A), dtype=np.int64)
FAR = [(9, 9), (9, 7), (9, 5), (9, 3), (7, 9), (5, 9), (3, 9), (1, 9)]  # spare building cells


def make_rescue(num_envs=1, seed=0, composition="train", num_threads=1, **kwargs):
    env = cpfast.make_env("rescue", num_envs=num_envs, seed=seed, composition=composition,
                          num_threads=num_threads, **kwargs)
    env.reset()
    return env


def quiet_world_words(draws: int) -> np.ndarray:
    """World RNG words whose next `draws` uniforms are all >= 0.01 (no ignition)."""
    for seed in range(1_000_000):
        if _envs.uniform_stream(seed, draws).min() >= 0.01:
            return np.array(splitmix_words(seed), dtype=np.uint64)
    raise AssertionError("no quiet seed found")


QUIET = quiet_world_words(8 * 45)


def scene(agents=(), buildings=(), spare="intact", world_rng=QUIET):
    """agents: (x, y, e, s[, acc]); buildings: dicts with cell, health, intensity (burning when
    > 0), destroyed, timer. Unlisted buildings stand at FAR cells, intact and not burning, or
    destroyed with timer 20 when spare == "destroyed"."""
    cell = np.zeros((A, 2), dtype=np.int32)
    acc, attr, alive = np.zeros(A), np.zeros((A, 2)), np.zeros(A, dtype=np.int8)
    for i, agent in enumerate(agents):
        cell[i] = agent[:2]
        attr[i] = agent[2:4]
        acc[i] = agent[4] if len(agent) > 4 else 0.0
        alive[i] = 1
    state = {
        "agent_cell": cell, "agent_acc": acc, "agent_alive": alive, "agent_attr": attr,
        "bld_cell": np.array(FAR, dtype=np.int32), "bld_health": np.ones(NB), "bld_intensity": np.zeros(NB),
        "bld_burning": np.zeros(NB, dtype=np.int8), "bld_destroyed": np.full(NB, spare == "destroyed", dtype=np.int8),
        "bld_timer": np.full(NB, 20 if spare == "destroyed" else 0, dtype=np.int32),
        "episode_step": 0, "dynamic_state": 0, "world_rng": world_rng,
    }
    for b, bld in enumerate(buildings):
        state["bld_cell"][b] = bld.get("cell", FAR[b])
        state["bld_health"][b] = bld.get("health", 1.0)
        state["bld_intensity"][b] = bld.get("intensity", 0.0)
        state["bld_burning"][b] = bld.get("intensity", 0.0) > 0
        state["bld_destroyed"][b] = bld.get("destroyed", 0)
        state["bld_timer"][b] = bld.get("timer", 0)
    return state


def env_with(state, composition="train"):
    env = make_rescue(composition=composition)
    env.set_state(0, state)
    return env


def actions_for(*per_agent):
    a = np.zeros((1, A), dtype=np.int64)
    a[0, : len(per_agent)] = per_agent
    return a


# ---------------------------------------------------------------- Python model and RNG
def test_python_rng_model_matches_the_cpp_stream():
    rng = PyRng.from_seed(12345)
    np.testing.assert_array_equal([rng.uniform() for _ in range(100)], _envs.uniform_stream(12345, 100))


@pytest.mark.parametrize("composition", ["train", "n5", "n6", "dynamic"])
def test_trajectories_match_the_spec_model_bit_for_bit(composition):
    """Reset (streams seeded as in docs/interface.md §5.3) and 250 random steps agree exactly with
    the Python model of the spec, state and reward, across an episode boundary."""
    env = cpfast.make_env("rescue", num_envs=3, seed=21, composition=composition, num_threads=2, eval_seed=77)
    env.reset()
    table = cpfast.envs.tables.rescue_zero_shot_table()
    rng = np.random.default_rng(5)
    counters = [4, 4, 4]  # team_size_counter before each env's next reset
    episodes = [0, 0, 0]  # j: env i's j-th episode is evaluation episode k = i + 3 j

    def fresh_model(i):
        k = i + 3 * episodes[i]
        state = model_reset(_envs.derive_seed(77, k, 2), _envs.derive_seed(77, k, 3), composition,
                            team_size_counter=counters[i], table_row=table[k % 1000])
        counters[i] = int(state["team_size_counter"])
        episodes[i] += 1
        return RescueModel(state, composition)

    models = [fresh_model(i) for i in range(3)]
    for i, model in enumerate(models):
        assert_states_equal(env.get_state(i), model.state(), f"reset env {i}")
    for t in range(250):
        actions = rng.integers(0, 5, (3, A))
        _, reward, _, truncated, info = env.step(actions)
        for i in range(3):
            r, n_ext, n_des = models[i].step(actions[i])
            assert reward[i] == np.float32(r) and info["n_extinguished"][i] == n_ext and info["n_destroyed"][i] == n_des
            assert truncated[i] == (models[i].step_count == 100)
            if models[i].step_count == 100:  # same-step auto-reset
                models[i] = fresh_model(i)
            assert_states_equal(env.get_state(i), models[i].state(), f"env {i} after step {t}")
        if composition == "train":
            assert [int(env.get_state(i)["team_size_counter"]) for i in range(3)] == counters


def assert_states_equal(actual, expected, where):
    for key, value in expected.items():
        np.testing.assert_array_equal(actual[key], value, err_msg=f"{key} ({where})")


# ---------------------------------------------------------------- ignition
def test_ignition_probability_over_many_draws():
    n_envs, steps = 1024, 6
    env = make_rescue(num_envs=n_envs, seed=3)
    for i in range(n_envs):
        state = scene(world_rng=env.get_state(i)["world_rng"])
        state["bld_health"][:] = 1.0
        env.set_state(i, state)
    draws = ignitions = 0
    prev = np.zeros((n_envs, NB), dtype=bool)
    for _ in range(steps):
        obs = env.step(np.zeros((n_envs, A), dtype=np.int64))[0]
        burning = obs["entities"][:, A:, 3] > 0
        draws += (~prev).sum()
        ignitions += (burning & ~prev).sum()
        np.testing.assert_array_equal(obs["entities"][:, A:, 4][burning & ~prev], np.float32(0.1 + 0.02))
        prev = burning
    p, sd = ignitions / draws, np.sqrt(0.01 * 0.99 / draws)
    assert abs(p - 0.01) < 5 * sd, (p, draws)


def test_ignition_draws_one_world_uniform_per_intact_non_burning_building():
    # Buildings 0 and 1 burn (no draw), 2 is destroyed (no draw), the 5 others draw in order.
    words = QUIET.copy()
    for seed in range(100_000):  # a stream whose 3rd draw ignites
        u = _envs.uniform_stream(seed, 5)
        if u[2] < 0.01 and (np.delete(u, 2) >= 0.01).all():
            words = np.array(splitmix_words(seed), dtype=np.uint64)
            break
    state = scene(buildings=[{"intensity": 0.3}, {"intensity": 0.3}, {"destroyed": 1, "timer": 5, "health": 0.0}],
                  world_rng=words)
    env = env_with(state)
    env.step(NOOP)
    after = env.get_state(0)
    assert after["bld_burning"].tolist() == [1, 1, 0, 0, 0, 1, 0, 0]  # the 3rd drawing building is b = 5
    rng = PyRng(words)
    for _ in range(5):
        rng.uniform()
    np.testing.assert_array_equal(after["world_rng"], rng.words())  # exactly five draws


# ---------------------------------------------------------------- fire growth and burn
def steps_to_destruction(health, intensity, ignite=False):
    """Counts steps by the spec's formulas (intensity grows before the burn, ε tolerance)."""
    steps = 0
    if ignite:
        intensity = 0.1
    while True:
        steps += 1
        intensity = min(1.0, intensity + 0.02)
        health = max(0.0, health - 0.05 * intensity)
        if health <= EPS:
            return steps


@pytest.mark.parametrize("health,intensity,spec_steps", [(1.0, 0.0, 40), (0.5, 0.0, 27), (1.0, 0.5, 26)])
def test_fire_destroys_a_building_in_the_spec_number_of_steps(health, intensity, spec_steps):
    """A fresh fire (intensity 0 here: it ignites in the first step) or a burning one."""
    assert steps_to_destruction(health, intensity, ignite=intensity == 0) == spec_steps
    words = QUIET
    if intensity == 0:  # a stream whose first draw ignites building 0, then 44 quiet steps
        for seed in range(1_000_000):
            u = _envs.uniform_stream(seed, 8 + 7 * 44)
            if u[0] < 0.01 and u[1:].min() >= 0.01:
                words = np.array(splitmix_words(seed), dtype=np.uint64)
                break
    env = env_with(scene(buildings=[{"cell": (4, 4), "health": health, "intensity": intensity}], world_rng=words))
    h, i = health, intensity
    for t in range(1, spec_steps + 1):
        obs, reward, _, _, info = env.step(NOOP)
        state = env.get_state(0)
        i = 0.1 if (t == 1 and intensity == 0) else i
        i = min(1.0, i + 0.02)
        h = max(0.0, h - 0.05 * i)
        if t < spec_steps:
            assert state["bld_health"][0] == h and state["bld_intensity"][0] == i and reward[0] == 0
            assert obs["entities"][0, A, 2] == np.float32(h) and obs["entities"][0, A, 4] == np.float32(i)
        else:
            assert state["bld_destroyed"][0] == 1 and state["bld_health"][0] == 0 and state["bld_timer"][0] == 20
            assert reward[0] == -2 and info["n_destroyed"][0] == 1 and info["n_extinguished"][0] == 0
            assert obs["entity_present"][0, A] == 0 and not obs["entities"][0, A].any()


def test_intensity_is_capped_at_one():
    env = env_with(scene(buildings=[{"health": 1.0, "intensity": 0.99}]))
    env.step(NOOP)
    s = env.get_state(0)
    assert s["bld_intensity"][0] == 1.0 and s["bld_health"][0] == 1.0 - 0.05 * 1.0


# ---------------------------------------------------------------- extinguishing
@pytest.mark.parametrize("powers,intensity,spec_step", [((0.1,), 0.5, 6), ((0.3,), 0.5, 2), ((0.1,), 1.0, 13),
                                                        ((0.1, 0.2), 0.5, 2)])
def test_extinguishing_with_stacked_powers(powers, intensity, spec_step):
    health = 0.9
    agents = [(3, 3, e, 0.5) for e in powers]
    env = env_with(scene(agents=agents, buildings=[{"cell": (3, 3), "health": health, "intensity": intensity}]))
    h, i = health, intensity
    for t in range(1, spec_step + 1):
        _, reward, _, _, info = env.step(NOOP)
        state = env.get_state(0)
        power = 0.0
        for e in powers:  # E = sum over the agents in slot order, then intensity -= E
            power += e
        i -= power
        if t < spec_step:
            assert i > EPS
            i = min(1.0, i + 0.02)
            h = max(0.0, h - 0.05 * i)
            assert state["bld_burning"][0] == 1 and state["bld_intensity"][0] == i and state["bld_health"][0] == h
            assert reward[0] == 0 and info["n_extinguished"][0] == 0
        else:
            assert i <= EPS
            assert state["bld_burning"][0] == 0 and state["bld_intensity"][0] == 0 and state["bld_health"][0] == h
            assert reward[0] == np.float32(1 + 0.5 * h) and info["n_extinguished"][0] == 1


def test_agents_elsewhere_and_absent_agents_do_not_extinguish():
    state = scene(agents=[(3, 4, 0.3, 1.0), (3, 3, 0.3, 1.0)], buildings=[{"cell": (3, 3), "intensity": 0.2}])
    state["agent_alive"][1] = 0  # absent, though its cell matches
    env = env_with(state)
    env.step(NOOP)
    assert env.get_state(0)["bld_intensity"][0] == 0.2 + 0.02


def test_extinguish_reward_uses_health_before_this_steps_burn_and_agent_moves_first():
    # The agent steps onto the fire in this step (movement precedes extinguishing).
    env = env_with(scene(agents=[(2, 3, 0.3, 1.0)], buildings=[{"cell": (3, 3), "health": 0.6, "intensity": 0.25}]))
    _, reward, _, _, info = env.step(actions_for(2))
    assert reward[0] == np.float32(1 + 0.5 * 0.6) and info["n_extinguished"][0] == 1


# ---------------------------------------------------------------- speed accumulator
@pytest.mark.parametrize("speed,pattern", [(1.0, [1]), (0.75, [0, 1, 1, 1]), (0.5, [0, 1]), (0.4, [0, 0, 1, 0, 1])])
def test_speed_patterns(speed, pattern):
    env = env_with(scene(agents=[(0, 5, 0.1, speed)], spare="destroyed"))
    moved, acc = [], 0.0
    for _ in range(2 * len(pattern)):
        x0 = env.get_state(0)["agent_cell"][0, 0]
        env.step(actions_for(2))
        state = env.get_state(0)
        acc += speed  # the spec's rule, step by step
        if acc >= 1 - EPS:
            acc -= 1.0
        acc = min(acc, 1.0)
        assert state["agent_acc"][0] == acc
        moved.append(int(state["agent_cell"][0, 0] - x0))
    assert moved == pattern * 2


def test_off_grid_moves_and_stays_consume_nothing_and_bank_at_most_one_move():
    env = env_with(scene(agents=[(0, 0, 0.1, 0.75), (9, 9, 0.1, 0.5)], spare="destroyed"))
    for t in range(3):  # left / up off the grid: accumulate, capped at 1
        env.step(actions_for(1, 4))
    s = env.get_state(0)
    assert s["agent_cell"][:2].tolist() == [[0, 0], [9, 9]]
    assert s["agent_acc"][0] == 1.0 and s["agent_acc"][1] == 1.0
    env.step(actions_for(0, 0))  # staying consumes nothing either
    s = env.get_state(0)
    assert s["agent_acc"][:2].tolist() == [1.0, 1.0]
    env.step(actions_for(4, 3))  # the banked move happens
    s = env.get_state(0)
    assert s["agent_cell"][:2].tolist() == [[0, 1], [9, 8]]
    assert s["agent_acc"][0] == 0.75 and s["agent_acc"][1] == 0.5


def test_agents_share_cells_and_stand_on_buildings():
    env = env_with(scene(agents=[(4, 4, 0.1, 1.0), (5, 4, 0.1, 1.0)], buildings=[{"cell": (5, 4)}]))
    env.step(actions_for(2, 0))
    assert env.get_state(0)["agent_cell"][:2].tolist() == [[5, 4], [5, 4]]


# ---------------------------------------------------------------- destruction and rebuild
def test_destruction_and_rebuild_after_twenty_steps_on_a_free_cell():
    # Building 0 is about to burn out; the stream's first rebuild draw hits a cell held by one
    # of the seven intact spare buildings, so it must be redrawn.
    words = None
    for seed in range(100_000):  # a rebuild stream whose first draw hits an occupied cell
        rng = PyRng.from_seed(seed)
        u = [rng.uniform() for _ in range(7 * 21)]  # the spares' ignition draws of steps 1..21
        c = rng.randint(100)
        if min(u) >= 0.01 and (c % 10, c // 10) in FAR[1:]:
            words = np.array(splitmix_words(seed), dtype=np.uint64)
            break
    assert words is not None
    env = env_with(scene(buildings=[{"cell": (4, 4), "health": 0.01, "intensity": 0.5}], world_rng=words))
    obs, reward, _, _, info = env.step(NOOP)
    assert reward[0] == -2 and info["n_destroyed"][0] == 1
    for t in range(1, 21):
        present = obs["entity_present"][0, A]
        assert present == 0, t
        assert not obs["obs_mask"][0, :, A].any() and not obs["full_mask"][0, :, A].any()
        obs, reward, _, _, info = env.step(NOOP)
        assert reward[0] == 0 and info["n_destroyed"][0] == 0
        if t < 20:
            assert env.get_state(0)["bld_timer"][0] == 20 - t
    state = env.get_state(0)
    assert obs["entity_present"][0, A] == 1 and state["bld_destroyed"][0] == 0
    assert state["bld_health"][0] == 1.0 and state["bld_burning"][0] == 0 and state["bld_intensity"][0] == 0
    assert tuple(state["bld_cell"][0]) not in FAR[1:]
    model = RescueModel(scene(buildings=[{"cell": (4, 4), "health": 0.01, "intensity": 0.5}], world_rng=words))
    for _ in range(21):
        model.step(np.zeros(A))
    assert model.bcell[0] == state["bld_cell"][0].tolist()


def test_rebuild_avoids_buildings_rebuilt_earlier_in_the_same_loop():
    words = None
    for seed in range(200_000):  # rebuild draws: building 0 takes cell c, building 1's first draw is c too
        rng = PyRng.from_seed(seed)
        c0 = rng.randint(100)
        c1 = rng.randint(100)
        if c0 == c1 and (c0 % 10, c0 // 10) not in FAR:
            words = np.array(splitmix_words(seed), dtype=np.uint64)
            break
    assert words is not None
    state = scene(buildings=[{"destroyed": 1, "timer": 1, "health": 0.0}, {"destroyed": 1, "timer": 1, "health": 0.0}],
                  spare="destroyed", world_rng=words)
    env = env_with(state)
    env.step(NOOP)
    s = env.get_state(0)
    assert s["bld_destroyed"][:2].tolist() == [0, 0]
    assert tuple(s["bld_cell"][0]) != tuple(s["bld_cell"][1])
    assert s["bld_cell"][0].tolist() == [c0 % 10, c0 // 10]


# ---------------------------------------------------------------- step order
def test_an_extinguished_building_may_reignite_in_the_same_step():
    words = None
    for seed in range(100_000):
        if _envs.uniform_stream(seed, 1)[0] < 0.01:
            words = np.array(splitmix_words(seed), dtype=np.uint64)
            break
    env = env_with(scene(agents=[(3, 3, 0.3, 1.0)], buildings=[{"cell": (3, 3), "health": 0.8, "intensity": 0.2}],
                         spare="destroyed", world_rng=words))
    _, reward, _, _, info = env.step(NOOP)
    s = env.get_state(0)
    assert reward[0] == np.float32(1 + 0.5 * 0.8) and info["n_extinguished"][0] == 1
    assert s["bld_burning"][0] == 1 and s["bld_intensity"][0] == 0.1 + 0.02  # re-ignited, then grew
    assert s["bld_health"][0] == 0.8 - 0.05 * (0.1 + 0.02)


def test_a_building_burning_out_is_destroyed_in_the_same_step_and_extinguishing_first_saves_it():
    burning_out = {"cell": (3, 3), "health": 0.05 * 0.52, "intensity": 0.5}
    env = env_with(scene(buildings=[burning_out], spare="destroyed"))
    _, reward, _, _, info = env.step(NOOP)
    assert env.get_state(0)["bld_destroyed"][0] == 1 and reward[0] == -2 and info["n_destroyed"][0] == 1
    env = env_with(scene(agents=[(3, 3, 0.3, 1.0), (3, 3, 0.3, 1.0)], buildings=[burning_out], spare="destroyed"))
    _, reward, _, _, info = env.step(NOOP)
    assert env.get_state(0)["bld_destroyed"][0] == 0 and reward[0] == np.float32(1 + 0.5 * 0.05 * 0.52)


def test_rewards_sum_over_events_of_one_step():
    bld = [{"cell": (1, 1), "health": 0.4, "intensity": 0.1}, {"cell": (2, 2), "health": 0.7, "intensity": 0.05},
           {"cell": (5, 5), "health": 0.001, "intensity": 0.9}]
    env = env_with(scene(agents=[(1, 1, 0.2, 1.0), (2, 2, 0.1, 1.0)], buildings=bld, spare="destroyed"))
    _, reward, _, _, info = env.step(NOOP)
    assert info["n_extinguished"][0] == 2 and info["n_destroyed"][0] == 1
    assert reward[0] == np.float32((1 + 0.5 * 0.4) + (1 + 0.5 * 0.7) - 2)


# ---------------------------------------------------------------- views
def test_view_is_chebyshev_radius_two():
    cells = [(7, 7), (8, 5), (3, 3), (5, 2), (6, 3), (2, 5)]  # distances 2, 3, 2, 3, 2, 3
    others = [(7, 5), (2, 2)]  # agents at Chebyshev 2 and 3
    state = scene(agents=[(5, 5, 0.1, 0.5)] + [(x, y, 0.1, 0.5) for x, y in others],
                  buildings=[{"cell": c} for c in cells] + [{"cell": (0, 9)}, {"cell": (5, 5), "destroyed": 1, "timer": 9}])
    env = env_with(state)
    obs = env.observation
    expected = [1, 1, 0, 0, 0, 0] + [int(max(abs(x - 5), abs(y - 5)) <= 2) for x, y in cells] + [0, 0]
    np.testing.assert_array_equal(obs["obs_mask"][0, 0], expected)
    assert obs["obs_mask"][0, 1, 0] == 1 and obs["obs_mask"][0, 2, 0] == 0  # symmetric
    np.testing.assert_array_equal(obs["full_mask"][0, 0], [1, 1, 1, 0, 0, 0] + [1] * 7 + [0])
    assert not obs["obs_mask"][0, 3:].any() and not obs["full_mask"][0, 3:].any()


def test_rows_and_attributes_follow_the_layout():
    state = scene(agents=[(2, 7, 0.2, 0.75, 0.5)], buildings=[{"cell": (4, 1), "health": 0.6, "intensity": 0.3}])
    env = env_with(state)
    obs = env.observation
    np.testing.assert_array_equal(obs["entities"][0, 0], np.float32([2 / 9, 7 / 9, 0.5, 0, 0]))
    np.testing.assert_array_equal(obs["entities"][0, A], np.float32([4 / 9, 1 / 9, 0.6, 1, 0.3]))
    np.testing.assert_array_equal(obs["entities"][0, A + 1], np.float32([FAR[1][0] / 9, FAR[1][1] / 9, 1, 0, 0]))
    np.testing.assert_array_equal(obs["attributes"][0, 0], np.float32([(0.2 - 0.05) / 0.3, (0.75 - 0.4) / 0.6]))
    assert not obs["attributes"][0, 1:].any() and not obs["entities"][0, 1:A].any()

"""A plain-Python model of the Rescue Game (docs/environments.md, Rescue) and of cpfast's
random streams (docs/interface.md §5), written from the documentation's text for the tests: it predicts RNG
draws and whole trajectories that the C++ environment must reproduce bit for bit."""

from __future__ import annotations

import numpy as np

MASK64 = (1 << 64) - 1
EPS = 1e-9
GRID = 10
N_AGENTS, N_BUILDINGS = 6, 8
POWER_GRID = (0.1, 0.2, 0.3)
SPEED_GRID = (0.5, 0.75, 1.0)
MOVES = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))


def _rotl(x: int, k: int) -> int:
    return ((x << k) | (x >> (64 - k))) & MASK64


def splitmix_words(seed: int, n: int = 4) -> list[int]:
    """The first n SplitMix64 outputs from state ``seed`` (how a stream is seeded)."""
    state, out = seed & MASK64, []
    for _ in range(n):
        state = (state + 0x9E3779B97F4A7C15) & MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        out.append(z ^ (z >> 31))
    return out


class PyRng:
    """xoshiro256** with cpfast's uniform() and randint()."""

    def __init__(self, words):
        self.s = [int(w) for w in words]

    @classmethod
    def from_seed(cls, seed: int) -> "PyRng":
        return cls(splitmix_words(seed))

    def words(self) -> np.ndarray:
        return np.array(self.s, dtype=np.uint64)

    def next(self) -> int:
        s = self.s
        result = (_rotl((s[1] * 5) & MASK64, 7) * 9) & MASK64
        t = (s[1] << 17) & MASK64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = _rotl(s[3], 45)
        return result

    def uniform(self) -> float:
        return (self.next() >> 11) * 2.0**-53

    def randint(self, n: int) -> int:
        return int(self.uniform() * n)


class RescueModel:
    """One Rescue world in plain Python floats, state keyed like ``get_state``."""

    def __init__(self, state: dict, composition: str = "train"):
        self.composition = composition
        self.cell = [list(map(int, c)) for c in state["agent_cell"]]
        self.acc = [float(v) for v in state["agent_acc"]]
        self.alive = [int(v) for v in state["agent_alive"]]
        self.attr = [list(map(float, a)) for a in state["agent_attr"]]
        self.bcell = [list(map(int, c)) for c in state["bld_cell"]]
        self.health = [float(v) for v in state["bld_health"]]
        self.intensity = [float(v) for v in state["bld_intensity"]]
        self.burning = [int(v) for v in state["bld_burning"]]
        self.destroyed = [int(v) for v in state["bld_destroyed"]]
        self.timer = [int(v) for v in state["bld_timer"]]
        self.step_count = int(state["episode_step"])
        self.events = int(state["dynamic_state"])
        self.world = PyRng(state["world_rng"])
        self.comp = PyRng(state.get("composition_rng", splitmix_words(1)))

    def state(self) -> dict:
        return {
            "agent_cell": np.array(self.cell, dtype=np.int32), "agent_acc": np.array(self.acc),
            "agent_alive": np.array(self.alive, dtype=np.int8), "agent_attr": np.array(self.attr),
            "bld_cell": np.array(self.bcell, dtype=np.int32), "bld_health": np.array(self.health),
            "bld_intensity": np.array(self.intensity), "bld_burning": np.array(self.burning, dtype=np.int8),
            "bld_destroyed": np.array(self.destroyed, dtype=np.int8), "bld_timer": np.array(self.timer, dtype=np.int32),
            "episode_step": np.array(self.step_count, dtype=np.int32),
            "dynamic_state": np.array(self.events, dtype=np.int32),
            "world_rng": self.world.words(), "composition_rng": self.comp.words(),
        }

    def intact_at(self, x: int, y: int) -> bool:
        return any(not self.destroyed[b] and self.bcell[b] == [x, y] for b in range(N_BUILDINGS))

    def step(self, actions) -> tuple[float, int, int]:
        """Returns (reward, n_extinguished, n_destroyed); does not reset at the episode's end."""
        for i in range(N_AGENTS):  # movement
            if not self.alive[i]:
                continue
            acc = self.acc[i] + self.attr[i][1]
            a = int(actions[i])
            if a != 0 and acc >= 1 - EPS:
                x, y = self.cell[i][0] + MOVES[a][0], self.cell[i][1] + MOVES[a][1]
                if 0 <= x < GRID and 0 <= y < GRID:
                    self.cell[i] = [x, y]
                    acc -= 1.0
            self.acc[i] = min(acc, 1.0)
        reward, n_ext, n_des = 0.0, 0, 0
        for b in range(N_BUILDINGS):  # extinguishing
            if not self.burning[b]:
                continue
            power = 0.0
            for i in range(N_AGENTS):
                if self.alive[i] and self.cell[i] == self.bcell[b]:
                    power += self.attr[i][0]
            if power > 0:
                self.intensity[b] -= power
                if self.intensity[b] <= EPS:
                    self.burning[b], self.intensity[b] = 0, 0.0
                    reward += 1.0 + 0.5 * self.health[b]
                    n_ext += 1
        for b in range(N_BUILDINGS):  # ignition
            if not self.destroyed[b] and not self.burning[b] and self.world.uniform() < 0.01:
                self.burning[b], self.intensity[b] = 1, 0.1
        for b in range(N_BUILDINGS):  # growth and burn
            if self.burning[b]:
                self.intensity[b] = min(1.0, self.intensity[b] + 0.02)
                self.health[b] = max(0.0, self.health[b] - 0.05 * self.intensity[b])
        for b in range(N_BUILDINGS):  # destruction and rebuild
            if self.destroyed[b]:
                self.timer[b] -= 1
                if self.timer[b] <= 0:
                    while True:
                        c = self.world.randint(GRID * GRID)
                        if not self.intact_at(c % GRID, c // GRID):
                            break
                    self.bcell[b] = [c % GRID, c // GRID]
                    self.destroyed[b], self.timer[b], self.health[b] = 0, 0, 1.0
                    self.burning[b], self.intensity[b] = 0, 0.0
            elif self.health[b] <= EPS:
                self.destroyed[b], self.burning[b], self.intensity[b], self.health[b], self.timer[b] = 1, 0, 0.0, 0.0, 20
                n_des += 1
        self.step_count += 1
        if self.composition == "dynamic" and self.step_count % 10 == 0 and self.step_count < 100:
            self._composition_event()
        return reward - 2.0 * n_des, n_ext, n_des

    def _composition_event(self) -> None:
        present = [i for i in range(N_AGENTS) if self.alive[i]]
        n = len(present)
        join = self.comp.uniform() < 0.5 if n == 5 else n < 5
        if join:
            slot = self.alive.index(0)
            e = 0.05 + 0.30 * self.comp.uniform()
            s = 0.4 + 0.6 * self.comp.uniform()
            c = self.comp.randint(GRID * GRID)
            self.attr[slot] = [e, s]
            self.cell[slot], self.acc[slot], self.alive[slot] = [c % GRID, c // GRID], 0.0, 1
        else:
            slot = present[self.comp.randint(n)]
            self.alive[slot], self.cell[slot], self.acc[slot] = 0, [0, 0], 0.0
        self.events += 1


def model_reset(world_seed: int, comp_seed: int, composition: str, team_size_counter: int = 4,
                table_row: np.ndarray | None = None) -> dict:
    """The state right after a reset with freshly seeded streams (docs/environments.md, Rescue §5)."""
    world, comp = PyRng.from_seed(world_seed), PyRng.from_seed(comp_seed)
    attr = np.zeros((N_AGENTS, 2))
    if composition == "train":
        team_size_counter = 2 if team_size_counter + 1 > 4 else team_size_counter + 1
        size = team_size_counter
        for i in range(N_AGENTS):
            idx = comp.randint(9)
            attr[i] = POWER_GRID[idx // 3], SPEED_GRID[idx % 3]
    else:
        size = {"n5": 5, "n6": 6, "dynamic": 4}[composition]
        attr[:] = table_row
    taken, bcell = set(), []
    for _ in range(N_BUILDINGS):
        while True:
            c = world.randint(100)
            if c not in taken:
                break
        taken.add(c)
        bcell.append([c % 10, c // 10])
    health, burning, intensity = [], [], []
    for _ in range(N_BUILDINGS):
        health.append(0.5 + 0.5 * world.uniform())
        burning.append(int(world.uniform() < 0.25))
        intensity.append(0.1 + 0.4 * world.uniform() if burning[-1] else 0.0)
    cell = np.zeros((N_AGENTS, 2), dtype=np.int32)
    for i in range(size):
        c = world.randint(100)
        cell[i] = c % 10, c // 10
    return {
        "agent_cell": cell, "agent_acc": np.zeros(N_AGENTS), "agent_alive": (np.arange(N_AGENTS) < size).astype(np.int8),
        "agent_attr": attr, "bld_cell": np.array(bcell, dtype=np.int32), "bld_health": np.array(health),
        "bld_intensity": np.array(intensity), "bld_burning": np.array(burning, dtype=np.int8),
        "bld_destroyed": np.zeros(N_BUILDINGS, dtype=np.int8), "bld_timer": np.zeros(N_BUILDINGS, dtype=np.int32),
        "team_size_counter": np.array(team_size_counter, dtype=np.int32), "episode_step": np.array(0, dtype=np.int32),
        "dynamic_state": np.array(0, dtype=np.int32), "world_rng": world.words(), "composition_rng": comp.words(),
    }

"""Shared helpers of the StarCraft micro-sim tests: unit data transcribed from
docs/environments.md, StarCraft §4, and a way to place hand-made battles with set_state."""

import math

import numpy as np

import cpfast

MARINE, MARAUDER, MEDIVAC, STALKER, ZEALOT = range(5)
NAMES = ("Marine", "Marauder", "Medivac", "Stalker", "Zealot")
# StarCraft §4 of docs/environments.md (per game second where it says gs; one agent step = 8 loops = 0.5 gs).
HP = (45, 125, 150, 80, 100)
SHIELD = (0, 0, 0, 80, 50)
ARMOUR = (0, 1, 1, 1, 1)
ARMORED = (False, True, True, True, False)
AIR = (False, False, True, False, False)
RADIUS = (0.375, 0.5625, 0.75, 0.625, 0.5)
SPEED_GS = (2.25, 2.25, 2.75, 2.9531, 2.25)
DAMAGE = (6, 10, 0, 13, 8)
BONUS_ARMORED = (0, 10, 0, 5, 0)
HITS = (1, 1, 0, 1, 2)
RANGE = (5, 6, 4, 6, 0.1)
PERIOD_GS = (0.8608, 1.5, None, 1.87, 1.2)
LOOPS_PER_STEP = 8
HEAL_PER_LOOP = 9 / 16
ENERGY_REGEN_PER_LOOP = 0.5625 / 16
SHIELD_REGEN_PER_LOOP = 2 / 16
SHIELD_DELAY_LOOPS = 160

N_UNITS = 16
FAR_CORNER = (29.0, 29.0)  # bystander position, out of every scan and sight range of the fight


def hit_damage(attacker, victim, shield, health):
    """One hit of StarCraft §4 (docs/environments.md): shields absorb first, the rest loses the HP armour (floor 0.5)."""
    damage = DAMAGE[attacker] + (BONUS_ARMORED[attacker] if ARMORED[victim] else 0)
    absorbed = min(shield, damage)
    rest = damage - absorbed
    if rest > 0:
        health -= max(rest - ARMOUR[victim], 0.5)
    return shield - absorbed, health


def attack_trace(attacker, victim):
    """(shield, health) after each attack (all its hits) until the victim dies."""
    shield, health = float(SHIELD[victim]), float(HP[victim])
    trace = []
    while health > 0:
        for _ in range(HITS[attacker]):
            shield, health = hit_damage(attacker, victim, shield, health)
            if health <= 0:
                break
        trace.append((shield, health))
    return trace


def count_hits(attacker, victim):
    """Single hits needed to kill a fresh victim."""
    shield, health, hits = float(SHIELD[victim]), float(HP[victim]), 0
    while health > 0:
        shield, health = hit_damage(attacker, victim, shield, health)
        hits += 1
    return hits


def period_loops(unit):
    """Loops between attacks without jitter: cooldown = period, one loop off per tick, fire at <= 0."""
    return math.ceil(PERIOD_GS[unit] * 16 - 1e-9)


def make(name, composition="0", num_envs=1, seed=0, num_threads=1, **kwargs):
    env = cpfast.make_env(name, num_envs=num_envs, seed=seed, composition=composition, num_threads=num_threads, **kwargs)
    env.reset()
    return env


def place(env, units, i=0, jitter=0):
    """Replaces env i's battle with ``units``: (slot, type, (x, y)) or (slot, type, (x, y), overrides)
    where overrides may set health, shield, energy, cooldown, since_damage, order, order_target,
    order_point. Allies take slots 0..7 (tags 8 + slot), enemies 8..15 (tags slot - 8). Enemies
    attack-move to their own position unless told otherwise."""
    state = {
        "unit_type": np.full(N_UNITS, -1), "alive": np.zeros(N_UNITS, dtype=np.int64), "tag": np.full(N_UNITS, -1),
        "pos": np.zeros((N_UNITS, 2)), "health": np.zeros(N_UNITS), "shield": np.zeros(N_UNITS),
        "energy": np.zeros(N_UNITS), "cooldown": np.zeros(N_UNITS), "since_damage": np.full(N_UNITS, 1000),
        "order": np.zeros(N_UNITS, dtype=np.int64), "order_target": np.full(N_UNITS, -1), "order_point": np.zeros((N_UNITS, 2)),
        "jitter": np.array(jitter), "episode_step": np.array(0),
    }
    for unit in units:
        slot, kind, pos = unit[:3]
        overrides = unit[3] if len(unit) > 3 else {}
        state["unit_type"][slot] = kind
        state["alive"][slot] = 1
        state["tag"][slot] = slot + 8 if slot < 8 else slot - 8
        state["pos"][slot] = pos
        state["health"][slot] = HP[kind]
        state["shield"][slot] = SHIELD[kind]
        state["energy"][slot] = 50 if kind == MEDIVAC else 0
        if slot >= 8:
            state["order"][slot] = 4  # attack-move
            state["order_point"][slot] = pos
        for key, value in overrides.items():
            state[key][slot] = value
    env.set_state(i, state)
    return env.observation


def stop_actions(env, n_allies):
    """Stop (1) for the first n_allies slots, no-op elsewhere."""
    actions = np.zeros((env.num_envs, 8), dtype=np.int64)
    actions[:, :n_allies] = 1
    return actions

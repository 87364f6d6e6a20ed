"""Reference policies: uniform random (any environment), a scripted Resource Collection
policy that acts only through actions, the Rescue greedy policy (docs/environments.md, Rescue §10) and the
StarCraft focus-fire policy. Each maps a batch of observations (the dict returned by
``VecEnv.reset``/``step``) to actions [B, N_A]; ``make_policy`` builds one by name for an env."""

from __future__ import annotations

import numpy as np

from .envs.registry import env_facts
from .spec import EnvSpec


class RandomPolicy:
    """Picks uniformly among each slot's available actions."""

    def __init__(self, spec: EnvSpec, seed: int = 0):
        self.spec = spec
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        avail = obs["avail_actions"]
        # argmax of uniform keys over the available actions is a uniform pick among them.
        keys = self.rng.random(avail.shape) * (avail != 0)
        return keys.argmax(axis=-1)


class ScriptedResourcePolicy:
    """Resource Collection heuristic through actions: the present agent nearest to a living
    invader chases it; every other agent carries what it holds home, or else heads for the
    nearest resource of the type it is most skilled at. Each agent picks the action whose
    predicted next position (damping, acceleration and speed cap of the engine) is closest
    to its target.

    It reads the full view (``entities`` and ``entity_present``), so it is an upper-bound
    style baseline, not a partially observing player. Agent rows show ``hold`` one step
    late, so an agent heads home one step after a pick-up.
    """

    _HOME, _FIRST_RESOURCE, _INVADER = 6, 7, 13
    _DIRECTIONS = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]], dtype=np.float64)
    _RESOURCE_TYPES = np.array([0, 1, 2, 0, 1, 2])  # skill index of resources 1..6

    def __init__(self, spec: EnvSpec):
        if spec.name != "resource_collection":
            raise ValueError(f"ScriptedResourcePolicy plays resource_collection, not {spec.name}")
        self.spec = spec

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        ents = obs["entities"].astype(np.float64)
        present = obs["agent_present"] != 0  # [B, A]
        n_agents = present.shape[1]
        vel, pos = ents[:, :n_agents, 0:2], ents[:, :n_agents, 2:4]
        holding = ents[:, :n_agents, 5:8].any(axis=-1)
        attr = obs["attributes"].astype(np.float64)
        speed = attr[..., 3]
        lm_pos = ents[:, self._HOME :, 0:2]  # home, resources 1..6, invader

        # Resources: nearest one of each agent's best type.
        res_pos = lm_pos[:, 1:7]  # [B, 6, 2]
        dist = np.linalg.norm(pos[:, :, None, :] - res_pos[:, None, :, :], axis=-1)  # [B, A, 6]
        best_type = attr[..., :3].argmax(axis=-1)  # [B, A]
        dist = np.where(self._RESOURCE_TYPES[None, None, :] == best_type[..., None], dist, np.inf)
        nearest = dist.argmin(axis=-1)
        target = res_pos[np.arange(len(res_pos))[:, None], nearest]  # [B, A, 2]
        target = np.where(holding[..., None], 0.0, target)  # home is at the origin

        # Invader: the nearest present agent aims at where it will be next step.
        invader_alive = obs["entity_present"][:, self._INVADER] != 0
        inv = lm_pos[:, -1]
        inv_norm = np.maximum(np.linalg.norm(inv, axis=-1, keepdims=True), 1e-9)
        inv_next = inv - 0.05 * inv / inv_norm
        inv_dist = np.where(present, np.linalg.norm(pos - inv[:, None], axis=-1), np.inf)
        chaser = inv_dist.argmin(axis=-1)
        batch = np.flatnonzero(invader_alive & present.any(axis=1))
        target[batch, chaser[batch]] = inv_next[batch]

        # One-step lookahead over the 5 actions with the engine's integration rule.
        accel = 5.0 * speed[..., None, None]
        v_next = 0.75 * vel[:, :, None, :] + 0.1 * accel * self._DIRECTIONS[None, None]
        norm = np.linalg.norm(v_next, axis=-1, keepdims=True)
        cap = speed[..., None, None]
        v_next = np.where(norm > cap, v_next / np.maximum(norm, 1e-12) * cap, v_next)
        p_next = pos[:, :, None, :] + 0.1 * v_next
        actions = np.linalg.norm(p_next - target[:, :, None, :], axis=-1).argmin(axis=-1)
        return np.where(present, actions, 0)


class GreedyRescuePolicy:
    """The Rescue greedy reference policy (docs/environments.md, Rescue §10), reading the full state from
    ``entities``: each present agent independently stays on a burning building's cell, or heads
    for the burning building minimising ``(manhattan + 1) / intensity`` (ties: nearer, then
    lower index), stepping along x when ``|dx| >= |dy|``, else along y; with no fire it stays.
    """

    def __init__(self, spec: EnvSpec):
        if spec.name != "rescue":
            raise ValueError(f"GreedyRescuePolicy plays rescue, not {spec.name}")
        self.spec = spec

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        n_agents = self.spec.max_agents
        ents = obs["entities"]
        cells = np.rint(ents[..., :2].astype(np.float64) * 9).astype(np.int64)  # [B, N_E, 2]
        agent, bld = cells[:, :n_agents], cells[:, n_agents:]
        burning = (obs["entity_present"][:, n_agents:] != 0) & (ents[:, n_agents:, 3] > 0)  # [B, N_B]
        intensity = ents[:, n_agents:, 4].astype(np.float64)
        delta = bld[:, None, :, :] - agent[:, :, None, :]  # [B, A, N_B, 2]
        dist = np.abs(delta).sum(axis=-1)
        score = np.where(burning[:, None, :], (dist + 1) / np.where(burning, intensity, 1.0)[:, None, :], np.inf)
        # Lexicographic minimum of (score, distance, index): stable sorts, last key first.
        order = np.argsort(dist, axis=-1, kind="stable")
        order = np.take_along_axis(order, np.argsort(np.take_along_axis(score, order, -1), axis=-1, kind="stable"), -1)
        target = order[..., 0]  # [B, A]
        d = np.take_along_axis(delta, target[..., None, None], axis=2)[:, :, 0]  # [B, A, 2]
        dx, dy = d[..., 0], d[..., 1]
        along_x = np.abs(dx) >= np.abs(dy)
        actions = np.where(along_x, np.where(dx > 0, 2, np.where(dx < 0, 1, 0)), np.where(dy > 0, 4, 3))
        has_fire = burning.any(axis=1)[:, None]
        on_fire = ((dist == 0) & burning[:, None, :]).any(axis=-1)  # rule 1: stay, even if a fire elsewhere scores better
        return np.where((obs["agent_present"] != 0) & has_fire & ~on_fire, actions, 0)


class PositionSettingExpert:
    """The authors' scripted expert for Resource Collection (docs/environments.md, RC §11), kept
    to validate the dynamics against their published returns: it is not physical. Before each
    step it moves agents directly (via ``set_state``) by up to s/20 per axis toward their
    targets — the agent nearest a living invader toward the invader, holders toward home, the
    rest toward the nearest resource of their best type — then every agent takes the no-op.
    """

    def __init__(self, env):
        if env.spec.name != "resource_collection":
            raise ValueError(f"PositionSettingExpert plays resource_collection, not {env.spec.name}")
        self.env = env

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        for i in range(self.env.num_envs):
            state = self.env.get_state(i)
            self.env.set_state(i, {"agent_pos": self._moved(state)})
        return np.zeros((self.env.num_envs, self.env.spec.max_agents), dtype=np.int64)

    @staticmethod
    def _moved(state: dict[str, np.ndarray]) -> np.ndarray:
        pos = state["agent_pos"].copy()
        attr, lm_pos = state["agent_attr"], state["lm_pos"]
        present = np.flatnonzero(state["agent_alive"])
        chaser = -1
        if state["lm_alive"][7] and len(present):
            chaser = present[np.linalg.norm(pos[present] - lm_pos[7], axis=1).argmin()]
        for i in present:
            if i == chaser:
                target = lm_pos[7]
            elif state["agent_hold"][i]:
                target = lm_pos[0]
            else:
                best = attr[i, :3].argmax()
                candidates = [j for j in range(1, 7) if (j - 1) % 3 == best]
                target = lm_pos[min(candidates, key=lambda j: np.linalg.norm(lm_pos[j] - pos[i]))]
            delta = target - pos[i]
            norm = np.linalg.norm(delta)
            if norm > 0:  # the reference divided by zero here
                pos[i] += delta / norm * np.minimum(attr[i, 3] / 20, np.abs(delta))
        return pos


class ScriptedFocusFirePolicy:
    """StarCraft micro heuristic through actions, reading the entity rows (full view): every unit
    that can attack picks, among the enemies it may attack, the one with the lowest health (+
    shield) fraction (``target="lowest_health"``, docs/environments.md, StarCraft §11 item 7) or the nearest one
    (``target="nearest"``), so the team focuses its fire; a unit with no enemy in attack range
    steps toward the nearest living enemy; a Medivac heals the available ally with the lowest
    health fraction, else follows the nearest living ally. The entity row layout is
    docs/environments.md, StarCraft §9: tag one-hot 16 | avail n_actions-2 | type | health(, shield) |
    energy, cooldown | position 4.
    """

    _MOVES = np.array([[0, 1], [0, -1], [1, 0], [-1, 0]], dtype=np.float64)  # actions 2..5

    def __init__(self, spec: EnvSpec, target: str = "lowest_health"):
        if not spec.name.startswith("sc2_"):
            raise ValueError(f"ScriptedFocusFirePolicy plays the StarCraft scenarios, not {spec.name}")
        if target not in ("lowest_health", "nearest"):
            raise ValueError(f"target must be 'lowest_health' or 'nearest', got {target!r}")
        self.spec, self.target = spec, target
        facts = env_facts(spec.name)
        self.col_health, self.health_cols = int(facts["col_health"]), int(facts["health_width"])  # 2 with shields

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        n_a, n_actions = self.spec.max_agents, self.spec.n_actions
        ents = obs["entities"].astype(np.float64)
        avail = obs["avail_actions"] != 0  # [B, A, n_actions]
        b = np.arange(ents.shape[0])[:, None]
        tags = ents[..., :16].argmax(axis=-1)  # [B, E]
        pos = ents[..., -4:-2] * 32.0  # map coordinates minus the centre
        health = ents[..., self.col_health:self.col_health + self.health_cols].mean(axis=-1)
        alive = (obs["entity_present"] != 0) & (health > 0)

        # Health and position of the unit behind each tag.
        rows = np.broadcast_to(b, tags.shape)[alive], tags[alive]
        tag_health = np.full((ents.shape[0], 16), np.inf)
        tag_health[rows] = health[alive]
        tag_pos = np.zeros((ents.shape[0], 16, 2))
        tag_pos[rows] = pos[alive]
        agent_pos = pos[:, :n_a]
        # Action 6 + k addresses tag k (k < 8: attack an enemy; k >= 8: heal an ally).
        if self.target == "nearest":
            key = np.linalg.norm(agent_pos[:, :, None] - tag_pos[:, None, :n_actions - 6], axis=-1)
            key = np.where(np.arange(n_actions - 6) < 8, key, tag_health[:, None, :n_actions - 6])
        else:
            key = np.broadcast_to(tag_health[:, None, :n_actions - 6], avail[..., 6:].shape)
        score = np.where(avail[..., 6:], key, np.inf)
        has_target = np.isfinite(score.min(axis=-1))
        actions = 6 + score.argmin(axis=-1)

        # No target: step toward the nearest living enemy (a Medivac: the nearest living ally).
        medivac = obs["attributes"][..., 2] > 0.5 if self.spec.attr_dim == 3 else np.zeros(avail.shape[:2], bool)
        d_enemy = np.linalg.norm(agent_pos[:, :, None] - pos[:, None, n_a:], axis=-1)
        d_enemy = np.where(alive[:, None, n_a:], d_enemy, np.inf)
        d_ally = np.linalg.norm(agent_pos[:, :, None] - agent_pos[:, None], axis=-1)
        d_ally = np.where(alive[:, None, :n_a] & ~np.eye(n_a, dtype=bool)[None], d_ally, np.inf)
        goal = np.where(medivac[..., None], agent_pos[b, d_ally.argmin(axis=-1)], pos[:, n_a:][b, d_enemy.argmin(axis=-1)])
        gain = ((goal - agent_pos)[:, :, None, :] * self._MOVES[None, None]).sum(-1)  # [B, A, 4]
        gain = np.where(avail[..., 2:6], gain, -np.inf)
        walk = np.where(gain.max(axis=-1) > 0.5, 2 + gain.argmax(axis=-1), 1)
        actions = np.where(has_target, actions, walk)
        return np.where(avail[..., 1], actions, 0).astype(np.int64)  # the dead take the no-op


# Each environment's scripted heuristic under its own name; every env also offers "random", and
# "scripted" names the env's own heuristic.
SCRIPTED_POLICIES = {
    "resource_collection": ("scripted", lambda spec, seed: ScriptedResourcePolicy(spec)),
    "rescue": ("greedy", lambda spec, seed: GreedyRescuePolicy(spec)),
    "sc2_3-8sz": ("focus_fire", lambda spec, seed: ScriptedFocusFirePolicy(spec)),
    "sc2_3-8MMM": ("focus_fire", lambda spec, seed: ScriptedFocusFirePolicy(spec)),
}


def policy_names(env_name: str) -> tuple[str, ...]:
    """The policy names ``make_policy`` accepts for ``env_name``."""
    if env_name not in SCRIPTED_POLICIES:
        return ("random",)
    own = SCRIPTED_POLICIES[env_name][0]
    return ("random", "scripted") + ((own,) if own != "scripted" else ())


def make_policy(name: str, spec: EnvSpec, seed: int = 0):
    """Policy ``name`` (see ``policy_names``) for the env of ``spec``; ValueError for a name the env lacks."""
    names = policy_names(spec.name)
    if name not in names:
        raise ValueError(f"policy {name!r} is not available for {spec.name}; choose one of: {', '.join(names)}")
    if name == "random":
        return RandomPolicy(spec, seed)
    return SCRIPTED_POLICIES[spec.name][1](spec, seed)

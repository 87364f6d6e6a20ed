"""The COPA learner (docs/method.md §6-§11): networks, target copies, losses and optimisers.

One ``update`` samples nothing itself: it takes a batch of segments [B, T + 1, ...] from
the replay buffer. Everything that does not depend on the recurrence (attention, coach
encoder, mixer hypernetworks, posterior) runs once over all slots of the batch.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from .config import Config
from .spec import EnvSpec
from .nn import Coach, Networks, VariationalPosterior, full_mask, set_kernels

LOG_2PI = math.log(2 * math.pi)


def prepare_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Stored (compact) segment fields -> float / long tensors the networks use."""
    present = batch["agent_present"].float()
    actions = batch["actions"].long()
    # prev_a: 0 at slot 0 (reference memory mode; recurrent mode stores it) and for absent slots.
    start_prev = batch["start_prev_actions"].long() if "start_prev_actions" in batch else torch.zeros_like(actions[:, 0])
    prev = torch.cat([start_prev.unsqueeze(1), actions[:, :-1]], dim=1) * batch["agent_present"].long()
    out = {
        "entities": batch["entities"].float(),
        "attributes": batch["attributes"].float(),
        "present": present,
        "entity_present": batch["entity_present"].float(),
        "player_mask": batch["player_mask"].float(),
        "avail": batch["avail_actions"].bool(),
        "actions": actions,
        "prev_actions": prev,
        "reward": batch["reward"].float(),
        "valid": batch["valid"].float(),
        "done": batch["done"].float(),
    }
    if "start_state" in batch:
        out["start_state"] = batch["start_state"].float()
    return out


def slot_range(slots: dict, start: int = 0, stop: int | None = None) -> dict:
    """Slots start..stop-1 of every per-slot field (``start_state`` is per segment)."""
    return {k: v if k == "start_state" else v[:, start:stop] for k, v in slots.items()}


def held_strategies(z: torch.Tensor, present: torch.Tensor, z_next: torch.Tensor | None = None) -> torch.Tensor:
    """The strategies [B, S, N_A, dz] the players hold over the slots of ``present`` [B, S, N_A]
    when the coach decided ``z`` [B, N_A, dz] at slot 0: a player holds z until it leaves, and a
    slot that joins later holds none (0) until the next decision, as acting restarts a joiner.
    With ``z_next``, the last slot is the next decision point and holds ``z_next``."""
    held = present if z_next is None else present[:, :-1]
    strategies = z.unsqueeze(1) * torch.cumprod(held, dim=1).unsqueeze(-1)
    return strategies if z_next is None else torch.cat([strategies, z_next.unsqueeze(1)], dim=1)


def greedy_max(q: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
    """max over available actions; 0 where nothing is available (padding slots)."""
    best = q.masked_fill(~avail, float("-inf")).max(dim=-1).values
    return torch.where(avail.any(dim=-1), best, torch.zeros_like(best))


def imagined_groups(batch: int, n_entities: int, generator: torch.Generator, device=None) -> torch.Tensor:
    """AI-QMIX's split (REFIL, docs/method.md §16): per segment rho ~ U(0, 1) and g_j ~ Bernoulli(rho)
    for every entity; returns the within-group matrix W [B, E, E] = [g_i == g_j] (across = 1 - W)."""
    rho = torch.rand(batch, 1, generator=generator, device=device)
    groups = torch.rand(batch, n_entities, generator=generator, device=device) < rho
    return (groups.unsqueeze(-1) == groups.unsqueeze(-2)).float()


class Learner:
    def __init__(self, spec: EnvSpec, cfg: Config, device: torch.device, seed: int):
        self.spec, self.cfg, self.device = spec, cfg, device
        torch.manual_seed(seed)
        self.online = Networks(spec, cfg).to(device)
        self.target = copy.deepcopy(self.online).requires_grad_(False)
        self.posterior = set_kernels(VariationalPosterior(spec, cfg.hidden_dim, cfg.n_heads, cfg.hidden_dim),
                                     cfg.kernels).to(device) if cfg.method == "copa" else None
        rms = dict(lr=cfg.lr, alpha=cfg.optim_alpha, eps=cfg.optim_eps)
        self.params_a = list(self.online.player.parameters()) + list(self.online.mixer.parameters())
        self.optim_a = torch.optim.RMSprop(self.params_a, **rms)
        self.params_b, self.optim_b = [], None
        if cfg.uses_coach:
            self.params_b = list(self.online.coach.parameters())
            if self.posterior is not None:
                self.params_b += list(self.posterior.parameters())
            self.optim_b = torch.optim.RMSprop(self.params_b, **rms)
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.n_updates = 0

    # ------------------------------------------------------------------ targets
    def sync_targets(self) -> None:
        self.target.load_state_dict(self.online.state_dict())

    def _start_state(self, s: dict) -> torch.Tensor:
        if "start_state" in s:
            return s["start_state"]
        return s["entities"].new_zeros(s["entities"].shape[0], self.spec.max_agents, self.cfg.hidden_dim)

    def _sample_strategy(self, coach: Coach, embedding: torch.Tensor):
        mean, logvar = coach.strategy(embedding)
        return Coach.sample(mean, logvar, self.generator), mean, logvar

    @torch.inference_mode()
    def td_targets(self, s: dict) -> torch.Tensor:
        """y_t = r_t + gamma (1 - d_t) Q^-_{t+1}, t = 0..T-1, from target samples (no double-Q)."""
        net, period = self.target, s["reward"].shape[1] - 1
        strategy, embedding = None, None
        if net.coach is not None:
            embedding = net.coach.encode(s["entities"], s["attributes"], s["present"], s["entity_present"])
            z = self._sample_strategy(net.coach, embedding[:, [0, period]])[0]  # z_0^-, z_T^-
            strategy = held_strategies(z[:, 0], s["present"], z_next=z[:, 1])
        q = self.replay_q(net, s, strategy, first=1)
        # Only Q^-_1..Q^-_T are targets: slot 0 feeds the memory and z_0^- but is never mixed.
        later = slot_range(s, 1)
        q_total = net.mix(later, greedy_max(q, later["avail"]), None if embedding is None else embedding[:, 1:])
        return s["reward"][:, :period] + self.cfg.gamma * (1 - s["done"][:, :period]) * q_total

    def replay_q(self, net: Networks, slots: dict, strategy: torch.Tensor | None, first: int = 0) -> torch.Tensor:
        """Q values [B, S - first, N_A, n_act] of ``net``'s players replaying ``slots`` (prepared,
        time-major) with the held ``strategy`` [B, S, N_A, dz] (``held_strategies``; None without
        a coach), from the segment's start memory; slots before ``first`` only feed the memory."""
        h = net.player.features(slots["entities"], slots["attributes"], slots["present"], slots["prev_actions"],
                                slots["player_mask"])
        return net.player.q_sequence(h, self._start_state(slots), strategy, slots["present"], first=first)

    # ------------------------------------------------------------------ losses
    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        s = prepare_batch(batch)
        period = s["reward"].shape[1] - 1
        y = self.td_targets(s)
        o = slot_range(s, 0, period)  # online pass: slots 0..T-1
        net = self.online
        strategy = embedding = None
        out = {}
        if net.coach is not None:
            embedding = net.coach.encode(o["entities"], o["attributes"], o["present"], o["entity_present"])
            z0, _, logvar0 = self._sample_strategy(net.coach, embedding[:, 0])
            strategy = held_strategies(z0, o["present"])
        start = self._start_state(s)
        q = self.replay_q(net, o, strategy)
        q_taken = q.gather(-1, o["actions"].unsqueeze(-1)).squeeze(-1)
        q_total = net.mix(o, q_taken, embedding)
        valid = o["valid"]
        n_valid = valid.sum().clamp(min=1)
        td = (valid * (q_total - y) ** 2).sum() / n_valid
        loss = td
        out["td_loss"], out["q_total"] = td, (valid * q_total).sum() / n_valid

        if self.cfg.method == "aiqmix":
            imagined = self._imagined_td(o, start, y)
            loss = (1 - self.cfg.imaginary_lambda) * td + self.cfg.imaginary_lambda * imagined
            out["imagined_loss"] = imagined
        if self.posterior is not None:
            vi, entropy = self._variational_terms(o, z0, logvar0)
            loss = loss + self.cfg.vi_lambda * vi - self.cfg.entropy_lambda * entropy
            out["vi_loss"], out["entropy"] = vi, entropy
        out["loss"] = loss
        return out

    def _variational_terms(self, o: dict, z0: torch.Tensor, logvar0: torch.Tensor):
        """L_VI and H of docs/method.md §6, averaged over agents present at slot 0."""
        mask = torch.cat([full_mask(o["present"][:, :1], o["entity_present"][:, :1]), o["player_mask"][:, 1:]], dim=1)
        present0 = o["present"][:, 0]
        counted = o["valid"].unsqueeze(-1) * present0.unsqueeze(1)  # [B, T, A]: the slots whose terms count
        mean, logvar = self.posterior(o["entities"], o["attributes"], o["present"], o["actions"], mask, counted)
        log_density = -0.5 * (LOG_2PI + logvar + (z0.unsqueeze(1) - mean) ** 2 * torch.exp(-logvar))
        per_agent = (log_density.clamp(-1000.0, 0.0) * o["valid"][:, :, None, None]).sum(dim=(1, 3))  # [B, A]
        count = present0.sum().clamp(min=1)
        vi = -(per_agent * present0).sum() / count
        entropy = (0.5 * (1 + LOG_2PI) + 0.5 * logvar0).clamp(0.0, 10.0).sum(-1)
        return vi, (entropy * present0).sum() / (count * z0.shape[-1])

    def _imagined_td(self, o: dict, start: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """AI-QMIX (REFIL grouping): one random split of all entities per segment."""
        batch, n_entities, n_agents = o["entities"].shape[0], self.spec.max_entities, self.spec.max_agents
        within = imagined_groups(batch, n_entities, self.generator, self.device)[:, None, :n_agents]  # [B, 1, A, E]
        twice = {k: torch.cat([v, v]) for k, v in o.items()}
        masks = torch.cat([o["player_mask"] * within, o["player_mask"] * (1 - within)])
        player = self.online.player
        h = player.features(twice["entities"], twice["attributes"], twice["present"], twice["prev_actions"], masks)
        q = player.q_sequence(h, torch.cat([start, start]), None, twice["present"])
        q_taken = q.gather(-1, twice["actions"].unsqueeze(-1)).squeeze(-1)
        q_within, q_across = q_taken[:batch], q_taken[batch:]
        q_imagined = self.online.mixer.imagined(o["entities"], o["attributes"], o["present"], o["entity_present"],
                                                q_within, q_across, within)
        valid = o["valid"]
        return (valid * (q_imagined - y) ** 2).sum() / valid.sum().clamp(min=1)

    # ------------------------------------------------------------------ update
    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One gradient step on both optimisers (separate clipping) and the target cadence."""
        out = self.losses(batch)
        self.optim_a.zero_grad(set_to_none=True)
        if self.optim_b is not None:
            self.optim_b.zero_grad(set_to_none=True)
        out["loss"].backward()
        out["grad_norm_a"] = nn.utils.clip_grad_norm_(self.params_a, self.cfg.grad_norm_clip)
        self.optim_a.step()
        if self.optim_b is not None:
            out["grad_norm_b"] = nn.utils.clip_grad_norm_(self.params_b, self.cfg.grad_norm_clip)
            self.optim_b.step()
        self.n_updates += 1
        if self.n_updates % self.cfg.update_target_every == 0:
            self.sync_targets()
        return {k: v.detach() for k, v in out.items()}

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict:
        return {
            "online": self.online.state_dict(), "target": self.target.state_dict(),
            "posterior": self.posterior.state_dict() if self.posterior is not None else None,
            "optim_a": self.optim_a.state_dict(),
            "optim_b": self.optim_b.state_dict() if self.optim_b is not None else None,
            "generator": self.generator.get_state(), "n_updates": self.n_updates,
        }

    def load_state_dict(self, state: dict) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        if self.posterior is not None:
            self.posterior.load_state_dict(state["posterior"])
        self.optim_a.load_state_dict(state["optim_a"])
        if self.optim_b is not None:
            self.optim_b.load_state_dict(state["optim_b"])
        self.generator.set_state(state["generator"])
        self.n_updates = state["n_updates"]

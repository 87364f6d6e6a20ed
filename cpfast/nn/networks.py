"""COPA's networks (docs/method.md §1-§6). Every network reads only common-interface tensors;
leading dimensions are free ([..., N_A, ...]) and are flattened for the attention."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..config import Config
from ..spec import EnvSpec
from .attention import EntityAttention
from .. import ops


# ---------------------------------------------------------------------------- inputs
def agent_rows(spec: EnvSpec, entities, attributes, present, actions=None) -> torch.Tensor:
    """``[entities[i, :D_a] p_i ; (attributes[i] - 0.5) p_i (; one_hot(action_i))]`` per agent slot.

    An absent slot's own entity row is zeroed, as the authors' learner does (docs/method.md,
    Decision 18(e)1): it is masked everywhere, yet it still enters the attention's softmax
    normaliser, so the env's leftover row would otherwise shift the outputs."""
    p = present.unsqueeze(-1)
    parts = [entities[..., : spec.max_agents, : spec.agent_feat_dim] * p, (attributes - 0.5) * p]
    if actions is not None:
        parts.append(F.one_hot(actions.long(), spec.n_actions).to(entities.dtype))
    return torch.cat(parts, dim=-1)


def other_rows(spec: EnvSpec, entities) -> torch.Tensor:
    return entities[..., spec.max_agents :, : spec.other_feat_dim]


def full_mask(agent_present, entity_present) -> torch.Tensor:
    return agent_present.unsqueeze(-1) * entity_present.unsqueeze(-2)


def present_rows(present: torch.Tensor) -> torch.Tensor | None:
    """Flat indices of present agent slots, for computing per-agent layers on those rows only;
    None on GPUs, where building the index would synchronise with the host."""
    return present.reshape(-1).nonzero().squeeze(1) if present.is_cpu else None


def on_rows(layer, x: torch.Tensor, rows: torch.Tensor | None, fill: torch.Tensor | None = None) -> torch.Tensor:
    """``layer`` applied to the last-dim rows of x listed in ``rows`` (all when None); the other
    rows get ``fill`` (a row) or zeros. Exact wherever the rows left out are never read."""
    flat = x.reshape(-1, x.shape[-1])
    if rows is None:
        values = layer(flat)
        return values.view(*x.shape[:-1], values.shape[-1])
    values = layer(flat.index_select(0, rows))
    out = values.new_zeros(flat.shape[0], values.shape[-1]) if fill is None else \
        fill.expand(flat.shape[0], values.shape[-1]).clone()
    return out.index_copy_(0, rows, values).view(*x.shape[:-1], values.shape[-1])


def set_kernels(module: nn.Module, kernels: str) -> nn.Module:
    """The one switch: every attention block and mixer inside ``module`` uses ``kernels``
    ("fused": the compiled kernels where they can run, "torch": pure PyTorch)."""
    ops.check_kernels(kernels)
    for m in module.modules():
        if isinstance(m, (EntityAttention, CopaMixer, BaselineMixer)):
            m.kernels = kernels
    return module


def mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))


class AttentiveEncoder(nn.Module):
    """Row encoders (agent rows and other rows separately) followed by entity attention."""

    def __init__(self, agent_in: int, other_in: int, hidden: int, heads: int):
        super().__init__()
        self.agent_in = nn.Linear(agent_in, hidden)
        self.other_in = nn.Linear(other_in, hidden)
        self.attention = EntityAttention(hidden, heads)

    def forward(self, agents, others, mask) -> torch.Tensor:
        # Both row encoders as one matmul: every row is padded to [agent features | other
        # features | 1 if agent | 1 if other] against the stacked weights and biases. Same
        # math as two Linears and a cat, but the backward needs no strided slices of the
        # concatenated gradient and one well-shaped weight-gradient matmul instead of two.
        n_agents, d_agent, d_other = agents.shape[-2], agents.shape[-1], others.shape[-1]
        rows = agents.new_zeros(*agents.shape[:-2], n_agents + others.shape[-2], d_agent + d_other + 2)
        rows[..., :n_agents, :d_agent] = agents
        rows[..., n_agents:, d_agent:d_agent + d_other] = others
        rows[..., :n_agents, -2] = 1.0
        rows[..., n_agents:, -1] = 1.0
        weight = torch.cat([self.agent_in.weight, self.other_in.weight,
                            self.agent_in.bias.unsqueeze(1), self.other_in.bias.unsqueeze(1)], dim=1)
        x = F.linear(rows, weight)
        lead = x.shape[:-2]
        out = self.attention(x.reshape(-1, *x.shape[-2:]), mask.reshape(-1, *mask.shape[-2:]))
        return out.view(*lead, *out.shape[-2:])


# ---------------------------------------------------------------------------- player
class Player(nn.Module):
    """Shared by all agents: attention feature, personal MLP, GRU memory, Q head (§3)."""

    def __init__(self, spec: EnvSpec, hidden: int, heads: int, strategy_dim: int, memory: str):
        super().__init__()
        if memory not in ("reference", "recurrent"):
            raise ValueError(f"player_memory must be 'reference' or 'recurrent', got {memory!r}")
        self.spec, self.hidden, self.memory = spec, hidden, memory
        self.encoder = AttentiveEncoder(spec.agent_feat_dim + spec.attr_dim + spec.n_actions, spec.other_feat_dim, hidden, heads)
        self.personal = mlp(hidden, hidden, hidden)
        self.gru = nn.GRUCell(hidden, hidden)
        self.q_head = mlp(hidden + strategy_dim, hidden, spec.n_actions)

    def features(self, entities, attributes, present, prev_actions, mask) -> torch.Tensor:
        """h_t [..., N_A, dh]: everything before the memory, batched over any leading dims."""
        agents = agent_rows(self.spec, entities, attributes, present, prev_actions)
        attended = self.encoder(agents, other_rows(self.spec, entities), mask)
        # An absent slot's mask row is empty, so its attention output is exactly 0 and its
        # feature the constant personal(0): computed once instead of per row.
        constant = self.personal(attended.new_zeros(self.hidden))
        return on_rows(self.personal, attended, present_rows(present), fill=constant)

    def q_values(self, h, state, strategy=None, present=None):
        """One memory step and the Q head: returns (q [..., N_A, n_act], next state).

        With ``present`` (reference memory), absent slots' Q values are left at 0: every
        consumer masks them."""
        rows = present_rows(present) if present is not None and self.memory == "reference" else None
        inputs = torch.cat([h, state], dim=-1)
        g = on_rows(lambda x: self.gru(x[:, : self.hidden], x[:, self.hidden :]), inputs, rows)
        head_in = g if strategy is None else torch.cat([g, strategy.expand(*g.shape[:-1], -1)], dim=-1)
        return on_rows(self.q_head, head_in, rows), (h if self.memory == "reference" else g)

    def q_sequence(self, h, start_state, strategy=None, present=None, first: int = 0):
        """Q values [B, S - first, N_A, n_act] of steps ``first``.. of a time-major sequence
        h [B, S, N_A, dh] from ``start_state`` [B, N_A, dh]; earlier steps only feed the memory.

        In ``reference`` memory the GRU's state input is the previous step's feature, so all
        steps run in one batched call; ``recurrent`` memory loops over time. With ``present``
        [B, S, N_A], a slot absent at the previous step starts from a zero memory, as acting
        restarts a joining player."""
        was_present = None if present is None else present[:, :-1].unsqueeze(-1)
        if self.memory == "reference":
            previous = h[:, :-1] if was_present is None else h[:, :-1] * was_present
            states = torch.cat([start_state.unsqueeze(1), previous], dim=1)[:, first:]
            later = lambda x: None if x is None else x[:, first:]  # noqa: E731
            return self.q_values(h[:, first:], states, later(strategy), later(present))[0]
        outputs, state = [], start_state
        for t in range(h.shape[1]):
            if t > 0 and was_present is not None:
                state = state * was_present[:, t - 1]
            q, state = self.q_values(h[:, t], state, None if strategy is None else strategy[:, t])
            outputs.append(q)
        return torch.stack(outputs[first:], dim=1)


# ---------------------------------------------------------------------------- coach
class Coach(nn.Module):
    """Global-view encoder and Gaussian strategy head (§4)."""

    LOGVAR_MIN, LOGVAR_MAX = -10.0, 0.0

    def __init__(self, spec: EnvSpec, hidden: int, heads: int, strategy_dim: int):
        super().__init__()
        self.spec = spec
        self.encoder = AttentiveEncoder(spec.agent_feat_dim + spec.attr_dim, spec.other_feat_dim, hidden, heads)
        self.mean = nn.Linear(hidden, strategy_dim)
        self.logvar = nn.Linear(hidden, strategy_dim)

    def encode(self, entities, attributes, present, entity_present) -> torch.Tensor:
        """The per-agent coach embedding h^c [..., N_A, dh] (full view)."""
        agents = agent_rows(self.spec, entities, attributes, present)
        return self.encoder(agents, other_rows(self.spec, entities), full_mask(present, entity_present))

    def strategy(self, embedding):
        """(mean, log-variance clamped to [-10, 0]) of the strategy distribution."""
        return self.mean(embedding), self.logvar(embedding).clamp(self.LOGVAR_MIN, self.LOGVAR_MAX)

    @staticmethod
    def sample(mean, logvar, generator=None):
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(0.5 * logvar) * noise


# ---------------------------------------------------------------------------- mixers
class CopaMixer(nn.Module):
    """Coach-conditioned hypernetworks over the coach embeddings (§5.1)."""

    def __init__(self, hidden: int, mixer_hidden: int, embed: int, kernels: str = "fused"):
        super().__init__()
        self.kernels = ops.check_kernels(kernels)
        self.w1, self.b1, self.w2, self.b2 = (mlp(hidden, mixer_hidden, embed) for _ in range(4))

    def forward(self, coach_embedding, agent_q, present) -> torch.Tensor:
        # Absent slots' hypernetwork outputs are multiplied out by p_i: left at 0.
        rows = present_rows(present)
        e = coach_embedding
        return ops.qmix_mix(on_rows(self.w1, e, rows), on_rows(self.b1, e, rows), on_rows(self.w2, e, rows),
                            on_rows(self.b2, e, rows), agent_q, present, kernels=self.kernels)


class HyperNet(nn.Module):
    """A self-contained full-view attention hypernetwork of the baseline mixer (§5.2)."""

    def __init__(self, spec: EnvSpec, hidden: int, heads: int, mixer_hidden: int, embed: int):
        super().__init__()
        self.encoder = AttentiveEncoder(spec.agent_feat_dim + spec.attr_dim, spec.other_feat_dim, hidden, heads)
        self.head = mlp(hidden, mixer_hidden, embed)

    def forward(self, agents, others, mask) -> torch.Tensor:
        return self.head(self.encoder(agents, others, mask))


class BaselineMixer(nn.Module):
    """QMIX-style mixer whose four hypernetworks attend over the full state (§5.2)."""

    def __init__(self, spec: EnvSpec, hidden: int, heads: int, mixer_hidden: int, embed: int, kernels: str = "fused"):
        super().__init__()
        self.spec, self.kernels = spec, ops.check_kernels(kernels)
        self.w1, self.b1, self.w2, self.b2 = (HyperNet(spec, hidden, heads, mixer_hidden, embed) for _ in range(4))

    def hyper_inputs(self, entities, attributes, present):
        return agent_rows(self.spec, entities, attributes, present), other_rows(self.spec, entities)

    def forward(self, entities, attributes, present, entity_present, agent_q) -> torch.Tensor:
        agents, others = self.hyper_inputs(entities, attributes, present)
        mask = full_mask(present, entity_present)
        return ops.qmix_mix(self.w1(agents, others, mask), self.b1(agents, others, mask),
                            self.w2(agents, others, mask), self.b2(agents, others, mask), agent_q, present,
                            kernels=self.kernels)

    def imagined(self, entities, attributes, present, entity_present, q_within, q_across, within):
        """AI-QMIX's Q^im (§16): W1 from within-group and across-group views, b1/w2/b2 full."""
        agents, others = self.hyper_inputs(entities, attributes, present)
        mask = full_mask(present, entity_present)
        n_agents = present.shape[-1]
        within_agents = within[..., :n_agents, :]
        w1_within = self.w1(agents, others, mask * within_agents)
        w1_across = self.w1(agents, others, mask * (1 - within_agents))
        return ops.qmix_mix(
            torch.stack([w1_within, w1_across]), self.b1(agents, others, mask), self.w2(agents, others, mask),
            self.b2(agents, others, mask), torch.stack([q_within, q_across]), present, pairs=True,
            kernels=self.kernels)


# ---------------------------------------------------------------------------- posterior
class VariationalPosterior(nn.Module):
    """q_xi(z | trajectory, state): attention over rows with the action taken (§6)."""

    def __init__(self, spec: EnvSpec, hidden: int, heads: int, strategy_dim: int):
        super().__init__()
        self.spec = spec
        self.encoder = AttentiveEncoder(spec.agent_feat_dim + spec.attr_dim + spec.n_actions, spec.other_feat_dim, hidden, heads)
        self.mean = mlp(hidden, hidden, strategy_dim)
        self.logvar = mlp(hidden, hidden, strategy_dim)

    def forward(self, entities, attributes, present, actions, mask, read=None):
        """(mean, log-variance) per agent slot; with ``read`` (a 0/1 mask over the slots), the
        slots outside it, whose terms the caller multiplies out, get mean 0 and log-variance 0
        without running the heads (on the CPU)."""
        agents = agent_rows(self.spec, entities, attributes, present, actions)
        e = self.encoder(agents, other_rows(self.spec, entities), mask)
        rows = None if read is None else present_rows(read)
        return on_rows(self.mean, e, rows), on_rows(self.logvar, e, rows).clamp(Coach.LOGVAR_MIN, Coach.LOGVAR_MAX)


# ---------------------------------------------------------------------------- one method's networks
class Networks(nn.Module):
    """Online (or target) networks of one method."""

    def __init__(self, spec: EnvSpec, cfg: Config):
        super().__init__()
        dh = cfg.hidden_dim
        strategy_dim = dh if cfg.uses_coach else 0
        self.player = Player(spec, dh, cfg.n_heads, strategy_dim, cfg.player_memory)
        if cfg.uses_coach:
            self.coach = Coach(spec, dh, cfg.n_heads, dh)
            self.mixer = CopaMixer(dh, cfg.mixer_hidden_dim, cfg.mixer_embed_dim)
        else:
            self.coach = None
            self.mixer = BaselineMixer(spec, dh, cfg.n_heads, cfg.mixer_hidden_dim, cfg.mixer_embed_dim)
        set_kernels(self, cfg.kernels)

    def mix(self, slots: dict, agent_q: torch.Tensor, coach_embedding=None) -> torch.Tensor:
        if self.coach is not None:
            return self.mixer(coach_embedding, agent_q, slots["present"])
        return self.mixer(slots["entities"], slots["attributes"], slots["present"], slots["entity_present"], agent_q)

"""Acting in batched environments (docs/method.md §3, §9, §12-§14): epsilon-greedy players,
coach strategies every T steps, and evaluation with adaptive communication."""

from __future__ import annotations

import math
import typing

import numpy as np
import torch

from .checkpoint import restore_fields
from .config import Config
from .envs import make_env
from .envs.episodes import OUTCOMES, episode_outcomes, reports_outcomes
from .nn import Networks, full_mask


def to_tensors(obs: dict[str, np.ndarray], device) -> dict[str, torch.Tensor]:
    """Copies an observation (runner views) into float tensors on ``device``."""
    tensor = lambda key: torch.as_tensor(np.array(obs[key]), device=device)  # noqa: E731 (np.array: copy the view)
    return {
        "entities": tensor("entities"),
        "attributes": tensor("attributes"),
        "present": tensor("agent_present").float(),
        "entity_present": tensor("entity_present").float(),
        "obs_mask": tensor("obs_mask").float(),
        "avail": tensor("avail_actions").bool(),
    }


def epsilon(iteration: int, n_iters: int, cfg: Config, transitions: int = 0) -> float:
    """``exp``: decay per episode-iteration, max(eps_end, exp(-it ln(eps_start/eps_end) / n_iters));
    ``linear`` (StarCraft, REFIL's schedule): eps_start to eps_end over the first
    ``eps_anneal_steps`` transitions, then eps_end."""
    if cfg.eps_schedule == "linear":
        if transitions >= cfg.eps_anneal_steps:
            return cfg.eps_end
        return cfg.eps_start + transitions / cfg.eps_anneal_steps * (cfg.eps_end - cfg.eps_start)
    return max(cfg.eps_end, cfg.eps_start * math.exp(-iteration * math.log(cfg.eps_start / cfg.eps_end) / n_iters))


class Step(typing.NamedTuple):
    """What one acting step did: the actions, the mask the players used, their Q values, and the
    memory and previous actions they acted from (what a recurrent learner replays)."""
    actions: torch.Tensor
    mask: torch.Tensor
    q: torch.Tensor
    state: torch.Tensor
    prev_actions: torch.Tensor


class Team:
    """The one acting loop of training and evaluation (docs/method.md §3, §9, §13) over a batch
    of envs: every T steps of an env's episode the coach decides, and each present player acts
    epsilon-greedily on its own view and its held strategy.

    ``beta=None`` (training) sends the decision's strategy to every present player; a number
    (evaluation) sends it only to a player that has none yet or whose strategy moved by more
    than ``beta`` (adaptive communication). ``sample_strategies`` sends samples of the coach's
    distribution (training) instead of its means (evaluation). ``comm_every=k`` (evaluation)
    lets the coach send only at every k-th decision time of an episode, apart from forced sends:
    with ``beta=-1`` a fixed schedule at about 1/k of the decision points, the control against
    which adaptive communication at the same frequency is judged. A join or a leave restarts that
    slot's memory, previous action and held strategy (the learner replays the same, see
    ``Learner.replay_q``); ``end_episodes`` restarts whole envs, which auto-reset."""

    def __init__(self, nets: Networks, cfg: Config, n_envs: int, device, generator: torch.Generator | None = None,
                 *, beta: float | None = 0.0, eps: float = 0.0, sample_strategies: bool = False, seed: int | None = None,
                 comm_every: int = 1):
        if isinstance(comm_every, bool) or not isinstance(comm_every, int) or comm_every < 1:
            raise ValueError(f"comm_every must be a positive integer, got {comm_every!r}")
        self.nets, self.cfg, self.device = nets, cfg, device
        self.beta, self.eps, self.sample, self.comm_every = beta, eps, sample_strategies, comm_every
        if generator is None:
            generator = torch.Generator(device=device).manual_seed(cfg.eval_seed if seed is None else seed)
        self.generator = generator
        spec = nets.player.spec
        self.n_agents = spec.max_agents
        self.state = torch.zeros(n_envs, self.n_agents, cfg.hidden_dim, device=device)
        self.prev_actions = torch.zeros(n_envs, self.n_agents, dtype=torch.long, device=device)
        self.strategy = torch.zeros(n_envs, self.n_agents, cfg.hidden_dim, device=device) if cfg.uses_coach else None
        self.received = torch.zeros(n_envs, self.n_agents, dtype=torch.bool, device=device)
        # The slots present at the last step, to see joins and leaves (none at an episode's start:
        # its first step then "joins" every present slot, which resets what is already reset).
        self.present = torch.zeros(n_envs, self.n_agents, dtype=torch.bool, device=device)
        self.t = np.zeros(n_envs, dtype=np.int64)  # each env's episode step
        self.sends = self.decisions = 0

    # ------------------------------------------------------------------ episode bookkeeping
    def reset(self, envs=None) -> None:
        """Envs ``envs`` (default all) start a new episode."""
        index = slice(None) if envs is None else torch.as_tensor(envs, device=self.device, dtype=torch.long)
        for field in (self.state, self.prev_actions, self.strategy, self.received, self.present):
            if field is not None:
                field[index] = 0
        self.t[slice(None) if envs is None else np.asarray(envs, dtype=np.int64)] = 0

    def end_episodes(self, ended: np.ndarray) -> None:
        """Envs ``ended`` ended their episode in the last step (and auto-reset)."""
        if len(ended):
            self.reset(ended)

    def _restart_slots(self, changed: torch.Tensor) -> None:
        self.state[changed] = 0
        self.prev_actions[changed] = 0
        if self.strategy is not None:
            self.strategy[changed] = 0
        self.received &= ~changed

    def state_dict(self) -> dict:
        """Mid-episode acting state (on the CPU)."""
        state = {"state": self.state.cpu(), "prev_actions": self.prev_actions.cpu(), "received": self.received.cpu(),
                 "present": self.present.cpu(), "t": torch.tensor(self.t)}
        if self.strategy is not None:
            state["strategy"] = self.strategy.cpu()
        return state

    def load_state_dict(self, state: dict) -> None:
        ours = {"state": self.state, "prev_actions": self.prev_actions, "received": self.received,
                "present": self.present, "t": self.t,
                **({"strategy": self.strategy} if self.strategy is not None else {})}
        restore_fields("acting", ours, state)

    # ------------------------------------------------------------------ acting
    def player_mask(self, obs: dict, t: np.ndarray) -> torch.Tensor:
        """The view players act on (docs/method.md §16); ``t`` is each env's episode step."""
        method = self.cfg.method
        if method == "aqmix_full":
            return full_mask(obs["present"], obs["entity_present"])
        if method == "aqmix_periodic":
            full_view = torch.as_tensor(t % self.cfg.period == 0, device=self.device)[:, None, None]
            return torch.where(full_view, full_mask(obs["present"], obs["entity_present"]), obs["obs_mask"])
        return obs["obs_mask"]

    def _decide(self, obs: dict, counting: np.ndarray | None) -> None:
        deciding = self.t % self.cfg.period == 0
        if counting is not None:
            deciding = deciding & counting
        if not deciding.any():
            return
        coach = self.nets.coach
        mean, logvar = coach.strategy(coach.encode(obs["entities"], obs["attributes"], obs["present"],
                                                   obs["entity_present"]))
        fresh = coach.sample(mean, logvar, self.generator) if self.sample else mean
        sending = obs["present"].bool() & torch.as_tensor(deciding, device=self.device)[:, None]
        send = sending
        if self.beta is not None:
            scheduled = torch.as_tensor((self.t // self.cfg.period) % self.comm_every == 0, device=self.device)
            moved = (fresh - self.strategy).norm(dim=-1) > self.beta
            send = sending & (~self.received | (scheduled[:, None] & moved))
        self.strategy[send] = fresh[send]
        self.received |= send
        self.sends += int(send.sum())
        self.decisions += int(sending.sum())

    @torch.no_grad()
    def act(self, obs: dict, counting: np.ndarray | None = None) -> Step:
        """One step of every env from ``obs`` (``to_tensors``); ``counting`` marks the envs whose
        decisions count towards the communication frequency (default all)."""
        present = obs["present"].bool()
        changed = present != self.present
        if changed.any():
            self._restart_slots(changed)
        self.present = present
        if self.strategy is not None:
            self._decide(obs, counting)
        mask = self.player_mask(obs, self.t)
        state, prev_actions = self.state, self.prev_actions
        player = self.nets.player
        h = player.features(obs["entities"], obs["attributes"], obs["present"], prev_actions, mask)
        q, self.state = player.q_values(h, state, self.strategy, obs["present"])
        avail = obs["avail"]
        greedy = q.masked_fill(~avail, float("-inf")).argmax(dim=-1)
        if self.eps > 0:
            keys = torch.rand(avail.shape, generator=self.generator, device=self.device) * avail
            explore = torch.rand(greedy.shape, generator=self.generator, device=self.device) < self.eps
            greedy = torch.where(explore, keys.argmax(dim=-1), greedy)
        actions = greedy * obs["present"].long()
        self.prev_actions = actions
        self.t += 1
        return Step(actions, mask, q, state, prev_actions)

    def __call__(self, obs_np: dict, counting: np.ndarray | None = None) -> np.ndarray:
        """The team as a policy ``obs -> actions`` (numpy in, numpy out)."""
        return self.act(to_tensors(obs_np, self.device), counting).actions.cpu().numpy()

    @property
    def comm_frequency(self) -> float:
        return self.sends / self.decisions if self.decisions else float("nan")


@torch.no_grad()
def evaluate(nets: Networks, cfg: Config, composition: str, beta: float, episodes: int, device,
             n_envs: int | None = None, eps: float = 0.0, sample_strategies: bool = False,
             comm_every: int = 1) -> dict[str, float]:
    """Greedy players and mean strategies gated by the adaptive rule with threshold ``beta``
    (``Team``). Episode k uses evaluation seed ``cfg.eval_seed`` (the same starting
    states for every method and trained seed). Returns the mean team return, its standard
    error, the communication frequency (sends / decision points) and the mean return per team
    size at the episode's start (``return_by_team_size``), plus ``win_rate``,
    ``draw_rate`` and ``loss_rate`` for envs that report episode outcomes (StarCraft: a time-out
    is a draw, see ``OUTCOMES``). ``eps`` and ``sample_strategies`` act as training does instead
    (epsilon-greedy players, sampled strategies), to tell the two behaviours apart; ``comm_every``
    sends only at every k-th decision time (``Team``)."""
    n_envs = n_envs or min(episodes, 50)
    env = make_env(cfg.env, num_envs=n_envs, seed=0, composition=composition, eval_seed=cfg.eval_seed,
                   num_threads=cfg.num_threads or None)
    team = Team(nets, cfg, n_envs, device, beta=beta, eps=eps, sample_strategies=sample_strategies,
                comm_every=comm_every)
    returns: dict[int, float] = {}
    outcomes: dict[int, str] = {}  # episode -> its OUTCOMES flag, for envs that report them (StarCraft)
    episode_of_env = np.arange(n_envs)  # k = i + j * n_envs
    obs_np = env.reset()
    start_size = obs_np["agent_present"].sum(axis=1)
    sizes: dict[int, int] = {}  # episode -> present agents at its start
    while len(returns) < episodes:
        # Envs already past their last requested episode keep stepping (lockstep batch), but
        # their decisions must not count towards the frequency of the evaluated episodes.
        actions = team(obs_np, counting=episode_of_env < episodes)
        obs_np, _, terminated, truncated, info = env.step(actions)
        ended = np.flatnonzero(terminated | truncated)
        for e in ended:
            if episode_of_env[e] < episodes:
                returns[int(episode_of_env[e])] = float(info["episode_return"][e])
                sizes[int(episode_of_env[e])] = int(start_size[e])
                if reports_outcomes(info):
                    outcomes[int(episode_of_env[e])] = episode_outcomes(info, [e])[0]
            episode_of_env[e] += n_envs
        start_size[ended] = obs_np["agent_present"][ended].sum(axis=1)
        team.end_episodes(ended)
    values = np.array([returns[k] for k in range(episodes)])
    result = {
        "return": float(values.mean()),
        "return_se": float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0,
        "comm_frequency": team.comm_frequency,
        "return_by_team_size": {n: float(values[[sizes[k] == n for k in range(episodes)]].mean())
                                for n in sorted(set(sizes.values()))},
    }
    if reports_outcomes(info):
        for key, rate in OUTCOMES.items():
            result[rate] = float(np.mean([outcomes[k] == key for k in range(episodes)]))
    return result

"""How strongly the COPA mixer passes each player's value to Q_tot: for trained runs, on 512 segments
of each run's own replay buffer (``checkpoint_latest.pt``), the gain dQ_tot/dq_i of every present
agent, how peaked the mixer's two softmaxes are (entropy against the uniform log E_mix), and the
scale of the players' q against Q_tot and the TD targets.

    python results/paper_preset/mixer_gain.py RUN_DIR [RUN_DIR ...]   # COPA runs (coach-conditioned mixer)

At initialisation both softmaxes are near uniform, so Q_tot ~ sum_i q_i / E_mix: each q_i reaches
Q_tot (and gets its gradient back) with a gain of about 1/E_mix. The script prints that gain
(mean over present agents) and the entropies, for freshly initialised networks of each run's
configuration (``updates 0``) and for the run's networks as they are now.
"""

import math
import sys

import torch

from cpfast.evaluate import load_run
from cpfast.learner import Learner, held_strategies, prepare_batch, slot_range
from cpfast.envs import make_env
from cpfast.replay import SegmentBuffer


def mixer_gain(run_dir: str, trained: bool = True, batch_size: int = 512) -> dict:
    """The run's networks (``trained``) or freshly initialised ones of its config, on its buffer."""
    cfg, _, payload = load_run(run_dir)
    spec = make_env(cfg.env).spec
    learner = Learner(spec, cfg, torch.device("cpu"), seed=0)
    if trained:
        learner.load_state_dict(payload["learner"])
    buffer = SegmentBuffer(spec, cfg.buffer_size, cfg.period, "cpu")
    buffer.load_state_dict(payload["buffer"])
    batch = buffer.sample(min(batch_size, len(buffer)), torch.Generator().manual_seed(0))
    s = prepare_batch(batch)
    period = s["reward"].shape[1] - 1
    o = slot_range(s, 0, period)
    net = learner.online
    with torch.no_grad():
        y = learner.td_targets(s)
        embedding = net.coach.encode(o["entities"], o["attributes"], o["present"], o["entity_present"])
        z0 = net.coach.strategy(embedding[:, 0])[0]
        q = learner.replay_q(net, o, held_strategies(z0, o["present"]))
        q_taken = q.gather(-1, o["actions"].unsqueeze(-1)).squeeze(-1)
        rows = o["present"].reshape(-1).nonzero().squeeze(1)
        flat = embedding.reshape(-1, embedding.shape[-1])[rows]
        w1, w2 = (torch.softmax(layer(flat), dim=-1) for layer in (net.mixer.w1, net.mixer.w2))
    q_taken.requires_grad_(True)
    q_total = net.mix(o, q_taken, embedding)
    (gain,) = torch.autograd.grad(q_total.sum(), q_taken)
    present = o["present"].bool()
    valid = o["valid"].bool()
    entropy = lambda p: float(-(p * p.clamp_min(1e-12).log()).sum(-1).mean())  # noqa: E731
    return {"run": run_dir, "E_mix": cfg.mixer_embed_dim, "updates": learner.n_updates,
            "gain": float(gain[present].mean()), "gain x E_mix": float(gain[present].mean()) * cfg.mixer_embed_dim,
            "w1 entropy / log E": entropy(w1) / math.log(cfg.mixer_embed_dim),
            "w2 entropy / log E": entropy(w2) / math.log(cfg.mixer_embed_dim),
            "|q_i|": float(q_taken.detach()[present].abs().mean()), "|Q_tot|": float(q_total.detach()[valid].abs().mean()),
            "|y|": float(y[valid].abs().mean())}


if __name__ == "__main__":
    for run in sys.argv[1:]:
        for trained in (False, True):
            result = mixer_gain(run, trained)
            print(" | ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()))

"""Where a trained player's attention goes: the probe of probe.py on the networks of finished runs.

    python results/aqmix_full_view/probe_trained.py RUN_DIR [RUN_DIR ...]

Each run's player, on 64 Resource Collection `train` envs after 30 random steps, through the view
it was trained with (partial, or full for aqmix_full) and through the other one."""
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F

import cpfast
from cpfast.evaluate import load_run
from cpfast.nn import full_mask
from cpfast.nn.networks import agent_rows, other_rows
from cpfast.ops import masked_attention_probs
from cpfast.rollout import to_tensors

env = cpfast.make_env("resource_collection", num_envs=64, seed=0)
obs_np = env.reset()
rng = np.random.default_rng(0)
for _ in range(30):
    obs_np, *_ = env.step(rng.integers(0, 5, size=obs_np["avail_actions"].shape[:2]) * obs_np["agent_present"])
obs = to_tensors(obs_np, "cpu")
present = obs["present"].bool()
print("| run | method | view | visible entities | attention entropy (max) | largest weight | weight on its own row |")
print("|---|---|---|---|---|---|---|")
with torch.no_grad():
    for run_dir in sys.argv[1:]:
        cfg, nets, _ = load_run(run_dir)
        p = nets.player
        enc, att = p.encoder, p.encoder.attention
        prev = torch.zeros(64, env.spec.max_agents, dtype=torch.long)
        agents = agent_rows(p.spec, obs["entities"], obs["attributes"], obs["present"], prev)
        rows = torch.cat([enc.agent_in(agents), enc.other_in(other_rows(p.spec, obs["entities"]))], dim=1)
        h = att.pre(F.leaky_relu(rows, 0.01))
        G = torch.matmul(att.w_q, att.w_k.transpose(1, 2)) / math.sqrt(cfg.hidden_dim)
        A = env.spec.max_agents
        scores = torch.einsum("rad,hde,rne->rhan", h[:, :A], G, h)
        for view, mask in (("partial", obs["obs_mask"]), ("full", full_mask(obs["present"], obs["entity_present"]))):
            probs = masked_attention_probs(scores, mask.unsqueeze(1))
            pa = probs.permute(0, 2, 1, 3)[present]  # [n, H, N]
            entropy = -(pa.clamp_min(1e-30).log() * pa).sum(-1).mean()
            self_w = torch.stack([probs[r, :, a, a] for r, a in present.nonzero()]).mean()
            visible = mask[present].sum(-1).float().mean()
            trained = (view == "full") == (cfg.method == "aqmix_full")
            print(f"| {run_dir.rstrip('/').split('/')[-3]}/{run_dir.rstrip('/').split('/')[-1]} | {cfg.method} | "
                  f"{view}{' (trained)' if trained else ''} | {visible:.1f} | {entropy:.2f} ({math.log(visible):.2f}) | "
                  f"{pa.max(-1).values.mean():.2f} | **{self_w:.2f}** |")

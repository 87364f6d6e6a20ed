"""Where a trained player's attention goes, head by head: the probe of probe.py on the networks of
finished runs.

    python results/aqmix_full_view/probe_trained.py RUN_DIR [RUN_DIR ...]

Each run's player, on 64 Resource Collection `train` envs after 30 random steps, through the view
it was trained with (full for aqmix_full, partial otherwise): per head, the mean weight on the
player's own row, how often its own row is the head's largest weight, and what else is."""
import math
import sys
from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F

import cpfast
from cpfast.evaluate import load_run
from cpfast.nn import full_mask
from cpfast.nn.networks import agent_rows, other_rows
from cpfast.ops import masked_attention_probs
from cpfast.rollout import to_tensors

KINDS = ["agent"] * 6 + ["home", "resource 1", "resource 2", "resource 3", "resource 1", "resource 2", "resource 3",
                         "invader"]  # Resource Collection's entity rows and landmark types
env = cpfast.make_env("resource_collection", num_envs=64, seed=0)
obs_np = env.reset()
rng = np.random.default_rng(0)
for _ in range(30):
    obs_np, *_ = env.step(rng.integers(0, 5, size=obs_np["avail_actions"].shape[:2]) * obs_np["agent_present"])
obs = to_tensors(obs_np, "cpu")
present = obs["present"].bool()
slots = present.nonzero()
print("| run | view | head | weight on its own row | own row largest | largest elsewhere (share of players) |")
print("|---|---|---|---|---|---|")
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
        scores = torch.einsum("rad,hde,rne->rhan", h[:, :env.spec.max_agents], G, h)
        full = cfg.method == "aqmix_full"
        mask = full_mask(obs["present"], obs["entity_present"]) if full else obs["obs_mask"]
        probs = masked_attention_probs(scores, mask.unsqueeze(1))
        own = torch.stack([probs[r, :, a, a] for r, a in slots])  # [players, H]
        top = torch.stack([probs[r, :, a].argmax(-1) for r, a in slots])  # [players, H]
        name = "/".join(run_dir.rstrip("/").split("/")[-3::2])
        for head in range(own.shape[1]):
            is_own = top[:, head] == slots[:, 1]
            elsewhere = Counter(KINDS[int(e)] if e >= 6 else "another agent" for e in top[~is_own, head])
            others = ", ".join(f"{k} {v / len(slots):.0%}" for k, v in elsewhere.most_common(3))
            print(f"| {name} | {'full' if full else 'partial'} | {head} | {own[:, head].mean():.2f} | "
                  f"{is_own.float().mean():.0%} | {others or '-'} |")

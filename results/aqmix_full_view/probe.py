"""Where a player's attention goes at initialisation, partial view against full view (issue 15, item 1)."""
import torch, numpy as np, math, cpfast
from cpfast.config import preset
from cpfast.nn import Networks
from cpfast.rollout import to_tensors
from cpfast.nn import full_mask
from cpfast.nn.networks import agent_rows, other_rows
from cpfast.ops import masked_attention_probs
import torch.nn.functional as F
for dh in (64, 128):
  cfg = preset("fast").replace(method="aqmix_full", hidden_dim=dh)
  env = cpfast.make_env("resource_collection", num_envs=64, seed=0)
  obs_np = env.reset()
  rng = np.random.default_rng(0)
  for _ in range(30):
      obs_np, *_ = env.step(rng.integers(0, 5, size=obs_np["avail_actions"].shape[:2]) * obs_np["agent_present"])
  obs = to_tensors(obs_np, "cpu")
  torch.manual_seed(0)
  nets = Networks(env.spec, cfg)
  p = nets.player
  att = p.encoder.attention
  prev = torch.zeros(64, env.spec.max_agents, dtype=torch.long)
  agents = agent_rows(p.spec, obs["entities"], obs["attributes"], obs["present"], prev)
  others = other_rows(p.spec, obs["entities"])
  enc = p.encoder
  rows = torch.cat([F.pad(enc.agent_in(agents), (0,0)), enc.other_in(others)], dim=1)
  h = att.pre(F.leaky_relu(rows, 0.01))
  G = torch.matmul(att.w_q, att.w_k.transpose(1, 2)) / math.sqrt(dh)
  A = env.spec.max_agents
  scores = torch.einsum("rad,hde,rne->rhan", h[:, :A], G, h)
  for name, mask in (("partial", obs["obs_mask"]), ("full", full_mask(obs["present"], obs["entity_present"]))):
      probs = masked_attention_probs(scores, mask.unsqueeze(1))
      present = obs["present"].bool()
      pa = probs.permute(0, 2, 1, 3)[present]  # [n, H, N]
      ent = -(pa.clamp_min(1e-30).log() * pa).sum(-1)
      maxp = pa.max(-1).values
      self_w = torch.stack([probs[r, :, a, a] for r, a in present.nonzero()])
      nvis = mask[present].sum(-1).float().mean()
      print(f"dh={dh} {name}: visible {nvis:.1f}, entropy {ent.mean():.3f} (max {math.log(nvis):.2f}), max prob {maxp.mean():.3f}, weight on self {self_w.mean():.3f}, score std {scores.std():.1f}")

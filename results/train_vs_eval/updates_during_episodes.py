"""Training resumed from a checkpoint for N iterations with updates on and off, on the same episodes: do updates during an episode lift its return?"""
import sys, numpy as np, torch
from cpfast import checkpoint
from cpfast.config import from_dict
from cpfast.train import Trainer
torch.set_num_threads(1)
payload = checkpoint.load(sys.argv[1])
cfg = from_dict(payload["config"]).replace(num_threads=1)
out = {}
for learning in (True, False):
    t = Trainer(cfg, f"/tmp/adapt_{learning}")
    t.restore(payload)
    if not learning:
        t.learner.update = lambda batch: {}
    t.recent_returns.clear()
    for _ in range(int(sys.argv[2])):
        t.iteration += 1
        t._episode_iteration(0.05)
    out[learning] = np.array(t.recent_returns)
    print("updates on" if learning else "updates off", round(out[learning].mean(), 2), len(out[learning]))
d = out[True] - out[False]
print("paired difference", round(d.mean(), 2), "+-", round(d.std(ddof=1) / np.sqrt(len(d)), 2))

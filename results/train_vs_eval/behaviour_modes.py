"""Greedy evaluation of one checkpoint with training's behaviour switched on piece by piece: epsilon and sampled strategies."""
import sys, json, torch
from cpfast.evaluate import load_run
from cpfast.rollout import evaluate
torch.set_num_threads(1)
cfg, nets, _ = load_run(sys.argv[1])
for eps, sample in ((0.0, False), (0.0, True), (0.05, False), (0.05, True)):
    r = evaluate(nets, cfg, "train", -1.0, 300, "cpu", eps=eps, sample_strategies=sample)
    print(json.dumps({"eps": eps, "sampled_strategies": sample, "return": round(r["return"], 2), "se": round(r["return_se"], 2)}))

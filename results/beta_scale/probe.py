"""How big are COPA's strategies and how far do they move between decision points, against beta?"""
import sys, json, numpy as np, torch
from cpfast.evaluate import load_run
from cpfast.rollout import Team, to_tensors, evaluate
from cpfast.envs import make_env
torch.set_num_threads(1)
cfg, nets, _ = load_run(sys.argv[1])
env = make_env(cfg.env, num_envs=50, seed=0, composition="train", eval_seed=cfg.eval_seed, num_threads=1)
team = Team(nets, cfg, 50, "cpu", beta=0.0)
obs = env.reset(); norms, moves = [], []
prev = None
with torch.no_grad():
    for t in range(145):
        o = to_tensors(obs, "cpu")
        if t % cfg.period == 0:
            mean = nets.coach.strategy(nets.coach.encode(o["entities"], o["attributes"], o["present"], o["entity_present"]))[0]
            p = o["present"].bool()
            norms.append(mean.norm(dim=-1)[p])
            if prev is not None:
                moves.append((mean - prev).norm(dim=-1)[p & prev_p])
            prev, prev_p = mean, p
        obs = env.step(team(obs))[0]
n, m = torch.cat(norms).numpy(), torch.cat(moves).numpy()
q = lambda x: {f"p{k}": round(float(np.percentile(x, k)), 3) for k in (10, 25, 50, 75, 90)}
print(json.dumps({"strategy_norm": q(n), "move_between_decisions": q(m), "frac_move_gt": {b: round(float((m > b).mean()), 3) for b in (0.25, 0.5, 1, 2, 3, 5)}}))
for beta in [float(b) for b in sys.argv[2:]]:
    r = evaluate(nets, cfg, "train", beta, 150, "cpu")
    print(json.dumps({"beta": beta, "return": round(r["return"], 2), "se": round(r["return_se"], 2), "comm": round(r["comm_frequency"], 3)}))

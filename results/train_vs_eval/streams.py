"""Training-like behaviour (epsilon 0.05, sampled strategies, every decision sent) on training-seeded and evaluation-seeded envs."""
import sys, json, numpy as np, torch
from cpfast.evaluate import load_run
from cpfast.rollout import Team
from cpfast.envs import make_env
from cpfast.envs.episodes import run_episodes
torch.set_num_threads(1)
cfg, nets, _ = load_run(sys.argv[1])
for label, kwargs in (("training streams, 8 envs", dict(num_envs=8, seed=123)), ("eval streams, 50 envs", dict(num_envs=50, seed=0, eval_seed=cfg.eval_seed))):
    env = make_env(cfg.env, composition="train", num_threads=1, **kwargs)
    team = Team(nets, cfg, env.num_envs, "cpu", beta=None, eps=0.05, sample_strategies=True, seed=5)
    def policy(obs):
        return team(obs)
    # run_episodes resets envs on its own; Team must restart envs whose episode ended
    obs = env.reset(); returns, sizes = [], []; start = obs["agent_present"].sum(1)
    while len(returns) < 400:
        obs, r, te, tr, info = env.step(team(obs))
        done = np.flatnonzero(te | tr)
        returns += info["episode_return"][done].tolist(); sizes += start[done].tolist()
        start[done] = obs["agent_present"][done].sum(1); team.end_episodes(done)
    returns, sizes = np.array(returns[:400]), np.array(sizes[:400])
    print(label, round(returns.mean(), 2), "+-", round(returns.std(ddof=1) / 20, 2), {int(s): round(float(returns[sizes == s].mean()), 1) for s in np.unique(sizes)}, np.bincount(sizes)[2:])

"""Learning: the quick preset, trained from scratch, clearly beats the random policy.

Slow (the whole preset, about 20 minutes on a 2-core CPU): run with
``bash tests/run_tests.sh -m slow``; CI runs it as its own step.
"""

import numpy as np
import pytest

import cpfast
from cpfast.config import preset
from cpfast.episodes import run_episodes
from cpfast.policies import RandomPolicy
from cpfast.rollout import evaluate
from cpfast.train import Trainer


@pytest.mark.slow
def test_quick_preset_clearly_beats_the_random_policy(tmp_path):
    cfg = preset("quick")
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.run(progress=False)
    episodes = cfg.eval_episodes
    learned = evaluate(trainer.learner.online, cfg, "train", 0.0, episodes, trainer.device, n_envs=50)
    # The random policy on the very same evaluation episodes (teams of 2, 3 and 4 alike).
    env = cpfast.make_env(cfg.env, num_envs=50, composition="train", eval_seed=cfg.eval_seed)
    random_returns = run_episodes(env, RandomPolicy(env.spec, 0), episodes)["returns"][:episodes]
    random_se = random_returns.std(ddof=1) / np.sqrt(episodes)
    gap = learned["return"] - random_returns.mean()
    assert gap > 5.0 and gap > 4 * np.hypot(learned["return_se"], random_se), (learned, random_returns.mean())

from pathlib import Path

import numpy as np
import pytest

import cpfast

DATA = Path(__file__).resolve().parent / "data"
GOLDEN_FILES = ("rc_golden_train.npz", "rc_golden_six.npz")
# The world-state keys of a conformance record (tests/data/README.md).
CONFORMANCE_KEYS = (
    "agent_pos", "agent_vel", "agent_alive", "agent_hold", "agent_at",
    "agent_attr", "lm_pos", "lm_alive", "invader_timer",
)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors: one intra-op thread avoids contention with other processes on small machines."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session", params=GOLDEN_FILES)
def golden(request):
    with np.load(DATA / request.param) as data:
        return {key: data[key] for key in data.files}


def make_rc(num_envs=1, seed=0, composition="train", num_threads=1, **kwargs):
    env = cpfast.make_env("resource_collection", num_envs=num_envs, seed=seed,
                          composition=composition, num_threads=num_threads, **kwargs)
    env.reset()
    return env


def copy_obs(obs):
    return {key: value.copy() for key, value in obs.items()}

from pathlib import Path

import numpy as np
import pytest


DATA = Path(__file__).resolve().parent / "data"
GOLDEN_FILES = ("rc_golden_train.npz", "rc_golden_six.npz")


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

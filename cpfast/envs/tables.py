"""Zero-shot attribute tables (interface.md §5.5).

Each table is generated once from a documented seed with cpfast's own generator and shipped
in ``cpfast/data``; ``python -m cpfast.envs.tables`` regenerates them, and a test checks that
the shipped files equal the regeneration.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from cpfast import _envs

ZERO_SHOT_SEED = 20210718  # the ICML 2021 conference date
ZERO_SHOT_ROWS = 1000
DATA_DIR = Path(__file__).resolve().parent.parent / "data"
RC_TABLE_FILE = DATA_DIR / "rc_zero_shot_attributes.npy"


def generate_rc_zero_shot_table(seed: int = ZERO_SHOT_SEED, rows: int = ZERO_SHOT_ROWS) -> np.ndarray:
    """[rows, 6, 4] Resource Collection attributes: p1, p2, p3 ~ U[0, 1], s ~ U[0.2, 0.8]."""
    draws = _envs.uniform_stream(_envs.derive_seed(seed, 0, 4), rows * 6 * 4).reshape(rows, 6, 4)
    table = draws.copy()
    table[..., 3] = 0.2 + 0.6 * draws[..., 3]
    return table


@lru_cache(maxsize=None)
def rc_zero_shot_table() -> np.ndarray:
    table = np.load(RC_TABLE_FILE)
    table.setflags(write=False)
    return table


if __name__ == "__main__":
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    np.save(RC_TABLE_FILE, generate_rc_zero_shot_table())
    print(f"wrote {RC_TABLE_FILE}")

"""Zero-shot attribute tables (docs/interface.md §5.5).

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
RESCUE_TABLE_FILE = DATA_DIR / "rescue_zero_shot_attributes.npy"


def generate_rc_zero_shot_table(seed: int = ZERO_SHOT_SEED, rows: int = ZERO_SHOT_ROWS) -> np.ndarray:
    """[rows, 6, 4] Resource Collection attributes: p1, p2, p3 ~ U[0, 1], s ~ U[0.2, 0.8]."""
    draws = _envs.uniform_stream(_envs.derive_seed(seed, 0, 4), rows * 6 * 4).reshape(rows, 6, 4)
    table = draws.copy()
    table[..., 3] = 0.2 + 0.6 * draws[..., 3]
    return table


def generate_rescue_zero_shot_table(seed: int = ZERO_SHOT_SEED, rows: int = ZERO_SHOT_ROWS) -> np.ndarray:
    """[rows, 6, 2] Rescue attributes, raw: e ~ U[0.05, 0.35], s ~ U[0.4, 1.0] (stream derive(seed, 1, 4))."""
    draws = _envs.uniform_stream(_envs.derive_seed(seed, 1, 4), rows * 6 * 2).reshape(rows, 6, 2)
    table = np.empty_like(draws)
    table[..., 0] = 0.05 + 0.30 * draws[..., 0]
    table[..., 1] = 0.4 + 0.6 * draws[..., 1]
    return table


def _load(path: Path) -> np.ndarray:
    table = np.load(path)
    table.setflags(write=False)
    return table


@lru_cache(maxsize=None)
def rc_zero_shot_table() -> np.ndarray:
    return _load(RC_TABLE_FILE)


@lru_cache(maxsize=None)
def rescue_zero_shot_table() -> np.ndarray:
    return _load(RESCUE_TABLE_FILE)


if __name__ == "__main__":
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    for path, generate in ((RC_TABLE_FILE, generate_rc_zero_shot_table), (RESCUE_TABLE_FILE, generate_rescue_zero_shot_table)):
        np.save(path, generate())
        print(f"wrote {path}")

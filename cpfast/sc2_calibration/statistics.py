"""Two backends' episodes side by side: win rates, lengths, Kolmogorov-Smirnov distances of
lengths and times to kill, and their weighted sum, the discrepancy."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .backends import OUTCOMES, POLICIES, Episode

def ks_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sample Kolmogorov-Smirnov statistic sup_x |F_a(x) - F_b(x)| of the empirical CDFs (inf allowed;
    0 when both samples are empty, 1 when only one is)."""
    a, b = np.sort(np.asarray(a, np.float64)), np.sort(np.asarray(b, np.float64))
    if len(a) == 0 or len(b) == 0:
        return 0.0 if len(a) == len(b) else 1.0
    points = np.concatenate([a, b])  # the sup is reached at a sample point
    cdf_a = np.searchsorted(a, points, side="right") / len(a)
    cdf_b = np.searchsorted(b, points, side="right") / len(b)
    return float(np.abs(cdf_a - cdf_b).max())


@dataclass(frozen=True)
class Weights:
    """Discrepancy = win · |win-rate difference| + length · KS(lengths) + ttk · KS(times to kill), averaged
    over policies."""

    win: float = 1.0
    length: float = 1.0
    ttk: float = 1.0


@dataclass
class PolicyComparison:
    policy: str
    n_a: int
    n_b: int
    win_rate_a: float
    win_rate_b: float
    win_diff: float  # a - b
    win_diff_se: float
    paired: bool  # the standard error is paired over identical episodes
    mean_length_a: float
    mean_length_b: float
    ks_length: float
    ks_ttk: float
    kill_rate_a: float  # fraction of enemies killed
    kill_rate_b: float
    outcomes_a: dict[str, int]
    outcomes_b: dict[str, int]

    def discrepancy(self, w: Weights) -> float:
        return w.win * abs(self.win_diff) + w.length * self.ks_length + w.ttk * self.ks_ttk


def _compare_policy(policy: str, a: list[Episode], b: list[Episode]) -> PolicyComparison:
    win_a = np.array([e.outcome == "win" for e in a], np.float64)
    win_b = np.array([e.outcome == "win" for e in b], np.float64)
    paired = [e.key for e in a] == [e.key for e in b] and len(a) > 1
    if paired:  # common random numbers: the per-episode differences carry the noise
        se = float(np.std(win_a - win_b, ddof=1) / math.sqrt(len(a)))
    else:
        se = math.sqrt(sum(w.mean() * (1 - w.mean()) / len(w) for w in (win_a, win_b) if len(w)))
    ttk_a = [t for e in a for t in e.time_to_kill]
    ttk_b = [t for e in b for t in e.time_to_kill]

    def mean(x):
        return float(np.mean(x)) if len(x) else math.nan

    return PolicyComparison(
        policy, len(a), len(b), mean(win_a), mean(win_b), mean(win_a) - mean(win_b), se, paired,
        mean([e.length for e in a]), mean([e.length for e in b]),
        ks_distance([e.length for e in a], [e.length for e in b]), ks_distance(ttk_a, ttk_b),
        mean(np.isfinite(ttk_a)), mean(np.isfinite(ttk_b)),
        {o: sum(e.outcome == o for e in a) for o in OUTCOMES}, {o: sum(e.outcome == o for e in b) for o in OUTCOMES})


def compare(a: list[Episode], b: list[Episode]) -> list[PolicyComparison]:
    """Per-policy comparison of run ``a`` against run ``b`` (differences are a - b)."""
    policies = sorted({e.policy for e in a} | {e.policy for e in b}, key=lambda p: POLICIES.index(p))
    return [_compare_policy(p, sorted((e for e in a if e.policy == p), key=lambda e: e.key),
                            sorted((e for e in b if e.policy == p), key=lambda e: e.key)) for p in policies]


def discrepancy(comparisons: list[PolicyComparison], weights: Weights = Weights()) -> float:
    return float(np.mean([c.discrepancy(weights) for c in comparisons]))



"""Calibration harness of the StarCraft simulator against a reference backend (docs/environments.md, StarCraft §12).

Two backends are any two factories ``factory(name, num_envs=, composition=, eval_seed=) -> env``
of envs with the common interface: the C++ simulator with given *calibrate* parameters
(``sim_backend(**params)``, options of ``cpfast.envs.env_options(name)``) or the real game
(``sc2_backend()``, which raises ``SC2Unavailable`` where StarCraft II is missing). Both play
the same episodes: for every composition and scripted policy, evaluation episodes
``k = 0 .. episodes-1`` from one evaluation seed (same teams, placements and tags; common
random numbers for the random policy). Per episode the harness records the outcome (win, loss,
draw, timeout), the length, the return and each enemy's time to kill (the step at which its
entity row shows it dead).

``compare`` puts two runs side by side per policy: win rates and their difference with a
standard error (paired over episodes when both runs hold the same episodes), mean lengths, and
two-sample Kolmogorov-Smirnov distances of the episode lengths and of the times to kill (enemies
that survive their episode count as never killed, so that distance also sees kill rates). Their
weighted sum is the **discrepancy** ``fit`` minimises by coordinate search over a grid of
simulator parameters. ``write_report`` writes Markdown and CSV files.

CLI::

    python -m cpfast.sc2_calibration compare --reference sc2 --out calib/      # defaults vs the game
    python -m cpfast.sc2_calibration fit --reference sc2 --params enemy_leash,damage_scale --out calib/
    python -m cpfast.sc2_calibration compare --reference sim:enemy_leash=4 --episodes 16   # no game needed
"""

from .backends import (DEFAULT_GRID, OUTCOMES, POLICIES, CalibrationConfig, Episode, default_grid, run_backend,
                       sc2_backend, sim_backend)
from .cli import main
from .fit import FitResult, fit
from .report import write_report
from .statistics import PolicyComparison, Weights, compare, discrepancy, ks_distance

__all__ = ["CalibrationConfig", "DEFAULT_GRID", "Episode", "FitResult", "OUTCOMES", "POLICIES", "PolicyComparison",
           "Weights", "compare", "default_grid", "discrepancy", "fit", "ks_distance", "main", "run_backend", "sc2_backend",
           "sim_backend", "write_report"]

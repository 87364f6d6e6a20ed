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

    python -m cpfast.envs.sc2_calibration compare --reference sc2 --out calib/      # defaults vs the game
    python -m cpfast.envs.sc2_calibration fit --reference sc2 --params enemy_leash,damage_scale --out calib/
    python -m cpfast.envs.sc2_calibration compare --reference sim:enemy_leash=4 --episodes 16   # no game needed
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from .episodes import episode_outcomes
from .registry import REGISTRY, env_options, make_env

BackendFactory = Callable[..., object]  # factory(name, num_envs=, composition=, eval_seed=) -> env
OUTCOMES = ("win", "loss", "draw", "timeout")
POLICIES = ("random", "focus_fire", "focus_fire_nearest")

# The default search grid of ``fit`` (simulator defaults included in every row). Ranges bracket
# the simulator's documented guesses (docs/environments.md, StarCraft): scan and leash around
# §7's 5 and 2, separation around 0.5, spawn gaps from touching to loose, weapon scales around 1
# including 1/1.4 and 1.4 (game seconds mistaken for real seconds at "Faster" speed, §1). An
# enemy Medivac escorts at the slowest friendly speed (2.25 gs with Marines or Marauders alive,
# §7 item 5), so its own speed only shows below that.
DEFAULT_GRID: dict[str, tuple[float, ...]] = {
    "enemy_scan": (4.0, 5.0, 6.0, 7.0),
    "enemy_leash": (0.0, 1.0, 2.0, 3.0, 4.0),
    "separation_firmness": (0.25, 0.5, 0.75, 1.0),
    "spawn_gap": (0.0, 0.1, 0.3, 0.6),
    "damage_scale": (0.8, 0.9, 1.0, 1.1, 1.2),
    "cooldown_scale": (1 / 1.4, 0.85, 1.0, 1.15, 1.4),
    "failed_order": (0.0, 1.0),
    "enemy_medivac_speed": (1.75, 2.0, 2.25, 2.75),
}
# Parameters without effect in a scenario: 3-8sz has no air units, so no failed attack orders and
# no Medivacs.
_INERT = {"sc2_3-8sz": ("failed_order", "enemy_medivac_speed")}


def default_grid(name: str) -> dict[str, tuple[float, ...]]:
    """``DEFAULT_GRID`` without the parameters that cannot matter in scenario ``name``."""
    return {k: v for k, v in DEFAULT_GRID.items() if k not in _INERT.get(name, ())}


@dataclass(frozen=True)
class CalibrationConfig:
    """What both backends play: every (composition, policy) pair for ``episodes`` evaluation episodes."""

    name: str = "sc2_3-8sz"
    compositions: tuple[int, ...] | None = None  # None: all of the scenario's enumerated compositions
    episodes: int = 8  # per composition and policy: evaluation episodes k = 0 .. episodes-1
    eval_seed: int = 7000
    policies: tuple[str, ...] = ("random", "focus_fire")
    policy_seed: int = 0  # the random policy's seed (combined with the composition index)
    num_envs: int | None = None  # envs stepped together (None: min(episodes, 32)); 1 game each on SC2

    def __post_init__(self):
        if self.name not in ("sc2_3-8sz", "sc2_3-8MMM"):
            raise ValueError(f"calibration plays sc2_3-8sz or sc2_3-8MMM, not {self.name!r}")
        bad = [p for p in self.policies if p not in POLICIES]
        if bad or not self.policies:
            raise ValueError(f"unknown policies {bad}; expected some of {', '.join(POLICIES)}")
        if self.episodes < 1 or (self.num_envs is not None and self.num_envs < 1):
            raise ValueError("episodes and num_envs must be positive")
        n = self.n_compositions
        if self.compositions is not None and (not self.compositions or any(not 0 <= c < n for c in self.compositions)):
            raise ValueError(f"compositions must be indices in [0, {n}), got {self.compositions}")

    @property
    def n_compositions(self) -> int:
        return len(REGISTRY[self.name].compositions) - 1  # "train" plus one entry per index

    def composition_list(self) -> tuple[int, ...]:
        return tuple(range(self.n_compositions)) if self.compositions is None else tuple(self.compositions)


@dataclass
class Episode:
    """One finished episode of one backend."""

    policy: str
    composition: int
    k: int  # evaluation episode index
    outcome: str  # win | loss | draw | timeout
    length: int
    ret: float
    time_to_kill: list[float] = field(default_factory=list)  # per enemy: death step, inf if it survived

    @property
    def key(self) -> tuple[str, int, int]:
        return self.policy, self.composition, self.k


# ---------------------------------------------------------------------------------------- backends
def sim_backend(num_threads: int = 1, **params: float) -> BackendFactory:
    """The C++ simulator with the given *calibrate* parameters (validated here, naming the option)."""

    def factory(name, num_envs, composition, eval_seed):
        return make_env(name, num_envs=num_envs, seed=0, composition=composition, num_threads=num_threads,
                        eval_seed=eval_seed, **params)

    make_env("sc2_3-8sz", num_envs=1, num_threads=1, **params)  # checks them now (both scenarios take the same)
    factory.label = "sim" + "".join(f" {k}={v:g}" for k, v in sorted(params.items()))
    return factory


def sc2_backend() -> BackendFactory:
    """The real game (``cpfast.envs.sc2``); building an env raises ``SC2Unavailable`` without it."""

    def factory(name, num_envs, composition, eval_seed):
        from .sc2 import make_sc2_env

        return make_sc2_env(name, num_envs=num_envs, seed=0, composition=str(composition), eval_seed=eval_seed)

    factory.label = "sc2"
    return factory


def _make_policy(policy: str, spec, seed: int):
    from cpfast.policies import RandomPolicy, ScriptedFocusFirePolicy

    if policy == "random":
        return RandomPolicy(spec, seed)
    return ScriptedFocusFirePolicy(spec, "nearest" if policy == "focus_fire_nearest" else "lowest_health")


_OUTCOME_NAMES = {"battle_won": "win", "battle_draw": "draw", "battle_lost": "loss"}  # episodes.OUTCOMES keys


def _play(env, policy, policy_name: str, composition: int, episodes: int) -> list[Episode]:
    """Steps ``env`` (evaluation-seeded: env i's j-th episode is k = i + j * num_envs) until episodes
    0 .. episodes-1 have finished; time to kill from the health column of the enemy entity rows."""
    spec, b = env.spec, env.num_envs
    n_a = spec.max_agents
    col = 16 + spec.n_actions - 2 + spec.attr_dim  # health column (docs/environments.md, StarCraft §9)
    obs = env.reset()
    k = np.arange(b)
    exists = np.array(obs["entity_present"][:, n_a:] != 0)
    death = np.full(exists.shape, -1, np.int64)
    steps = np.zeros(b, np.int64)
    ret = np.zeros(b)
    out = []
    while (k < episodes).any():
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        done = (np.asarray(terminated) | np.asarray(truncated)) != 0
        steps += 1
        ret += reward
        ents = np.where(done[:, None, None], info["final"]["entities"], obs["entities"])
        alive = ents[:, n_a:, col] > 0
        newly = exists & ~alive & (death < 0)
        death[newly] = np.broadcast_to(steps[:, None], death.shape)[newly]
        for i in np.flatnonzero(done):
            if k[i] < episodes:
                # The env's own outcome flags (both backends set them; StarCraft §8). battle_draw
                # also covers time-outs, which the harness keeps apart.
                outcome = "timeout" if info["timeout"][i] else _OUTCOME_NAMES[episode_outcomes(info, [i])[0]]
                ttk = [float(d) if d >= 0 else math.inf for d in death[i][exists[i]]]
                out.append(Episode(policy_name, composition, int(k[i]), outcome, int(steps[i]), float(ret[i]), ttk))
            k[i] += b
            exists[i] = obs["entity_present"][i, n_a:] != 0
            death[i] = -1
            steps[i] = 0
            ret[i] = 0.0
    return out


def run_backend(factory: BackendFactory, config: CalibrationConfig) -> list[Episode]:
    """Plays every (composition, policy) pair of ``config`` on one backend."""
    episodes = []
    num_envs = config.num_envs or min(config.episodes, 32)
    for c in config.composition_list():
        for policy_name in config.policies:
            env = factory(config.name, num_envs=num_envs, composition=c, eval_seed=config.eval_seed)
            try:
                policy = _make_policy(policy_name, env.spec, config.policy_seed * 1_000_003 + c)
                episodes += _play(env, policy, policy_name, c, config.episodes)
            finally:
                env.close()
    return sorted(episodes, key=lambda e: e.key)


# ---------------------------------------------------------------------------------------- statistics
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


# ---------------------------------------------------------------------------------------- fitting
@dataclass
class FitResult:
    params: dict[str, float]  # the best parameters found (only those searched)
    discrepancy: float
    history: list[tuple[dict[str, float], float]]  # every evaluated point, in order


def fit(reference: BackendFactory | list[Episode], config: CalibrationConfig,
        grid: Mapping[str, Iterable[float]] | None = None, start: Mapping[str, float] | None = None,
        weights: Weights = Weights(), sweeps: int = 2, num_threads: int = 1) -> FitResult:
    """Coordinate search of the simulator's parameters against ``reference`` (a backend, or its
    episodes already played with ``config``): for each parameter of ``grid`` in turn, try every grid
    value with the others held at their current best and keep the value of lowest discrepancy (ties
    keep the current value, else the first in the grid); repeat up to ``sweeps`` times or until a sweep
    changes nothing. Every candidate plays the reference's episodes (same seeds: common random numbers).
    """
    grid = {k: tuple(float(v) for v in vs) for k, vs in (default_grid(config.name) if grid is None else grid).items()}
    options = env_options(config.name)
    unknown = [k for k in grid if k not in options]
    if unknown:
        raise ValueError(f"unknown parameters {unknown}; the simulator's are {', '.join(options)}")
    ref = reference if isinstance(reference, list) else run_backend(reference, config)
    current = {k: float(start[k]) if start and k in start else options[k][0] for k in grid}
    cache: dict[tuple, float] = {}
    history = []

    def score(params):
        key = tuple(sorted(params.items()))
        if key not in cache:
            episodes = run_backend(sim_backend(num_threads, **params), config)
            cache[key] = discrepancy(compare(episodes, ref), weights)
            history.append((dict(params), cache[key]))
        return cache[key]

    best = score(current)
    for _ in range(sweeps):
        changed = False
        for name, values in grid.items():
            for value in values:
                candidate = {**current, name: value}
                s = score(candidate)
                if s < best:
                    best, current, changed = s, candidate, True
        if not changed:
            break
    return FitResult(current, best, history)


# ---------------------------------------------------------------------------------------- reports
def write_report(out: Path, comparisons: list[PolicyComparison], a: list[Episode], b: list[Episode],
                 label_a: str, label_b: str, config: CalibrationConfig, weights: Weights = Weights(),
                 fit_result: FitResult | None = None) -> dict[str, Path]:
    """Writes ``report.md`` (summary), ``comparison.csv`` (one row per policy) and ``episodes.csv``
    (every episode of both runs); with a fit also ``fit.csv`` (every grid point) and ``fit.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"report": out / "report.md", "comparison": out / "comparison.csv", "episodes": out / "episodes.csv"}
    rows = [asdict(c) for c in comparisons]
    with paths["comparison"].open("w", newline="") as f:
        fields = [k for k in rows[0] if not k.startswith("outcomes")] + [f"{o}_{s}" for s in "ab" for o in OUTCOMES]
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for c, row in zip(comparisons, rows):
            flat = {k: v for k, v in row.items() if not k.startswith("outcomes")}
            flat.update({f"{o}_a": c.outcomes_a[o] for o in OUTCOMES})
            flat.update({f"{o}_b": c.outcomes_b[o] for o in OUTCOMES})
            writer.writerow(flat)
    with paths["episodes"].open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["backend", "policy", "composition", "k", "outcome", "length", "return", "time_to_kill"])
        for label, episodes in ((label_a, a), (label_b, b)):
            for e in episodes:
                writer.writerow([label, e.policy, e.composition, e.k, e.outcome, e.length, f"{e.ret:.6g}",
                                 ";".join("inf" if math.isinf(t) else str(int(t)) for t in e.time_to_kill)])
    comps = config.composition_list()
    se_kind = "paired over identical episodes" if all(c.paired for c in comparisons) else "of independent samples"
    lines = [
        f"# Calibration: {config.name}, A = `{label_a}` vs B = `{label_b}`", "",
        f"{len(comps)} compositions × {config.episodes} evaluation episodes (seed {config.eval_seed}) per policy; "
        f"differences are A − B; win-rate s.e. {se_kind}. KS = two-sample Kolmogorov–Smirnov distance; times to "
        "kill in agent steps, enemies that survive count as never killed.", "",
        "| policy | episodes A / B | win rate A / B | difference ± s.e. | mean length A / B | KS length "
        "| KS time to kill | enemies killed A / B |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        lines.append(f"| {c.policy} | {c.n_a} / {c.n_b} | {c.win_rate_a:.3f} / {c.win_rate_b:.3f} | "
                     f"{c.win_diff:+.3f} ± {c.win_diff_se:.3f} | {c.mean_length_a:.1f} / {c.mean_length_b:.1f} | "
                     f"{c.ks_length:.3f} | {c.ks_ttk:.3f} | {c.kill_rate_a:.3f} / {c.kill_rate_b:.3f} |")
    lines += ["", f"Discrepancy ({weights.win:g}·|Δwin| + {weights.length:g}·KS length + {weights.ttk:g}·KS time "
              f"to kill, mean over policies): **{discrepancy(comparisons, weights):.4f}**", ""]
    lines += ["Outcomes (win / loss / draw / timeout):", ""]
    for c in comparisons:
        counts_a, counts_b = (" / ".join(str(o[k]) for k in OUTCOMES) for o in (c.outcomes_a, c.outcomes_b))
        lines.append(f"- {c.policy}: A {counts_a}; B {counts_b}")
    if fit_result is not None:
        paths["fit"], paths["fit_json"] = out / "fit.csv", out / "fit.json"
        names = list(fit_result.params)
        with paths["fit"].open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([*names, "discrepancy"])
            for params, d in fit_result.history:
                writer.writerow([params[n] for n in names] + [d])
        paths["fit_json"].write_text(json.dumps({"params": fit_result.params, "discrepancy": fit_result.discrepancy},
                                                indent=2) + "\n")
        lines += ["", "## Fit", "",
                  f"Coordinate search over {len(fit_result.history)} grid points (all in `fit.csv`); A above is the "
                  "simulator with the fitted parameters:", "",
                  "| parameter | fitted | default |", "|---|---|---|"]
        defaults = env_options(config.name)
        lines += [f"| {n} | {fit_result.params[n]:g} | {defaults[n][0]:g} |" for n in names]
        lines += ["", f"Use: `cpfast.make_env({config.name!r}, "
                  + ", ".join(f"{n}={fit_result.params[n]:g}" for n in names) + ")`"]
    paths["report"].write_text("\n".join(lines) + "\n")
    return paths


# ---------------------------------------------------------------------------------------- CLI
def parse_sim_params(text: str) -> dict[str, float]:
    """The parameters of ``sim[:key=value,...]``."""
    if text != "sim" and not text.startswith("sim:"):
        raise ValueError(f"expected 'sim' or 'sim:key=value,...', got {text!r}")
    params = {}
    for item in filter(None, text[4:].split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"expected key=value in {text!r}, got {item!r}")
        params[key.strip()] = float(value)
    return params


def parse_backend(text: str, num_threads: int = 1) -> BackendFactory:
    """``sc2`` (the real game) or ``sim[:key=value,...]`` (the simulator with those parameters)."""
    if text == "sc2":
        return sc2_backend()
    if text == "sim" or text.startswith("sim:"):
        return sim_backend(num_threads, **parse_sim_params(text))
    raise ValueError(f"unknown backend {text!r}: expected 'sc2' or 'sim[:key=value,...]'")


def parse_grid(text: str) -> dict[str, tuple[float, ...]]:
    """``name=v1/v2/...;name2=...`` or a comma-separated list of ``DEFAULT_GRID`` names."""
    if "=" not in text:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in DEFAULT_GRID]
        if unknown:
            raise ValueError(f"no default grid for {unknown}; known: {', '.join(DEFAULT_GRID)}")
        return {n: DEFAULT_GRID[n] for n in names}
    grid = {}
    for item in filter(None, text.split(";")):
        key, _, values = item.partition("=")
        grid[key.strip()] = tuple(float(v) for v in values.split("/"))
    return grid


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cpfast.envs.sc2_calibration", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("compare", "fit"))
    parser.add_argument("--name", default="sc2_3-8sz", choices=("sc2_3-8sz", "sc2_3-8MMM"))
    parser.add_argument("--reference", default="sc2", help="B: 'sc2' (real game) or 'sim:key=value,...' (default sc2)")
    parser.add_argument("--sim", default="sim", help="A for compare, the start point for fit: 'sim:key=value,...'")
    parser.add_argument("--compositions", default="", help="comma-separated indices (default: all enumerated)")
    parser.add_argument("--episodes", type=int, default=8, help="evaluation episodes per composition and policy")
    parser.add_argument("--eval-seed", type=int, default=7000)
    parser.add_argument("--policies", default="random,focus_fire", help=f"comma-separated, of {', '.join(POLICIES)}")
    parser.add_argument("--num-envs", type=int, default=None, help="envs (games) stepped together")
    parser.add_argument("--threads", type=int, default=1, help="simulator threads")
    parser.add_argument("--params", default="", help="fit: 'name,name2' (their DEFAULT_GRID rows) or an own grid "
                        "'name=v1/v2/v3;name2=...' (default: the scenario's default grid)")
    parser.add_argument("--sweeps", type=int, default=2)
    parser.add_argument("--weights", default="1,1,1", help="win, length, time-to-kill weights of the discrepancy")
    parser.add_argument("--out", default="calibration", help="report folder")
    args = parser.parse_args(argv)

    config = CalibrationConfig(
        name=args.name, episodes=args.episodes, eval_seed=args.eval_seed, num_envs=args.num_envs,
        compositions=tuple(int(c) for c in args.compositions.split(",")) if args.compositions else None,
        policies=tuple(p.strip() for p in args.policies.split(",") if p.strip()))
    weights = Weights(*(float(w) for w in args.weights.split(",")))
    start_params = parse_sim_params(args.sim)
    grid = parse_grid(args.params) if args.params else default_grid(args.name)
    reference = parse_backend(args.reference, args.threads)
    ref_episodes = run_backend(reference, config)
    result = None
    if args.command == "fit":
        result = fit(ref_episodes, config, grid, start_params, weights, args.sweeps, args.threads)
        start_params = {**start_params, **result.params}
    start = sim_backend(args.threads, **start_params)
    episodes = run_backend(start, config)
    comparisons = compare(episodes, ref_episodes)
    paths = write_report(Path(args.out), comparisons, episodes, ref_episodes, start.label, reference.label, config,
                         weights, result)
    print(paths["report"].read_text(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

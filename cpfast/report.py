"""Summarise sweeps with the statistics of rliable (Agarwal et al., 2021).

    python -m cpfast.report sweeps/rc_quick --out results/rc_quick
    python -m cpfast.report sweeps/rc_quick --compare copa:aqmix copa:aqmix_full

Runs are grouped into cells: same configuration but for the seed (and the machine fields). Per
cell, composition and beta: the mean and the interquartile mean over seeds with 95% stratified
bootstrap confidence intervals (and the same for StarCraft win rates); the probability that one
method improves on another, with its interval; learning curves (greedy evaluations during
training and the training return) on a common env-step grid, IQM with a 95% band. Scores come
from each run's ``eval.csv`` (written by the sweep or ``python -m cpfast.evaluate``), else from
its ``summary.json``. Writes report.md, report.csv, report.json (marl-eval's layout) and PNGs.
Runs of a sweep that are missing or unfinished are listed, never silently averaged.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cells import cell_key, cell_labels
from .config import METHODS, from_dict, to_dict
from .evaluate import OUTCOME_FIELDS, beta_label, comm_every_of, composition_rank, read_csv
from .sweep import Cell

INSTALL_HINT = "the report tool needs rliable: pip install 'cpfast[sweep]' (or pip install '.[sweep]' in a clone)"
# Reference lines of Resource Collection `train` (results/README.md): random policy, the authors'
# expert, their plotting script's A-QMIX and A-QMIX (full view) at 5M steps, cpfast's heuristic.
REFERENCE_LINES = {"resource_collection": {"random": -4.38, "expert (authors)": 74.43, "A-QMIX (paper)": 59.07,
                                           "A-QMIX full view (paper)": 103.05, "heuristic": 118.9}}
CSV_FIELDS = ("env", "cell", "method", "composition", "beta", "comm_every", "seeds", "mean", "mean_low", "mean_high",
              "iqm", "iqm_low", "iqm_high", "comm_frequency")


@dataclass
class Run:
    run_dir: Path
    config: dict
    finished: bool
    rows: list[dict] = field(default_factory=list)  # eval.csv rows (or the summary's evaluation)

    @property
    def cell_key(self) -> tuple:
        return cell_key(self.config)


def find_runs(paths) -> tuple[list[Run], list[str]]:
    """Every run directory under ``paths`` (a folder with config.json), and notes on missing ones."""
    runs, notes = [], []
    for path in map(Path, paths):
        if not path.exists():
            raise ValueError(f"{path} does not exist")
        dirs = sorted({p.parent for p in path.rglob("config.json")} | ({path} if (path / "config.json").is_file() else set()))
        sweep_file = path / "sweep.json"
        if sweep_file.is_file():
            for cell in json.loads(sweep_file.read_text())["cells"]:
                cell["overrides"] = tuple(tuple(pair) for pair in cell["overrides"])
                name = Cell(**cell).name
                if not (path / name / "config.json").is_file():
                    notes.append(f"missing: {path / name} (never started)")
        for run_dir in dirs:
            try:
                config = to_dict(from_dict(json.loads((run_dir / "config.json").read_text())))
            except (ValueError, TypeError, AttributeError) as error:
                raise ValueError(f"{run_dir / 'config.json'} does not hold a run configuration: {error}") from None
            finished = (run_dir / "summary.json").is_file()
            run = Run(run_dir, config, finished)
            if (run_dir / "eval.csv").is_file():
                run.rows = read_csv(run_dir / "eval.csv")
            elif finished:
                evaluation = json.loads((run_dir / "summary.json").read_text()).get("evaluation", {})
                coach = config["method"] in ("copa", "copa_novi")
                run.rows = [{"composition": evaluation.get("composition", config["composition"]),
                             "beta": evaluation.get("beta", config["beta"]) if coach else None,
                             "return": evaluation["return"],
                             "comm_frequency": evaluation.get("comm_frequency") if coach else None}
                            | {k: evaluation[k] for k in OUTCOME_FIELDS if k in evaluation}]
            if not finished:
                notes.append(f"unfinished: {run_dir} (no summary.json; not counted)")
            runs.append(run)
    return runs, notes


def _rliable():
    try:
        from rliable import library, metrics
    except ImportError:
        raise SystemExit(f"error: {INSTALL_HINT}") from None
    # rliable hands arch a RandomState, which arch deprecates; the draws are the same.
    warnings.filterwarnings("ignore", message="random_state is deprecated", category=FutureWarning)
    return library, metrics


def _interval(scores: np.ndarray, reps: int, seed: int) -> dict[str, float]:
    """Mean and IQM of ``scores`` [n_seeds] with 95% stratified bootstrap intervals (rliable)."""
    rly, metrics = _rliable()
    scores = np.asarray(scores, dtype=float).reshape(-1, 1)
    if len(scores) < 2:  # one seed: no interval over seeds to give
        value = float(scores[0, 0])
        return {"mean": value, "mean_low": math.nan, "mean_high": math.nan, "iqm": value, "iqm_low": math.nan,
                "iqm_high": math.nan}

    def aggregate(s):
        return np.array([metrics.aggregate_mean(s), metrics.aggregate_iqm(s)])

    point, ci = rly.get_interval_estimates({"x": scores}, aggregate, reps=reps, random_state=np.random.RandomState(seed))
    (mean, iqm), ((mean_low, iqm_low), (mean_high, iqm_high)) = point["x"], ci["x"]
    return {"mean": float(mean), "mean_low": float(mean_low), "mean_high": float(mean_high),
            "iqm": float(iqm), "iqm_low": float(iqm_low), "iqm_high": float(iqm_high)}


def probability_of_improvement(x, y, reps: int = 2000, seed: int = 0) -> dict[str, float]:
    """P(a run of X scores above a run of Y) with its 95% stratified bootstrap interval (rliable)."""
    rly, metrics = _rliable()

    x, y = (np.asarray(v, dtype=float).reshape(-1, 1) for v in (x, y))
    if min(len(x), len(y)) < 2:
        point = float(np.mean([(a > b) + 0.5 * (a == b) for a in x[:, 0] for b in y[:, 0]]))
        return {"probability": point, "low": math.nan, "high": math.nan}
    point, ci = rly.get_interval_estimates({"p": (x, y)}, metrics.probability_of_improvement, reps=reps,
                                           random_state=np.random.RandomState(seed))
    return {"probability": float(point["p"]), "low": float(ci["p"][0][0]), "high": float(ci["p"][1][0])}


def summarise(runs: list[Run], reps: int = 2000, seed: int = 0) -> tuple[list[dict], list[str]]:
    """One row per (cell, composition, beta, comm_every) over the finished runs (comm_every: the
    fixed schedule of ``python -m cpfast.evaluate --comm-every K``, 1 for every decision time);
    warnings on duplicate seeds."""
    labels, warnings = cell_labels(run.cell_key for run in runs), []
    groups: dict[tuple, list[tuple[int, dict]]] = {}
    for run in runs:
        if not run.finished:
            continue
        for row in run.rows:
            groups.setdefault((run.cell_key, row["composition"], row["beta"], comm_every_of(row)), []).append(
                (run.config["seed"], row))
    table = []
    def order(group):
        (key, composition, beta, every), _ = group
        return (labels[key], composition_rank(dict(key).get("env"), composition), composition,
                -1 if beta is None else beta, every)

    for (key, composition, beta, every), members in sorted(groups.items(), key=order):
        seeds = [s for s, _ in members]
        if len(set(seeds)) != len(seeds):
            warnings.append(f"{labels[key]} {composition} beta={beta_label(beta, every)}: duplicate seeds {sorted(seeds)}")
        config = dict(key)
        entry = {"env": config["env"], "cell": labels[key], "method": config["method"], "composition": composition,
                 "beta": beta, "comm_every": every, "seeds": sorted(seeds), "cell_key": key,
                 "returns": [r["return"] for _, r in members]}
        entry |= _interval(entry["returns"], reps, seed)
        comm = [r["comm_frequency"] for _, r in members if r.get("comm_frequency") is not None]
        entry["comm_frequency"] = float(np.mean(comm)) if comm else None
        for name in OUTCOME_FIELDS:
            if all(r.get(name) is not None for _, r in members):
                entry[name] = _interval([r[name] for _, r in members], reps, seed)
        table.append(entry)
    return table, warnings


def comparisons(table: list[dict], pairs: list[tuple[str, str]], reps: int = 2000) -> list[dict]:
    """Probability of improvement of method X over Y, per env and composition, for cells that
    differ in the method only (a coach method at beta 0 against a coachless one)."""
    results = []
    for x, y in pairs:
        for a in table:
            if a["method"] != x or a["beta"] not in (None, 0.0) or a["comm_every"] != 1:
                continue
            rest_a = {k: v for k, v in a["cell_key"] if k != "method"}
            for b in table:
                rest_b = {k: v for k, v in b["cell_key"] if k != "method"}
                if b["method"] == y and b["composition"] == a["composition"] and b["beta"] in (None, 0.0) \
                        and b["comm_every"] == 1 and rest_a == rest_b:
                    results.append({"env": a["env"], "composition": a["composition"], "x": a["cell"], "y": b["cell"]}
                                   | probability_of_improvement(a["returns"], b["returns"], reps))
    return results


def curves(runs: list[Run], source: str, column: str, points: int = 40) -> dict[tuple, tuple[np.ndarray, np.ndarray]]:
    """Per cell: a common env-step grid (to the shortest run's end) and each finished run's
    ``column`` of ``source`` (evals.csv or progress.csv) interpolated onto it [n_runs, points]."""
    per_cell: dict[tuple, list[tuple[np.ndarray, np.ndarray]]] = {}
    for run in runs:
        path = run.run_dir / source
        if not run.finished or not path.is_file():
            continue
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get(column) not in ("", "nan", None)]
        if len(rows) >= 2:
            per_cell.setdefault(run.cell_key, []).append(
                (np.array([float(r["env_steps"]) for r in rows]), np.array([float(r[column]) for r in rows])))
    result = {}
    for key, series in per_cell.items():
        end = min(steps[-1] for steps, _ in series)
        start = max(steps[0] for steps, _ in series)
        grid = np.linspace(start, end, points)
        result[key] = (grid, np.stack([np.interp(grid, steps, values) for steps, values in series]))
    return result


def curve_band(values: np.ndarray, reps: int = 500, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IQM over runs at each grid point, with a 95% stratified bootstrap band (rliable)."""
    rly, metrics = _rliable()

    def aggregate(s):
        return np.array([metrics.aggregate_iqm(s[:, [j]]) for j in range(s.shape[1])])

    point, ci = rly.get_interval_estimates({"c": values}, aggregate, reps=reps, random_state=np.random.RandomState(seed))
    return point["c"], ci["c"][0], ci["c"][1]


def plot_curves(runs: list[Run], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, written = cell_labels(run.cell_key for run in runs), []
    for env in sorted({r.config["env"] for r in runs}):
        env_runs = [r for r in runs if r.config["env"] == env]
        panels = (("evals.csv", "return", "greedy evaluation return"), ("progress.csv", "train_return",
                                                                         "training return (last 100 episodes)"))
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
        any_curve = False
        for ax, (source, column, title) in zip(axes, panels):
            for key, (grid, values) in sorted(curves(env_runs, source, column).items(), key=lambda kv: labels[kv[0]]):
                iqm, low, high = curve_band(values)
                line, = ax.plot(grid, iqm, label=f"{labels[key]} (n={len(values)})")
                ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.2)
                any_curve = True
            for name, value in REFERENCE_LINES.get(env, {}).items():
                ax.axhline(value, color="grey", lw=0.8, ls=":")
                ax.annotate(name, (1.0, value), xycoords=("axes fraction", "data"), fontsize=7, color="grey",
                            ha="right", va="bottom")
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("env steps")
            ax.grid(alpha=0.3)
        if not any_curve:  # runs without logs (evaluations gathered from elsewhere): no empty figure
            plt.close(fig)
            continue
        axes[0].set_ylabel("team return (IQM over seeds, 95% CI)")
        axes[0].legend(fontsize=8, loc="upper left")
        fig.suptitle(f"{env}: learning curves")
        fig.tight_layout()
        path = out / f"curves_{env}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def marl_eval_json(runs: list[Run]) -> dict:
    """marl-eval's raw layout: env -> task (composition) -> algorithm -> run -> step_k / absolute_metrics."""
    labels = cell_labels(run.cell_key for run in runs)
    data: dict = {}
    for run in runs:
        if not run.finished:
            continue
        env, cfg = run.config["env"], run.config
        for row in run.rows:
            algorithm = labels[run.cell_key] + ("" if row["beta"] in (None, cfg["beta"]) else f" beta={row['beta']:g}") \
                + ("" if comm_every_of(row) == 1 else f" comm_every={row['comm_every']}")
            entry = data.setdefault(env, {}).setdefault(row["composition"], {}).setdefault(algorithm, {})
            record = entry.setdefault(f"seed_{cfg['seed']}", {})
            record["absolute_metrics"] = {"return": [row["return"]]} | {k: [row[k]] for k in OUTCOME_FIELDS
                                                                        if row.get(k) is not None}
            if row["composition"] == cfg["composition"] and row["beta"] in (None, cfg["beta"]) \
                    and comm_every_of(row) == 1 and (run.run_dir / "evals.csv").is_file():
                with open(run.run_dir / "evals.csv", newline="") as f:
                    for k, e in enumerate(csv.DictReader(f)):
                        record[f"step_{k}"] = {"step_count": int(e["env_steps"]), "return": [float(e["return"])]}
    return data


def _fmt(value: float, low: float, high: float, percent: bool = False) -> str:
    if low != low:  # one seed
        return (f"{value:.1%}" if percent else f"{value:.2f}") + " (1 seed)"
    if percent:
        return f"{value:.1%} [{low:.1%}, {high:.1%}]"
    return f"{value:.2f} [{low:.2f}, {high:.2f}]"


def markdown(table, compares, notes, warnings) -> str:
    lines = []
    for env in sorted({t["env"] for t in table}):
        rows = [t for t in table if t["env"] == env]
        outcomes = any("win_rate" in t for t in rows)
        lines += [f"## {env}", "", "| cell | composition | β | seeds | mean [95% CI] | IQM [95% CI] | comm. |"
                  + (" win rate IQM [95% CI] |" if outcomes else ""),
                  "|---|---|---|---|---|---|---|" + ("---|" if outcomes else "")]
        for t in rows:
            comm = "n/a" if t["comm_frequency"] is None else f"{t['comm_frequency']:.1%}"
            win = (" " + (_fmt(t["win_rate"]["iqm"], t["win_rate"]["iqm_low"], t["win_rate"]["iqm_high"], True)
                          if "win_rate" in t else "n/a") + " |") if outcomes else ""
            lines.append(f"| {t['cell']} | {t['composition']} | {beta_label(t['beta'], t['comm_every'])} | "
                         f"{len(t['seeds'])} | {_fmt(t['mean'], t['mean_low'], t['mean_high'])} | "
                         f"{_fmt(t['iqm'], t['iqm_low'], t['iqm_high'])} | {comm} |{win}")
        lines.append("")
    if compares:
        lines += ["## Probability of improvement", "", "| env | composition | X | Y | P(X > Y) [95% CI] |",
                  "|---|---|---|---|---|"]
        lines += [f"| {c['env']} | {c['composition']} | {c['x']} | {c['y']} | "
                  f"{c['probability']:.2f} [{c['low']:.2f}, {c['high']:.2f}] |" for c in compares]
        lines.append("")
    lines.append("Intervals: 95% stratified bootstrap over seeds (rliable). IQM: interquartile mean.")
    if any(t["comm_every"] > 1 for t in table):
        lines.append("K: the coach sends at every K-th decision time only (`python -m cpfast.evaluate --comm-every K`).")
    for note in warnings + notes:
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"


def parse_pairs(items) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        x, sep, y = item.partition(":")
        if not sep or x not in METHODS or y not in METHODS:
            raise ValueError(f"--compare takes METHOD:METHOD with methods from {', '.join(METHODS)}, got {item!r}")
        pairs.append((x, y))
    return pairs


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cpfast.report", description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="+", metavar="SWEEP_DIR", help="sweep folders or run directories")
    p.add_argument("--compare", nargs="+", default=["copa:aqmix", "copa:aqmix_full", "aqmix_full:aqmix"],
                   metavar="X:Y", help="method pairs for the probability of improvement")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--out", default="report", help="output folder (default ./report)")
    return p.parse_args(argv)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    try:
        if args.reps < 1:
            raise ValueError(f"--reps must be positive, got {args.reps}")
        pairs = parse_pairs(args.compare)
        runs, notes = find_runs(args.paths)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    if not any(r.finished for r in runs):
        raise SystemExit("error: no finished runs (summary.json) under " + " ".join(args.paths)
                         + ("\n" + "\n".join(notes) if notes else ""))
    table, warnings = summarise(runs, args.reps)
    compares = comparisons(table, pairs, args.reps)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "report.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS + tuple(f"{k}_iqm" for k in OUTCOME_FIELDS))
        writer.writeheader()
        for t in table:
            writer.writerow({k: (" ".join(map(str, t[k])) if k == "seeds" else t[k]) for k in CSV_FIELDS}
                            | {f"{k}_iqm": t[k]["iqm"] for k in OUTCOME_FIELDS if k in t})
    (out / "report.json").write_text(json.dumps(marl_eval_json(runs), indent=1))
    (out / "comparisons.json").write_text(json.dumps(compares, indent=1))
    text = markdown(table, compares, notes, warnings)
    (out / "report.md").write_text(text)
    pictures = plot_curves(runs, out)
    print(text + f"wrote {out / 'report.md'}, report.csv, report.json, comparisons.json"
          + "".join(f", {p.name}" for p in pictures) + ("" if pictures else " (no learning curves: the runs have no logs)"))
    return table


if __name__ == "__main__":
    main()

"""Figures of trained runs: learning curves and, from an evaluation, reward vs communication.

    python -m cpfast.plot runs/rc_copa_s* runs/rc_aqmix_s* --out figures
    python -m cpfast.plot runs/rc_copa_s* --eval-csv results/eval.csv --out figures

learning_curves.png: training return (mean of the last 100 episodes, as logged) against env
steps, one panel per environment (runs of different environments are never averaged), per cell
(a method and its settings, as the report groups runs: ``cpfast.cells``) the mean over seeds
with a ±s.e. band (sample std / sqrt(n_seeds)), each seed interpolated onto a common env-step
grid. reward_vs_communication.png: for coach methods, mean
return against communication frequency across the beta sweep, one panel per composition.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from .cells import cell_key, cell_labels  # noqa: E402
from .config import from_dict, to_dict  # noqa: E402
from .evaluate import read_csv, read_log, summarise  # noqa: E402

PROGRESS_COLUMNS = ("env_steps", "train_return")  # what the learning curves read from progress.csv


def read_progress(run_dir: str | Path) -> tuple[dict, np.ndarray, np.ndarray]:
    """The run's configuration (every Config field) and its (env_steps, train_return) log, rows
    without a return dropped."""
    run_dir = Path(run_dir)
    config_path, log_path = run_dir / "config.json", run_dir / "progress.csv"
    for path in (config_path, log_path):
        if not path.is_file():
            raise ValueError(f"{run_dir} is not a run directory: it has no {path.name}")
    try:
        stored = json.loads(config_path.read_text())
        if "method" not in stored:
            raise KeyError("method")
        config = to_dict(from_dict(stored))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{config_path} does not hold a run configuration with a method ({error!r})") from None
    rows = read_log(log_path, PROGRESS_COLUMNS, "a progress.csv written by python -m cpfast.train (columns "
                    f"{', '.join(PROGRESS_COLUMNS)}, ...)", lambda r: (float(r["env_steps"]), float(r["train_return"])))
    log = np.array([r for r in rows if not math.isnan(r[1])]).reshape(-1, 2)
    if not len(log):
        raise ValueError(f"{log_path} has no logged training return yet")
    return config, log[:, 0], log[:, 1]


def read_evals(run_dir: str | Path) -> dict[float, float]:
    """The run's periodic greedy evaluations (``evals.csv``): env steps -> return; empty if none."""
    path = Path(run_dir) / "evals.csv"
    if not path.is_file():
        return {}
    return dict(read_log(path, ("env_steps", "return"), "an evals.csv written by python -m cpfast.train",
                         lambda r: (float(r["env_steps"]), float(r["return"]))))


def curve_groups(run_dirs) -> dict[str, dict[str, list[tuple[np.ndarray, np.ndarray, dict[float, float]]]]]:
    """env -> cell label -> each seed's (env steps, training return, greedy evaluations)."""
    runs = [(read_progress(run_dir), read_evals(run_dir)) for run_dir in run_dirs]
    labels = cell_labels(cell_key(config) for (config, _, _), _ in runs)
    groups: dict[str, dict[str, list]] = {}
    for (config, steps, returns), evals in runs:
        groups.setdefault(config["env"], {}).setdefault(labels[cell_key(config)], []).append((steps, returns, evals))
    return groups


def plot_learning_curves(run_dirs, path: str | Path, points: int = 200) -> Path:
    """Training return (solid, with its s.e. band over seeds) and, where runs logged them, the
    periodic greedy evaluations at the same steps (dashed, markers: mean over the seeds that have
    that point), per env and cell."""
    by_env = curve_groups(run_dirs)
    fig, axes = plt.subplots(1, len(by_env), figsize=(7 * len(by_env), 4.5), squeeze=False)
    for ax, (env, by_cell) in zip(axes[0], sorted(by_env.items())):
        for label, curves in sorted(by_cell.items()):
            # The grid spans only the steps every seed reached, so each point averages all seeds.
            lo, hi = max(s[0] for s, _, _ in curves), min(s[-1] for s, _, _ in curves)
            grid = np.linspace(lo, hi, points) if hi > lo else np.array([hi])
            values = np.stack([np.interp(grid, s, r) for s, r, _ in curves])
            mean = values.mean(axis=0)
            se = values.std(axis=0, ddof=1) / math.sqrt(len(values)) if len(values) > 1 else np.zeros_like(mean)
            seeds = f"{len(curves)} seed{'s' * (len(curves) > 1)}"
            line, = ax.plot(grid, mean, marker="o" if len(grid) == 1 else None, label=f"{label} ({seeds})")
            ax.fill_between(grid, mean - se, mean + se, color=line.get_color(), alpha=0.25, linewidth=0)
            runs = [e for _, _, e in curves if e]
            at = sorted({s for e in runs for s in e})
            if at:
                greedy = [np.mean([e[s] for e in runs if s in e]) for s in at]
                ax.plot(at, greedy, "--", marker="s", color=line.get_color(), label=f"{label}: greedy evaluation")
        ax.set(xlabel="env steps", ylabel="return (mean ± s.e. over seeds)",
               title=f"{env}: training return (ε-greedy) and greedy evaluations")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_reward_vs_communication(rows: list[dict], path: str | Path) -> Path | None:
    """Mean return against communication frequency over the beta sweep; None if no coach rows."""
    summary = [s for s in summarise(rows) if s["beta"] is not None]
    if not summary:
        return None
    if len({s["env"] for s in summary}) > 1:
        raise ValueError(f"{', '.join(sorted(map(str, {s['env'] for s in summary})))}: plot one environment's "
                         "evaluation at a time")
    compositions = list(dict.fromkeys(s["composition"] for s in summary))
    fig, axes = plt.subplots(1, len(compositions), figsize=(5 * len(compositions), 4.2), squeeze=False)
    for ax, composition in zip(axes[0], compositions):
        for method in sorted({s["method"] for s in summary if s["composition"] == composition}):
            rows = [s for s in summary if (s["method"], s["composition"]) == (method, composition)]
            # Where a fixed schedule was evaluated (beta = -1, --comm-every K > 1), it is a second
            # line, the control at equal frequency, starting from the always-send point (K = 1).
            fixed = [s for s in rows if s["beta"] < 0] if any(s["comm_every"] > 1 for s in rows) else []
            adaptive = f"{method}, adaptive rule" if fixed else method
            lines = ((adaptive, [s for s in rows if s not in fixed and s["comm_every"] == 1], lambda s: f"β={s['beta']:g}"),
                     (f"{method}, fixed schedule", fixed, lambda s: f"K={s['comm_every']}"))
            for name, points, tag in lines:
                if not points:
                    continue
                points = sorted(points, key=lambda s: s["comm_frequency"])
                x = np.array([s["comm_frequency"] for s in points]) * 100
                bars = ax.errorbar(x, [s["return"] for s in points],
                                   xerr=np.nan_to_num([s["comm_frequency_se"] * 100 for s in points]),
                                   yerr=np.nan_to_num([s["return_se"] for s in points]), marker="o", capsize=3,
                                   label=name, ls="-" if name == adaptive else "--")
                # One label per point, alternating above and below the line, so neighbours do not overprint.
                for k, (s, xi) in enumerate(zip(points, x)):
                    ax.annotate(tag(s), (xi, s["return"]), textcoords="offset points",
                                xytext=(0, 7 if k % 2 else -12), ha="center", fontsize=7, color=bars[0].get_color())
        ax.set_xscale("log")  # frequencies from a few percent to 100 %
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}%"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set(title=composition, xlabel="communication frequency (%, log scale)", ylabel="evaluation return")
        ax.grid(alpha=0.3)
        ax.legend()
    env = f"{summary[0]['env']}: " if summary[0]["env"] else ""  # eval.csv files before the env column lack it
    # two lines when one panel is too narrow for the whole title
    joint = "\n" if len(compositions) == 1 else " "
    fig.suptitle(f"{env}reward vs communication{joint}(mean ± s.e. over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_win_rates(rows: list[dict], path: str | Path) -> Path | None:
    """StarCraft: win / draw / loss rate per method and composition (mean ± s.e. over seeds);
    None when the rows have no outcomes."""
    summary = [s for s in summarise(rows) if "win_rate" in s and s["beta"] in (None, 0.0)]
    if not summary:
        return None
    labels = [f"{s['method']}\n{s['composition']}" for s in summary]
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(summary)), 4.2))
    x = np.arange(len(summary))
    for k, (rate, colour) in enumerate((("win_rate", "tab:green"), ("draw_rate", "tab:grey"), ("loss_rate", "tab:red"))):
        ax.bar(x + (k - 1) * 0.27, [100 * s[rate] for s in summary], 0.27, color=colour, label=rate.split("_")[0],
               yerr=np.nan_to_num([100 * s[f"{rate}_se"] for s in summary]), capsize=3)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set(ylabel="% of evaluation episodes", ylim=(0, 100),
           title=f"{summary[0]['env']}: outcomes (mean ± s.e. over seeds)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cpfast.plot", description=__doc__.splitlines()[0])
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="runs whose progress.csv to plot")
    p.add_argument("--eval-csv", help="eval.csv from python -m cpfast.evaluate")
    p.add_argument("--out", default=".", help="folder for the figures (default: current folder)")
    return p.parse_args(argv)


def main(argv=None) -> list[Path]:
    args = parse_args(argv)
    if not args.run_dirs and not args.eval_csv:
        raise SystemExit("error: give at least one RUN_DIR or --eval-csv")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise SystemExit(f"error: --out {out} is a file, not a folder")
    if args.eval_csv and not Path(args.eval_csv).is_file():
        raise SystemExit(f"error: --eval-csv {args.eval_csv}: no such file")
    written = []
    try:
        for run_dir in args.run_dirs:  # bad logs are named before anything is written
            read_progress(run_dir)
            read_evals(run_dir)
        rows = read_csv(args.eval_csv) if args.eval_csv else None
        out.mkdir(parents=True, exist_ok=True)
        if args.run_dirs:
            written.append(plot_learning_curves(args.run_dirs, out / "learning_curves.png"))
        if rows is not None:
            figure = plot_reward_vs_communication(rows, out / "reward_vs_communication.png")
            if figure is None:
                print(f"{args.eval_csv} has no coach-method rows: no reward_vs_communication.png")
            else:
                written.append(figure)
            figure = plot_win_rates(rows, out / "win_rates.png")
            if figure is not None:
                written.append(figure)
    except (OSError, KeyError, ValueError) as error:  # missing or malformed logs: a message, not a trace
        raise SystemExit(f"error: {error}") from None
    for path in written:
        print(f"wrote {path}")
    return written


if __name__ == "__main__":
    main()

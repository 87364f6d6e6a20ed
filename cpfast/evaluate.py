"""Evaluate trained runs on the zero-shot compositions and the beta sweep (docs/method.md §13-§14).

    python -m cpfast.evaluate runs/rc_copa_s0 runs/rc_copa_s1 runs/rc_aqmix_s0 --out results
    python -m cpfast.evaluate runs/* --compositions n5 n6 --betas 0 3 --episodes 100

Each run's checkpoint is evaluated with greedy players and mean strategies on the same evaluation
episodes; runs are grouped by environment and method (runs of different environments are never
averaged together) and reported as mean ± s.e. over seeds, the sample standard deviation over
sqrt(n_seeds); a single seed shows its within-run standard error over episodes instead. Writes
eval.csv (one row per run, composition and beta) and eval.md (the grouped table). StarCraft runs
add win, draw and loss rates (a time-out is a draw) to both. For confidence intervals and the
interquartile mean over many seeds, use ``python -m cpfast.report``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import checkpoint
from .checkpoint import CheckpointError
from .config import Config, check_beta, from_dict, parse_overrides
from .devices import resolve_device
from .envs import REGISTRY, make_env
from .envs.episodes import OUTCOMES
from .nn import Networks
from .rollout import evaluate



def composition_rank(env: str | None, composition: str) -> int:
    """Where ``composition`` stands in its env's registered list (tables follow that order);
    unknown ones come last."""
    names = REGISTRY[env].compositions if env in REGISTRY else ()
    return names.index(composition) if composition in names else len(names)
BETAS = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0, 10.0)
CSV_FIELDS = ("run_dir", "env", "method", "seed", "checkpoint", "env_steps", "composition", "beta", "episodes", "return",
              "return_se", "comm_frequency", "comm_every")
OUTCOME_FIELDS = tuple(OUTCOMES.values())  # win_rate, draw_rate, loss_rate: envs that report outcomes
# What reading an eval.csv back needs (older files lack env, run_dir and checkpoint).
REQUIRED_FIELDS = ("method", "seed", "composition", "beta", "return", "return_se", "comm_frequency")
NA = "n/a"  # beta and communication frequency of methods without a coach (pandas reads it as NaN)


def load_run(run_dir: str | Path, which: str = "latest", device="cpu") -> tuple[Config, Networks, dict]:
    """The config and online networks stored in ``run_dir/checkpoint_<which>.pt``, and the payload.

    Raises CheckpointError naming the file when it is missing, corrupt, or not the run's."""
    path = Path(run_dir) / f"checkpoint_{which}.pt"
    payload = checkpoint.load(path)
    checkpoint.require(payload, path, ("config", "learner"))
    config_json = Path(run_dir) / "config.json"
    if config_json.is_file():  # a checkpoint copied in from another run would silently mislead
        try:
            run_config = json.loads(config_json.read_text())
        except ValueError as error:
            raise CheckpointError(f"{config_json} is not valid JSON: {error}") from error
        checkpoint.check_compatible(payload, run_config, path)
    try:
        cfg = from_dict(payload["config"])
        nets = Networks(make_env(cfg.env).spec, cfg)
        nets.load_state_dict(payload["learner"]["online"])
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as error:  # missing keys, wrong shapes, bad config
        raise CheckpointError(f"checkpoint {path} does not hold usable networks: {error}") from error
    return cfg, nets.to(device).eval(), payload


def evaluate_runs(run_dirs, compositions=None, betas=BETAS, episodes: int = 500, which: str = "latest",
                  device: str = "auto", threads: int | None = None, progress: bool = False,
                  overrides: dict | None = None, eps: float = 0.0, sample_strategies: bool = False,
                  comm_every: int = 1) -> list[dict]:
    """One row per run x composition x beta (a single row per composition for coachless methods,
    with ``beta`` and ``comm_frequency`` None). ``return_se`` is over that run's episodes.
    ``compositions=None`` takes each run's environment's evaluation set (Resource Collection:
    train, n5, n6, dynamic; StarCraft: train). Rows of StarCraft runs also carry ``win_rate``,
    ``draw_rate`` and ``loss_rate``. ``overrides`` change evaluation settings of every run's
    config (e.g. ``eval_seed``); fields that define the networks cannot change. ``comm_every=k``
    lets coaches send only at every k-th decision time (``rollout.Team``; a row column)."""
    fixed = sorted(set(overrides or {}) & set(checkpoint.ARCHITECTURE_FIELDS))
    if fixed:
        raise ValueError(f"{', '.join(fixed)} define the trained networks and cannot change at evaluation")
    device = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    rows = []
    for run_dir in tqdm(run_dirs, desc="evaluating runs", unit="run", disable=not progress, dynamic_ncols=True):
        cfg, nets, payload = load_run(run_dir, which, device)
        if threads:
            cfg = cfg.replace(num_threads=threads)
        if overrides:
            cfg = cfg.replace(**overrides)
        entry = REGISTRY[cfg.env]
        for composition in compositions or entry.eval_compositions or entry.compositions:
            for beta in (betas if cfg.uses_coach else (None,)):
                result = evaluate(nets, cfg, composition, 0.0 if beta is None else float(beta), episodes, device,
                                  eps=eps, sample_strategies=sample_strategies, comm_every=comm_every)
                rows.append({
                    "run_dir": str(run_dir), "env": cfg.env, "method": cfg.method, "seed": cfg.seed, "checkpoint": which,
                    "env_steps": payload.get("counter"), "composition": composition,
                    "beta": None if beta is None else float(beta), "episodes": episodes,
                    "return": result["return"], "return_se": result["return_se"],
                    "comm_frequency": result["comm_frequency"] if cfg.uses_coach else None,
                    "comm_every": comm_every if cfg.uses_coach else None,
                } | {k: result[k] for k in OUTCOME_FIELDS if k in result})
    return rows


def mean_se(values, within_run_se=None) -> tuple[float, float]:
    """Mean and s.e. over seeds: the sample standard deviation (ddof=1) / sqrt(n). One seed has no
    spread over seeds: its s.e. is then ``within_run_se`` (over that run's episodes)."""
    values = np.asarray(values, dtype=float)
    if len(values) == 1:
        return float(values[0]), float("nan") if within_run_se is None else float(within_run_se)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


def comm_every_of(row: dict) -> int:
    """The row's fixed schedule (``--comm-every K``); rows from before the column, and coachless
    methods, count as every decision time (1)."""
    return row.get("comm_every") or 1


def beta_label(beta: float | None, comm_every: int = 1) -> str:
    """How tables show a row's communication setting: ``n/a``, ``2`` or, on a schedule, ``-1, K=4``."""
    if beta is None:
        return NA
    return f"{beta:g}" + (f", K={comm_every}" if comm_every > 1 else "")


def _group_key(row: dict) -> tuple:
    """(env, method, composition, beta, comm_every): a fixed schedule is its own group."""
    return row.get("env"), row["method"], row["composition"], row["beta"], comm_every_of(row)


def duplicate_seeds(rows: list[dict]) -> list[str]:
    """Groups in which a seed appears twice (the same run given twice, or two runs that differ in
    something other than env, method and seed)."""
    seen: dict[tuple, list[int]] = {}
    for row in rows:
        seen.setdefault(_group_key(row), []).append(row["seed"])
    return [f"{env} {method} {composition} beta={beta_label(beta, every)}: seeds {sorted(seeds)} repeat"
            for (env, method, composition, beta, every), seeds in seen.items() if len(set(seeds)) != len(seeds)]


def summarise(rows: list[dict]) -> list[dict]:
    """Groups per-run rows by (env, method, composition, beta, comm_every): mean ± s.e. over seeds."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(_group_key(row), []).append(row)
    keys = sorted(groups, key=lambda k: (str(k[0]), k[1], composition_rank(k[0], k[2]), k[2],
                                         -math.inf if k[3] is None else k[3], k[4]))
    summary = []
    for env, method, composition, beta, every in keys:
        group = groups[(env, method, composition, beta, every)]
        ret, ret_se = mean_se([r["return"] for r in group], group[0]["return_se"])
        comm, comm_se = mean_se([r["comm_frequency"] for r in group]) if beta is not None else (None, None)
        summary.append({"env": env, "method": method, "composition": composition, "beta": beta, "comm_every": every,
                        "seeds": sorted(r["seed"] for r in group), "return": ret, "return_se": ret_se,
                        "comm_frequency": comm, "comm_frequency_se": comm_se})
        if all(r.get(k) is not None for r in group for k in OUTCOME_FIELDS):
            for k in OUTCOME_FIELDS:
                summary[-1][k], summary[-1][f"{k}_se"] = mean_se([r[k] for r in group])
    return summary


def write_csv(rows: list[dict], path: str | Path) -> None:
    """CSV_FIELDS, plus OUTCOME_FIELDS when some row has them (n/a in the rows that do not)."""
    fields = CSV_FIELDS + (OUTCOME_FIELDS if any(k in row for row in rows for k in OUTCOME_FIELDS) else ())
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: NA if row.get(k) is None else row[k] for k in fields})


def read_log(path: str | Path, required, expected: str, convert) -> list:
    """``convert(row)`` of every row of the CSV file ``path``, after checking that it has the
    ``required`` columns; errors name the file, the missing columns or the bad line, and say what
    was ``expected`` there."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [k for k in required if k not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{path} lacks the column{'s' * (len(missing) > 1)} {', '.join(missing)}; expected "
                             f"{expected}")
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                rows.append(convert(row))
            except (TypeError, ValueError) as error:
                raise ValueError(f"{path} line {line}: {error}") from None
        return rows


def read_csv(path: str | Path) -> list[dict]:
    """eval.csv back into rows as evaluate_runs returns them."""
    numeric = {"seed": int, "env_steps": int, "episodes": int, "beta": float, "return": float, "return_se": float,
               "comm_frequency": float, "comm_every": int, **{k: float for k in OUTCOME_FIELDS}}
    return read_log(path, REQUIRED_FIELDS, f"an eval.csv written by python -m cpfast.evaluate (columns "
                    f"{', '.join(CSV_FIELDS)})", lambda row: {k: (None if v in (NA, "") else numeric[k](v) if k in numeric
                                                              else v) for k, v in row.items()})


def markdown_table(summary: list[dict]) -> str:
    header = ("env", "method", "composition", "β", "seeds", "return (mean ± s.e.)", "comm. frequency (mean ± s.e.)")
    outcomes = any("win_rate" in s for s in summary)
    if outcomes:  # StarCraft
        header += tuple(f"{k.split('_')[0]} rate (mean ± s.e.)" for k in OUTCOME_FIELDS)
    lines = [header]
    for s in summary:
        comm = NA if s["beta"] is None else _pm(s["comm_frequency"], s["comm_frequency_se"], ".1%")
        rates = tuple(_pm(s[k], s[f"{k}_se"], ".1%") if k in s else NA for k in OUTCOME_FIELDS) if outcomes else ()
        lines.append((str(s["env"]), s["method"], s["composition"], beta_label(s["beta"], s["comm_every"]),
                      str(len(s["seeds"])), _pm(s["return"], s["return_se"], ".2f"), comm, *rates))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    fmt = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([fmt(lines[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(fmt, lines[1:])])


def _pm(value: float, se: float, fmt: str) -> str:
    return f"{value:{fmt}}" + ("" if se != se else f" ± {se:{fmt}}")  # no ± where one seed has no s.e.


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cpfast.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--compositions", nargs="+",
                   help="default: the run's environment's set (train n5 n6 dynamic; StarCraft: train)")
    p.add_argument("--betas", nargs="+", type=float, default=list(BETAS),
                   help="communication thresholds for coach methods (-1: send every time)")
    p.add_argument("--episodes", type=int, default=500, help="evaluation episodes per run and setting")
    p.add_argument("--checkpoint", choices=("latest", "best"), default="latest",
                   help="latest: the model at the end of training (default); best: highest training return")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    p.add_argument("--threads", type=int, help="CPU threads for torch and the envs (default: the runs' setting)")
    p.add_argument("--eps", type=float, default=0.0,
                   help="act epsilon-greedily as training does (diagnosis; default 0: greedy)")
    p.add_argument("--sampled-strategies", action="store_true",
                   help="send sampled strategies as training does (diagnosis; default: the coach's mean)")
    p.add_argument("--comm-every", type=int, default=1, metavar="K",
                   help="coaches send only at every K-th decision time, forced sends aside (with --betas -1: a "
                        "fixed schedule at about 1/K frequency, the control for adaptive communication; default 1)")
    p.add_argument("--set", nargs="+", default=[], metavar="FIELD=VALUE", dest="settings",
                   help="evaluation settings of the runs' configs, e.g. --set eval_seed=123")
    p.add_argument("--out", default=".", help="folder for eval.csv and eval.md (default: current folder)")
    return p.parse_args(argv)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.episodes < 1:
        raise SystemExit("error: --episodes must be positive")
    if not 0.0 <= args.eps <= 1.0:
        raise SystemExit(f"error: --eps must lie in [0, 1], got {args.eps}")
    if args.threads is not None and args.threads < 1:
        raise SystemExit(f"error: --threads must be positive, got {args.threads}")
    if args.comm_every < 1:
        raise SystemExit(f"error: --comm-every must be positive, got {args.comm_every}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():  # found out before the evaluation, not after it
        raise SystemExit(f"error: --out {out} is a file, not a folder")
    try:
        for beta in args.betas:
            check_beta(beta, "--betas")
        rows = evaluate_runs(args.run_dirs, args.compositions, args.betas, args.episodes, args.checkpoint,
                             args.device, args.threads, progress=True, overrides=parse_overrides(args.settings),
                             eps=args.eps, sample_strategies=args.sampled_strategies, comm_every=args.comm_every)
    except (CheckpointError, ValueError) as error:  # bad files, unknown compositions: a message, not a trace
        raise SystemExit(f"error: {error}") from None
    table = markdown_table(summarise(rows))
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "eval.csv")
    acting = ("" if args.eps == 0 and not args.sampled_strategies else
              f"acting as in training (eps {args.eps:g}{', sampled strategies' if args.sampled_strategies else ''}); ")
    if args.comm_every > 1:
        acting += f"coaches send only at every {args.comm_every}th decision time (forced sends aside); "
    note = (f"{args.episodes} evaluation episodes per run and setting, checkpoint `{args.checkpoint}`; {acting}"
            "mean ± s.e. over seeds (sample std / sqrt(n_seeds)); one seed: its s.e. over episodes.")
    for warning in duplicate_seeds(rows):
        note += f"\n\nwarning: {warning}"
    (out / "eval.md").write_text(f"{table}\n\n{note}\n")
    print(f"{table}\n\n{note}\nwrote {out / 'eval.csv'} and {out / 'eval.md'}")
    return rows


if __name__ == "__main__":
    main()

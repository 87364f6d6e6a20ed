"""The command line: ``python -m cpfast.sc2_calibration compare|fit ...``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from .backends import DEFAULT_GRID, POLICIES, BackendFactory, CalibrationConfig, default_grid, run_backend, sc2_backend, sim_backend
from .fit import fit
from .report import write_report
from .statistics import Weights, compare

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
    parser = argparse.ArgumentParser(prog="python -m cpfast.sc2_calibration",
                                     description="Calibration harness of the StarCraft simulator against a reference "
                                     "backend (docs/environments.md, StarCraft §12).")
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


"""Hyper-parameter search on Ray Tune: a space over Config fields, several seeds per configuration,
ASHA early stopping on the greedy evaluations made during training.

    python -m cpfast.search search.yaml --out sweeps/search

The search file (YAML or JSON):

    env: resource_collection
    method: copa
    preset: quick
    seeds: 0-2                 # every configuration trains these seeds side by side
    set: {total_steps: 1100000}
    space:                     # Config field -> one of choice / uniform / loguniform / randint
      lr: {loguniform: [2.0e-4, 2.0e-3]}
      batch_size: {choice: [32, 64, 128]}
    num_samples: 8             # configurations drawn
    evaluations: 5             # greedy evaluations per run (ASHA's rungs)
    grace: 2                   # evaluations before ASHA may stop a configuration
    threads_per_trial: 1

A trial trains its seeds in lockstep, ``total_steps / evaluations`` steps at a time, and reports
the seeds' mean greedy return (``eval_return``) after each stretch. Each seed is an ordinary run
directory, ``OUT/trials/<trial id>/s<seed>``; running the same command again restores the Tune
experiment, and its unfinished trials resume from their checkpoints. Writes ``OUT/best.json``
(the configurations ranked, best first, as preset candidates) and ``OUT/search.md``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from .config import parse_overrides, to_dict
from .envs import make_env
from .experiment import make_config
from .sweep import INSTALL_HINT, parse_seeds, sweep_from_file
from .train import Trainer, planned_iterations, resume_trainer

SPACE_KINDS = ("choice", "uniform", "loguniform", "randint")
KNOWN = {"env", "method", "preset", "seeds", "set", "space", "num_samples", "evaluations", "grace", "threads_per_trial",
         "gpus_per_trial", "device", "out", "search_seed"}


def tune_space(space: dict) -> dict:
    """The file's space as Ray Tune domains; each value is checked against its Config field."""
    from ray import tune

    if not isinstance(space, dict) or not space:
        raise ValueError("space must map Config fields to {choice: [...]} / {uniform: [lo, hi]} / ...")
    domains = {}
    for name, entry in space.items():
        if not isinstance(entry, dict) or len(entry) != 1 or next(iter(entry)) not in SPACE_KINDS:
            raise ValueError(f"space.{name} must be one of {', '.join(f'{{{k}: ...}}' for k in SPACE_KINDS)}")
        (kind, values), = entry.items()
        for value in (values if isinstance(values, list) else [values]):
            parse_overrides([f"{name}={value}"])  # unknown fields and wrong types fail here
        domains[name] = tune.choice(values) if kind == "choice" else getattr(tune, kind)(*values)
    return domains


def trial(params: dict, setup: dict) -> None:
    """One configuration: its seeds in lockstep, the mean greedy return reported after each stretch."""
    from ray import tune

    trial_dir = Path(setup["out"]) / "trials" / tune.get_context().get_trial_id()
    overrides = dict(setup["fixed"]) | params | {"method": setup["method"], "num_threads": setup["threads"],
                                                 "device": setup["device"]}
    trainers = []
    for seed in setup["seeds"]:
        run_dir = trial_dir / f"s{seed}"
        if (run_dir / "checkpoint_latest.pt").is_file():
            trainers.append(resume_trainer(run_dir, {"num_threads": setup["threads"], "device": setup["device"]}))
        else:
            cfg = make_config(setup["env"], setup["preset"], **overrides, seed=seed)
            trainers.append(Trainer(cfg.replace(eval_every=max(1, _iterations(cfg) // setup["evaluations"])), run_dir))
    stretch = trainers[0].eval_every
    while trainers[0].iteration < trainers[0].n_iters:
        target = min(trainers[0].iteration + stretch, trainers[0].n_iters)
        for trainer in trainers:
            trainer.run(progress=False, stop_at=target)
        returns = [_last_eval(trainer) for trainer in trainers]
        tune.report({"eval_return": float(np.mean(returns)), "eval_return_min": float(np.min(returns)),
                     "env_steps": trainers[0].counter, "wall_seconds": max(t.wall_seconds for t in trainers)})


def _iterations(cfg) -> int:
    return planned_iterations(cfg, make_env(cfg.env, num_envs=1, num_threads=1).spec.episode_limit)


def _last_eval(trainer: Trainer) -> float:
    lines = (trainer.run_dir / "evals.csv").read_text().strip().splitlines()
    header, last = lines[0].split(","), lines[-1].split(",")
    return float(last[header.index("return")])


def run_search(spec: dict, out: str | Path, address: str | None = None) -> list[dict]:
    """Runs (or continues) the search of ``spec``; returns the configurations ranked, best first."""
    try:
        import ray
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler
        from ray.tune.search.basic_variant import BasicVariantGenerator
    except ImportError:
        raise SystemExit(f"error: {INSTALL_HINT}") from None
    unknown = sorted(set(spec) - KNOWN)
    if unknown:
        raise ValueError(f"unknown search settings {', '.join(unknown)}; expected some of {', '.join(sorted(KNOWN))}")
    out = Path(out).resolve()
    fixed = spec.get("set") or {}
    fixed = parse_overrides(f"{k}={v}" for k, v in fixed.items())
    setup = {"env": spec.get("env", "resource_collection"), "method": spec.get("method", "copa"),
             "preset": spec.get("preset"), "seeds": parse_seeds(spec.get("seeds", "0-2")), "fixed": fixed,
             "evaluations": int(spec.get("evaluations", 5)), "threads": int(spec.get("threads_per_trial", 1)),
             "device": spec.get("device", "auto"), "out": str(out)}
    make_config(setup["env"], setup["preset"], **fixed)  # a bad base configuration fails before Ray starts
    space = tune_space(spec.get("space"))
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, **({"address": address} if address else
                                                                   {"num_cpus": os.cpu_count()}))
    trainable = tune.with_resources(tune.with_parameters(trial, setup=setup),
                                    {"cpu": setup["threads"], "gpu": float(spec.get("gpus_per_trial", 0.0))})
    experiment = out / "tune"
    if tune.Tuner.can_restore(str(experiment)):
        tuner = tune.Tuner.restore(str(experiment), trainable, resume_unfinished=True, restart_errored=True)
    else:
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=setup["evaluations"],
                                  grace_period=min(int(spec.get("grace", 2)), setup["evaluations"]))
        tuner = tune.Tuner(trainable, param_space=space, run_config=tune.RunConfig(
            storage_path=str(out), name="tune", verbose=0), tune_config=tune.TuneConfig(
            metric="eval_return", mode="max", scheduler=scheduler, num_samples=int(spec.get("num_samples", 8)),
            search_alg=BasicVariantGenerator(random_state=int(spec.get("search_seed", 0)))))
    results = tuner.fit()
    ranked = []
    for result in results:
        if result.metrics and "eval_return" in result.metrics:
            ranked.append({"eval_return": result.metrics["eval_return"],
                           "eval_return_min": result.metrics["eval_return_min"],
                           "env_steps": result.metrics["env_steps"], "wall_seconds": result.metrics["wall_seconds"],
                           "evaluations": result.metrics["training_iteration"], "overrides": result.config,
                           "run_dirs": [str(out / "trials" / result.metrics["trial_id"] / f"s{s}")
                                        for s in setup["seeds"]],
                           "error": None if result.error is None else str(result.error).splitlines()[0]})
    ranked.sort(key=lambda r: (r["evaluations"], r["eval_return"]), reverse=True)
    base = to_dict(make_config(setup["env"], setup["preset"], **fixed))
    (out / "best.json").write_text(json.dumps({"base": {"env": setup["env"], "preset": setup["preset"],
                                                        "method": setup["method"], "set": fixed},
                                               "ranked": ranked, "base_config": base}, indent=2, default=str))
    lines = ["| rank | mean greedy return | worst seed | evaluations | env steps | overrides |", "|---|---|---|---|---|---|"]
    lines += [f"| {i + 1} | {r['eval_return']:.2f} | {r['eval_return_min']:.2f} | {r['evaluations']} | "
              f"{r['env_steps']:,} | {', '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in r['overrides'].items())} |"
              for i, r in enumerate(ranked)]
    (out / "search.md").write_text("\n".join(lines) + "\n\nSeeds per configuration: "
                                   + ", ".join(map(str, setup["seeds"])) + "; ASHA on the mean greedy return.\n")
    print("\n".join(lines))
    return ranked


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m cpfast.search", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    p.add_argument("file", help="the search file (YAML or JSON)")
    p.add_argument("--out", help="search folder (default: the file's out, else sweeps/search)")
    p.add_argument("--address", help="a Ray cluster: auto, or HOST:PORT (default: this machine)")
    args = p.parse_args(argv)
    try:
        spec = sweep_from_file(args.file)
        return run_search(spec, args.out or spec.get("out") or os.path.join("sweeps", "search"), args.address)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    main()

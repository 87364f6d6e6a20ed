"""Many runs on Ray: a grid over env, method, seed, preset and Config overrides, or a search.

    python -m cpfast.sweep --env resource_collection --methods copa,aqmix,aqmix_full --seeds 0-4 \\
        --preset quick --set lr=5e-4 --out sweeps/rc_quick
    python -m cpfast.sweep --file sweeps/rc.yaml              # the same, from a YAML/JSON file
    python -m cpfast.sweep ... --address auto                 # on a cluster started with `ray start`
    python -m cpfast.sweep --search search.yaml --out sweeps/search   # Ray Tune + ASHA (README: "Many runs")

Each cell is one ordinary run directory, ``OUT/<env>/<method>/<preset>[+FIELD=VALUE...]/s<seed>``,
with the files ``python -m cpfast.train`` writes, trained by a Ray task that holds
``--threads-per-run`` CPUs (and ``--gpus-per-run`` of a GPU). Running the same sweep again skips
finished cells, resumes killed ones from their checkpoints and retries failed ones; a failing cell
leaves its traceback in ``error.txt`` and the others go on. Ctrl-C stops the sweep: every cell can
resume. After training, each cell is evaluated greedily on its env's evaluation compositions and
the given betas (``eval.csv`` in the run directory, as ``python -m cpfast.evaluate`` writes it);
``python -m cpfast.report OUT`` summarises.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import signal
import sys
import traceback
from pathlib import Path

from .config import MACHINE_FIELDS, METHODS, PRESETS, check_beta, default_preset, parse_overrides, to_dict
from .envs import make_env
from .evaluate import BETAS, evaluate_runs, write_csv
from .experiment import make_config
from .train import Trainer, planned_iterations, resume_trainer

INSTALL_HINT = "the sweep tool needs Ray: pip install 'cpfast[sweep]' (or pip install '.[sweep]' in a clone)"
STATUS_FILES = ("summary.json", "eval.csv", "error.txt")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One run of a sweep: what `python -m cpfast.train` would be given."""

    env: str
    method: str
    seed: int
    preset: str
    overrides: tuple[tuple[str, object], ...] = ()  # sorted (field, value) pairs

    @property
    def name(self) -> str:
        tag = "+".join([self.preset, *(f"{k}={v}" for k, v in self.overrides)])
        return f"{self.env}/{self.method}/{tag}/s{self.seed}"

    def config(self, threads: int, device: str):
        overrides = dict(self.overrides) | {"method": self.method, "seed": self.seed, "num_threads": threads,
                                            "device": device}
        return make_config(self.env, self.preset, **overrides)


def parse_seeds(text: str) -> list[int]:
    """``"0-4"``, ``"0,2,5"`` or ``"1-3,7"``."""
    seeds: list[int] = []
    for part in str(text).split(","):
        first, dash, last = part.strip().partition("-")
        try:
            seeds += list(range(int(first), int(last) + 1)) if dash else [int(first)]
        except ValueError:
            raise ValueError(f"seeds take a list such as 0-4 or 0,2,5, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty list without repeats, got {text!r}")
    return seeds


def grid(envs, methods, seeds, presets, fixed: dict, axes: dict[str, list], variants=({},)) -> list[Cell]:
    """Every combination; ``fixed`` overrides apply to all cells, ``axes`` are crossed (FIELD ->
    values), and each of ``variants`` (a dict of overrides, Hydra-style) adds its own cells."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {', '.join(unknown)}; expected some of {', '.join(METHODS)}")
    cells = []
    for env, preset_name, variant, *values in itertools.product(envs, presets, variants, *axes.values()):
        overrides = fixed | variant | dict(zip(axes, values))
        preset_name = preset_name or default_preset(env)
        if preset_name not in PRESETS:
            raise ValueError(f"unknown preset {preset_name!r}; expected one of {', '.join(PRESETS)}")
        # Seed-major: a sweep stopped part-way has compared every method on the same seeds.
        for seed, method in itertools.product(seeds, methods):
            cell = Cell(env, method, seed, preset_name, tuple(sorted(overrides.items())))
            cell.config(1, "cpu")  # bad overrides fail here, before anything runs
            cells.append(cell)
    return cells


def cell_status(run_dir: Path) -> str:
    if (run_dir / "summary.json").is_file() and (run_dir / "eval.csv").is_file():
        return "done"
    if (run_dir / "error.txt").is_file():
        return "failed"
    if (run_dir / "checkpoint_latest.pt").is_file():
        return "resumable"
    return "new"


def check_same_run(run_dir: Path, cfg) -> None:
    """A run directory found in place must hold this cell's configuration (machine fields aside)."""
    stored_path = run_dir / "config.json"
    if not stored_path.is_file():
        return
    stored, wanted = json.loads(stored_path.read_text()), to_dict(cfg)
    wrong = [f"{k}: {stored.get(k)!r} there, {wanted[k]!r} here" for k in wanted
             if k not in MACHINE_FIELDS and stored.get(k, wanted[k]) != wanted[k]]
    if wrong:
        raise ValueError(f"{run_dir} holds another run ({'; '.join(wrong)}); use another --out")


def run_cell(cell: Cell, run_dir: str, threads: int, device: str, betas, eval_episodes: int | None) -> dict:
    """Trains (or resumes, or skips) one cell, then evaluates it; returns its summary. Runs in a
    Ray worker or in-process; an exception leaves ``error.txt`` and is raised again."""
    run_dir = Path(run_dir)
    cfg = cell.config(threads, device)
    try:
        check_same_run(run_dir, cfg)
        (run_dir / "error.txt").unlink(missing_ok=True)
        if (run_dir / "summary.json").is_file():
            summary = json.loads((run_dir / "summary.json").read_text())
        elif (run_dir / "checkpoint_latest.pt").is_file():
            summary = resume_trainer(run_dir, {"num_threads": threads, "device": device}).run(progress=False)
        else:
            summary = Trainer(cfg, run_dir).run(progress=False)
        if not (run_dir / "eval.csv").is_file():
            rows = evaluate_runs([run_dir], None, betas, eval_episodes or cfg.eval_episodes, "latest", device, threads)
            tmp = run_dir / ".eval.csv.tmp"
            write_csv(rows, tmp)
            os.replace(tmp, run_dir / "eval.csv")
        return summary
    except BaseException as error:
        if not isinstance(error, KeyboardInterrupt):
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "error.txt").write_text(traceback.format_exc())
        raise


def _env_steps(run_dir: Path) -> int:
    """The latest env-step count a run has logged (0 before its first row)."""
    try:
        with open(run_dir / "progress.csv", "rb") as f:
            f.seek(max(0, os.path.getsize(run_dir / "progress.csv") - 512))
            last = f.read().decode(errors="replace").strip().splitlines()[-1].split(",")
        return int(last[1])
    except (OSError, IndexError, ValueError):
        return 0


def _import_ray():
    try:
        import ray
    except ImportError:
        raise SystemExit(f"error: {INSTALL_HINT}") from None
    return ray


def check_max_concurrent(value) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"max concurrent runs must be a positive integer, got {value!r}")


def run_sweep(cells: list[Cell], out: str | Path, threads: int = 1, gpus: float = 0.0, device: str = "auto",
              betas=(0.0,), eval_episodes: int | None = None, address: str | None = None, max_failures: int = 0,
              progress: bool = True, max_concurrent: int | None = None) -> dict[str, str]:
    """Runs every cell not yet done, ``threads`` CPUs (and ``gpus`` GPUs) each, on Ray; returns
    each cell's final status (done, failed: <error>). Already-finished cells are not run again.
    ``max_concurrent`` runs at most that many cells at once (default: as many as the CPUs hold),
    starting them in the order of ``cells``."""
    check_max_concurrent(max_concurrent)
    ray = _import_ray()
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dirs = {cell: out / cell.name for cell in cells}
    totals = {cell: _planned_steps(cell, threads) for cell in cells}
    (out / "sweep.json").write_text(json.dumps({"cells": [dataclasses.asdict(c) for c in cells],
                                                "threads_per_run": threads, "gpus_per_run": gpus,
                                                "betas": list(betas), "eval_episodes": eval_episodes}, indent=2))
    statuses = {cell: cell_status(dirs[cell]) for cell in cells}
    todo = [cell for cell in cells if statuses[cell] != "done"]
    results = {cell.name: "done" for cell in cells if statuses[cell] == "done"}
    if not todo:
        print(f"sweep {out}: all {len(cells)} runs are done")
        return results
    if not ray.is_initialized():
        kwargs = {"address": address} if address else {"num_cpus": os.cpu_count()}
        ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
    task = ray.remote(max_calls=1)(run_cell).options(num_cpus=threads, num_gpus=gpus, max_retries=max_failures)
    queued, pending = list(todo), {}

    def launch():
        while queued and (max_concurrent is None or len(pending) < max_concurrent):
            cell = queued.pop(0)
            pending[task.remote(cell, str(dirs[cell]), threads, device, tuple(betas), eval_episodes)] = cell

    launch()
    print(f"sweep {out}: {len(cells)} runs, {len(cells) - len(todo)} done, {len(todo)} to run "
          f"({sum(s == 'resumable' for s in statuses.values())} resume from checkpoints), {threads} CPU(s) each")
    bar = tqdm(total=sum(totals.values()), unit="step", unit_scale=True, dynamic_ncols=True, disable=not progress)
    failed = 0
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the sweep as Ctrl-C does
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=5.0)
            for ref in ready:
                cell = pending.pop(ref)
                try:
                    ray.get(ref)
                    results[cell.name] = "done"
                except Exception as error:  # the cell's traceback is in its error.txt
                    failed += 1
                    cause = getattr(error, "cause", None) or error
                    results[cell.name] = f"failed: {type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
                    where = (f"; see {dirs[cell] / 'error.txt'}" if (dirs[cell] / "error.txt").is_file()
                             else "; it can resume from its checkpoint")
                    bar.write(f"{cell.name} failed ({results[cell.name][8:]}){where}")
            launch()
            done = sum(1 for v in results.values() if v == "done")
            steps = sum(totals[c] if results.get(c.name) == "done" else _env_steps(dirs[c]) for c in cells)
            bar.update(steps - bar.n)
            bar.set_postfix(done=done, running=min(len(pending), _slots(ray, threads)), failed=failed,
                            queued=len(queued), refresh=False)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref)
        bar.close()
        print(f"\nsweep stopped: {len(results)} of {len(cells)} runs finished; run the same command again to "
              "resume the others from their checkpoints")
        raise SystemExit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    bar.close()
    print(f"sweep {out}: {sum(v == 'done' for v in results.values())} done, {failed} failed of {len(cells)}")
    return results


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _slots(ray, threads: int) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1) // threads))


def _planned_steps(cell: Cell, threads: int) -> int:
    cfg = cell.config(threads, "cpu")
    limit = make_env(cfg.env, num_envs=1, num_threads=1).spec.episode_limit
    return planned_iterations(cfg, limit) * limit * cfg.n_envs


# ---------------------------------------------------------------------- command line
def sweep_from_file(path: str) -> dict:
    """A YAML or JSON file with the command line's keys: env(s), methods, seeds, preset(s), set, grid, ..."""
    if not Path(path).is_file():
        raise ValueError(f"no sweep file at {path}")
    text = Path(path).read_text()
    if path.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            raise SystemExit(f"error: reading {path} needs PyYAML ({INSTALL_HINT})") from None
        try:
            spec = yaml.safe_load(text)
        except yaml.YAMLError as error:  # its own message spans several lines
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise ValueError(f"{path} is not valid YAML: {getattr(error, 'problem', None) or error}{where}") from None
    else:
        try:
            spec = json.loads(text)
        except ValueError as error:
            raise ValueError(f"{path} is not valid JSON (YAML files end in .yaml or .yml): {error}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{path} must hold a mapping of sweep settings")
    return spec


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def cells_from_spec(spec: dict) -> list[Cell]:
    known = {"env", "envs", "methods", "seeds", "preset", "presets", "set", "grid", "variants", "out", "threads_per_run",
             "gpus_per_run", "betas", "eval_episodes", "device", "max_concurrent"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ValueError(f"unknown sweep settings {', '.join(unknown)}; expected some of {', '.join(sorted(known))}")
    envs = _as_list(spec.get("envs") or spec.get("env")) or ["resource_collection"]
    seeds = parse_seeds(",".join(map(str, spec["seeds"])) if isinstance(spec.get("seeds"), list) else spec.get("seeds", "0"))
    fixed = spec.get("set") or {}
    fixed = parse_overrides(fixed) if isinstance(fixed, list) else parse_overrides(f"{k}={v}" for k, v in fixed.items())
    axes = {name: [parse_overrides([f"{name}={v}"])[name] for v in _as_list(values)]
            for name, values in (spec.get("grid") or {}).items()}
    presets = _as_list(spec.get("presets") or spec.get("preset")) or [None]
    variants = spec.get("variants") or [{}]
    if not isinstance(variants, list) or not all(isinstance(v, dict) for v in variants):
        raise ValueError("variants must be a list of FIELD: VALUE mappings")
    variants = [parse_overrides(f"{k}={v}" for k, v in variant.items()) for variant in variants]
    return grid(envs, _as_list(spec.get("methods")) or ["copa"], seeds, presets, fixed, axes, variants)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cpfast.sweep", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    p.add_argument("--file", help="a YAML or JSON sweep file (its keys as the flags below; flags given too win)")
    p.add_argument("--env", help="environment(s), comma-separated (default resource_collection)")
    p.add_argument("--methods", help="comma-separated (default copa)")
    p.add_argument("--seeds", help="e.g. 0-4 or 0,2,5 (default 0)")
    p.add_argument("--preset", help="preset(s), comma-separated (default: each env's own)")
    p.add_argument("--set", nargs="+", default=None, metavar="FIELD=VALUE", help="overrides for every cell")
    p.add_argument("--grid", nargs="+", default=None, metavar="FIELD=V1,V2",
                   help="crossed overrides, e.g. --grid lr=3e-4,1e-3 n_envs=8,16")
    p.add_argument("--out", help="sweep folder (default sweeps/<first env>)")
    p.add_argument("--threads-per-run", type=int, help="CPU threads of each run (default 1: runs side by side)")
    p.add_argument("--gpus-per-run", type=float, help="GPU fraction of each run, e.g. 0.25 (default 0)")
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument("--betas", nargs="+", type=float,
                   help=f"betas of each cell's end evaluation (default 0; the paper's sweep: {' '.join(f'{b:g}' for b in BETAS)})")
    p.add_argument("--eval-episodes", type=int, help="episodes of each end evaluation (default: the run's eval_episodes)")
    p.add_argument("--address", help="a Ray cluster: auto, or HOST:PORT of `ray start --head` (default: this machine)")
    p.add_argument("--max-failures", type=int, default=0, help="retries of a run whose worker died (default 0)")
    p.add_argument("--max-concurrent", type=int,
                   help="run at most N cells at once, in the sweep's order (default: as many as the CPUs hold)")
    p.add_argument("--list", action="store_true", help="print the cells and their status, run nothing")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        spec = sweep_from_file(args.file) if args.file else {}
        flags = {"env": args.env, "methods": args.methods, "seeds": args.seeds, "preset": args.preset,
                 "out": args.out, "threads_per_run": args.threads_per_run, "gpus_per_run": args.gpus_per_run,
                 "betas": args.betas, "eval_episodes": args.eval_episodes, "device": args.device,
                 "max_concurrent": args.max_concurrent}
        spec |= {k: v for k, v in flags.items() if v is not None}
        if args.set is not None:
            spec["set"] = args.set
        if args.grid is not None:
            spec["grid"] = dict(item.split("=", 1) for item in args.grid if "=" in item)
            if len(spec["grid"]) != len(args.grid):
                raise ValueError(f"--grid takes FIELD=V1,V2,..., got {' '.join(args.grid)}")
        cells = cells_from_spec(spec)
        threads = int(spec.get("threads_per_run", 1))
        if threads < 1:
            raise ValueError(f"threads per run must be positive, got {threads}")
        if not float(spec.get("gpus_per_run", 0.0)) >= 0:
            raise ValueError(f"gpus per run must be 0 or positive, got {spec['gpus_per_run']}")
        if spec.get("eval_episodes") is not None and int(spec["eval_episodes"]) < 1:
            raise ValueError(f"eval episodes must be positive, got {spec['eval_episodes']}")
        for beta in spec.get("betas") or ():
            check_beta(beta, "betas")
        check_max_concurrent(spec.get("max_concurrent"))
        if args.max_failures < 0:
            raise ValueError(f"--max-failures must be 0 or positive, got {args.max_failures}")
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    out = Path(spec.get("out") or os.path.join("sweeps", cells[0].env))
    if args.list:
        for cell in cells:
            print(f"{cell_status(out / cell.name):9s} {out / cell.name}")
        return {}
    results = run_sweep(cells, out, threads, float(spec.get("gpus_per_run", 0.0)), spec.get("device", "auto"),
                        spec.get("betas") or (0.0,), spec.get("eval_episodes"), args.address, args.max_failures,
                        progress=not args.no_progress, max_concurrent=spec.get("max_concurrent"))
    if any(v != "done" for v in results.values()):
        sys.exit(1)
    return results


if __name__ == "__main__":
    main()

"""Markdown and CSV reports of a comparison or a fit."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict
from pathlib import Path

from ..envs.registry import env_options
from .backends import OUTCOMES, CalibrationConfig, Episode
from .fit import FitResult
from .statistics import PolicyComparison, Weights, discrepancy

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



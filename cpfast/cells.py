"""Which runs belong together, and what to call them: a cell is one configuration but for the seed,
the machine and the logging cadence. The report's tables and the plots' curves average the seeds
of a cell and never across cells."""

from __future__ import annotations

import json

from .config import MACHINE_FIELDS, PRESETS, to_dict

# Fields that never split a cell: the seed, the machine, and the logging cadence.
NOT_CELL_FIELDS = ("seed", *MACHINE_FIELDS, "checkpoint_every", "log_every")
_NOT_PRESET_FIELDS = {"env", "method", "composition", *NOT_CELL_FIELDS}
_PRESET_VALUES = {name: to_dict(cfg) for name, cfg in PRESETS.items()}


def cell_key(config: dict) -> tuple:
    """A hashable key of ``config`` (a complete ``to_dict`` of a Config) without the non-cell fields."""
    return tuple(sorted((k, v) for k, v in config.items() if k not in NOT_CELL_FIELDS))


def nearest_preset(values: dict) -> str:
    """The preset that differs from ``values`` in the fewest fields (env, method and composition
    aside); ties go to the first in ``PRESETS``."""
    def differences(name: str) -> int:
        preset = _PRESET_VALUES[name]
        return sum(1 for k, v in values.items() if k not in _NOT_PRESET_FIELDS and k in preset and preset[k] != v)
    return min(PRESETS, key=differences)


def cell_labels(keys) -> dict[tuple, str]:
    """A short name per cell key: its method and the fields that differ between the cells of its
    env. When those cells come from different presets, the name is the method, the nearest
    preset and only the differing fields that the preset does not explain (``copa fast`` against
    ``copa paper eval_every=189``) instead of every field in which the presets differ."""
    by_env: dict[str, set] = {}
    for key in keys:
        by_env.setdefault(dict(key).get("env"), set()).add(key)
    labels = {}
    for env_keys in by_env.values():
        dicts = {key: dict(key) for key in env_keys}
        fields = sorted({k for d in dicts.values() for k in d})
        varying = [k for k in fields if k != "method" and len({json.dumps(d.get(k)) for d in dicts.values()}) > 1]
        presets = {key: nearest_preset(d) for key, d in dicts.items()}
        for key, d in dicts.items():
            if len(set(presets.values())) > 1:
                base = _PRESET_VALUES[presets[key]]
                shown = [k for k in varying if k not in base or base[k] != d.get(k)]
                labels[key] = " ".join([d["method"], presets[key], *(f"{k}={d.get(k)}" for k in shown)])
            else:
                labels[key] = " ".join([d["method"], *(f"{k}={d.get(k)}" for k in varying)])
    return labels


__all__ = ["NOT_CELL_FIELDS", "cell_key", "cell_labels", "nearest_preset"]

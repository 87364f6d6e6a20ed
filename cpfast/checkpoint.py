"""Atomic checkpoints with clear errors for corrupt or mismatched files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

FORMAT = "cpfast-checkpoint-v1"
# Config fields that define the networks a checkpoint holds.
ARCHITECTURE_FIELDS = ("env", "method", "period", "hidden_dim", "n_heads", "mixer_hidden_dim", "mixer_embed_dim",
                       "player_memory")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, not cpfast's, or for another run."""


def save_atomic(payload: dict, path: str | Path) -> None:
    """Writes to a temporary file in the same folder, fsyncs, then renames over ``path``:
    a run killed mid-write leaves the previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # truncated or foreign files fail in many ways inside torch
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable: {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} file")
    return payload


def check_compatible(payload: dict, config: dict, path) -> None:
    """The architecture-defining fields of the stored config must equal ``config``'s."""
    keys = ARCHITECTURE_FIELDS
    stored = payload.get("config", {})
    wrong = [f"{k}: checkpoint {stored.get(k)!r} vs run {config[k]!r}" for k in keys if stored.get(k) != config[k]]
    if wrong:
        raise CheckpointError(f"checkpoint {path} belongs to a different configuration ({'; '.join(wrong)})")


def restore_fields(what: str, ours: dict, theirs: dict) -> None:
    """Copies the checkpointed arrays or tensors ``theirs`` into ``ours`` in place, after checking
    that both hold the same fields with the same shapes: nothing is written when they do not."""
    if set(theirs) != set(ours):
        raise CheckpointError(f"{what} checkpoint has {sorted(theirs)}, expected {sorted(ours)}")
    for name, target in ours.items():
        if tuple(np.shape(theirs[name])) != tuple(target.shape):
            raise CheckpointError(f"{what} field {name!r} has shape {tuple(np.shape(theirs[name]))}, "
                                  f"expected {tuple(target.shape)}")
    for name, target in ours.items():
        target[...] = theirs[name]

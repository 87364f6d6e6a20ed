"""Atomic checkpoints with clear errors for corrupt or mismatched files."""

from __future__ import annotations

import hashlib
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


def weights_digest(learner_state: dict) -> str:
    """SHA-256 over every tensor of a learner state (names, shapes, dtypes and bytes)."""
    digest = hashlib.sha256()

    def visit(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key in sorted(value, key=str):
                visit(f"{prefix}/{key}", value[key])
        elif isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{prefix}:{tuple(value.shape)}:{tensor.dtype}".encode())
            digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")

    visit("", learner_state)
    return digest.hexdigest()


def save_atomic(payload: dict, path: str | Path) -> None:
    """Writes to a temporary file in the same folder, fsyncs it and the folder, then renames over
    ``path``: a run killed mid-write leaves the previous checkpoint intact. The learner's weights
    carry a checksum that ``load`` verifies."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {"weights_sha256": weights_digest(payload["learner"])} if "learner" in payload else {}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **payload, **extra}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)  # the rename itself survives a crash
        finally:
            os.close(folder)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Deletes the temporary files of checkpoint writes that a killed run left behind."""
    stale = [p for p in Path(folder).glob(".checkpoint_*.pt.*") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


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
    stored = payload.get("weights_sha256")  # absent in checkpoints written before checksums
    if stored is not None and weights_digest(payload.get("learner", {})) != stored:
        raise CheckpointError(f"checkpoint {path} is corrupt: its weights do not match their checksum")
    return payload


def require(payload: dict, path, keys) -> None:
    """``payload`` must hold ``keys``: a cpfast file of another kind (or a damaged one) is named as such."""
    missing = [k for k in keys if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(map(repr, missing))}: it is not a training "
                              "checkpoint written by python -m cpfast.train")


def check_compatible(payload: dict, config: dict, path) -> None:
    """The architecture-defining fields of the stored config must equal ``config``'s."""
    keys = ARCHITECTURE_FIELDS
    require(payload, path, ("config",))
    stored = payload["config"] if isinstance(payload["config"], dict) else {}
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

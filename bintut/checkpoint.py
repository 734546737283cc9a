"""Checkpoints that survive interruption and load with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from .runfolder import replacing

CHECKPOINT = "checkpoint.pt"


class CheckpointError(ValueError):
    """A file that is not a readable bintut checkpoint: truncated, corrupt, or written by something else."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write atomically under a unique temporary name: a crash or a full disk leaves the previous checkpoint intact.

    Written through a Python file object, so that a full disk surfaces as an OSError
    (:class:`bintut.runfolder.StorageFullError`) rather than torch's bare RuntimeError.
    """
    path = Path(path)
    with replacing(path) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    return path


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", required: Iterable[str] = ("model",)
) -> dict[str, Any]:
    """Load a checkpoint with the safe (tensors and plain containers only) unpickler.

    Raises :class:`CheckpointError` naming the file when it cannot be read or lacks a ``required`` entry.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - zip, pickle and storage errors all mean "not a checkpoint"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path} is not a readable checkpoint (truncated, corrupt, or not written by bintut: {reason}); "
            "restore it or delete it"
        ) from err
    missing = [key for key in required if not isinstance(state, dict) or key not in state]
    if missing:
        raise CheckpointError(f"{path} is not a bintut checkpoint (no {', '.join(missing)} in it)")
    return state

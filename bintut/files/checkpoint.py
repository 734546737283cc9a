"""Checkpoints that survive interruption: written whole (:func:`bintut.files.atomic.replacing`), read
with checks that name the file and what is wrong.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from bintut.errors import BintutError
from bintut.files.atomic import replacing
from bintut.files.run_folder import CHECKPOINT


class CheckpointError(ValueError, BintutError):
    """A file that is not a readable bintut checkpoint: truncated, corrupt, or written by something else."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write atomically under a unique temporary name: a crash or a full disk leaves the previous checkpoint intact.

    Written through a Python file object, so that a full disk surfaces as an OSError
    (:class:`bintut.files.atomic.StorageFullError`) rather than torch's bare RuntimeError.
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

    Raises FileNotFoundError naming ``path`` when no file is there; :class:`CheckpointError` naming the file
    when it cannot be read (truncated, corrupt, foreign) or lacks a ``required`` entry.
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


def completed_epochs(folder: str | os.PathLike) -> int:
    """How many epochs the run in ``folder`` has completed: its checkpoint's word, 0 without a checkpoint.

    The checkpoint, not ``metrics.jsonl``, says where a run stands: it is written first at the end of an
    epoch and carries that epoch's metrics row (``last_row``), so after a crash between the two writes
    the metrics file lags by one row and the resumed run appends it. Raises CheckpointError for a
    damaged checkpoint.
    """
    path = Path(folder) / CHECKPOINT
    if not path.is_file():
        return 0
    return int(load_checkpoint(path, required=("epoch",))["epoch"])


def finished(state: dict[str, Any], epochs: int) -> bool:
    """Whether a loaded checkpoint ``state`` has completed all ``epochs``: the one definition of a finished run."""
    return state["epoch"] >= epochs


def is_finished(folder: str | os.PathLike, epochs: int) -> bool:
    """Whether the run in ``folder`` has completed all its ``epochs`` (:func:`finished`, read from its checkpoint).
    Raises CheckpointError for a damaged checkpoint."""
    return finished({"epoch": completed_epochs(folder)}, epochs)

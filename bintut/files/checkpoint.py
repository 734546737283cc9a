"""Checkpoints that survive interruption: written whole (:func:`bintut.files.atomic.replacing`), read
with checks that name the file and what is wrong.

A checkpoint is torch's zip archive plus one record, ``<archive>/.bintut/sha256``: the SHA-256 of every other
record (names and bytes), added to the temporary file before it takes the checkpoint's name -- so a bit
flipped anywhere on disk is found before anything is derived from the file. A checkpoint without the record
(written by an older bintut, or edited and saved with plain ``torch.save``) is checked for the CRC-32 torch
stores per record and for its structure. Either way its model's weights must be finite.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from bintut.errors import BintutError
from bintut.files.atomic import replacing
from bintut.files.run_folder import CHECKPOINT


class CheckpointError(ValueError, BintutError):
    """A file that is not a readable bintut checkpoint: truncated, corrupt, or written by something else."""


DIGEST_RECORD = ".bintut/sha256"  # inside the archive's top folder


def _records_digest(archive: zipfile.ZipFile) -> tuple[str, str | None]:
    """The SHA-256 of every record but the digest (name, size, bytes; zipfile checks each CRC-32 as it reads)
    and the digest the archive holds (None without one)."""
    digest, held = hashlib.sha256(), None
    for info in archive.infolist():
        if info.filename.split("/", 1)[-1] == DIGEST_RECORD:
            held = archive.read(info).decode("ascii", "replace")
            continue
        digest.update(f"{info.filename}\0{info.file_size}\0".encode())
        with archive.open(info) as f:
            while piece := f.read(1 << 20):
                digest.update(piece)
    return digest.hexdigest(), held


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write atomically under a unique temporary name: a crash or a full disk leaves the previous checkpoint intact.

    Written through a Python file object, so that a full disk surfaces as an OSError
    (:class:`bintut.files.atomic.StorageFullError`) rather than torch's bare RuntimeError; the SHA-256 record
    (see the module) is added to the temporary file before it is renamed.
    """
    path = Path(path)
    with replacing(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(state, f)
        with zipfile.ZipFile(tmp, "a") as archive:
            top = archive.namelist()[0].split("/", 1)[0]
            archive.writestr(f"{top}/{DIGEST_RECORD}", _records_digest(archive)[0])
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    return path


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", required: Iterable[str] = ("model",)
) -> dict[str, Any]:
    """Load a checkpoint with the safe (tensors and plain containers only) unpickler, after checking its SHA-256
    record (or, in a checkpoint without one, torch's CRC-32 of each record; see the module).

    Raises FileNotFoundError naming ``path`` when no file is there; :class:`CheckpointError` naming the file
    when it cannot be read (truncated, corrupt, foreign), does not match its checksum (a bit flipped on disk),
    lacks a ``required`` entry, or holds a model entry that is not a state dict or whose tensor (named) holds
    NaN or infinite values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with zipfile.ZipFile(path) as archive:
            digest, held = _records_digest(archive)
    except Exception as err:  # noqa: BLE001 - zip, CRC and read errors all mean "damaged"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated, corrupt, or not written by bintut: "
                              f"{reason[:200]}); restore it or delete it") from err
    if held is not None and held != digest:
        raise CheckpointError(f"{path} does not match its SHA-256 (a bit flipped on disk, or the file was changed "
                              "after bintut wrote it); restore it or delete it")
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
    if isinstance(state, dict) and "model" in state:
        check_weights(state["model"], path)
    return state


def check_weights(model: object, path: str | os.PathLike) -> None:
    """A checkpoint's ``model`` entry must be a state dict (names -> tensors) of finite floating-point values:
    bintut writes a checkpoint only after checking its weights finite. Raises CheckpointError naming the file
    and the first offending entry."""
    if not isinstance(model, dict):
        raise CheckpointError(f"{path}: its model entry is a {type(model).__name__}, not a state dict; restore it or "
                              "delete it")
    for name, tensor in model.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{path}: its model entry maps {str(name)[:60]!r} to a {type(tensor).__name__}, "
                                  "not a tensor; restore it or delete it")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: its model tensor {name[:100]} holds NaN or infinite values; bintut "
                                  "never writes such a checkpoint (a diverged run keeps its last good one): restore "
                                  "it or delete it")


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

"""Resuming a run: which checkpoint to continue from, refusing a folder whose files a new run would
clobber, and refusing to continue under another recipe (naming each differing field).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from bintut.config import TrainConfig
from bintut.files.checkpoint import load_checkpoint
from bintut.files.lock import RunLock
from bintut.files.metrics import read_metrics
from bintut.files.run_folder import CHECKPOINT, CONFIG, METRICS, RESULTS, RUN_FILES, RunFolderError, folder_contents
from bintut.training.devices import any_rank

RESUME_KEYS = ("model", "optimizer", "scaler", "epoch", "batch", "global_step", "config", "rng")

# Fields that may differ between a run and its resumption without changing what is computed.
MACHINERY = {"resume", "progress", "num_workers", "wandb", "compile", "out", "device", "data_root", "download"}


def check_resume(cfg: TrainConfig, saved: dict[str, Any]) -> None:
    """Refuse to continue a run under another recipe, naming each differing field. A field the saved run
    predates (it was written by an older bintut) behaved then as its default does: at its default it is
    taken, with a note; set otherwise it is a difference like any other.

    Raises ValueError listing every differing field with its saved and current value."""
    now = cfg.to_dict()
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
    diff = [f"{k}: run has {saved[k]!r}, now {now[k]!r}" if k in saved else
            f"{k}: the run predates it (so it had the default {defaults.get(k)!r}), now {now[k]!r}"
            for k in now if k not in MACHINERY and saved.get(k, defaults.get(k)) != now[k]]
    if diff:
        raise ValueError("cannot resume: the configuration differs from the saved run (" + "; ".join(diff) + ")")
    newer = [k for k in now if k not in MACHINERY and k not in saved]
    if newer:
        print("bintut: note: the saved run predates the setting(s) " + ", ".join(f"{k} (now {now[k]!r})" for k in newer)
              + "; continuing with these values")


def resume_state(cfg: TrainConfig, out: Path, rank: int, created: bool = False) -> dict[str, Any] | None:
    """The checkpoint to continue from, None for a new run; refuses a folder whose files a run would clobber.

    Raises FileExistsError when ``out`` holds a run but ``cfg.resume`` is off, holds results without a
    checkpoint, or holds files that are not a run's (each message says what to do); ValueError (from
    :func:`check_resume`) when the saved run's configuration differs."""
    names = folder_contents(out)
    if CHECKPOINT in names:
        if not cfg.resume:
            raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        state = load_checkpoint(out / CHECKPOINT, required=RESUME_KEYS)
        check_resume(cfg, state["config"])
        return state
    results = [n for n in names if n in RESULTS and not _empty_metrics(out / n)]
    if results:
        raise FileExistsError(f"{out} holds results ({', '.join(results)}) but no {CHECKPOINT} to continue from; a "
                              "new run there would overwrite them: move them away or choose another --out")
    foreign = [n for n in names if n not in RUN_FILES]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise FileExistsError(f"{out} is not empty and holds no bintut run (it holds {shown}); "
                              "choose an empty or new folder for --out")
    if CONFIG in names:  # a run that stopped before its first checkpoint: the same recipe may start over
        check_resume(cfg, _read_config(out / CONFIG))
    if names and rank == 0:
        print(f"bintut: {out} holds a run that completed no epoch; starting it over")
    elif cfg.resume and rank == 0 and not created:
        print(f"bintut: nothing to resume in {out}; starting a new run")
    return None


def _empty_metrics(path: Path) -> bool:
    return path.name == METRICS and not read_metrics(path)


def _read_config(path: Path) -> dict[str, Any]:
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not a run configuration ({err}); move it away or choose another --out") from err
    if not isinstance(saved, dict):
        raise ValueError(f"{path} is not a run configuration; move it away or choose another --out")
    return saved


def lock_folder(out: Path, rank: int, device: torch.device) -> RunLock | None:
    """Rank 0 takes the run folder's lock (a second process on the folder stops here); all ranks agree."""
    lock, error = (RunLock(out), None) if rank == 0 else (None, None)
    if lock is not None:
        try:
            lock.acquire()
        except RunFolderError as err:
            error = err
    if any_rank(error is not None, device):
        raise error or RunFolderError(f"rank 0 could not lock {out}")
    return lock

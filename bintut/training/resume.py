"""Resuming a run: which checkpoint to continue from (its fields checked before anything is derived from
them), refusing a folder whose files a new run would clobber, refusing to continue under another recipe
(naming each differing field), and repairing what a crash at the very end of a run leaves.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from bintut.config import TrainConfig
from bintut.data.choice import data_words
from bintut.files.atomic import replacing
from bintut.files.checkpoint import CheckpointError, load_checkpoint
from bintut.files.lock import RunLock
from bintut.files.metrics import MetricsLog, read_metrics
from bintut.files.run_folder import (
    CHECKPOINT,
    CONFIG,
    FIGURE,
    METRICS,
    RESULTS,
    RUN_FILES,
    RunFolderError,
    folder_contents,
)
from bintut.training.devices import any_rank
from bintut.training.plots import plot_run

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
    checkpoint, or holds files that are not a run's (each message says what to do); CheckpointError for a
    checkpoint that cannot be read or whose fields have the wrong types (:func:`check_state`); ValueError
    (from :func:`check_resume`) when the saved run's configuration differs."""
    names = folder_contents(out)
    if CHECKPOINT in names:
        if not cfg.resume:
            raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        state = check_state(load_checkpoint(out / CHECKPOINT, required=RESUME_KEYS), out / CHECKPOINT)
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


_INT = (int,)
_NUMBER = (int, float)
FIELD_TYPES: dict[str, tuple[type, ...]] = {  # what each checkpoint field must be, where present
    "epoch": _INT, "batch": _INT, "global_step": _INT, "epoch_seen": _INT, "epoch_skipped": _INT, "version": _INT,
    "epoch_loss_sum": _NUMBER, "config": (dict,), "model": (dict,), "optimizer": (dict,), "scaler": (dict,),
    "rng": (torch.Tensor,), "last_row": (dict, type(None)), "wandb_id": (str, type(None)),
}
ROW_TYPES: dict[str, tuple[type, ...]] = {"epoch": _INT, "hard_acc": _NUMBER, "soft_acc": _NUMBER,
                                          "deployed_acc": (int, float, type(None))}


def check_state(state: dict[str, Any], path: Path) -> dict[str, Any]:
    """``state`` (a loaded checkpoint) if each field it holds has its type (FIELD_TYPES; counts >= 0, its
    ``last_row`` with an integer epoch and numeric accuracies), before anything is derived from it.

    Raises CheckpointError naming the file, the field and what it holds (an edited or foreign file)."""
    def wrong(key: str, value: Any, kinds: tuple[type, ...]) -> bool:
        return isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds) or (
            kinds is _INT and value < 0)

    checks = [(key, state[key], kinds) for key, kinds in FIELD_TYPES.items() if key in state]
    row = state.get("last_row")
    if isinstance(row, dict):
        checks += [(f"last_row.{key}", row.get(key, "<missing>"), kinds) for key, kinds in ROW_TYPES.items()]
    rng = state.get("rng")
    if isinstance(rng, torch.Tensor) and rng.dtype != torch.uint8:
        checks.append(("rng", rng, ()))
    for key, value, kinds in checks:
        if not kinds or wrong(key, value, kinds):
            held = f"a {type(value).__name__} tensor of {value.dtype}" if isinstance(value, torch.Tensor) else \
                f"{type(value).__name__} {str(value)[:40]!r}"
            raise CheckpointError(f"{path}: its field {key} holds {held}, not what bintut writes there (the file was "
                                  "edited or written by something else); restore it or delete it")
    return state


def repair_finished(cfg: TrainConfig, out: Path, state: dict[str, Any]) -> list[str]:
    """Repair what a crash (a kill, a full disk) after a finished run's last checkpoint leaves, under the run's
    lock: the last metrics row (missing, or torn) rewritten from the checkpoint's ``last_row``, a missing or
    torn ``results.png`` redrawn. Says what it did in one line; returns what it repaired ([] if nothing).

    Raises MetricsError for a metrics file damaged before its last line, StorageFullError for a full disk."""
    path, repaired = out / METRICS, []
    before = read_metrics_quietly(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MetricsLog(path, epochs_done=state["epoch"], last_row=state.get("last_row"))
    rows = read_metrics_quietly(path)
    if caught:
        repaired.append(f"cut off the torn last line of {METRICS}")
    if len(rows) > len(before):
        repaired.append(f"wrote its epoch-{rows[-1].get('epoch')} row from the checkpoint")
    if rows and not _whole_png(out / FIGURE):
        with replacing(out / FIGURE) as tmp:
            plot_run(rows, tmp, data=data_words(cfg))
        repaired.append(f"redrew {FIGURE}")
    if repaired:
        print(f"bintut: repaired what a crash at the end of the run left in {out}: {'; '.join(repaired)}")
    return repaired


def read_metrics_quietly(path: Path) -> list[dict[str, Any]]:
    """The complete rows of a metrics file, without the warning about a torn last line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_metrics(path)


def _whole_png(path: Path) -> bool:
    """Whether ``path`` is a PNG file that was written to its end (its signature first, its IEND chunk last)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(0, 2)
            f.seek(max(f.tell() - 12, 0))
            tail = f.read()
    except OSError:
        return False
    return head == b"\x89PNG\r\n\x1a\n" and tail == b"\x00\x00\x00\x00IEND\xaeB`\x82"


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

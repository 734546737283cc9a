"""Finished runs on disk: train once, reuse everywhere (notebooks, tests, the engine).

``load_or_train(cfg)`` returns the trained model of ``cfg``; the first call trains (or resumes
an interrupted run), later calls load the checkpoint. Runs live under ``$BINTUT_RUNS`` (default
``./runs``) in a folder named after the preset and a hash of the config, so a changed recipe
never picks up a stale model. A file lock lets parallel processes share one training; a finished
run is read without writing anything, so a shared, read-only cache of trained runs works.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from bintut.config import SCHEDULE_FIELDS, TrainConfig
from bintut.errors import BintutError
from bintut.files.checkpoint import CheckpointError, finished, load_checkpoint
from bintut.files.lock import LockUnavailable, waiting_lock
from bintut.files.metrics import read_metrics
from bintut.files.run_cache import RUNS_ENV, runs_dir  # where the cache is, and `python -m bintut clean`
from bintut.files.run_folder import CHECKPOINT
from bintut.training.loop import train
from bintut.training.recipe import Recipe, build_model
from bintut.training.resume import MACHINERY, check_state


class RunCacheError(RuntimeError, BintutError):
    """The run cache (``$BINTUT_RUNS``) cannot be used, or a run cached in it is damaged; the message says why."""


def _check_runs_dir(folder: Path) -> None:
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == folder else f"lies under {existing}, which is a file"
        raise RunCacheError(f"${RUNS_ENV} = {folder} {where}, not a folder: set ${RUNS_ENV} to a folder "
                            "for the trained runs (or unset it for ./runs)")


def run_name(cfg: TrainConfig, label: str | None = None) -> str:
    """``<preset>[-<label>]-<hash of the recipe>``: a changed recipe gets a new folder."""
    recipe = {k: v for k, v in cfg.to_dict().items() if k not in MACHINERY}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
    return "-".join(part for part in (cfg.preset, label, digest) if part)


@dataclass
class Run:
    """A trained run, finished or not: the model (eval mode, controls as at its last completed epoch), its
    metrics rows (all epochs; may be empty, see :func:`load_run`) and the row of its last completed epoch."""

    model: nn.Module
    metrics: list[dict[str, Any]]
    out: Path
    config: TrainConfig
    last_row: dict[str, Any] | None = None  # the checkpoint's copy of the last epoch's metrics row

    @property
    def final(self) -> dict[str, Any]:
        """The metrics of the last completed epoch: the checkpoint's row, which the metrics file may lag."""
        if self.last_row is not None:
            return self.last_row
        return self.metrics[-1]


def _locked(path: Path) -> AbstractContextManager[None]:
    """The cache's lock for one run (:func:`bintut.files.lock.waiting_lock`): waits for another process training
    it; RunCacheError (one line) when the cache cannot be written or has no file locks."""
    run = path.name[1:-5]

    def error(unavailable: LockUnavailable) -> RunCacheError:
        if unavailable.reason == "open":
            return RunCacheError(f"the run cache ${RUNS_ENV} = {path.parent} cannot be written "
                                 f"({unavailable.strerror}), and the run {run} is not finished in it: set "
                                 f"${RUNS_ENV} to a folder you can write, or ask for a cache holding this stage")
        return RunCacheError(f"the run cache ${RUNS_ENV} = {path.parent} is on a filesystem without file locks "
                             f"({unavailable.strerror}), so parallel processes could train the run {run} twice into "
                             f"one folder: set ${RUNS_ENV} to a folder on a local disk")

    return waiting_lock(path, error)


def _damaged(out: Path, err: Exception) -> RunCacheError:
    reason = str(err).split("; ")[0]
    return RunCacheError(f"the cached run {out} is damaged ({reason}): delete that whole folder (in Python: "
                         f"shutil.rmtree({str(out)!r})) and run this cell again to train it anew")


def load_or_train(cfg: TrainConfig, label: str | None = None) -> Run:
    """The trained model of ``cfg``: loaded if a finished run exists, else trained (resuming).

    A finished run is read without any write (a shared, read-only cache works); training takes a
    file lock in the cache so that parallel processes share one run. Raises :class:`RunCacheError`
    when ``$BINTUT_RUNS`` is not a usable folder (a file, read-only, on a filesystem without file locks) or a
    cached run is damaged.
    """
    name = run_name(cfg, label)
    folder = runs_dir()
    _check_runs_dir(folder)
    out = folder / name
    try:
        if not _finished(out, cfg.epochs):  # the common, read-only case first: no lock needed to read a finished run
            with _locked(folder / f".{name}.lock"):
                if not _finished(out, cfg.epochs):
                    train(cfg.replace(out=str(out), resume=True))
        return load_run(out)
    except (CheckpointError, FileExistsError) as err:
        raise _damaged(out, err) from err


def _finished(out: Path, epochs: int) -> bool:
    path = out / CHECKPOINT
    return path.is_file() and finished(check_state(load_checkpoint(path, required=("epoch",)), path), epochs)


def load_run(out: str | os.PathLike, metrics: bool = True) -> Run:
    """A run folder's model (controls set to their values at the end of training) and, with ``metrics``, its
    metrics rows (else none: exporting a model needs no metrics).

    Raises :class:`~bintut.files.checkpoint.CheckpointError` (a ValueError) naming the checkpoint when a field
    has the wrong type (:func:`~bintut.training.resume.check_state`), or its configuration or its weights do not
    fit this version of bintut's model.
    """
    out = Path(out)
    path = out / CHECKPOINT
    state = check_state(load_checkpoint(path, required=("model", "config", "epoch")), path)
    cfg = saved_config(state["config"], path)
    model = build_model(cfg.replace(pretrained=False, init_from=None))
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError, KeyError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} holds a model of another layout ({reason[:300]})") from None
    Recipe.apply(Recipe(cfg).at(state["epoch"] / cfg.epochs), model)
    return Run(model.eval(), read_metrics(out) if metrics else [], out, cfg, state.get("last_row"))


def saved_config(saved: Any, path: Path) -> TrainConfig:
    """The TrainConfig a checkpoint recorded, or a CheckpointError naming the file and the offending field."""

    if not isinstance(saved, dict):
        raise CheckpointError(f"{path} records no configuration")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(saved) - known)
    if unknown:
        raise CheckpointError(f"{path} records configuration fields this version of bintut does not know "
                              f"({', '.join(map(str, unknown[:5]))}): written by a newer bintut, or edited")
    kinds = {"bool": (bool,), "float": (int, float), "int": (int,), "int | None": (int, type(None)), "list": (list,),
             "str": (str,), "str | None": (str, type(None))}
    for f in dataclasses.fields(TrainConfig):
        if f.name not in saved:  # a field newer than the run: its default
            continue
        value = saved[f.name]
        allowed = kinds.get(str(f.type), (object,))
        if f.name in SCHEDULE_FIELDS:
            allowed = (list, int, float)  # a phase list, or a number: a constant schedule
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise CheckpointError(f"{path} records an invalid configuration ({f.name} is {type(value).__name__} "
                                  f"{str(value)[:40]!r}, not {f.type})")
    try:
        return TrainConfig(**saved)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{path} records an invalid configuration ({err})") from None

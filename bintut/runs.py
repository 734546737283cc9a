"""Finished runs on disk: train once, reuse everywhere (notebooks, tests, the engine).

``load_or_train(cfg)`` returns the trained model of ``cfg``; the first call trains (or resumes
an interrupted run), later calls load the checkpoint. Runs live under ``$BINTUT_RUNS`` (default
``./runs``) in a folder named after the preset and a hash of the config, so a changed recipe
never picks up a stale model. A file lock lets parallel processes share one training.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from .checkpoint import CHECKPOINT, load_checkpoint
from .config import TrainConfig
from .tracking import read_metrics
from .train import MACHINERY, Recipe, build_model, train

RUNS_ENV = "BINTUT_RUNS"


def runs_dir() -> Path:
    return Path(os.environ.get(RUNS_ENV) or "runs")


def run_name(cfg: TrainConfig, label: str | None = None) -> str:
    """``<preset>[-<label>]-<hash of the recipe>``: a changed recipe gets a new folder."""
    recipe = {k: v for k, v in cfg.to_dict().items() if k not in MACHINERY}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
    return "-".join(part for part in (cfg.preset, label, digest) if part)


@dataclass
class Run:
    """A finished run: the model (eval mode, controls as at the end of training) and its metrics."""

    model: nn.Module
    metrics: list[dict[str, Any]]
    out: Path
    config: TrainConfig

    @property
    def final(self) -> dict[str, Any]:
        return self.metrics[-1]


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _finished(out: Path, cfg: TrainConfig) -> bool:
    if not (out / CHECKPOINT).is_file():
        return False
    return load_checkpoint(out / CHECKPOINT, required=("epoch",))["epoch"] >= cfg.epochs


def load_or_train(cfg: TrainConfig, label: str | None = None) -> Run:
    """The trained model of ``cfg``: loaded if a finished run exists, else trained (resuming)."""
    name = run_name(cfg, label)
    out = runs_dir() / name
    with _locked(runs_dir() / f".{name}.lock"):
        if not _finished(out, cfg):
            train(cfg.replace(out=str(out), resume=True))
    return load_run(out)


def load_run(out: str | os.PathLike) -> Run:
    """A run folder's model (controls set to their values at the end of training) and metrics."""
    out = Path(out)
    state = load_checkpoint(out / CHECKPOINT, required=("model", "config", "epoch"))
    cfg = TrainConfig(**state["config"])
    model = build_model(cfg.replace(pretrained=False, init_from=None))
    model.load_state_dict(state["model"])
    Recipe.apply(Recipe(cfg).at(state["epoch"] / cfg.epochs), model)
    return Run(model.eval(), read_metrics(out), out, cfg)

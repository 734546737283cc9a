"""Training a run (the ``training`` layer): the recipe notebook 02 teaches (:mod:`~bintut.training.recipe`),
the loop that runs it in a folder (:mod:`~bintut.training.loop`), resuming, stopping, devices, tracking, plots
and the run cache (:mod:`~bintut.training.runs`). Imports the ideas, ``files``, ``data`` and ``integer``; never
``teaching`` or the entry points.

This package is the layer's face: ``bintut.training.train(cfg, out)``, ``bintut.training.load_run(folder)``
... Each name is imported on first use, so ``import bintut.training`` stays light until one is used.
"""

from __future__ import annotations

import importlib

# Public name -> the module of this layer that defines it (imported when the name is first used).
_LAZY = {
    # the recipe: the model, one step, the loss, evaluation
    "build_model": "recipe", "train_step": "recipe", "loss_fn": "recipe", "mixer": "recipe", "evaluate": "recipe",
    "autocast_dtype": "recipe", "ieee_float32": "recipe",
    # the loop in a run folder, and stopping it
    "train": "loop", "open_session": "loop", "train_epoch": "loop", "evaluate_epoch": "loop",
    "finish_epoch": "loop", "StopRequest": "guard", "Diverged": "guard",
    # runs: the cache, a finished run, its plot
    "Run": "runs", "load_run": "runs", "load_or_train": "runs", "RunCacheError": "runs",
    "plot_run": "plots",
    # a run folder (or a loaded Run) to its export, the data set's normalisation recorded
    "export_run": "export", "ExportedRun": "export",
    # devices
    "resolve_device": "devices", "compile_model": "devices", "process_group": "devices",
}

__all__ = list(_LAZY)

_SUBMODULES = {"devices", "export", "guard", "loop", "plots", "recipe", "resume", "runs", "tracking"}


def __getattr__(name: str):
    """``bintut.training.train``, ``bintut.training.recipe`` ...: imported on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})

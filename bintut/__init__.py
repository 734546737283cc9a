"""bintut: gradual binarization of an ImageNet-pretrained ResNet18 on CIFAR-100, step by step.

The package in layers (each imports only those below it; ``tests/test_layers.py`` checks):

* the ideas, at the top: :mod:`bintut.quant` (quantizers; their eager arithmetic fused in
  :mod:`bintut.fused_quant`), :mod:`bintut.binact` (binary activations),
  :mod:`bintut.schedule`, :mod:`bintut.model`, :mod:`bintut.config` (a run's settings) and :mod:`bintut.errors`;
* :mod:`bintut.files` (run folders, checkpoints, metrics, downloads) and :mod:`bintut.data` (images);
* :mod:`bintut.integer`: the deployed network in integers (numpy, torch and C); never imports training;
* :mod:`bintut.training`: the recipe and the loop that runs it;
* :mod:`bintut.teaching`: what the notebooks call; imported only by the CLI, notebooks and tools.

``import bintut`` is light (no torch, no matplotlib): the names below and every subpackage are
imported on first use. ``bintut.show(obj)`` prints the library source behind an idea.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public name -> the module that defines it (imported when the name is first used).
_LAZY = {
    "PRESETS": "config", "TrainConfig": "config", "QuantConfig": "config", "preset": "config",
    "BintutError": "errors",
    "DataNotFoundError": "data.images", "load_cifar100": "data.cifar100",
    "write_synthetic_cifar100": "data.cifar100",
    "WeightsUnavailableError": "model", "resnet18_cifar": "model",
    "GradualQuantizer": "quant", "Int8Quantizer": "quant", "SignQuantizer": "quant",
    "binarize_": "quant", "get_controls": "quant", "hard_mode": "quant", "is_fully_binary": "quant",
    "quantizers": "quant", "set_controls": "quant", "BinaryActQuantizer": "binact",
    "Schedule": "schedule", "plot_schedules": "teaching.viz.quant",
    "show": "teaching.show", "check": "teaching.tryit", "check_function": "teaching.exercises",
}

__all__ = list(_LAZY)

_SUBMODULES = {"binact", "cli", "config", "data", "errors", "files", "fused_quant", "integer", "model", "quant",
               "schedule", "teaching", "training"}


def __getattr__(name: str):
    """``bintut.TrainConfig``, ``bintut.integer`` ...: imported on first use (keeps ``import bintut`` light)."""
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'bintut' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})

"""bintut: gradual binarization of an ImageNet-pretrained ResNet18 on CIFAR-100, step by step.

``import bintut`` is light (no torch, no matplotlib): the names below and every submodule
(``bintut.viz``, ``bintut.stages`` ...) are imported on first use. ``bintut.show(obj)`` prints
the library source behind an idea.
"""

from __future__ import annotations

import importlib

from .show import show

__version__ = "0.1.0"

# Public name -> the submodule that defines it (imported when the name is first used).
_LAZY = {
    "PRESETS": "config", "TrainConfig": "config", "preset": "config",
    "DataNotFoundError": "data", "load_cifar100": "data", "write_synthetic_cifar100": "data",
    "WeightsUnavailableError": "model", "resnet18_cifar": "model",
    "GradualQuantizer": "quant", "Int8Quantizer": "quant", "QuantConfig": "quant", "SignQuantizer": "quant",
    "binarize_": "quant", "get_controls": "quant", "hard_mode": "quant", "is_fully_binary": "quant",
    "quantizers": "quant", "set_controls": "quant",
    "Schedule": "schedule", "plot_schedules": "schedule", "check": "tryit",
}

__all__ = [*_LAZY, "show"]

_SUBMODULES = {
    "anatomy", "checkpoint", "cli", "config", "data", "device_data", "distributed", "download", "engine", "export",
    "fixedpoint", "intkernels", "model", "opcount", "plots", "quant", "runfolder", "runs", "schedule", "show",
    "stages", "torch_engine", "tracking", "train", "viz", "cexport", "record", "tryit",
}


def __getattr__(name: str):
    """``bintut.viz``, ``bintut.TrainConfig`` ...: imported on first use (keeps ``import bintut`` light)."""
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'bintut' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})

"""bintut: gradual binarization of an ImageNet-pretrained ResNet18 on CIFAR-100, step by step.

The package in layers, from the bottom up; a layer imports only the layers its line names
(``tests/test_layers.py`` holds the rules, ``tests/entry/test_face.py`` checks this list against them):

* ``ideas`` -- :mod:`bintut.quant` (quantizers; their eager arithmetic fused in :mod:`bintut.fused_quant`),
  :mod:`bintut.binact` (binary activations), :mod:`bintut.schedule`, :mod:`bintut.model`, :mod:`bintut.config`
  (a run's settings) and :mod:`bintut.errors`; imports ``files``.
* ``files`` -- :mod:`bintut.files`: run folders, checkpoints, metrics, downloads; imports ``ideas``.
* ``data`` -- :mod:`bintut.data`: the images; imports ``ideas``, ``files``.
* ``integer`` -- :mod:`bintut.integer`: the deployed network in integers (numpy, torch and C); imports ``ideas``,
  ``files``.
* ``training`` -- :mod:`bintut.training`: the recipe and the loop that runs it; imports ``ideas``, ``files``,
  ``data``, ``integer``.
* ``teaching`` -- :mod:`bintut.teaching`: what the notebooks call; imports ``ideas``, ``files``, ``data``,
  ``integer``, ``training``.
* ``entry`` -- ``bintut`` (this face), :mod:`bintut.cli` and :mod:`bintut.commands` (the command line); imports
  ``ideas``, ``files``, ``data``, ``integer``, ``training``, ``teaching``.

Each of ``data``, ``integer``, ``training`` and ``teaching`` is a face: ``bintut.integer.export_resnet(model)``,
``bintut.teaching.run_stage("both", mode)``; ``bintut.viz`` is the figures (``bintut.teaching.viz``). The names
below are what a notebook uses from the ideas, plus ``bintut.show(obj)`` (the library source behind an idea)
and the try-it checks. ``import bintut`` is light (no torch, no matplotlib): every name and subpackage is
imported on first use.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public name -> the module that defines it (imported when the name is first used).
_LAZY = {
    "TrainConfig": "config",
    "resnet18_cifar": "model",
    "SignQuantizer": "quant", "Int8Quantizer": "quant", "binarize_": "quant", "set_controls": "quant",
    "hard_mode": "quant", "is_fully_binary": "quant",
    "Schedule": "schedule",
    "show": "teaching.show", "check": "teaching.tryit", "check_function": "teaching.exercises",
}

__all__ = list(_LAZY)

_SUBMODULES = {"binact", "cli", "config", "data", "errors", "files", "fused_quant", "integer", "model", "quant",
               "schedule", "teaching", "training"}
_ALIASES = {"viz": "teaching.viz"}  # the figures every notebook draws, one dot nearer


def __getattr__(name: str):
    """``bintut.TrainConfig``, ``bintut.integer``, ``bintut.viz`` ...: imported on first use (keeps ``import bintut``
    light)."""
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if name in _SUBMODULES or name in _ALIASES:
        return importlib.import_module(f".{_ALIASES.get(name, name)}", __name__)
    raise AttributeError(f"module 'bintut' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES, *_ALIASES})

"""What the notebooks call (the ``teaching`` layer): the stages in three modes, figures
(:mod:`~bintut.teaching.viz`), a look inside the model, recorded runs, the lesson's costs, source listings and
the try-it checks. Imports the ideas, ``files``, ``data``, ``integer`` and ``training``; never the entry points,
which alone import it (the notebooks and tools use it too).

This package is the layer's face: ``bintut.teaching.run_stage("both", mode)``, ``bintut.teaching.viz.table(rows)``,
``bintut.teaching.lesson.cost_line(...)`` ... Each name is imported on first use.
"""

from __future__ import annotations

import importlib

# Public name -> the module of this layer that defines it (imported when the name is first used).
_LAZY = {
    # the stages in three modes
    "resolve_mode": "stages", "mode_line": "stages", "stage_config": "stages", "run_stage": "stages",
    "describe": "stages", "results_table": "stages", "reference_comparison": "stages", "format_table": "stages",
    "RAMP": "stages", "SMOKE_RAMP": "stages", "FASHION_WORKSHOP": "stages",
    # inside the model
    "imagenet_resnet18": "anatomy", "with_cifar_stem": "anatomy", "stem_comparison": "anatomy",
    "feature_maps": "anatomy", "fold_check": "anatomy", "layer_macs": "anatomy",
    # binary activations
    "binary_conv_identity": "binact", "compare_int8_layers": "binact",
    # the recording
    "load_recording": "record", "recorded_rows": "record", "published_rows": "record",
    # listings and checks
    "check": "tryit", "largest_accepted": "tryit", "check_function": "exercises",
    "cases": "exercises", "fake_quant_batches": "exercises",
}

__all__ = list(_LAZY)

# Sub-faces a notebook reaches through this one: the figures, the lesson's costs, the binary-activation fine-tunes.
__all__ += ["binact", "lesson", "viz"]

_SUBMODULES = {"anatomy", "binact", "exercises", "lesson", "record", "show", "stages", "tryit", "viz"}


def __getattr__(name: str):
    """``bintut.teaching.run_stage``, ``bintut.teaching.viz`` ...: imported on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})

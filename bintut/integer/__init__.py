"""The deployed network: binary weights and int8 activations as integers only (the ``integer`` layer).

numpy only at import: :mod:`~bintut.integer.kernels`, :mod:`~bintut.integer.fixedpoint`,
:mod:`~bintut.integer.format`, :mod:`~bintut.integer.engine`, :mod:`~bintut.integer.opcount`,
:mod:`~bintut.integer.xnor`, the ONNX export and the C export (:mod:`~bintut.integer.c_source`,
:mod:`~bintut.integer.c_library`, :mod:`~bintut.integer.c_build`, sources in ``c/``). With torch:
:mod:`~bintut.integer.fold` (a trained model to the format), :mod:`~bintut.integer.torch_engine` (the same
integers in torch) and :mod:`~bintut.integer.compare` (integer against float). Imports the ideas and ``files``;
never ``data``, ``training``, ``teaching`` or the entry points.

This package is the layer's face: ``bintut.integer.export_resnet(model)``, ``bintut.integer.IntegerResNet(export)``
... Each name is imported on first use, so ``import bintut.integer`` loads neither torch nor its modules.
"""

from __future__ import annotations

import importlib

# Public name -> the module of this layer that defines it (imported when the name is first used).
_LAZY = {
    # torch model -> integers, and the integers against torch
    "export_resnet": "fold", "fp32_state_dict_bytes": "fold",
    "layer_agreement": "compare", "prediction_agreement": "compare", "integer_only_agreement": "compare",
    "TorchIntegerResNet": "torch_engine", "deployed_accuracy": "torch_engine",
    # the export format and the numpy engine
    "ResNetExport": "format", "ExportError": "format", "load_export": "format",
    "IntegerResNet": "engine", "code_differences": "engine", "clear_margin": "engine",
    # kernels, fixed point, costs
    "pack_signs": "kernels", "addsub_gemm": "kernels", "blas_gemm": "kernels", "oracle_gemm": "kernels",
    "check_exact_range": "kernels",
    "quantize_multiplier": "fixedpoint", "residual_add": "fixedpoint",
    "xnor_gemm": "xnor", "pm1_product": "xnor", "xnor_costs": "xnor", "as_words": "xnor",
    "layer_costs": "opcount", "summary_table": "opcount",
    # C and ONNX
    "write_c_library": "c_library", "check_c_folder": "c_library", "MAX_GOLDEN": "c_library",
    "CompilerNotFound": "c_build", "run_host_golden": "c_build", "run_layer_check": "c_build",
    "kernel_timings": "c_build", "inner_loop": "c_build", "sizes_table": "c_build",
    "to_onnx": "onnx_export", "save_onnx": "onnx_export", "OnnxExportError": "onnx_export",
    "onnx_session": "onnx_compare", "onnx_agreement": "onnx_compare", "onnxruntime_graph": "onnx_compare",
    "onnx_code_differences": "onnx_compare",
}

__all__ = list(_LAZY)

_SUBMODULES = {"c_build", "c_library", "c_source", "compare", "engine", "fixedpoint", "fold", "format",
               "format_checks", "kernels", "onnx_compare", "onnx_export", "opcount", "torch_engine", "xnor"}


def __getattr__(name: str):
    """``bintut.integer.export_resnet``, ``bintut.integer.kernels`` ...: imported on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})

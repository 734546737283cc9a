"""The ONNX model in onnxruntime's CPU provider, checked against bintut's deployed (integer-only) network.

numpy at import; ``onnxruntime`` (and ``onnx`` for the per-layer codes) imported when called, with a one-line
OnnxUnavailableError naming the extra ``bintut[onnx]`` when missing. Taught in notebooks/07_integer_only_and_c.ipynb.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from bintut.integer.engine import IntegerResNet, check_images, clear_margin
from bintut.integer.format import ResNetExport
from bintut.integer.onnx_export import INPUT, OUTPUT, codes_name, require, to_onnx


def onnx_session(model: object, threads: int = 1):
    """An onnxruntime ``InferenceSession`` on the CPU provider, all graph optimizations on (they fuse the QDQ
    groups into int8 ``QLinearConv``), ``threads`` threads for an operator and one across operators.

    ``model``: an ``onnx.ModelProto``, its serialized bytes, or a path to a .onnx file. Raises OnnxUnavailableError
    without onnxruntime, ValueError for ``threads`` below 1, and onnxruntime's own errors for an invalid model."""
    ort = require("onnxruntime")
    if threads < 1:
        raise ValueError(f"threads must be positive, got {threads}")
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    elif isinstance(model, (str, os.PathLike)):
        model = os.fspath(model)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def onnxruntime_graph(model):
    """What onnxruntime's CPU provider runs: ``model`` (an onnx ModelProto) after its hardware-independent graph
    optimizations (level 'extended': each DQ -> Conv -> Q group fused into an int8 ``QLinearConv``), as a ModelProto.
    Raises OnnxUnavailableError without onnx or onnxruntime. Taught in notebooks/07_integer_only_and_c.ipynb."""
    ort, onnx = require("onnxruntime"), require("onnx")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    with tempfile.TemporaryDirectory() as folder:
        options.optimized_model_filepath = os.path.join(folder, "optimized.onnx")
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return onnx.load(options.optimized_model_filepath)


def onnx_logits(session, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """Logits (N, classes) float32 of normalised float images (N, 3, H, W), ``batch`` images a run.
    Raises ValueError as :func:`bintut.integer.engine.check_images` does, or for ``batch`` below 1."""
    images = np.ascontiguousarray(check_images(images), dtype=np.float32)
    if batch < 1:
        raise ValueError(f"batch must be positive, got {batch}")
    return np.concatenate([session.run([OUTPUT], {INPUT: images[i : i + batch]})[0]
                           for i in range(0, len(images), batch)])


def onnx_agreement(export: ResNetExport, images: np.ndarray, session=None) -> dict[str, float | int]:
    """onnxruntime's logits against the deployed network's (``IntegerResNet(export, integer_only=True)``) on
    normalised float images (N, 3, H, W): top-1 agreement, the largest logit difference, and the images whose
    deployed top-2 gap exceeds twice that (:func:`bintut.integer.engine.clear_margin`) and whether they agree.

    ``session``: from :func:`onnx_session` (default: the export's model, one thread). Raises what
    :func:`onnx_session` and :func:`onnx_logits` raise."""
    session = session or onnx_session(to_onnx(export))
    deployed = IntegerResNet(export, integer_only=True)(images)
    logits = onnx_logits(session, images)
    largest, clear = clear_margin(deployed, logits)
    same = logits.argmax(1) == deployed.argmax(1)
    return {"images": len(deployed), "top-1 agreement": float(same.mean()), "largest logit difference": largest,
            "largest logit": float(np.abs(deployed).max()), "clear-margin images": int(clear.sum()),
            "clear-margin agreement": float(same[clear].mean()) if clear.any() else float("nan")}


def onnx_codes(export: ResNetExport, images: np.ndarray, model=None) -> dict[str, np.ndarray]:
    """The int8 codes every binary layer reads inside onnxruntime, in the engine's layout (channels last for a
    conv, (N, in_features) for the head), int16 (the image's zero point 128 removed). Made by adding every
    codes tensor (:func:`bintut.integer.onnx_export.codes_name`) to the graph's outputs.
    ``model``: the ``onnx.ModelProto`` (default: :func:`to_onnx`'s). Raises OnnxUnavailableError."""
    onnx = require("onnx")
    model = onnx.ModelProto.FromString((model or to_onnx(export)).SerializeToString())
    readers = {name: codes_name(name) for name in export.layers}
    for block in export.blocks:  # a shortcut conv reads the codes its block's conv1 reads
        if block["shortcut"] is not None:
            readers[block["shortcut"]] = codes_name(block["conv1"])
    wanted = sorted(set(readers.values()))
    model.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.UINT8, None) for n in wanted)
    session = onnx_session(model)
    images = np.ascontiguousarray(check_images(images), dtype=np.float32)
    found = dict(zip(wanted, session.run(wanted, {INPUT: images}), strict=True))
    codes = {}
    for name, tensor in readers.items():
        values = found[tensor].astype(np.int16) - (128 if name == "conv1" else 0)
        codes[name] = values.transpose(0, 2, 3, 1) if values.ndim == 4 else values
    return codes


def onnx_code_differences(export: ResNetExport, images: np.ndarray, model=None) -> list[dict]:
    """Per binary layer: how often the int8 codes it reads in onnxruntime differ from the deployed network's, both
    run end to end on normalised float images (N, 3, H, W) (so differences propagate). One row per layer: code
    count and the % equal, off by 1, off by more. Raises what :func:`onnx_codes` raises."""
    ours = IntegerResNet(export, integer_only=True).input_codes(images)
    theirs = onnx_codes(export, images, model)
    rows = []
    for name in export.layers:
        diff = np.abs(ours[name].astype(np.int16) - theirs[name])
        rows.append({"layer": name, "codes": diff.size, "equal %": round(100 * float(np.mean(diff == 0)), 3),
                     "off by 1 %": round(100 * float(np.mean(diff == 1)), 3),
                     "off by more %": round(100 * float(np.mean(diff > 1)), 3)})
    return rows


def onnx_speed(session, images: np.ndarray, batch: int, repeats: int = 3) -> float:
    """Images per second of ``session`` on ``images`` (N, 3, H, W) float32 in runs of ``batch``: the best of
    ``repeats`` passes over the images, after one warm-up run. Raises ValueError for ``batch`` or ``repeats``
    below 1 (and as :func:`onnx_logits` does)."""
    if repeats < 1:
        raise ValueError(f"repeats must be positive, got {repeats}")
    onnx_logits(session, images[:batch], batch)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        onnx_logits(session, images, batch)
        best = min(best, time.perf_counter() - start)
    return len(images) / best

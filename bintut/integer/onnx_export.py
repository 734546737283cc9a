"""The deployed network as an ONNX model that onnxruntime runs (numpy, and ``onnx`` imported when called).

Built from a :class:`~bintut.integer.format.ResNetExport` in the QDQ style of quantized ONNX models:
every tensor a binary layer reads is ``QuantizeLinear`` to int8 codes (symmetric, zero point 0, the
layer's int8 step s_x) and ``DequantizeLinear`` back; every weight is stored as int8 codes in {-1, +1}
(or INT4) with a per-output-channel scale, dequantized in front of a float ``Conv``/``Gemm``.
BatchNorm is folded: the channel's scale is ``|A_c| / s_x`` (the sign of A_c is folded into the ±1
codes) and the bias ``B_c``, so the float Conv computes ``A_c * acc + B_c``, the epilogue of
:mod:`bintut.integer.engine`. ReLU, the residual addition and the average pool are the standard operators;
the requantization to the next layer's step is a ``QuantizeLinear`` (round half to even, saturating: after a
ReLU that is the clamp to [0, 127]). The image is clipped to +-127 steps before its ``QuantizeLinear`` (which
would saturate at -128) so that its codes are the engine's.

What differs from the deployed (integer-only) network: onnxruntime rounds with float scales and half to even
where bintut uses fixed-point multipliers rounding half up, so a few int8 codes differ by one step
(:func:`bintut.integer.onnx_compare.onnx_code_differences` counts them).
Taught in notebooks/07_integer_only_and_c.ipynb.
"""

from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path
from types import ModuleType

import numpy as np

from bintut.config import INT8_MAX
from bintut.errors import BintutError
from bintut.files.atomic import replacing
from bintut.integer.format import ResNetExport, final_size
from bintut.integer.kernels import unpack_signs

OPSET = 21  # per-axis QuantizeLinear/DequantizeLinear (13), INT4 (21)
# INT2 (opset 25) is not offered: onnxruntime 1.32 fuses its DequantizeLinear into a QLinearConv that rejects int2
# weights (INVALID_GRAPH) unless the session disables QDQ fusion (session.disable_quant_qdq), and then runs float
WEIGHT_TYPES = ("int8", "int4")
# "float": conv2 and the shortcut feed the residual addition unrounded, as in the deployed network; "int8": each
# branch is first rounded to the next block's step (uint8, zero point 128), as TFLite's int8 ADD, so that onnxruntime
# runs every convolution as an int8 QLinearConv and the addition as a QLinearAdd (faster; codes differ more often)
RESIDUALS = ("float", "int8")
INSTALL = "pip install 'bintut[onnx]'"
INPUT, OUTPUT = "images", "logits"


class OnnxUnavailableError(ImportError, BintutError):
    """``onnx`` or ``onnxruntime`` is not installed (the optional extra ``bintut[onnx]``)."""


class OnnxExportError(ValueError, BintutError):
    """The export cannot be written as this ONNX model (an unknown weight type, a malformed export)."""


def require(name: str) -> ModuleType:
    """Import ``onnx`` or ``onnxruntime`` when first needed. Raises OnnxUnavailableError, one line naming the
    extra to install, when it is missing."""
    try:
        return __import__(name)
    except ImportError:
        raise OnnxUnavailableError(f"the ONNX export needs the {name} package, which is not installed: "
                                   f"{INSTALL}") from None


def codes_name(layer: str) -> str:
    """The name of the int8 tensor (QuantizeLinear's output) a binary layer reads, e.g. 'layer1.0.conv1.codes'."""
    return f"{layer}.codes"


class _Graph:
    """Nodes and initializers, collected in order."""

    def __init__(self, onnx: ModuleType, weights: str) -> None:
        self.onnx, self.helper, self.weights = onnx, onnx.helper, weights
        self.nodes: list = []
        self.initializers: list = []

    def constant(self, name: str, array: np.ndarray, dtype: int | None = None):
        if dtype is None:
            tensor = self.onnx.numpy_helper.from_array(np.asarray(array), name)
        else:  # INT4: two codes a byte, the first in the low nibble (as onnx stores them)
            nibbles = np.concatenate([array.astype(np.uint8).ravel() & 0xF, np.zeros(array.size % 2, np.uint8)])
            packed = (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8)
            tensor = self.helper.make_tensor(name, dtype, array.shape, packed.tobytes(), raw=True)
        self.initializers.append(tensor)
        return name

    def node(self, op: str, inputs: list[str], output: str, name: str | None = None, **attributes) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=name or output, **attributes))
        return output

    def quantize(self, x: str, step: float, codes: str, image: bool = False) -> tuple[str, str]:
        """float tensor -> (codes at ``step``, their dequantized float value). Activations after a ReLU are
        uint8 with zero point 0, clamped to [0, 127] by a ``Clip`` on the codes (QuantizeLinear's saturation at 0 is
        the ReLU); the image is uint8 with zero point 128 (codes -127..127 stored as 1..255, clipped before)."""
        scale = self.constant(f"{codes}.step", np.float32(step))
        zero = self.constant(f"{codes}.zero", np.uint8(128 if image else 0))
        q = self.node("QuantizeLinear", [x, scale, zero], codes if image else f"{codes}.unclamped")
        if not image:
            low, high = self.constant(f"{codes}.low", np.uint8(0)), self.constant(f"{codes}.high", np.uint8(INT8_MAX))
            q = self.node("Clip", [q, low, high], codes)
        return q, self.node("DequantizeLinear", [q, scale, zero], f"{codes}.value")

    def branch(self, x: str, step: float, name: str) -> str:
        """A residual branch rounded to ``step`` (uint8 codes, zero point 128: signed values) and dequantized."""
        scale = self.constant(f"{name}.branch.step", np.float32(step))
        zero = self.constant(f"{name}.branch.zero", np.uint8(128))
        q = self.node("QuantizeLinear", [x, scale, zero], f"{name}.branch")
        return self.node("DequantizeLinear", [q, scale, zero], f"{name}.branch.value")

    def layer(self, export: ResNetExport, name: str, x: str, output: str | None = None) -> str:
        """One binary layer on the dequantized float input ``x``: DQ(±1 codes) -> Conv / Gemm with bias B_c."""
        layer = export.layers[name]
        a = layer.a.astype(np.float64)
        signs = unpack_signs(layer.bits, layer.k) * np.where(a < 0, -1, 1).astype(np.int8)[:, None]
        # |A_c| / s_x, kept large enough for the bias to fit int32 (a channel whose A_c is ~0 is its bias)
        scale = np.maximum(np.abs(a), np.abs(layer.b) / 2.0**30).astype(np.float32) / np.float32(layer.act_step)
        scale = np.maximum(scale, np.finfo(np.float32).tiny)
        dtype = None if self.weights == "int8" else self.onnx.TensorProto.INT4
        if layer.kind == "conv":
            signs = signs.reshape(layer.out_channels, layer.in_channels, layer.kernel, layer.kernel)
        codes = self.constant(f"{name}.weight_codes", signs.astype(np.int8), dtype)
        zeros = np.zeros(layer.out_channels, np.int8)
        zero = self.constant(f"{name}.weight_zero", zeros, dtype)
        w = self.node("DequantizeLinear", [codes, self.constant(f"{name}.weight_scale", scale), zero],
                      f"{name}.weight", axis=0)
        # the bias as int32 in units of s_x * scale_c (what onnxruntime's QLinearConv adds to the accumulator)
        unit = np.float32(layer.act_step) * scale
        bias = self.constant(f"{name}.bias_codes", np.round(layer.b / unit.astype(np.float64)).astype(np.int32))
        bias = self.node("DequantizeLinear", [bias, self.constant(f"{name}.bias_unit", unit),
                                              self.constant(f"{name}.bias_zero", np.zeros(len(unit), np.int32))],
                         f"{name}.bias", axis=0)
        if layer.kind == "conv":
            p = layer.padding
            return self.node("Conv", [x, w, bias], output or f"{name}.out", kernel_shape=[layer.kernel] * 2,
                             strides=[layer.stride] * 2, pads=[p] * 4)
        return self.node("Gemm", [x, w, bias], output or f"{name}.out", transB=1)


def to_onnx(export: ResNetExport, run: str = "", classes: list[str] | None = None, weights: str = "int8",
            residual: str = "float"):
    """The export as an ``onnx.ModelProto`` (opset OPSET): input ``images`` float32 (N, 3, H, W), the
    normalised image batch (N dynamic), output ``logits`` float32 (N, classes); see the module docstring.

    ``run`` and ``classes`` (the class names) go into the model's metadata with bintut's version and the
    normalisation. ``weights``: 'int8' or 'int4' codes (onnxruntime fuses only int8 into QLinearConv);
    ``residual``: 'float' or 'int8' (see RESIDUALS). Raises OnnxUnavailableError without onnx, and OnnxExportError
    for another ``weights`` or ``residual`` or a class list of the wrong length.
    """
    onnx = require("onnx")
    if weights not in WEIGHT_TYPES:
        raise OnnxExportError(f"weights must be one of {WEIGHT_TYPES}, got {weights!r}")
    if residual not in RESIDUALS:
        raise OnnxExportError(f"residual must be one of {RESIDUALS}, got {residual!r}")
    if classes is not None and len(classes) != export.num_classes:
        raise OnnxExportError(f"{len(classes)} class names for a head of {export.num_classes} classes")
    g = _Graph(onnx, weights)
    step = export.input_step
    low, high = g.constant("images.low", np.float32(-INT8_MAX * step)), g.constant("images.high",
                                                                                  np.float32(INT8_MAX * step))
    clipped = g.node("Clip", [INPUT, low, high], "images.clipped")
    _, x = g.quantize(clipped, step, codes_name("conv1"), image=True)
    relu = g.layer(export, "conv1", x)  # the ReLU: QuantizeLinear to uint8 saturates at 0
    for i, block in enumerate(export.blocks):
        _, x = g.quantize(relu, float(export.layers[block["conv1"]].act_step), codes_name(block["conv1"]))
        h = g.layer(export, block["conv1"], x)
        _, h = g.quantize(h, float(export.layers[block["conv2"]].act_step), codes_name(block["conv2"]))
        out = g.layer(export, block["conv2"], h)
        shortcut = x if block["shortcut"] is None else g.layer(export, block["shortcut"], x)
        if residual == "int8" and i + 1 < len(export.blocks):  # the last block's sum goes to the pool unrounded
            step = float(export.layers[export.blocks[i + 1]["conv1"]].act_step)
            out = g.branch(out, step, block["conv2"])
            shortcut = shortcut if block["shortcut"] is None else g.branch(shortcut, step, block["shortcut"])
        prefix = block["conv1"].rsplit(".", 1)[0]
        relu = g.node("Add", [out, shortcut], f"{prefix}.add")
    # the last block's ReLU comes before the pool, so it is explicit there
    pooled = g.node("Flatten", [g.node("GlobalAveragePool", [g.node("Relu", [relu], "relu")], "pool")], "pool.flat")
    _, x = g.quantize(pooled, float(export.layers["fc"].act_step), codes_name("fc"))
    g.layer(export, "fc", x, OUTPUT)
    size = export.image_size
    graph = onnx.helper.make_graph(
        g.nodes, "bintut_binary_resnet",
        [onnx.helper.make_tensor_value_info(INPUT, onnx.TensorProto.FLOAT, ["batch", 3, size, size])],
        [onnx.helper.make_tensor_value_info(OUTPUT, onnx.TensorProto.FLOAT, ["batch", export.num_classes])],
        g.initializers,
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   producer_name="bintut", producer_version=_version())
    model.doc_string = ("bintut's deployed binary ResNet: int8 activations (QuantizeLinear, zero point 0), weights "
                        "+-1 codes with a per-channel scale (BatchNorm folded), QDQ around float Conv/Gemm")
    meta = {"run": run, "bintut_version": _version(), "weights": weights, "residual": residual,
            "final_size": str(final_size(export)),
            "normalization": json.dumps({"mean": list(export.mean or ()), "std": list(export.std or ()),
                                         "data": export.data or "", "formula": "(pixel / 255 - mean[c]) / std[c]"}),
            "classes": json.dumps(list(classes) if classes is not None else
                                  [str(c) for c in range(export.num_classes)])}
    onnx.helper.set_model_props(model, meta)
    return model


def _version() -> str:
    try:
        return metadata.version("bintut")
    except metadata.PackageNotFoundError:
        return "unknown"


def check(model) -> None:
    """``onnx.checker`` with full checks (shape inference included) and strict shape inference.
    Raises onnx's ValidationError / InferenceError for a model that fails them."""
    onnx = require("onnx")
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)


def save_onnx(export: ResNetExport, path: str | os.PathLike, run: str = "", classes: list[str] | None = None,
              weights: str = "int8", residual: str = "float") -> Path:
    """Write :func:`to_onnx`'s model, checked by :func:`check`, to ``path`` whole (an interrupted write leaves
    what was there); returns the path. Raises what :func:`to_onnx` and :func:`check` raise, and OSError
    (StorageFullError for a full disk) when it cannot be written."""
    model = to_onnx(export, run, classes, weights, residual)
    check(model)
    path = Path(path)
    with replacing(path) as tmp:
        tmp.write_bytes(model.SerializeToString())
    return path

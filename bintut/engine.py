"""Whole-network integer inference in numpy from a :class:`~bintut.export.ResNetExport`.

Each binary layer quantizes its float input to int8 codes with its exported step, accumulates
int8 x ±1 products in int32 (one of the kernels of :mod:`bintut.intkernels`), and applies the
folded epilogue ``y = A_c * acc + B_c`` in float32. ReLU, residual additions and the global
average pool stay in float32, as in the torch model.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import fixedpoint
from .export import LayerExport, ResNetExport
from .intkernels import (
    INT8_MAX,
    addsub_gemm,
    blas_gemm,
    conv_output_size,
    conv_weight_matrix,
    im2col,
    oracle_gemm,
    pack_signs,
    unpack_signs,
)

KERNELS = ("blas", "addsub", "oracle")


def quantize(x: np.ndarray, step: np.float32, dtype: type = np.int8) -> np.ndarray:
    """Float activations -> int8 codes: clip(round_half_even(x / step), -127, 127), as the torch layer.

    ``dtype=np.float32`` keeps the same codes in float32 for the BLAS path (no int8 round trip).
    """
    return np.clip(np.rint(x / step), -INT8_MAX, INT8_MAX).astype(dtype, copy=False)


class IntegerResNet:
    """Runs the exported network; ``kernel`` picks the GEMM (all three give identical accumulators)."""

    def __init__(self, export: ResNetExport, kernel: str = "blas", chunk: int = 8,
                 integer_epilogue: bool = False) -> None:
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        if chunk < 1:
            raise ValueError(f"chunk must be positive, got {chunk}")
        self.export = export
        self.kernel = kernel
        self.chunk = chunk  # images per pass: small im2col buffers stay in cache
        # conv1 -> BN -> ReLU -> conv2 inside each block: requantize in integers (bintut.fixedpoint)
        conv1s = [(export.layers[b["conv1"]], export.layers[b["conv2"]]) for b in export.blocks]
        self.requant = {
            first.name: fixedpoint.integer_epilogue(first.a, first.b, second.act_step) for first, second in conv1s
        } if integer_epilogue else {}
        # ±1 weights unpacked once, columns in im2col's (kh, kw, C) order; the teaching kernel
        # reads them re-packed as bits in that order.
        self.weights: dict[str, np.ndarray] = {}
        self.bits: dict[str, np.ndarray] = {}
        for name, layer in export.layers.items():
            w = unpack_signs(layer.bits, layer.k)
            if layer.kind == "conv":
                w = conv_weight_matrix(w.reshape(layer.out_channels, layer.in_channels, layer.kernel, layer.kernel))
            self.weights[name] = w.astype(np.float32) if kernel == "blas" else w
            self.bits[name] = pack_signs(w)

    def gemm(self, name: str, codes: np.ndarray) -> np.ndarray:
        """Accumulators: exact integers, held in float32 on the BLAS path (|acc| < 2^24 was checked)."""
        if self.kernel == "blas":
            return blas_gemm(codes, self.weights[name], out_dtype=np.float32)
        if self.kernel == "addsub":
            return addsub_gemm(codes, self.bits[name], self.export.layers[name].k)
        return oracle_gemm(codes, self.weights[name]).astype(np.int32)

    def layer(self, name: str, x: np.ndarray, record: Callable[[str, np.ndarray], None] | None = None,
              codes: np.ndarray | None = None) -> np.ndarray:
        """One binary layer on NHWC (conv) or (N, C) (linear) float input, or on its int8 ``codes``.

        Returns the float epilogue ``A_c * acc + B_c``, or, for a layer with an integer epilogue,
        the next layer's int8 codes (ReLU included).
        """
        layer: LayerExport = self.export.layers[name]
        if codes is not None:
            codes = codes.astype(np.float32) if self.kernel == "blas" else codes
        else:
            codes = quantize(x, layer.act_step, np.float32 if self.kernel == "blas" else np.int8)
        if layer.kind == "conv":
            n, h, w, _ = codes.shape
            oh = conv_output_size(h, layer.kernel, layer.stride, layer.padding)
            ow = conv_output_size(w, layer.kernel, layer.stride, layer.padding)
            acc = self.gemm(name, im2col(codes, layer.kernel, layer.stride, layer.padding))
            acc = acc.reshape(n, oh, ow, layer.out_channels)
        else:
            acc = self.gemm(name, codes)
        if record is not None:
            record(name, acc.astype(np.int32))
        if name in self.requant:
            return fixedpoint.requantize(acc.astype(np.int32), *self.requant[name], low=0)  # ReLU: codes >= 0
        return acc.astype(np.float32, copy=False) * layer.a + layer.b

    def forward(self, images: np.ndarray, record: Callable[[str, np.ndarray], None] | None = None) -> np.ndarray:
        """Normalised images (N, 3, H, W) float32 -> logits (N, classes) float32."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (N, 3, H, W), got {images.shape}")
        if record is not None:  # recorded accumulators should cover the whole batch at once
            return self._forward(images, record)
        return np.concatenate([self._forward(images[i : i + self.chunk]) for i in range(0, len(images), self.chunk)])

    def _forward(self, images: np.ndarray, record: Callable[[str, np.ndarray], None] | None = None) -> np.ndarray:
        x = np.ascontiguousarray(images.transpose(0, 2, 3, 1), dtype=np.float32)
        x = np.maximum(self.layer("conv1", x, record), 0)
        for block in self.export.blocks:
            if block["conv1"] in self.requant:
                out = self.layer(block["conv2"], None, record, codes=self.layer(block["conv1"], x, record))
            else:
                out = np.maximum(self.layer(block["conv1"], x, record), 0)
                out = self.layer(block["conv2"], out, record)
            shortcut = x if block["shortcut"] is None else self.layer(block["shortcut"], x, record)
            x = np.maximum(out + shortcut, 0)
        pooled = x.mean(axis=(1, 2), dtype=np.float32)
        return self.layer("fc", pooled, record).astype(np.float32)

    __call__ = forward

    def accumulators(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Every layer's int32 accumulators for a batch (NHWC for convs)."""
        accs: dict[str, np.ndarray] = {}
        self.forward(images, record=lambda name, acc: accs.__setitem__(name, acc))
        return accs


def layer_agreement(model, export: ResNetExport, images) -> list[dict]:
    """Per layer: do our kernels, fed the int8 codes torch computed, give exactly the integer
    accumulators implied by torch (its conv on those codes and the ±1 signs)?

    ``model`` is the torch model in its deployable view (hard mode); ``images`` a torch batch.
    Returns rows with the layer name, whether all three kernels matched exactly, and the largest
    relative deviation of torch's own float layer output from s_x * s_c * acc.
    """
    import torch
    from torch.nn import functional as F

    from .anatomy import record_io

    captured = record_io(model, list(export.layers), images)
    modules = dict(model.named_modules())
    engines = {k: IntegerResNet(export, kernel=k) for k in KERNELS}
    rows = []
    for name, layer in export.layers.items():
        x, y = captured[name]
        module = modules[name]
        codes = module.input_quant.integer(x)
        signs = torch.where(module.parametrizations.weight.original >= 0, 1.0, -1.0).double()
        if layer.kind == "conv":
            implied = F.conv2d(codes.double(), signs, stride=layer.stride, padding=layer.padding).permute(0, 2, 3, 1)
            np_codes = im2col(codes.permute(0, 2, 3, 1).numpy(), layer.kernel, layer.stride, layer.padding)
            torch_out = y.permute(0, 2, 3, 1).double()
        else:
            implied = codes.double() @ signs.T
            np_codes = codes.numpy()
            torch_out = (y - module.bias.detach()).double()
        implied = implied.reshape(-1, layer.out_channels).numpy()
        exact = all(
            np.array_equal(eng.gemm(name, np_codes.astype(np.float32) if k == "blas" else np_codes), implied)
            for k, eng in engines.items()
        )
        scale = float(layer.act_step) * layer.weight_scale.astype(np.float64)
        deviation = np.abs(torch_out.reshape(-1, layer.out_channels).numpy() - implied * scale).max()
        rows.append({"layer": name, "exact": exact,
                     "torch deviation": float(deviation / max(np.abs(implied * scale).max(), 1e-30))})
    return rows


def prediction_agreement(model, export: ResNetExport, images) -> dict[str, float]:
    """Top-1 agreement and the largest logit difference between torch (hard mode) and the engine."""
    import torch

    with torch.no_grad():
        ref = model.eval()(images).numpy()
    logits = IntegerResNet(export)(images.numpy())
    return {"images": len(ref), "top-1 agreement": float((logits.argmax(1) == ref.argmax(1)).mean()),
            "largest logit difference": float(np.abs(logits - ref).max()),
            "largest logit": float(np.abs(ref).max())}


"""Whole-network integer inference in numpy from a :class:`~bintut.integer.format.ResNetExport`.

Each binary layer quantizes its input to int8 codes with its exported step and accumulates
int8 x ±1 products in int32 (one of the kernels of :mod:`bintut.integer.kernels`). Two epilogues:

* float (default): ``y = A_c * acc + B_c`` in float32; ReLU, residual additions and the global
  average pool stay in float32, as in the torch model;
* ``integer_only=True``: after the image is quantized to int8, no float at all. Every epilogue is
  the fixed-point ``e(x) = (x * m + bias + 2^(shift-1)) >> shift`` of :mod:`bintut.integer.fixedpoint` with
  constants computed at export: conv1 -> conv2 inside a block requantizes to int8 codes (ReLU as a
  clamp); a residual addition maps both branches to a shared scale with 16 fractional bits, adds
  them and rounds once to the next block's codes; the pool is an integer sum (the 1/positions is
  folded into the last block's multipliers) and the head gives int32 logits in units of
  2^-logit_bits. The C export (:mod:`bintut.integer.c_library`) computes exactly this.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bintut.config import INT8_MAX
from bintut.integer import fixedpoint
from bintut.integer.format import LayerExport, ResNetExport
from bintut.integer.kernels import (
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
    ``x``: float32 of any shape (NHWC or (N, C) here); ``step``: the layer's input step (activation units
    per code); returns codes of ``x``'s shape in ``dtype``.

    ``dtype=np.float32`` keeps the same codes in float32 for the BLAS path (no int8 round trip). A subnormal
    step (a layer whose range is ~0) overflows x / step to +-inf, which the clip turns into +-127, as torch does.
    """
    with np.errstate(over="ignore"):
        return np.clip(np.rint(x / step), -INT8_MAX, INT8_MAX).astype(dtype, copy=False)


def as_array(values: object) -> np.ndarray:
    """A numpy array of ``values``: an array, a nested list, or a torch tensor (on any device, with grad);
    shape and dtype as given. Raises ValueError, naming the type, when numpy cannot make an array of it."""
    if hasattr(values, "detach") and hasattr(values, "cpu"):  # a torch tensor, without importing torch
        values = values.detach().cpu().numpy()
    try:
        return np.asarray(values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"expected an array of images, got {type(values).__name__} ({err})") from None


def check_images(images: np.ndarray) -> np.ndarray:
    """Refuse what is not a non-empty batch of normalised float images (N, 3, H, W), with a clear message;
    returns it as a numpy array (a list or a torch tensor is converted once, here), dtype unchanged.

    Raises ValueError saying which: not an array, not (N, 3, H, W), N = 0, an integer dtype (raw pixels:
    normalise first), or NaN / infinite values (and how many)."""
    images = as_array(images)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (N, 3, H, W), got {images.shape}")
    if len(images) == 0:
        raise ValueError("the batch is empty: pass at least one image")
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(
            f"expected normalised float images, got {images.dtype}: convert raw pixels first "
            "(ToTensor + Normalize, as bintut.data.ImageDataset does)"
        )
    if not np.isfinite(images).all():
        raise ValueError(f"the images contain {np.count_nonzero(~np.isfinite(images))} NaN or infinite values")
    return images


def check_codes(codes: np.ndarray, size: int) -> None:
    """Refuse what is not a non-empty batch of int8 image codes (N, size, size, 3), channels last.

    Raises ValueError naming the dtype or shape it got (or an empty batch) and the expected one."""
    if codes.dtype != np.int8:
        raise ValueError(f"expected int8 image codes, got {codes.dtype} (use IntegerResNet.quantize_images)")
    if codes.ndim != 4 or codes.shape[1:] != (size, size, 3):
        raise ValueError(f"expected image codes of shape (N, {size}, {size}, 3), got {codes.shape}")
    if len(codes) == 0:
        raise ValueError("the batch is empty: pass at least one image")


class IntegerResNet:
    """Runs the exported network; ``kernel`` picks the GEMM (all three give identical accumulators).

    ``integer_only=True`` runs every epilogue in fixed point (see the module docstring); then
    :meth:`integer_logits` gives the int32 logits and ``forward`` returns them scaled to float.
    Raises ValueError for an unknown ``kernel`` or a ``chunk`` below 1.
    """

    def __init__(self, export: ResNetExport, kernel: str = "blas", chunk: int = 8,
                 integer_only: bool = False) -> None:
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        if chunk < 1:
            raise ValueError(f"chunk must be positive, got {chunk}")
        self.export = export
        self.kernel = kernel
        self.chunk = chunk  # images per pass: small im2col buffers stay in cache
        self.integer_only = integer_only
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
        """Accumulators of layer ``name``: codes (M, K) (im2col rows or (N, C)) -> (M, out_channels) exact
        integers, int32, or float32 on the BLAS path (|acc| < 2^24 was checked)."""
        if self.kernel == "blas":
            return blas_gemm(codes, self.weights[name], out_dtype=np.float32)
        if self.kernel == "addsub":
            return addsub_gemm(codes, self.bits[name], self.export.layers[name].k)
        return oracle_gemm(codes, self.weights[name]).astype(np.int32)

    def accumulate(self, name: str, codes: np.ndarray) -> np.ndarray:
        """int8 codes (NHWC for a conv, (N, C) for the head; int8, or float32 on the BLAS path) -> accumulators."""
        layer: LayerExport = self.export.layers[name]
        if self.kernel == "blas":
            codes = codes.astype(np.float32, copy=False)
        if layer.kind != "conv":
            return self.gemm(name, codes)
        n, h, w, _ = codes.shape
        oh = conv_output_size(h, layer.kernel, layer.stride, layer.padding)
        ow = conv_output_size(w, layer.kernel, layer.stride, layer.padding)
        acc = self.gemm(name, im2col(codes, layer.kernel, layer.stride, layer.padding))
        return acc.reshape(n, oh, ow, layer.out_channels)

    def layer(self, name: str, x: np.ndarray, record: Callable[[str, np.ndarray], None] | None = None,
              note: Callable[[str, np.ndarray], None] | None = None) -> np.ndarray:
        """One binary layer with the float epilogue ``A_c * acc + B_c`` on NHWC (conv) or (N, C) float input.

        ``record(name, acc)`` receives the int32 accumulators, ``note(name, codes)`` the int8 input codes.
        """
        layer: LayerExport = self.export.layers[name]
        codes = quantize(x, layer.act_step, np.float32 if self.kernel == "blas" else np.int8)
        if note is not None:
            note(name, codes.astype(np.int8))
        acc = self.accumulate(name, codes)
        if record is not None:
            record(name, acc.astype(np.int32))
        return acc.astype(np.float32, copy=False) * layer.a + layer.b

    def forward(self, images: np.ndarray, record: Callable[[str, np.ndarray], None] | None = None) -> np.ndarray:
        """Normalised images (N, 3, H, W) float -> logits (N, classes) float32."""
        images = check_images(images)
        if self.integer_only:
            logits = self.integer_logits(self.quantize_images(images), record)
            return logits.astype(np.float32) * np.float32(2.0**-self.export.logit_bits)
        if record is not None:  # recorded accumulators should cover the whole batch at once
            return self._forward(images, record)
        return np.concatenate([self._forward(images[i : i + self.chunk]) for i in range(0, len(images), self.chunk)])

    __call__ = forward

    def _forward(self, images: np.ndarray, record: Callable[[str, np.ndarray], None] | None = None,
                 note: Callable[[str, np.ndarray], None] | None = None) -> np.ndarray:
        x = np.ascontiguousarray(images.transpose(0, 2, 3, 1), dtype=np.float32)
        x = np.maximum(self.layer("conv1", x, record, note), 0)
        for block in self.export.blocks:
            out = np.maximum(self.layer(block["conv1"], x, record, note), 0)
            out = self.layer(block["conv2"], out, record, note)
            shortcut = x if block["shortcut"] is None else self.layer(block["shortcut"], x, record, note)
            x = np.maximum(out + shortcut, 0)
        pooled = x.mean(axis=(1, 2), dtype=np.float32)
        return self.layer("fc", pooled, record, note).astype(np.float32)

    # ------------------------------------------------------------------ integer only

    def quantize_images(self, images: np.ndarray) -> np.ndarray:
        """The only float step: normalised float images (N, 3, H, W) -> int8 codes (N, H, W, 3), channels last,
        in units of the stem's input step (code = round(x / step), clamped to +-127).

        Raises ValueError as :func:`check_images` does, or when H x W is not the export's image size."""
        images = check_images(images)
        size = self.export.image_size
        if images.shape[2:] != (size, size):
            raise ValueError(f"this export is laid out for {size} x {size} images, got {images.shape[2:]}")
        nhwc = np.ascontiguousarray(images.transpose(0, 2, 3, 1), dtype=np.float32)
        return quantize(nhwc, self.export.layers["conv1"].act_step)

    def integer_logits(self, codes: np.ndarray, record: Callable[[str, np.ndarray], None] | None = None,
                       ) -> np.ndarray:
        """int8 image codes (N, H, W, 3) -> int32 logits in units of 2^-logit_bits; integers only.

        ``record(name, codes)`` receives the int8 input codes of every binary layer.
        """
        codes = as_array(codes)
        check_codes(codes, self.export.image_size)
        if record is not None:
            return self._integer_forward(codes, record)
        return np.concatenate([self._integer_forward(codes[i : i + self.chunk])
                               for i in range(0, len(codes), self.chunk)])

    def _epilogue(self, name: str, x: np.ndarray) -> np.ndarray:
        layer = self.export.layers[name]
        return fixedpoint.apply(x, layer.m.astype(np.int64), layer.shift.astype(np.int64), layer.bias)

    def _integer_forward(self, codes: np.ndarray, record: Callable[[str, np.ndarray], None] | None = None,
                         ) -> np.ndarray:
        """Taught in notebooks/07_integer_only_and_c.ipynb."""
        export, frac = self.export, self.export.fraction_bits
        note = record or (lambda name, c: None)
        note("conv1", codes)
        x = np.clip(self._epilogue("conv1", self.accumulate("conv1", codes)), 0, INT8_MAX).astype(np.int8)
        for i, block in enumerate(export.blocks):
            note(block["conv1"], x)
            h = np.clip(self._epilogue(block["conv1"], self.accumulate(block["conv1"], x)), 0, INT8_MAX)
            h = h.astype(np.int8)
            note(block["conv2"], h)
            t = self._epilogue(block["conv2"], self.accumulate(block["conv2"], h))
            if block["shortcut"] is None:
                t += fixedpoint.apply(x, np.int64(block["identity_m"]), np.int64(block["identity_shift"]))
            else:
                note(block["shortcut"], x)
                t += self._epilogue(block["shortcut"], self.accumulate(block["shortcut"], x))
            if i + 1 < len(export.blocks):
                x = np.clip(fixedpoint.round_shift(t, frac), 0, INT8_MAX).astype(np.int8)
            else:  # ReLU, then the pool: a sum (1/positions is folded into this block's multipliers)
                pooled = np.maximum(t, 0).sum(axis=(1, 2))
                x = np.clip(fixedpoint.round_shift(pooled, frac), 0, INT8_MAX).astype(np.int8)
        note("fc", x)
        return self._epilogue("fc", self.accumulate("fc", x)).astype(np.int32)

    # ------------------------------------------------------------------ inspection

    def accumulators(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Every layer's int32 accumulators for normalised float images (N, 3, H, W), float-epilogue path:
        (N, OH, OW, out_channels) for a conv, (N, classes) for the head."""
        accs: dict[str, np.ndarray] = {}
        self.forward(images, record=lambda name, acc: accs.__setitem__(name, acc))
        return accs

    def input_codes(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """The int8 codes every binary layer reads, for this engine's epilogues, for normalised float images
        (N, 3, H, W): (N, H', W', in_channels) for a conv, (N, in_features) for the head."""
        codes: dict[str, np.ndarray] = {}
        note = codes.__setitem__
        if self.integer_only:
            self.integer_logits(self.quantize_images(images), note)
        else:
            images = check_images(images)
            self._forward(images, note=note)
        return codes


def code_differences(export: ResNetExport, images: np.ndarray) -> list[dict]:
    """Per binary layer: how often the int8 codes it reads differ between the float-epilogue and the
    integer-only engine, run end to end on the same normalised float images (N, 3, H, W) (differences
    propagate downstream). One row per layer: code count and the % equal, off by 1, off by more."""
    float_codes = IntegerResNet(export).input_codes(images)
    int_codes = IntegerResNet(export, integer_only=True).input_codes(images)
    rows = []
    for name in export.layers:
        diff = np.abs(float_codes[name].astype(np.int16) - int_codes[name].astype(np.int16))
        rows.append({"layer": name, "codes": diff.size, "equal %": round(100 * float(np.mean(diff == 0)), 3),
                     "off by 1 %": round(100 * float(np.mean(diff == 1)), 3),
                     "off by more %": round(100 * float(np.mean(diff > 1)), 3)})
    return rows


def clear_margin(reference: np.ndarray, logits: np.ndarray) -> tuple[float, np.ndarray]:
    """The largest |logits - reference| over a batch (N, classes), and per image whether the reference's
    top-2 gap exceeds twice it: no logit error that large can change those images' winners."""
    largest = float(np.abs(logits - reference).max())
    top2 = np.sort(reference, axis=1)[:, -2:]
    return largest, top2[:, 1] - top2[:, 0] > 2 * largest

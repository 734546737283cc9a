"""The deployed network in torch: the integer-only network of an export, bit for bit, on CPU or CUDA.

:class:`TorchIntegerResNet` computes exactly what ``IntegerResNet(export, integer_only=True)``
(:mod:`bintut.integer.engine`) and the C library (:mod:`bintut.integer.c_library`) compute: the same int8 image codes,
int32 accumulators, fixed-point epilogues (:mod:`bintut.integer.fixedpoint`), residual additions, integer pool
and int32 logits -- at the speed of a float32 matrix multiply.

Why a float32 GEMM is exact here: every operand is an integer code with ``|code| <= 127`` or a sign
``+-1``, so every product and every partial sum of a row is an integer with ``|sum| <= 127 * K``, at most
``127 * 4608 = 585,216 < 2^24`` in ResNet18 (checked at export). float32 holds every integer below 2^24
exactly, so no addition rounds, whatever the order of the summation (blocked, split-K, vectorised). The
same holds with TF32 or bf16 inputs on tensor cores (127 and +-1 need 7 significant bits; TF32 has 11,
bf16 8) because they accumulate in float32. That covers direct and im2col + GEMM convolutions, which
only reorder sums -- not the Winograd and FFT algorithms a convolution library may pick, which transform
the operands and round. So the convolutions run as ``F.conv2d`` with NNPACK (CPU) and cuDNN (CUDA)
switched off for the call, leaving oneDNN's direct convolution or PyTorch's own im2col + GEMM; as a
safety net, a result that is not integral (the mark of a transforming algorithm) is recomputed as
``unfold`` + ``matmul``, exact by construction. The epilogues run in int64.

Image codes are ``clamp(round_half_even(x / step), -127, 127)`` with a true float32 division by a 0-d
tensor on the images' device (as :class:`bintut.quant.Int8Quantizer` computes them), equal to numpy's.

Taught in notebooks/07_integer_only_and_c.ipynb (the integer-only network); every training run reports
its accuracy as ``deployed_acc`` (:func:`deployed_accuracy`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np
import torch
import torch.distributed as dist
from torch.nn import functional as F

from bintut.config import INT8_MAX
from bintut.integer.fold import export_resnet
from bintut.integer.format import ExportError, LayerExport, ResNetExport
from bintut.integer.kernels import unpack_signs
from bintut.quant import hard_mode


class TorchIntegerResNet:
    """The integer-only network of ``export`` on ``device``; see the module docstring for why it is exact.

    Raises ValueError for images of the wrong shape or dtype (as the numpy engine does).
    """

    def __init__(self, export: ResNetExport, device: str | torch.device = "cpu", chunk: int = 32) -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be positive, got {chunk}")
        self.export = export
        self.device = torch.device(device)
        self.chunk = chunk  # images per pass: bounds the int64 intermediates
        self.signs: dict[str, torch.Tensor] = {}  # (out, K) float32 +-1, columns in unfold's (C, kh, kw) order
        # per channel, int64, shaped for dim 1: m, shift, and bias + 2^(shift-1) (the rounding offset folded in)
        self.constants: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        for name, layer in export.layers.items():
            signs = unpack_signs(layer.bits, layer.k).astype(np.float32)
            self.signs[name] = torch.from_numpy(signs).to(self.device)
            m, shift, bias = (np.asarray(v, dtype=np.int64) for v in (layer.m, layer.shift, layer.bias))
            view = (-1, 1, 1) if layer.kind == "conv" else (-1,)
            self.constants[name] = tuple(torch.from_numpy(v).to(self.device).view(view)
                                         for v in (m, shift, bias + (np.int64(1) << (shift - 1))))
        self.step = torch.tensor(np.float32(export.layers["conv1"].act_step), device=self.device)

    # ------------------------------------------------------------------ pieces

    def quantize_images(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised float images (N, 3, H, W) -> int8 codes (N, 3, H, W), channels first; the only float step.

        Raises ValueError when the shape is not (N, 3, size, size) for the export's size, or the dtype is not
        floating point."""
        size = self.export.image_size
        if images.dim() != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != (size, size):
            raise ValueError(f"expected images of shape (N, 3, {size}, {size}), got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise ValueError(f"expected normalised float images, got {images.dtype}")
        x = images.to(self.device, torch.float32) / self.step  # true division: a 0-d tensor, not a Python scalar
        return torch.clamp(torch.round(x), -INT8_MAX, INT8_MAX).to(torch.int8)

    def accumulate(self, name: str, codes: torch.Tensor) -> torch.Tensor:
        """int8 codes held in float32, (N, C, H, W) for a conv or (N, C) for the head -> int64 accumulators."""
        layer: LayerExport = self.export.layers[name]
        if layer.kind != "conv":
            return (codes @ self.signs[name].T).to(torch.int64)
        weight = self.signs[name].view(layer.out_channels, layer.in_channels, layer.kernel, layer.kernel)
        with torch.backends.nnpack.flags(enabled=False), torch.backends.cudnn.flags(enabled=False):
            acc = F.conv2d(codes, weight, stride=layer.stride, padding=layer.padding)
        if not torch.equal(acc, torch.round(acc)):  # a transforming algorithm rounded: the exact GEMM instead
            n, _, oh, ow = acc.shape
            columns = F.unfold(codes, layer.kernel, padding=layer.padding, stride=layer.stride)  # (N, K, oh*ow)
            acc = (self.signs[name] @ columns).reshape(n, layer.out_channels, oh, ow)
        return acc.to(torch.int64)

    def epilogue(self, name: str, acc: torch.Tensor) -> torch.Tensor:
        """e(acc) = (acc * m + bias + 2^(shift-1)) >> shift per output channel (dim 1), int64, in place:
        int64 accumulators (N, C, H, W) or (N, C) -> the same tensor, rescaled."""
        m, shift, offset = self.constants[name]
        return acc.mul_(m).add_(offset).bitwise_right_shift_(shift)

    def _round_shift(self, t: torch.Tensor) -> torch.Tensor:
        bits = self.export.fraction_bits
        return t.add_(1 << (bits - 1)).bitwise_right_shift_(bits)

    # ------------------------------------------------------------------ the network

    @torch.no_grad()
    def integer_logits(self, codes: torch.Tensor) -> torch.Tensor:
        """int8 image codes (N, 3, H, W) -> int32 logits (N, classes) in units of 2^-logit_bits (N = 0: none).

        Raises ValueError, naming the dtype it got, for codes that are not int8."""
        if codes.dtype != torch.int8:
            raise ValueError(f"expected int8 image codes, got {codes.dtype} (use quantize_images)")
        codes = codes.to(self.device)
        if len(codes) == 0:  # an empty batch: no logits (torch.cat of no chunks would fail)
            return torch.zeros((0, self.export.num_classes), dtype=torch.int32, device=self.device)
        return torch.cat([self._forward(codes[i: i + self.chunk]) for i in range(0, len(codes), self.chunk)])

    def _forward(self, codes: torch.Tensor) -> torch.Tensor:
        export = self.export

        def requantize(name: str, x: torch.Tensor) -> torch.Tensor:  # next int8 codes, ReLU as the clamp at 0
            return self.epilogue(name, self.accumulate(name, x)).clamp_(0, INT8_MAX).float()

        x = requantize("conv1", codes.float())
        for i, block in enumerate(export.blocks):
            h = requantize(block["conv1"], x)
            t = self.epilogue(block["conv2"], self.accumulate(block["conv2"], h))
            if block["shortcut"] is None:
                m, shift = block["identity_m"], block["identity_shift"]
                t += x.to(torch.int64).mul_(m).add_(1 << (shift - 1)).bitwise_right_shift_(shift)
            else:
                t += self.epilogue(block["shortcut"], self.accumulate(block["shortcut"], x))
            if i + 1 < len(export.blocks):
                x = self._round_shift(t).clamp_(0, INT8_MAX).float()
            else:  # ReLU, then the pool as a sum (1/positions is folded into this block's multipliers)
                pooled = torch.clamp_min(t, 0).sum(dim=(2, 3))
                x = torch.clamp(self._round_shift(pooled), 0, INT8_MAX).float()
        return self.epilogue("fc", self.accumulate("fc", x)).to(torch.int32)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images (N, 3, H, W) -> logits (N, classes) float32 (the int32 logits scaled)."""
        logits = self.integer_logits(self.quantize_images(images))
        return logits.float() * 2.0**-self.export.logit_bits


@torch.no_grad()
def deployed_accuracy(model: torch.nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                      device: str | torch.device = "cpu") -> dict[str, float | int | str | None]:
    """Top-1 accuracy of the network a user deploys: ``model`` exported at p = bin_ratio = 1 (whatever its
    controls now) and run as :class:`TorchIntegerResNet` on ``batches`` of (normalised images, labels).

    Returns ``{"acc", "count", "seconds"}``; ``acc`` is None, with the reason in ``"why"``, when the model
    cannot be exported yet (e.g. a quantizer never calibrated). The model is left as it was.
    """
    started = time.perf_counter()
    try:
        with hard_mode(model):
            export = export_resnet(model)
    except ExportError as err:
        return {"acc": None, "count": 0, "seconds": time.perf_counter() - started, "why": str(err)}
    net = TorchIntegerResNet(export, device)
    totals = torch.zeros(2, dtype=torch.float64, device=net.device)
    for x, y in batches:
        logits = net.integer_logits(net.quantize_images(x))
        totals[0] += (logits.argmax(1) == y.to(net.device)).sum()
        totals[1] += y.numel()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(totals)
    correct, count = totals.tolist()
    return {"acc": correct / max(count, 1), "count": int(count), "seconds": time.perf_counter() - started}

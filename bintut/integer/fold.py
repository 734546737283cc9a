"""From a trained torch model to the integer network's format: BatchNorm folding.

Per Conv2d/Linear: the packed signs of the binary weights, the per-channel weight scale s_c, the
input's int8 step s_x and the folded epilogue ``y = A_c * acc + B_c`` with
``A_c = gamma * s_x * s_c / sigma`` and ``B_c = beta - gamma * mu / sigma`` (for the head,
A = s_x * s_c and B = bias). Taught in notebooks/05_int8_addsub_gemm.ipynb.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from bintut.integer.format import ExportError, LayerExport, ResNetExport, add_integer_constants
from bintut.integer.kernels import check_exact_range
from bintut.quant import Int8Quantizer, SignQuantizer, is_fully_binary, plain_state_dict, weight_quantizer


def _quantizers(layer: nn.Module, name: str) -> tuple[SignQuantizer, Int8Quantizer]:
    wq = weight_quantizer(layer)
    aq = getattr(layer, "input_quant", None)
    if wq is None or not isinstance(aq, Int8Quantizer):
        raise ExportError(
            f"layer {name} lacks a {'weight' if wq is None else 'activation'} quantizer: export needs a model "
            "converted with bintut.binarize_ with both weights and activations quantized"
        )
    if not bool(aq.initialized):
        raise ExportError(f"layer {name}: the int8 input range was never calibrated (train or run the model first)")
    if not float(aq.running_max) > 0:
        raise ExportError(
            f"layer {name}: the int8 input range is zero (running max {float(aq.running_max)!r}: the layer saw "
            "only zeros while calibrating), so its step is undefined; calibrate on real images"
        )
    return wq, aq


def _fold(layer: nn.Module, name: str, bn: nn.BatchNorm2d | None) -> LayerExport:
    """Taught in notebooks/05_int8_addsub_gemm.ipynb."""
    wq, aq = _quantizers(layer, name)
    with torch.no_grad():
        w = layer.parametrizations.weight.original.detach().float()
        s_c = wq.channel_scale(w).flatten().double()
        s_x = float(aq.step_for(torch.zeros(1)))
        if bn is not None:
            sigma = torch.sqrt(bn.running_var.double() + bn.eps)
            gamma, beta, mu = bn.weight.double(), bn.bias.double(), bn.running_mean.double()
            a = gamma * s_x * s_c / sigma
            b = beta - gamma * mu / sigma
        else:
            a = s_x * s_c
            b = layer.bias.double() if layer.bias is not None else torch.zeros_like(s_c)
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1 or layer.dilation != (1, 1) or layer.kernel_size[0] != layer.kernel_size[1]:
            raise ExportError(f"layer {name}: only square, ungrouped, undilated convolutions are supported")
        kind, kernel, stride, padding = "conv", layer.kernel_size[0], layer.stride[0], layer.padding[0]
    else:
        kind, kernel, stride, padding = "linear", 1, 1, 0
    out = LayerExport(
        name, kind, w.shape[1], w.shape[0], kernel, stride, padding,
        bits=np.packbits((w >= 0).reshape(w.shape[0], -1).numpy(), axis=1),
        weight_scale=s_c.float().numpy(), act_step=np.float32(s_x),
        a=a.float().numpy(), b=b.float().numpy(),
    )
    try:
        check_exact_range(out.k)
    except ValueError as err:
        raise ExportError(f"layer {name}: {err}") from err
    return out


def export_resnet(model: nn.Module, image_size: int = 32,
                  normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None) -> ResNetExport:
    """Fold a fully binarized bintut ResNet18 (p = bin_ratio = 1 everywhere) into an export,
    with the integer-only constants for ``image_size`` x ``image_size`` images.

    ``normalization``: the (mean, std) per channel the model's inputs were normalised with, recorded in
    the export for the C library's input documentation (``bintut.data.choice.DATA_NORMALIZATION``).
    Raises ExportError for a model that is not a fully binarized ResNet18-CIFAR. Taught in
    notebooks/05_int8_addsub_gemm.ipynb."""
    if not isinstance(model, ResNet) or not all(isinstance(b, BasicBlock) for b in _blocks(model)):
        raise ExportError("export_resnet expects a torchvision ResNet made of BasicBlocks (e.g. resnet18_cifar)")
    if not is_fully_binary(model):
        raise ExportError(
            "the model is not fully binarized (some p or bin_ratio < 1): export the deployable view with "
            "bintut.set_controls(model, 1.0, 1.0) or inside `with bintut.hard_mode(model):`"
        )
    if not isinstance(model.maxpool, nn.Identity):
        raise ExportError("the model still has the ImageNet maxpool: use bintut.resnet18_cifar")
    layers = {"conv1": _fold(model.conv1, "conv1", model.bn1)}
    blocks = []
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        for i, block in enumerate(getattr(model, stage)):
            prefix = f"{stage}.{i}"
            layers[f"{prefix}.conv1"] = _fold(block.conv1, f"{prefix}.conv1", block.bn1)
            layers[f"{prefix}.conv2"] = _fold(block.conv2, f"{prefix}.conv2", block.bn2)
            shortcut = None
            if block.downsample is not None:
                shortcut = f"{prefix}.downsample.0"
                layers[shortcut] = _fold(block.downsample[0], shortcut, block.downsample[1])
            blocks.append({"conv1": f"{prefix}.conv1", "conv2": f"{prefix}.conv2", "shortcut": shortcut})
    layers["fc"] = _fold(model.fc, "fc", None)
    mean, std = normalization or (None, None)
    export = ResNetExport(layers, blocks, model.fc.out_features, image_size, mean=mean, std=std)
    add_integer_constants(export)
    return export


def _blocks(model: ResNet) -> list[nn.Module]:
    return [b for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for b in stage]


def fp32_state_dict_bytes(model: nn.Module) -> int:
    """Bytes on disk of the equivalent plain fp32 torchvision state_dict (torch.save)."""
    plain = {k: v.float() if v.is_floating_point() else v for k, v in plain_state_dict(model).items()}
    buffer = io.BytesIO()
    torch.save(plain, buffer)
    return buffer.tell()

"""From a trained torch model to the integer network's format: BatchNorm folding.

Per Conv2d/Linear: the packed signs of the binary weights, the per-channel weight scale s_c, the
input's int8 step s_x and the folded epilogue ``y = A_c * acc + B_c`` with
``A_c = gamma * s_x * s_c / sigma`` and ``B_c = beta + gamma * (bias - mu) / sigma`` (bias = 0 for a
convolution without one; gamma = 1, beta = 0 for a BatchNorm without affine parameters; for the head,
A = s_x * s_c and B = bias). What the integer network cannot compute exactly is refused with an
:class:`ExportError` naming the layer: a BatchNorm without running statistics, a padding mode other
than zeros, a stride or padding that differs between the axes. Taught in notebooks/05_int8_addsub_gemm.ipynb.
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


def _batchnorm(bn: nn.BatchNorm2d, name: str) -> tuple[torch.Tensor, ...]:
    """(gamma, beta, mu, sigma) of the BatchNorm after layer ``name``, float64; gamma = 1, beta = 0 without affine
    parameters. Raises ExportError when it keeps no running statistics (eval mode then normalises each batch by
    its own, which no fixed epilogue computes) or is not a BatchNorm2d."""
    if not isinstance(bn, nn.BatchNorm2d):
        raise ExportError(f"layer {name} is followed by a {type(bn).__name__}; the export folds a BatchNorm2d only")
    if bn.running_mean is None or bn.running_var is None:
        raise ExportError(f"layer {name}: its BatchNorm keeps no running statistics (track_running_stats=False), so "
                          "it normalises every batch by that batch's own statistics, which no fixed epilogue computes")
    mu, var = bn.running_mean.detach().double(), bn.running_var.detach().double()
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(mu)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(mu)
    return gamma, beta, mu, torch.sqrt(var + bn.eps)


def _geometry(layer: nn.Conv2d, name: str) -> tuple[int, int, int]:
    """(kernel, stride, padding) of a convolution the integer network computes: square, ungrouped, undilated,
    the same stride and zero padding on both axes. A string padding is taken where it is one symmetric number
    ('valid' = 0; 'same' with an odd kernel at stride 1 = kernel // 2). Raises ExportError naming the layer and
    what differs."""
    if layer.groups != 1 or tuple(layer.dilation) != (1, 1) or layer.kernel_size[0] != layer.kernel_size[1]:
        raise ExportError(f"layer {name}: only square, ungrouped, undilated convolutions are supported")
    if layer.padding_mode != "zeros":
        raise ExportError(f"layer {name}: padding_mode {layer.padding_mode!r}; the integer network pads with zeros "
                          "only (padding_mode='zeros')")
    kernel, stride = layer.kernel_size[0], tuple(layer.stride)
    if stride[0] != stride[1]:
        raise ExportError(f"layer {name}: stride {stride} differs between the axes; the integer network needs "
                          "the same stride on both")
    padding = layer.padding
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same" and kernel % 2 == 1 and stride[0] == 1:
            padding = (kernel // 2, kernel // 2)
        else:
            raise ExportError(f"layer {name}: padding {padding!r} with a {kernel} x {kernel} kernel pads unequally "
                              "on the two sides; the integer network needs one number of zeros on every side")
    if padding[0] != padding[1]:
        raise ExportError(f"layer {name}: padding {tuple(padding)} differs between the axes; the integer network "
                          "needs the same padding on both")
    return kernel, stride[0], padding[0]


def _shortcut(downsample: nn.Module, name: str) -> tuple[nn.Module, nn.Module | None]:
    """(convolution, BatchNorm or None) of a block's projection shortcut. Raises ExportError naming it for any
    other make-up (an average pool before the convolution, a layer after the BatchNorm)."""
    parts = list(downsample) if isinstance(downsample, nn.Sequential) else []
    if not 1 <= len(parts) <= 2 or not isinstance(parts[0], nn.Conv2d):
        made = ", ".join(type(m).__name__.removeprefix("Parametrized") for m in parts) or type(downsample).__name__
        raise ExportError(f"layer {name}: a shortcut made of {made}; the export takes nn.Sequential(Conv2d) or "
                          "nn.Sequential(Conv2d, BatchNorm2d)")
    return parts[0], parts[1] if len(parts) == 2 else None


def _fold(layer: nn.Module, bn: nn.Module | None, name: str) -> LayerExport:
    """Taught in notebooks/05_int8_addsub_gemm.ipynb."""
    wq, aq = _quantizers(layer, name)
    if isinstance(layer, nn.Conv2d):
        kind, (kernel, stride, padding) = "conv", _geometry(layer, name)
    else:
        kind, kernel, stride, padding = "linear", 1, 1, 0
    with torch.no_grad():
        w = layer.parametrizations.weight.original.detach().float()
        s_c = wq.channel_scale(w).flatten().double()
        s_x = float(aq.step_for(torch.zeros(1)))
        bias = layer.bias.detach().double() if layer.bias is not None else torch.zeros_like(s_c)
        if bn is not None and not isinstance(bn, nn.Identity):
            gamma, beta, mu, sigma = _batchnorm(bn, name)
            a = gamma * s_x * s_c / sigma
            b = beta + gamma * (bias - mu) / sigma
        else:
            a, b = s_x * s_c, bias
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
    Raises ExportError for a model that is not a fully binarized ResNet18-CIFAR, or one holding a NaN or
    infinite tensor (named). Taught in
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
    for name, tensor in model.state_dict().items():  # NaN weights would export as meaningless sign bits
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ExportError(f"{name} holds NaN or infinite values: the model cannot be exported")
    layers = {"conv1": _fold(model.conv1, model.bn1, "conv1")}
    blocks = []
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        for i, block in enumerate(getattr(model, stage)):
            prefix = f"{stage}.{i}"
            layers[f"{prefix}.conv1"] = _fold(block.conv1, block.bn1, f"{prefix}.conv1")
            layers[f"{prefix}.conv2"] = _fold(block.conv2, block.bn2, f"{prefix}.conv2")
            shortcut = None
            if block.downsample is not None:
                shortcut = f"{prefix}.downsample.0"
                layers[shortcut] = _fold(*_shortcut(block.downsample, f"{prefix}.downsample"), shortcut)
            blocks.append({"conv1": f"{prefix}.conv1", "conv2": f"{prefix}.conv2", "shortcut": shortcut})
    layers["fc"] = _fold(model.fc, None, "fc")
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

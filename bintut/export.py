"""Export a fully binarized bintut ResNet18 to a portable ``.npz`` of packed sign bits.

Per Conv2d/Linear the file holds the packed signs (``np.packbits``), the per-channel weight
scale s_c, the input's int8 step s_x and the folded epilogue ``y = A_c * acc + B_c`` with
``A_c = gamma * s_x * s_c / sigma`` and ``B_c = beta - gamma * mu / sigma`` (BatchNorm folded; for
the head, A = s_x * s_c and B = bias). A JSON header records shapes and a SHA-256 per array, so a
corrupt or mismatched file is refused on load.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from .intkernels import check_exact_range
from .quant import Int8Quantizer, SignQuantizer, is_fully_binary, plain_state_dict, weight_quantizer

FORMAT = "bintut-binary-resnet"
VERSION = 1


class ExportError(ValueError):
    """The model cannot be exported, or a file is not a valid export."""


@dataclass
class LayerExport:
    """One binary layer: its geometry, packed signs and folded epilogue."""

    name: str
    kind: str  # "conv" or "linear"
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    padding: int
    bits: np.ndarray = field(repr=False)  # (out, ceil(K/8)) uint8
    weight_scale: np.ndarray = field(repr=False)  # (out,) float32
    act_step: np.float32 = np.float32(0)
    a: np.ndarray = field(repr=False, default=None)  # (out,) float32
    b: np.ndarray = field(repr=False, default=None)  # (out,) float32

    @property
    def k(self) -> int:
        return self.in_channels * self.kernel * self.kernel

    ARRAYS = ("bits", "weight_scale", "a", "b")

    def header(self) -> dict:
        meta = {k: v for k, v in asdict(self).items() if k not in self.ARRAYS}
        meta["act_step"] = float(self.act_step)
        return meta


@dataclass
class ResNetExport:
    """The whole network in layer order: stem, blocks (conv1, conv2, shortcut), head."""

    layers: dict[str, LayerExport]
    blocks: list[dict[str, str | None]]  # each: {"conv1": name, "conv2": name, "shortcut": name | None}
    num_classes: int

    def save(self, path: str | os.PathLike) -> Path:
        """Write one .npz (uncompressed: sign bits do not compress) and return its path."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {}
        for layer in self.layers.values():
            for key in LayerExport.ARRAYS:
                arrays[f"{layer.name}.{key}"] = getattr(layer, key)
        header = {
            "format": FORMAT, "version": VERSION, "num_classes": self.num_classes, "blocks": self.blocks,
            "layers": [layer.header() for layer in self.layers.values()],
            "sha256": {k: _digest(v) for k, v in arrays.items()},
        }
        with open(path, "wb") as f:
            np.savez(f, header=np.array(json.dumps(header)), **arrays)
        return path

    @property
    def total_bytes(self) -> int:
        return sum(getattr(layer, key).nbytes for layer in self.layers.values() for key in LayerExport.ARRAYS)


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def load_export(path: str | os.PathLike) -> ResNetExport:
    """Read and verify an export; a corrupt or mismatched file raises ExportError naming the problem."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            files = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise ExportError(f"{path} is not a readable .npz export ({err})") from err
    if "header" not in files:
        raise ExportError(f"{path} has no bintut header: not a bintut export")
    try:
        header = json.loads(str(files["header"]))
    except json.JSONDecodeError as err:
        raise ExportError(f"{path}: the header is not valid JSON ({err})") from err
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise ExportError(
            f"{path}: format {header.get('format')!r} version {header.get('version')!r}; "
            f"expected {FORMAT!r} version {VERSION}"
        )
    layers: dict[str, LayerExport] = {}
    for meta in header["layers"]:
        name = meta["name"]
        arrays = {}
        for key in LayerExport.ARRAYS:
            full = f"{name}.{key}"
            if full not in files:
                raise ExportError(f"{path}: array {full!r} is missing")
            if _digest(files[full]) != header["sha256"].get(full):
                raise ExportError(f"{path}: array {full!r} does not match its checksum (file corrupted)")
            arrays[key] = files[full]
        layer = LayerExport(**{**meta, "act_step": np.float32(meta["act_step"])}, **arrays)
        n, k = layer.out_channels, layer.k
        expected = {"bits": (n, (k + 7) // 8), "weight_scale": (n,), "a": (n,), "b": (n,)}
        for key, shape in expected.items():
            if getattr(layer, key).shape != shape:
                raise ExportError(
                    f"{path}: {name}.{key} has shape {getattr(layer, key).shape}, expected {shape} for "
                    f"{layer.kind} {layer.in_channels}->{layer.out_channels} kernel {layer.kernel}"
                )
        layers[name] = layer
    return ResNetExport(layers, header["blocks"], header["num_classes"])


# ----------------------------------------------------------------------------- from torch


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
    return wq, aq


def _fold(layer: nn.Module, name: str, bn: nn.BatchNorm2d | None) -> LayerExport:
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


def export_resnet(model: nn.Module) -> ResNetExport:
    """Fold a fully binarized bintut ResNet18 (p = bin_ratio = 1 everywhere) into an export."""
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
    return ResNetExport(layers, blocks, model.fc.out_features)


def _blocks(model: ResNet) -> list[nn.Module]:
    return [b for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for b in stage]


def fp32_state_dict_bytes(model: nn.Module) -> int:
    """Bytes on disk of the equivalent plain fp32 torchvision state_dict (torch.save)."""
    plain = {k: v.float() if v.is_floating_point() else v for k, v in plain_state_dict(model).items()}
    buffer = io.BytesIO()
    torch.save(plain, buffer)
    return buffer.tell()

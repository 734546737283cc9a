"""Looking inside torch models: feature-map sizes, parameters and MACs per layer (via forward hooks).
"""

from __future__ import annotations

import copy
import os

import torch
from torch import nn
from torchvision.models import resnet18

from bintut.model import WeightsUnavailableError, cifar_stem, imagenet_state_dict, record_io, weights_path

STAGES = ("conv1", "maxpool", "layer1", "layer2", "layer3", "layer4")


def imagenet_resnet18(allow_random: bool = False) -> tuple[nn.Module, str]:
    """torchvision's ImageNet ResNet18 and a note on where its weights came from.

    With ``allow_random`` (smoke mode, offline) a weights file that is not cached gives a randomly
    initialised model and a note that says so, without trying a download; otherwise the file is
    loaded (downloaded if needed) or WeightsUnavailableError explains how to get it.
    """
    model = resnet18()
    if allow_random and not os.path.isfile(weights_path()):
        return model, "random weights: the ImageNet file is not cached (smoke mode does not download it)"
    try:
        model.load_state_dict(imagenet_state_dict(progress=False))
        return model, "ImageNet weights (torchvision ResNet18_Weights.IMAGENET1K_V1)"
    except WeightsUnavailableError:
        if not allow_random:
            raise
        return model, "random weights: the ImageNet file is not available offline (smoke mode)"


def with_cifar_stem(model: nn.Module, num_classes: int = 100) -> nn.Module:
    """A copy of an ImageNet ResNet with the CIFAR stem and a new head (the rest keeps its weights)."""
    model = cifar_stem(copy.deepcopy(model))
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def feature_maps(model: nn.Module, size: int = 32) -> dict[str, tuple[int, ...]]:
    """Output shape (C, H, W) of the stem and each residual stage for one size x size image."""
    seen = record_io(model, list(STAGES), torch.zeros(1, 3, size, size))
    return {name: tuple(seen[name][1].shape[1:]) for name in STAGES}


def layer_macs(model: nn.Module, size: int = 32) -> dict[str, int]:
    """Multiply-accumulates per image of every Conv2d and Linear."""
    layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    seen = record_io(model, list(layers), torch.zeros(1, 3, size, size))
    macs = {}
    for name, mod in layers.items():
        if isinstance(mod, nn.Conv2d):
            k = mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
        else:
            k = mod.in_features
        macs[name] = seen[name][1][0].numel() * k
    return macs


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def stem_comparison(imagenet: nn.Module, cifar: nn.Module, size: int = 32) -> list[dict[str, object]]:
    """Rows comparing the two stems on a size x size image: feature maps per stage, then totals."""
    a, b = feature_maps(imagenet, size), feature_maps(cifar, size)
    rows: list[dict[str, object]] = [
        {"stage": s, "ImageNet stem": "x".join(map(str, a[s])), "CIFAR stem": "x".join(map(str, b[s]))} for s in STAGES
    ]
    rows.append({"stage": "parameters", "ImageNet stem": f"{parameter_count(imagenet):,}",
                 "CIFAR stem": f"{parameter_count(cifar):,}"})
    rows.append({"stage": "MACs / image", "ImageNet stem": f"{sum(layer_macs(imagenet, size).values()):,}",
                 "CIFAR stem": f"{sum(layer_macs(cifar, size).values()):,}"})
    return rows


@torch.no_grad()
def fold_check(model: nn.Module, export, conv: str, bn: str, channel: int, images: torch.Tensor,
               positions: int = 4) -> list[dict[str, object]]:
    """BatchNorm folding on one channel: torch's BN output against A_c * acc + B_c from the export.

    ``model`` is a fully binary bintut ResNet; the integer accumulator is torch's conv output divided
    by s_x * s_c (exact integers up to float rounding). Rows for the first few output positions.
    ``images``: normalised float (N, 3, H, W).
    """
    seen = record_io(model, [conv, bn], images)
    layer = export.layers[conv]
    scale = float(layer.act_step) * float(layer.weight_scale[channel])
    acc = torch.round(seen[conv][1][:, channel].double() / scale).flatten()[:positions]
    torch_bn = seen[bn][1][:, channel].double().flatten()[:positions]
    folded = float(layer.a[channel]) * acc + float(layer.b[channel])
    return [{"acc (int)": int(a), "torch: BN(conv(x))": f"{t:.6f}", "A_c·acc + B_c": f"{f:.6f}",
             "difference": f"{abs(t - f):.1e}"} for a, t, f in zip(acc.tolist(), torch_bn.tolist(), folded.tolist(),
                                                                   strict=True)]

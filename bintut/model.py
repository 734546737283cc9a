"""ResNet18 for 32x32 images, from torchvision's ImageNet-pretrained ResNet18.

The ImageNet stem (7x7 stride-2 conv + 3x3 stride-2 maxpool) shrinks a 32x32 CIFAR image to
8x8 before the first residual block; a 3x3 stride-1 conv and no maxpool keep it at 32x32.
"""

from __future__ import annotations

import os
import urllib.error

import torch
from torch import nn
from torchvision.models import ResNet, ResNet18_Weights, resnet18


class WeightsUnavailableError(RuntimeError):
    """The ImageNet weights are neither cached nor downloadable."""


def weights_path(weights: ResNet18_Weights = ResNet18_Weights.IMAGENET1K_V1) -> str:
    """Where torchvision's weights API caches the file (``$TORCH_HOME/hub/checkpoints``)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))


def imagenet_state_dict(progress: bool = True) -> dict[str, torch.Tensor]:
    """The ImageNet ResNet18 state dict via torchvision's weights API, or a clear error."""
    weights = ResNet18_Weights.IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=progress, check_hash=True)
    except (urllib.error.URLError, OSError) as err:
        raise WeightsUnavailableError(
            f"Could not load the ImageNet ResNet18 weights ({err}). torchvision looks for the "
            f"file {weights_path(weights)} and downloads it from {weights.url} when it is "
            "missing. Without network access, copy resnet18-f37072fd.pth there from a machine "
            "that has it (or set TORCH_HOME to a folder holding hub/checkpoints/ with it), or "
            "start from random weights with pretrained=False (CLI: --no-pretrained)."
        ) from err


def cifar_stem(model: ResNet) -> ResNet:
    """Replace the ImageNet stem in place: 3x3 stride-1 conv (Kaiming init), no maxpool."""
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


def resnet18_cifar(num_classes: int = 100, pretrained: bool = True, progress: bool = True) -> ResNet:
    """torchvision ResNet18 with the CIFAR stem and a ``num_classes`` head.

    With ``pretrained=True`` every layer but the stem conv and the head starts from ImageNet.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    model = resnet18()
    if pretrained:
        model.load_state_dict(imagenet_state_dict(progress))
    cifar_stem(model)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model

"""Per-image augmentation and normalisation (torchvision transforms v2) and the Dataset that
applies them to an :class:`~bintut.data.images.ImageSet`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from bintut.data.images import CIFAR100_MEAN, CIFAR100_STD, ImageSet

AUGMENTATIONS = ("reference", "basic", "none")


def normalize(mean: tuple[float, ...] = CIFAR100_MEAN, std: tuple[float, ...] = CIFAR100_STD) -> v2.Compose:
    """uint8 CHW -> float, normalised with the given statistics (default: CIFAR-100's)."""
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


def train_transform(augment: str = "reference", mean: tuple[float, ...] = CIFAR100_MEAN,
                    std: tuple[float, ...] = CIFAR100_STD) -> v2.Compose:
    """Per-image training transform on uint8 CHW tensors.

    ``reference`` is the published recipe (tests/training/test_reference_fidelity.py); ``basic`` is crop + flip;
    ``none`` only normalises. Input (3, 32, 32) uint8 pixels in [0, 255]; output (3, 32, 32) float32, normalised
    with ``mean`` and ``std`` (per channel, in units of pixels / 255). Raises ValueError listing the choices for
    another ``augment``.
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
    steps: list = []
    if augment in ("reference", "basic"):
        steps += [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()]
    if augment == "reference":
        steps += [
            v2.RandomRotation(15),
            v2.RandomAffine(15, translate=(0.1, 0.1)),
            v2.RandomPerspective(0.5, p=0.2),
            v2.ColorJitter(0.3, 0.3, 0.3, 0.1),
            v2.RandomGrayscale(0.2),
        ]
    steps.append(normalize(mean, std))
    if augment == "reference":
        steps.append(v2.RandomErasing(p=0.3, scale=(0.05, 0.2), value="random"))
    return v2.Compose(steps)


class ImageDataset(Dataset):
    """An :class:`ImageSet` as a torch Dataset of (transformed CHW tensor, label)."""

    def __init__(self, images: ImageSet, transform=None) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images.images.transpose(0, 3, 1, 2)))
        self.labels = torch.from_numpy(images.labels)
        self.transform = transform or normalize(images.mean, images.std)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[i]), int(self.labels[i])

"""Image sets as numpy arrays: :class:`ImageSet` (uint8 NHWC images, int64 labels, class names),
where data lives on disk, the checks every loader applies, and the errors they raise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bintut.data.sets import CIFAR100
from bintut.data.sets import DATA_ENV as DATA_ENV  # defined with the data sets; imported from here too
from bintut.data.sets import data_root as data_root
from bintut.errors import BintutError

IMAGE_VALUES = 32 * 32 * 3  # one flattened CIFAR image
NUM_CLASSES = CIFAR100.classes  # the default head
# CIFAR-100's channel statistics (bintut.data.sets): the normalisation of every set that names none of its own.
CIFAR100_MEAN, CIFAR100_STD = CIFAR100.normalization


class DataNotFoundError(FileNotFoundError, BintutError):
    """CIFAR-100 is not where we looked and could not be downloaded."""


class DataError(ValueError, BintutError):
    """A data folder holds files that are not (or no longer) what they claim to be."""


@dataclass
class ImageSet:
    """Images as uint8 NHWC (the CIFAR layout) with integer labels, and the per-channel statistics that
    normalise them (``mean``/``std`` in [0, 1] units, one per RGB channel)."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    mean: tuple[float, ...] = CIFAR100_MEAN
    std: tuple[float, ...] = CIFAR100_STD

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, n: int | None, seed: int = 0) -> ImageSet:
        """A random subset of n images (all of them when n is None or too large), drawn with ``seed``.

        Raises ValueError, quoting n, when n is below 1."""
        if n is None or n >= len(self):
            return self
        if n < 1:
            raise ValueError(f"subset size must be positive, got {n}")
        idx = np.sort(np.random.default_rng(seed).permutation(len(self))[:n])
        return ImageSet(self.images[idx], self.labels[idx], self.classes, self.mean, self.std)


def checked_set(
    images: np.ndarray, labels: np.ndarray, classes: list[str], source: Path, n_classes: int = NUM_CLASSES,
) -> ImageSet:
    """An ImageSet from arrays that have the CIFAR layout (uint8 (N, 32, 32, 3), labels in [0, n_classes)),
    or a DataError saying what is wrong and where."""
    n = len(images)
    if n == 0:
        raise DataError(f"{source}: holds no images")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise DataError(f"{source}: the images must be uint8 of shape (N, {IMAGE_VALUES}) (N 32x32 RGB images), "
                        f"got {images.dtype} of shape {images.shape}")
    labels = np.asarray(labels)
    if labels.shape != (n,) or labels.dtype.kind not in "iu":
        raise DataError(f"{source}: expected {n} integer labels, got {labels.dtype} of shape {labels.shape}")
    if not (0 <= labels.min() and labels.max() < n_classes):
        raise DataError(f"{source}: labels must lie in [0, {n_classes - 1}], found {labels.min()}..{labels.max()}")
    if len(classes) != n_classes:
        raise DataError(f"{source}: expected {n_classes} class names, found {len(classes)}")
    return ImageSet(images, labels.astype(np.int64), list(classes))


def channel_statistics(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images (N, H, W, 3), in [0, 1] units (pixels / 255):
    the normalisation constants, three floats each."""
    x = images.astype(np.float64) / 255.0
    return tuple(x.mean(axis=(0, 1, 2)).tolist()), tuple(x.std(axis=(0, 1, 2)).tolist())

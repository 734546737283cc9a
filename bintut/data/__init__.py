"""The images (the ``data`` layer): CIFAR-100, Fashion-MNIST and the synthetic stand-in as numpy arrays,
their augmentation, and the GPU-resident data path. Imports the ideas and ``files``; never ``integer``,
``training``, ``teaching`` or the entry points.

This package is the layer's face: ``bintut.data.test_images(cfg, 16)``, ``bintut.data.synthetic_images(4)``
... Each name is imported on first use, so ``import bintut.data`` loads no torch.
"""

from __future__ import annotations

import importlib

# Public name -> the module of this layer that defines it (imported when the name is first used).
_LAZY = {
    # a run's images, by its config
    "load_data": "choice", "test_images": "choice", "golden_images": "choice", "DATA_NORMALIZATION": "choice",
    # the data sets and where they are looked for
    "DataSet": "sets", "DATA_SETS": "sets", "data_set": "sets", "data_root": "sets",
    "DataNotFoundError": "images", "ImageSet": "images",
    "load_cifar100": "cifar100", "cifar100_found": "cifar100", "synthetic_images": "cifar100",
    "write_synthetic_cifar100": "cifar100", "load_fashion_mnist": "fashion_mnist",
    "fashion_mnist_found": "fashion_mnist",
    # tensors: normalisation, augmentation, batches on the device
    "normalize": "transforms", "train_transform": "transforms", "ImageDataset": "transforms",
    "DeviceBatches": "device",
}

__all__ = list(_LAZY)

_SUBMODULES = {"choice", "cifar100", "device", "fashion_mnist", "images", "sets", "transforms"}


def __getattr__(name: str):
    """``bintut.data.test_images``, ``bintut.data.transforms`` ...: imported on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})

"""CIFAR-100 through torchvision, a synthetic stand-in generated offline, and the augmentations.

The synthetic set is written in the real ``cifar-100-python`` pickle layout so that it goes
through the same loading path as the real data. Its 100 classes combine 10 colours with 10
spatial patterns, jittered per image, so a small network learns it in seconds on a CPU.
"""

from __future__ import annotations

import os
import pickle
import urllib.error
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.transforms import v2

DATA_ENV = "BINTUT_DATA"
FOLDER = "cifar-100-python"
SYNTHETIC_MARKER = "SYNTHETIC"  # present only in folders this module generated
CIFAR100_URL = datasets.CIFAR100.url
CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)
AUGMENTATIONS = ("reference", "basic", "none")


class DataNotFoundError(FileNotFoundError):
    """CIFAR-100 is not where we looked and could not be downloaded."""


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: the argument, else $BINTUT_DATA, else ./data."""
    return Path(root or os.environ.get(DATA_ENV) or "data").expanduser()


@dataclass
class ImageSet:
    """Images as uint8 NHWC (the CIFAR layout) with integer labels."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, n: int | None, seed: int = 0) -> ImageSet:
        """A random subset of n images (all of them when n is None or too large)."""
        if n is None or n >= len(self):
            return self
        if n < 1:
            raise ValueError(f"subset size must be positive, got {n}")
        idx = np.sort(np.random.default_rng(seed).permutation(len(self))[:n])
        return ImageSet(self.images[idx], self.labels[idx], self.classes)


class _SyntheticCIFAR100(datasets.CIFAR100):
    """torchvision's CIFAR100 reader without the published md5 sums (generated data only)."""

    def _check_integrity(self) -> bool:
        folder = Path(self.root) / self.base_folder
        names = [name for name, _ in self.train_list + self.test_list] + [self.meta["filename"]]
        return all((folder / name).is_file() for name in names)

    def _load_meta(self) -> None:
        with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
            self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


def _missing_message(root: Path, reason: str, downloading: bool = False) -> str:
    fetch = "" if downloading else ", or pass --download to let torchvision fetch it"
    return (
        f"CIFAR-100 {reason} in {root / FOLDER}. Download {CIFAR100_URL} on a machine with "
        f"network access and extract it into {root} (so that {root / FOLDER / 'train'} exists), "
        f"or point --data-root or ${DATA_ENV} at the folder that holds {FOLDER}/{fetch}. To try "
        "bintut without CIFAR-100, use the synthetic data generated offline: --data synthetic."
    )


def load_cifar100(root: str | os.PathLike | None = None, train: bool = True, download: bool = False) -> ImageSet:
    """Read CIFAR-100 with torchvision (checksums verified), or a synthetic folder we wrote."""
    root = data_root(root)
    if (root / FOLDER / SYNTHETIC_MARKER).is_file():
        ds: datasets.CIFAR100 = _SyntheticCIFAR100(root, train=train)
    else:
        if not download and not (root / FOLDER).is_dir():
            raise DataNotFoundError(_missing_message(root, "was not found"))
        try:
            ds = datasets.CIFAR100(root, train=train, download=download)
        except (urllib.error.URLError, OSError) as err:
            raise DataNotFoundError(_missing_message(root, f"could not be downloaded ({err})", True)) from err
        except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
            raise DataNotFoundError(_missing_message(root, "is incomplete or corrupted")) from err
    return ImageSet(np.asarray(ds.data), np.asarray(ds.targets, dtype=np.int64), list(ds.classes))


# ----------------------------------------------------------------------------- synthetic data

_PALETTE = np.array(
    [
        [0.90, 0.15, 0.15], [0.15, 0.75, 0.20], [0.15, 0.30, 0.90], [0.95, 0.85, 0.10],
        [0.85, 0.20, 0.85], [0.10, 0.85, 0.85], [0.98, 0.55, 0.10], [0.55, 0.30, 0.10],
        [0.95, 0.95, 0.95], [0.45, 0.45, 0.45],
    ]
)
_COLOURS = ("red", "green", "blue", "yellow", "magenta", "cyan", "orange", "brown", "white", "grey")
_PATTERNS = (
    "h-stripes", "v-stripes", "fine h-stripes", "fine v-stripes", "checker",
    "rings", "blob", "diagonal cross", "gradient", "plus",
)


def _pattern_maps(size: int = 32) -> np.ndarray:
    """The 10 spatial patterns as maps in [0, 1], shape (10, size, size)."""
    y, x = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    r = np.sqrt(x**2 + y**2)
    waves = [
        np.cos(2 * np.pi * y),
        np.cos(2 * np.pi * x),
        np.cos(4 * np.pi * y),
        np.cos(4 * np.pi * x),
        np.sign(np.cos(2 * np.pi * x) * np.cos(2 * np.pi * y)),
        np.cos(3 * np.pi * r),
        1.0 - 2.0 * np.clip(r / 0.8, 0, 1),
        np.where(np.minimum(abs(x - y), abs(x + y)) < 0.3, 1.0, -1.0),
        y,
        np.where(np.minimum(abs(x), abs(y)) < 0.25, 1.0, -1.0),
    ]
    return (np.stack(waves) + 1.0) / 2.0


def synthetic_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n labelled 32x32 RGB images (uint8 NHWC) of the 100 synthetic classes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 100, n)
    maps = _pattern_maps()
    fg = _PALETTE[labels % 10]  # (n, 3)
    bg = 0.25 * (1.0 - fg)
    shift = rng.integers(-3, 4, (n, 2))
    rows = (np.arange(32)[None, :] + shift[:, :1]) % 32
    cols = (np.arange(32)[None, :] + shift[:, 1:]) % 32
    pattern = maps[labels // 10][np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    img = bg[:, None, None, :] + pattern[..., None] * (fg - bg)[:, None, None, :]
    img = img * rng.uniform(0.75, 1.1, (n, 1, 1, 1)) + rng.uniform(-0.08, 0.08, (n, 1, 1, 1))
    img = img + rng.normal(0.0, 0.06, img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8), labels


def write_synthetic_cifar100(
    root: str | os.PathLike, n_train: int = 5000, n_test: int = 1000, seed: int = 0
) -> Path:
    """Write a synthetic data set in the real cifar-100-python layout; returns root.

    Regenerates only when the folder is missing or was written with other sizes or seed.
    """
    root = Path(root)
    folder = root / FOLDER
    signature = f"n_train={n_train} n_test={n_test} seed={seed}\n"
    marker = folder / SYNTHETIC_MARKER
    if marker.is_file() and marker.read_text() == signature:
        return root
    if n_train < 1 or n_test < 1:
        raise ValueError(f"synthetic sizes must be positive, got n_train={n_train}, n_test={n_test}")
    folder.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)  # until rewritten, the folder vouches for nothing
    names = [f"{colour}/{pattern}" for pattern in _PATTERNS for colour in _COLOURS]
    for split, n, split_seed in (("train", n_train, seed), ("test", n_test, seed + 1)):
        images, labels = synthetic_images(n, split_seed)
        entry = {
            "filenames": [f"synthetic_{split}_{i}.png" for i in range(n)],
            "batch_label": f"synthetic {split}",
            "fine_labels": labels.tolist(),
            "coarse_labels": (labels // 5).tolist(),
            "data": images.transpose(0, 3, 1, 2).reshape(n, -1),
        }
        _write_atomically(folder / split, entry)
    coarse = [f"group{i}" for i in range(20)]
    _write_atomically(folder / "meta", {"fine_label_names": names, "coarse_label_names": coarse})
    marker.write_text(signature)  # last: a folder with this marker is complete
    return root


def _write_atomically(path: Path, obj: object) -> None:
    """Pickle to a private temporary file, then rename: a concurrent reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(obj, f)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- augmentation


def normalize() -> v2.Compose:
    """uint8 CHW -> float, normalised with the CIFAR-100 statistics."""
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(CIFAR100_MEAN, CIFAR100_STD)])


def train_transform(augment: str = "reference") -> v2.Compose:
    """Per-image training transform on uint8 CHW tensors.

    ``reference`` is the published recipe (GUIDE §1); ``basic`` is crop + flip; ``none`` only
    normalises.
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
    steps.append(normalize())
    if augment == "reference":
        steps.append(v2.RandomErasing(p=0.3, scale=(0.05, 0.2), value="random"))
    return v2.Compose(steps)


class ImageDataset(Dataset):
    """An :class:`ImageSet` as a torch Dataset of (transformed CHW tensor, label)."""

    def __init__(self, images: ImageSet, transform=None) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images.images.transpose(0, 3, 1, 2)))
        self.labels = torch.from_numpy(images.labels)
        self.transform = transform or normalize()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[i]), int(self.labels[i])

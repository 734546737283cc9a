"""CIFAR-100 through torchvision (checksums verified, downloaded on request with a timeout), and
its synthetic stand-in generated offline in the same ``cifar-100-python`` layout (content hashes
verified, read with an unpickler that accepts arrays only).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
from pathlib import Path

import numpy as np
from torchvision import datasets
from torchvision.datasets.utils import check_integrity, extract_archive

from bintut.data.images import DATA_ENV, IMAGE_VALUES, DataError, DataNotFoundError, ImageSet, checked_set, data_root
from bintut.data.sets import CIFAR100
from bintut.files.atomic import write_atomically
from bintut.files.download import DownloadError, download

FOLDER = CIFAR100.folders[0]  # bintut.data.sets

SYNTHETIC_MARKER = "SYNTHETIC"  # present only in folders this module generated, with their content hashes

SYNTHETIC_FILES = ("train", "test", "meta")

CIFAR100_URL = datasets.CIFAR100.url

CIFAR100_ARCHIVE = datasets.CIFAR100.filename

CIFAR100_BYTES = 169_001_437


def _missing_message(root: Path, reason: str, downloading: bool = False) -> str:
    fetch = "" if downloading else ", or pass --download to let bintut fetch it"
    return (
        f"CIFAR-100 {reason} in {root / FOLDER}. Download {CIFAR100_URL} on a machine with "
        f"network access and extract it into {root} (so that {root / FOLDER / 'train'} exists), "
        f"or point --data-root or ${DATA_ENV} at the folder that holds {FOLDER}/{fetch}. To try "
        "bintut without CIFAR-100, train on Fashion-MNIST (--data fashion-mnist) or on synthetic data "
        "generated offline (--data synthetic, or make smoke)."
    )


def load_cifar100(
    root: str | os.PathLike | None = None, train: bool = True, download: bool = False, progress: bool = True
) -> ImageSet:
    """Read CIFAR-100 with torchvision (checksums verified), or a synthetic folder we wrote (hashes verified).

    Raises DataNotFoundError when ``root`` holds no cifar-100-python folder, or torchvision finds it incomplete
    or corrupted; the message says where the files go and how to fetch them.
    """
    root = data_root(root)
    if (root / FOLDER / SYNTHETIC_MARKER).is_file():
        return _load_synthetic(root / FOLDER, train)
    if download and not _cifar100_intact(root):
        _fetch_cifar100(root, progress)
    if not (root / FOLDER).is_dir():
        raise DataNotFoundError(_missing_message(root, "was not found"))
    try:
        ds = datasets.CIFAR100(root, train=train, download=False)
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        raise DataNotFoundError(_missing_message(root, "is incomplete or corrupted")) from err
    return checked_set(np.asarray(ds.data), np.asarray(ds.targets), list(ds.classes), root / FOLDER)


def _cifar100_intact(root: Path) -> bool:
    files = datasets.CIFAR100.train_list + datasets.CIFAR100.test_list
    return all(check_integrity(str(root / FOLDER / name), md5) for name, md5 in files)


def _fetch_cifar100(root: Path, progress: bool) -> None:
    """Download (with a timeout, see bintut.files.download) and extract the published archive."""
    archive = root / CIFAR100_ARCHIVE
    try:
        if not check_integrity(str(archive), datasets.CIFAR100.tgz_md5):
            download(CIFAR100_URL, archive, "CIFAR-100", CIFAR100_BYTES, datasets.CIFAR100.tgz_md5, progress)
    except DownloadError as err:
        raise DataNotFoundError(_missing_message(root, f"could not be downloaded ({err})", True)) from err
    extract_archive(str(archive), str(root))


def cifar100_found(root: str | os.PathLike | None = None) -> bool:
    """Whether the real CIFAR-100 (not a synthetic folder) is in the data root. Reads nothing."""
    folder = data_root(root) / FOLDER
    return (folder / "train").is_file() and not (folder / SYNTHETIC_MARKER).exists()


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
    """n labelled 32x32 RGB images of the 100 synthetic classes: (n, 32, 32, 3) uint8 pixels in [0, 255]
    and (n,) int64 labels in [0, 100)."""
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

    Regenerates only when the folder is missing, was written with other sizes or seed, or no
    longer matches the content hashes in its marker (damaged or changed since). Images are 32 x 32 RGB uint8.
    Raises ValueError, quoting both sizes, when ``n_train`` or ``n_test`` is below 1.
    """
    root = Path(root)
    folder = root / FOLDER
    signature = f"n_train={n_train} n_test={n_test} seed={seed}\n"
    marker = folder / SYNTHETIC_MARKER
    if marker.is_file() and marker.read_text().startswith(signature):
        problem = _synthetic_problem(folder)
        if problem is None:
            return root
        print(f"bintut: {problem}; regenerating the synthetic data")
    if n_train < 1 or n_test < 1:
        raise ValueError(f"synthetic sizes must be positive, got n_train={n_train}, n_test={n_test}")
    folder.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)  # until rewritten, the folder vouches for nothing
    names = [f"{colour}/{pattern}" for pattern in _PATTERNS for colour in _COLOURS]
    hashes = {}
    for split, n, split_seed in (("train", n_train, seed), ("test", n_test, seed + 1)):
        images, labels = synthetic_images(n, split_seed)
        entry = {
            "filenames": [f"synthetic_{split}_{i}.png" for i in range(n)],
            "batch_label": f"synthetic {split}",
            "fine_labels": labels.tolist(),
            "coarse_labels": (labels // 5).tolist(),
            "data": images.transpose(0, 3, 1, 2).reshape(n, -1),
        }
        hashes[split] = write_atomically(folder / split, pickle.dumps(entry))
    coarse = [f"group{i}" for i in range(20)]
    hashes["meta"] = write_atomically(folder / "meta", pickle.dumps({"fine_label_names": names,
                                                                      "coarse_label_names": coarse}))
    # Last: a folder with this marker is complete, and the marker says what its files hold.
    write_atomically(marker, (signature + "".join(f"sha256 {k} {v}\n" for k, v in hashes.items())).encode())
    return root


def _recorded_hashes(folder: Path) -> dict[str, str]:
    lines = (folder / SYNTHETIC_MARKER).read_text().splitlines()
    return {p[1]: p[2] for p in (line.split() for line in lines) if len(p) == 3 and p[0] == "sha256"}


def _read_verified(folder: Path, name: str, recorded: dict[str, str]) -> bytes | str:
    """The bytes of a synthetic file if they match the marker's hash, else why not."""
    if name not in recorded:
        return f"{folder / SYNTHETIC_MARKER} records no content hash for {name!r}"
    path = folder / name
    if not path.is_file():
        return f"{path} is missing"
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != recorded[name]:
        return f"{path} does not match the content hash its generator recorded in {SYNTHETIC_MARKER}"
    return data


def _synthetic_problem(folder: Path) -> str | None:
    recorded = _recorded_hashes(folder)
    for name in SYNTHETIC_FILES:
        found = _read_verified(folder, name, recorded)
        if isinstance(found, str):
            return found
    return None


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers; refuses every other global (no code runs)."""

    ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
        ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _load_synthetic(folder: Path, train: bool) -> ImageSet:
    """A synthetic split, read only after its bytes match the marker's hash, with the safe unpickler."""
    recorded = _recorded_hashes(folder)
    entries = {}
    for name in ("train" if train else "test", "meta"):
        found = _read_verified(folder, name, recorded)
        if isinstance(found, str):
            raise DataError(f"{found} (changed or damaged since bintut generated it): not reading it. Delete "
                            f"{folder} to have it regenerated (--data synthetic)")
        try:
            entries[name] = _ArraysOnly(io.BytesIO(found), encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
            raise DataError(f"{folder / name}: not a CIFAR-100 batch ({err})") from err
    entry, meta = entries["train" if train else "test"], entries["meta"]
    try:
        data, labels, classes = entry["data"], entry["fine_labels"], meta["fine_label_names"]
    except (KeyError, TypeError) as err:
        raise DataError(f"{folder}: not in the CIFAR-100 layout (no {err})") from err
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != IMAGE_VALUES:
        shape = getattr(data, "shape", type(data).__name__)
        raise DataError(f"{folder}: the images must be uint8 of shape (N, {IMAGE_VALUES}), got "
                        f"{getattr(data, 'dtype', '')} {shape}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return checked_set(images, np.asarray(labels), classes, folder)

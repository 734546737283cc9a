"""CIFAR-100 and Fashion-MNIST through torchvision, a synthetic stand-in generated offline, and the augmentations.

The synthetic set is written in the real ``cifar-100-python`` pickle layout (any CIFAR-100
reader reads it). Its 100 classes combine 10 colours with 10 spatial patterns, jittered per
image, so a small network learns it in seconds on a CPU. Its ``SYNTHETIC`` marker records a
content hash of each file, checked before anything is unpickled, and the files are read with an
unpickler that builds numpy arrays and plain containers only: a folder that merely claims to be
synthetic cannot run code. The real data is verified by torchvision's published checksums.
Whatever the folder, the arrays are checked for the CIFAR shape and label range.

Fashion-MNIST (70,000 real 28x28 grayscale photos of clothing, 10 classes) is the real image set
that can be had offline: Debian's package ``dataset-fashion-mnist`` installs its original files.
See :func:`load_fashion_mnist` for where it is looked for and how it is made 32x32 RGB.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.datasets.utils import check_integrity, extract_archive
from torchvision.transforms import v2

from .download import DownloadError, download
from .runfolder import remove_stale_temporaries, replacing

DATA_ENV = "BINTUT_DATA"
FOLDER = "cifar-100-python"
SYNTHETIC_MARKER = "SYNTHETIC"  # present only in folders this module generated, with their content hashes
SYNTHETIC_FILES = ("train", "test", "meta")
CIFAR100_URL = datasets.CIFAR100.url
CIFAR100_ARCHIVE = datasets.CIFAR100.filename
CIFAR100_BYTES = 169_001_437
NUM_CLASSES = 100
IMAGE_VALUES = 32 * 32 * 3  # one flattened CIFAR image
CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)
AUGMENTATIONS = ("reference", "basic", "none")

FASHION_FOLDER = "FashionMNIST"  # torchvision reads ROOT/FashionMNIST/raw/
FASHION_DEBIAN = Path("/usr/share/datasets/fashion-mnist")  # Debian's package dataset-fashion-mnist
FASHION_PAD = 2  # 28x28 -> 32x32
FASHION_BACKGROUND = 0  # the photos' background is black
# Over the 60,000 padded training images (the same value in each of the three channels), computed with
# data.channel_statistics on the files of Debian's package dataset-fashion-mnist (tests check it there).
FASHION_MEAN = (0.2190,) * 3
FASHION_STD = (0.3318,) * 3

# The data sets a config may name: display name, classes, normalisation.
DATA_NAMES = {"cifar100": "CIFAR-100", "synthetic": "synthetic data", "fashion-mnist": "Fashion-MNIST"}
DATA_CLASSES = {"cifar100": NUM_CLASSES, "synthetic": NUM_CLASSES, "fashion-mnist": 10}
DATA_NORMALIZATION = {"cifar100": (CIFAR100_MEAN, CIFAR100_STD), "synthetic": (CIFAR100_MEAN, CIFAR100_STD),
                      "fashion-mnist": (FASHION_MEAN, FASHION_STD)}


def data_words(cfg) -> str:
    """A run's data set in words (``cfg``: a TrainConfig), for figures, tables and progress lines: e.g.
    'synthetic data made offline (640 training images)', 'Fashion-MNIST (2000 training images)'."""
    if cfg.data == "synthetic":
        return f"synthetic data made offline ({cfg.synthetic_train} training images)"
    name = DATA_NAMES.get(cfg.data, cfg.data)
    return f"{name} ({cfg.train_subset} training images)" if cfg.train_subset else name


def num_classes(data: str) -> int:
    """How many classes the data set ``data`` (a config's ``data`` field) has: the model head's width."""
    if data not in DATA_CLASSES:
        raise ValueError(f"data must be one of {tuple(DATA_CLASSES)}, got {data!r}")
    return DATA_CLASSES[data]


class DataNotFoundError(FileNotFoundError):
    """CIFAR-100 is not where we looked and could not be downloaded."""


class DataError(ValueError):
    """A data folder holds files that are not (or no longer) what they claim to be."""


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: the argument, else $BINTUT_DATA, else ./data."""
    return Path(root or os.environ.get(DATA_ENV) or "data").expanduser()


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
        """A random subset of n images (all of them when n is None or too large)."""
        if n is None or n >= len(self):
            return self
        if n < 1:
            raise ValueError(f"subset size must be positive, got {n}")
        idx = np.sort(np.random.default_rng(seed).permutation(len(self))[:n])
        return ImageSet(self.images[idx], self.labels[idx], self.classes, self.mean, self.std)


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
    """Read CIFAR-100 with torchvision (checksums verified), or a synthetic folder we wrote (hashes verified)."""
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
    """Download (with a timeout, see bintut.download) and extract the published archive."""
    archive = root / CIFAR100_ARCHIVE
    try:
        if not check_integrity(str(archive), datasets.CIFAR100.tgz_md5):
            download(CIFAR100_URL, archive, "CIFAR-100", CIFAR100_BYTES, datasets.CIFAR100.tgz_md5, progress)
    except DownloadError as err:
        raise DataNotFoundError(_missing_message(root, f"could not be downloaded ({err})", True)) from err
    extract_archive(str(archive), str(root))


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


# ----------------------------------------------------------------------------- Fashion-MNIST


def _fashion_places(root: Path) -> list[Path]:
    return [root / FASHION_FOLDER / "raw", FASHION_DEBIAN]


def _fashion_files() -> list[str]:
    """The four published file names (gzip-compressed IDX), e.g. train-images-idx3-ubyte.gz."""
    return [name for name, _ in datasets.FashionMNIST.resources]


def _fashion_missing(root: Path, reason: str) -> str:
    places = " or ".join(str(p) for p in _fashion_places(root))
    return (f"Fashion-MNIST {reason}: looked in {places}; install it with `apt-get install "
            f"dataset-fashion-mnist` (Debian/Ubuntu), pass --download, or point --data-root at a folder "
            f"holding {FASHION_FOLDER}/raw/")


def _fashion_ready(raw: Path) -> bool:
    """Whether torchvision finds its four decompressed files in ``raw``."""
    return all((raw / Path(name).stem).is_file() for name in _fashion_files())


def fashion_mnist_found(root: str | os.PathLike | None = None) -> bool:
    """Whether Fashion-MNIST is here: in the data root (torchvision's layout) or as Debian's package. Reads nothing."""
    return _fashion_ready(data_root(root) / FASHION_FOLDER / "raw") or all(
        (FASHION_DEBIAN / name).is_file() for name in _fashion_files())


def cifar100_found(root: str | os.PathLike | None = None) -> bool:
    """Whether the real CIFAR-100 (not a synthetic folder) is in the data root. Reads nothing."""
    folder = data_root(root) / FOLDER
    return (folder / "train").is_file() and not (folder / SYNTHETIC_MARKER).exists()


def _decompress_into(source: Path, raw: Path) -> None:
    """The four .gz files of ``source`` decompressed into ``raw`` (each under a private name, then renamed)."""
    raw.mkdir(parents=True, exist_ok=True)
    for name in _fashion_files():
        try:
            with gzip.open(source / name) as packed, replacing(raw / Path(name).stem) as tmp:
                tmp.write_bytes(packed.read())
        except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
            raise DataError(f"{source / name}: not a readable gzip file ({err})") from err


def _fetch_fashion(raw: Path, progress: bool) -> None:
    """Download the four published files (timeouts and checksums: bintut.download)."""
    base = datasets.FashionMNIST.mirrors[0]
    for name, md5 in datasets.FashionMNIST.resources:
        if not check_integrity(str(raw / name), md5):
            download(base + name, raw / name, f"Fashion-MNIST {name}", None, md5, progress)


def load_fashion_mnist(
    root: str | os.PathLike | None = None, train: bool = True, download: bool = False, progress: bool = True
) -> ImageSet:
    """Fashion-MNIST through torchvision's ``FashionMNIST``, made 32x32 RGB for the CIFAR stem.

    Looked for, in order: ``ROOT/FashionMNIST/raw/`` (torchvision's layout, decompressed files), the
    folder of Debian's package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/``, its
    ``.gz`` files are decompressed into ``ROOT/FashionMNIST/raw/`` once), and with ``download`` the
    published files (into the same folder; checksums from torchvision).

    Each 28x28 grayscale image is padded by 2 pixels of background (black, 0) on every side and its
    channel replicated three times: (N, 32, 32, 3) uint8. Padding rather than resizing keeps every pixel
    as photographed (1:1, no interpolation blur) and the objects at their original scale; the three equal
    channels fit the RGB stem unchanged. Normalised with Fashion-MNIST's own statistics
    (``FASHION_MEAN``/``FASHION_STD``). Raises DataNotFoundError (one line, every place looked) or
    DataError (files that are not Fashion-MNIST).
    """
    root = data_root(root)
    raw = root / FASHION_FOLDER / "raw"
    if not _fashion_ready(raw):
        if all((FASHION_DEBIAN / name).is_file() for name in _fashion_files()):
            print(f"bintut: Fashion-MNIST from Debian's package ({FASHION_DEBIAN}), decompressed into {raw}")
            _decompress_into(FASHION_DEBIAN, raw)
        elif download:
            try:
                _fetch_fashion(raw, progress)
            except DownloadError as err:
                raise DataNotFoundError(_fashion_missing(root, f"could not be downloaded ({err})")) from err
            _decompress_into(raw, raw)
        else:
            raise DataNotFoundError(_fashion_missing(root, "was not found"))
    try:
        ds = datasets.FashionMNIST(root, train=train, download=False)
    except (RuntimeError, ValueError, AssertionError) as err:  # torchvision: not found, or a malformed IDX file
        raise DataError(f"{raw}: not Fashion-MNIST ({err}); delete it to have it rebuilt") from err
    gray = np.asarray(ds.data, dtype=np.uint8)
    if gray.ndim != 3 or gray.shape[1:] != (28, 28):
        raise DataError(f"{raw}: the images must be 28x28 grayscale, got shape {gray.shape}")
    pad = FASHION_PAD
    padded = np.pad(gray, ((0, 0), (pad, pad), (pad, pad)), constant_values=FASHION_BACKGROUND)
    images = np.repeat(padded[..., None], 3, axis=3)
    found = checked_set(images, np.asarray(ds.targets), list(ds.classes), raw, DATA_CLASSES["fashion-mnist"])
    found.mean, found.std = FASHION_MEAN, FASHION_STD
    return found


def channel_statistics(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 NHWC images, in [0, 1] units (normalisation constants)."""
    x = images.astype(np.float64) / 255.0
    return tuple(x.mean(axis=(0, 1, 2)).tolist()), tuple(x.std(axis=(0, 1, 2)).tolist())


def load_images(data: str, root: str | os.PathLike | None, train: bool, download: bool = False,
                progress: bool = True) -> ImageSet:
    """The split of the named data set ('cifar100', 'fashion-mnist'; 'synthetic' via a generated root)."""
    if data == "fashion-mnist":
        return load_fashion_mnist(root, train, download, progress)
    return load_cifar100(root, train, download, progress)


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

    Regenerates only when the folder is missing, was written with other sizes or seed, or no
    longer matches the content hashes in its marker (damaged or changed since).
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
        hashes[split] = _write_atomically(folder / split, pickle.dumps(entry))
    coarse = [f"group{i}" for i in range(20)]
    hashes["meta"] = _write_atomically(folder / "meta", pickle.dumps({"fine_label_names": names,
                                                                      "coarse_label_names": coarse}))
    # Last: a folder with this marker is complete, and the marker says what its files hold.
    _write_atomically(marker, (signature + "".join(f"sha256 {k} {v}\n" for k, v in hashes.items())).encode())
    return root


def _write_atomically(path: Path, data: bytes) -> str:
    """Write under a private temporary name, then rename (a concurrent reader never sees half a file); its sha256."""
    remove_stale_temporaries(path)  # what a writer killed outright (SIGKILL) left behind
    with replacing(path) as tmp:
        tmp.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


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


# ----------------------------------------------------------------------------- augmentation


def normalize(mean: tuple[float, ...] = CIFAR100_MEAN, std: tuple[float, ...] = CIFAR100_STD) -> v2.Compose:
    """uint8 CHW -> float, normalised with the given statistics (default: CIFAR-100's)."""
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


def train_transform(augment: str = "reference", mean: tuple[float, ...] = CIFAR100_MEAN,
                    std: tuple[float, ...] = CIFAR100_STD) -> v2.Compose:
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

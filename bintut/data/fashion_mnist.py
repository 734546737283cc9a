"""Fashion-MNIST as 32x32 RGB images: torchvision's reader over its download or over Debian's
package ``dataset-fashion-mnist``; each 28x28 photo is padded by 2 and repeated over 3 channels.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
from torchvision import datasets
from torchvision.datasets.utils import check_integrity

from bintut.data.images import DataError, DataNotFoundError, ImageSet, checked_set, data_root
from bintut.data.sets import FASHION_MNIST
from bintut.files.atomic import replacing
from bintut.files.download import DownloadError, download

# The facts (classes, normalisation, folders, Debian's package) are FASHION_MNIST's in bintut.data.sets.
FASHION_FOLDER = Path(FASHION_MNIST.folders[0]).parts[0]  # torchvision reads ROOT/FashionMNIST/raw/

FASHION_DEBIAN = FASHION_MNIST.system_folder  # Debian's package dataset-fashion-mnist

FASHION_CLASSES = FASHION_MNIST.classes
FASHION_PAD = (FASHION_MNIST.image_size - 28) // 2  # 28x28 -> 32x32

FASHION_BACKGROUND = 0  # the photos' background is black

FASHION_MEAN, FASHION_STD = FASHION_MNIST.normalization


def _fashion_places(root: Path) -> list[Path]:
    return [root / FASHION_FOLDER / "raw", FASHION_DEBIAN]


def _fashion_files() -> list[str]:
    """The four published file names (gzip-compressed IDX), e.g. train-images-idx3-ubyte.gz."""
    return [name for name, _ in datasets.FashionMNIST.resources]


def _fashion_missing(root: Path, reason: str) -> str:
    places = " or ".join(str(p) for p in _fashion_places(root))
    return (f"Fashion-MNIST {reason}: looked in {places}; install it with `apt-get install "
            f"{FASHION_MNIST.package}` (Debian/Ubuntu), pass --download, or point --data-root at a folder "
            f"holding {FASHION_FOLDER}/raw/")


def _fashion_ready(raw: Path) -> bool:
    """Whether torchvision finds its four decompressed files in ``raw``."""
    return all((raw / Path(name).stem).is_file() for name in _fashion_files())


def fashion_mnist_found(root: str | os.PathLike | None = None) -> bool:
    """Whether Fashion-MNIST is here: in the data root (torchvision's layout) or as Debian's package. Reads nothing."""
    return _fashion_ready(data_root(root) / FASHION_FOLDER / "raw") or all(
        (FASHION_DEBIAN / name).is_file() for name in _fashion_files())


def _decompress_into(source: Path, raw: Path) -> None:
    """The four .gz files of ``source`` decompressed into ``raw`` (each under a private name, then renamed)."""
    raw.mkdir(parents=True, exist_ok=True)
    for name in _fashion_files():
        try:
            with gzip.open(source / name) as packed:
                data = packed.read()
        except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
            raise DataError(f"{source / name}: not a readable gzip file ({err})") from err
        with replacing(raw / Path(name).stem) as tmp:  # a write that fails is the data root's, not the source's
            tmp.write_bytes(data)


def _fetch_fashion(raw: Path, progress: bool) -> None:
    """Download the four published files (timeouts and checksums: bintut.files.download)."""
    base = datasets.FashionMNIST.mirrors[0]
    for name, md5 in datasets.FashionMNIST.resources:
        if not check_integrity(str(raw / name), md5):
            download(base + name, raw / name, f"Fashion-MNIST {name}", None, md5, progress)


IDX_UBYTE = 0x08  # the IDX type byte of unsigned bytes, the one type Fashion-MNIST ships in


def check_idx(path: Path, ndim: int) -> None:
    """Check an IDX file's header before torchvision reads it: magic ``00 00 08 ndim``, then ``ndim`` big-endian
    sizes whose product is the number of bytes that follow.

    Raises DataError naming the file and what is wrong (its type byte, dimensions or length)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4 + 4 * ndim)
            size = os.fstat(f.fileno()).st_size
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror}); delete it to have it rebuilt") from err
    if len(head) < 4 or head[:2] != b"\0\0":
        raise DataError(f"{path}: not an IDX file (it starts {head[:4].hex()}); delete it to have it rebuilt")
    if head[2] != IDX_UBYTE or head[3] != ndim:
        raise DataError(f"{path}: an IDX file of type 0x{head[2]:02x} with {head[3]} dimensions; Fashion-MNIST's "
                        f"is of type 0x{IDX_UBYTE:02x} (unsigned bytes) with {ndim}: delete it to have it rebuilt")
    dims = [int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)] if len(head) == 4 + 4 * ndim \
        else []
    if len(dims) != ndim or size != len(head) + int(np.prod(dims, dtype=np.int64)):
        raise DataError(f"{path}: its header announces {' x '.join(map(str, dims)) or 'no sizes'} bytes but the file "
                        f"holds {size - len(head)}: truncated or damaged; delete it to have it rebuilt")


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
    DataError (files that are not Fashion-MNIST: each file's IDX header is checked first, :func:`check_idx`).
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
    for name in _fashion_files():
        stem = Path(name).stem
        check_idx(raw / stem, 3 if "images" in stem else 1)
    try:
        ds = datasets.FashionMNIST(root, train=train, download=False)
    except (RuntimeError, ValueError, AssertionError, TypeError, KeyError, IndexError) as err:  # a malformed file
        raise DataError(f"{raw}: not Fashion-MNIST ({err}); delete it to have it rebuilt") from err
    gray = np.asarray(ds.data, dtype=np.uint8)
    if gray.ndim != 3 or gray.shape[1:] != (28, 28):
        raise DataError(f"{raw}: the images must be 28x28 grayscale, got shape {gray.shape}")
    pad = FASHION_PAD
    padded = np.pad(gray, ((0, 0), (pad, pad), (pad, pad)), constant_values=FASHION_BACKGROUND)
    images = np.repeat(padded[..., None], 3, axis=3)
    found = checked_set(images, np.asarray(ds.targets), list(ds.classes), raw, FASHION_CLASSES)
    found.mean, found.std = FASHION_MEAN, FASHION_STD
    return found

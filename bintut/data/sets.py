"""One description of each data set a run may name: :class:`DataSet` and the table :data:`DATA_SETS`.

Name, title, classes, normalisation, the image size and channels the model sees, where the files are looked
for (folders below the data root, a system folder, the environment variable) and which function loads them.
Every other module reads these facts from here (the loaders, :mod:`bintut.data.choice`, the commands, the
export); :data:`bintut.config.DATA_NAMES` (an idea module, which may not import ``data``) holds the names and
titles for the torch-free parser and is tested against this table. Standard library only: the loaders are
imported when :meth:`DataSet.load` runs.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bintut.data.images import ImageSet

DATA_ENV = "BINTUT_DATA"  # the data root when no --data-root is given (else ./data)


@dataclass(frozen=True)
class DataSet:
    """One data set: what a run's ``data`` field names.

    ``mean``/``std``: per channel, in units of pixels / 255; the model sees ``(pixel / 255 - mean[c]) / std[c]``.
    ``image_size`` x ``image_size`` with ``channels`` channels is what the model reads (after any padding the
    loader does; ``stored`` says what the files hold). ``folders`` lie below the data root, ``system_folder``
    is an installed package's folder (read only), ``loader`` and ``found`` name functions as
    ``module:function``.
    """

    name: str  # a TrainConfig's `data` value
    title: str  # in words, for tables and figures
    classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    stored: str  # what the files hold, in words
    folders: tuple[str, ...]  # looked for below the data root, in order
    loader: str  # module:function(root, train, download, progress) -> ImageSet
    found: str | None = None  # module:function(root) -> bool, reads nothing; None: made on demand
    system_folder: Path | None = None  # an installed package's folder, looked in after the data root
    package: str | None = None  # the Debian package that installs system_folder
    download: bool = False  # whether --download can fetch it
    image_size: int = 32
    channels: int = 3

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std), three floats each."""
        return self.mean, self.std

    def places(self, root: str | os.PathLike | None = None) -> list[Path]:
        """Where the files are looked for, in order: the folders below the data root (``root``, else
        $BINTUT_DATA, else ./data), then the system folder."""
        base = data_root(root)
        return [base / folder for folder in self.folders] + ([self.system_folder] if self.system_folder else [])

    def load(self, root: str | os.PathLike | None, train: bool, download: bool = False,
             progress: bool = True) -> ImageSet:
        """One split, through the loader (which raises DataNotFoundError, with advice, when the files are
        not in :meth:`places`, and DataError for files that are not this data set)."""
        return _function(self.loader)(root, train, download, progress)

    def is_here(self, root: str | os.PathLike | None = None) -> bool:
        """Whether the files are here (a data set made on demand always is). Reads nothing."""
        return True if self.found is None else bool(_function(self.found)(root))


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: the argument, else $BINTUT_DATA, else ./data."""
    return Path(root or os.environ.get(DATA_ENV) or "data").expanduser()


def _function(where: str):
    module, _, name = where.partition(":")
    return getattr(importlib.import_module(module), name)


CIFAR100 = DataSet(
    name="cifar100", title="CIFAR-100", classes=100,
    mean=(0.5071, 0.4867, 0.4408), std=(0.2675, 0.2565, 0.2761),
    stored="32x32 RGB photos (the python pickles of cifar-100-python)",
    folders=("cifar-100-python",), loader="bintut.data.cifar100:load_cifar100",
    found="bintut.data.cifar100:cifar100_found", download=True,
)

FASHION_MNIST = DataSet(
    name="fashion-mnist", title="Fashion-MNIST", classes=10,
    # Over the 60,000 padded training images (the same value in each of the three channels), computed with
    # data.channel_statistics on the files of Debian's package dataset-fashion-mnist (tests check it there).
    mean=(0.2190,) * 3, std=(0.3318,) * 3,
    stored="28x28 grayscale photos (gzip IDX), padded by 2 to 32x32 and repeated over 3 channels",
    folders=("FashionMNIST/raw",), loader="bintut.data.fashion_mnist:load_fashion_mnist",
    found="bintut.data.fashion_mnist:fashion_mnist_found",
    system_folder=Path("/usr/share/datasets/fashion-mnist"), package="dataset-fashion-mnist", download=True,
)

SYNTHETIC = DataSet(
    name="synthetic", title="synthetic data", classes=CIFAR100.classes,
    mean=CIFAR100.mean, std=CIFAR100.std,  # normalised as CIFAR-100, whose stand-in it is
    stored="32x32 RGB patterns in 100 classes, generated offline in the cifar-100-python layout",
    folders=("synthetic-<train>-<test>-<seed>/cifar-100-python",), loader="bintut.data.cifar100:load_cifar100",
)

DATA_SETS: dict[str, DataSet] = {s.name: s for s in (CIFAR100, SYNTHETIC, FASHION_MNIST)}


def data_set(name: str) -> DataSet:
    """The data set a config's ``data`` field names. Raises ValueError listing the known names for another."""
    if name not in DATA_SETS:
        raise ValueError(f"data must be one of {tuple(DATA_SETS)}, got {name!r}")
    return DATA_SETS[name]

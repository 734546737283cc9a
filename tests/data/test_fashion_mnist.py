"""Fashion-MNIST: tiny IDX files written here (no download, no Debian package needed), and the package's
files where installed."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from bintut.cli import main
from bintut.data import fashion_mnist
from bintut.data.choice import num_classes
from bintut.data.fashion_mnist import FASHION_DEBIAN, FASHION_MEAN, FASHION_STD, load_fashion_mnist
from bintut.data.images import DataError, DataNotFoundError, channel_statistics
from bintut.data.transforms import ImageDataset

from ..conftest import one_line

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
DEBIAN_HERE = all((FASHION_DEBIAN / f"{name}.gz").is_file() for name in FILES)
NEEDS_DEBIAN = pytest.mark.skipif(not DEBIAN_HERE, reason=f"Debian's package dataset-fashion-mnist is not "
                                  f"installed ({FASHION_DEBIAN} is absent): apt-get install dataset-fashion-mnist")


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file (LeCun's format, the one MNIST and Fashion-MNIST ship in): magic 0x0000 0x08 (uint8) ndim,
    then each dimension as a big-endian int32, then the bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_gz(folder, n_train=12, n_test=6, labels_max=9, seed=0):
    """The four Fashion-MNIST files, gzip-compressed as published, with random 28x28 images."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(1, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % (labels_max + 1)
        arrays[split] = (images, labels)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            (folder / f"{split}-{kind}-ubyte.gz").write_bytes(gzip.compress(idx_bytes(array)))
    return arrays


@pytest.fixture
def debian(tmp_path, monkeypatch):
    """A stand-in for the Debian package's folder, holding tiny files."""
    folder = tmp_path / "debian"
    arrays = write_idx_gz(folder)
    monkeypatch.setattr(fashion_mnist, "FASHION_DEBIAN", folder)
    return arrays


def test_padded_to_32x32_rgb_with_the_background_and_own_statistics(tmp_path, debian):
    train = load_fashion_mnist(tmp_path / "root", train=True)
    test = load_fashion_mnist(tmp_path / "root", train=False)
    images, labels = debian["train"]
    assert train.images.shape == (12, 32, 32, 3) and train.images.dtype == np.uint8 and len(test) == 6
    assert np.array_equal(train.images[:, 2:30, 2:30, 0], images)  # every pixel kept, 1:1
    assert (train.images[:, :2] == 0).all() and (train.images[:, :, 30:] == 0).all()  # black border of 2
    assert (train.images[..., 0] == train.images[..., 2]).all()  # gray replicated into R, G, B
    assert np.array_equal(train.labels, labels) and len(train.classes) == num_classes("fashion-mnist") == 10
    assert train.mean == FASHION_MEAN and train.std == FASHION_STD
    x, _ = ImageDataset(train)[0]
    expected = (torch.from_numpy(train.images[0, 0, 0]).float() / 255 - torch.tensor(FASHION_MEAN)) / torch.tensor(
        FASHION_STD)
    assert torch.allclose(x[:, 0, 0], expected)  # normalised with Fashion-MNIST's statistics, not CIFAR's


def test_data_root_first_then_the_debian_folder(tmp_path, debian, monkeypatch, capsys):
    root = tmp_path / "root"
    load_fashion_mnist(root)
    assert "Debian" in capsys.readouterr().out  # says where it came from
    raw = root / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(FILES)
    monkeypatch.setattr(fashion_mnist, "FASHION_DEBIAN", tmp_path / "gone")
    assert len(load_fashion_mnist(root)) == 12  # from the data root now, the package no longer needed
    assert capsys.readouterr().out == ""


def test_missing_everywhere_is_one_line_naming_every_place(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "FASHION_DEBIAN", tmp_path / "no-package")
    with pytest.raises(DataNotFoundError) as info:
        load_fashion_mnist(tmp_path / "root")
    message = str(info.value)
    assert "\n" not in message
    for place in (tmp_path / "root" / "FashionMNIST" / "raw", tmp_path / "no-package"):
        assert str(place) in message
    assert "apt-get install dataset-fashion-mnist" in message and "--download" in message


def test_offline_download_fails_with_the_same_places(tmp_path, monkeypatch):
    import socket

    from torchvision import datasets

    monkeypatch.setattr(fashion_mnist, "FASHION_DEBIAN", tmp_path / "no-package")
    with socket.socket() as closed:  # a port nothing listens on: refused at once, as offline
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setattr(datasets.FashionMNIST, "mirrors", [f"http://127.0.0.1:{port}/"])  # where the files come from
    with pytest.raises(DataNotFoundError, match="could not be downloaded.*Connection refused"):
        load_fashion_mnist(tmp_path / "root", download=True)


def test_labels_out_of_range_are_refused(tmp_path, monkeypatch):
    folder = tmp_path / "debian"
    write_idx_gz(folder, labels_max=11)
    monkeypatch.setattr(fashion_mnist, "FASHION_DEBIAN", folder)
    with pytest.raises(DataError, match=r"labels must lie in \[0, 9\]"):
        load_fashion_mnist(tmp_path / "root")


def test_a_damaged_file_is_a_clear_error(tmp_path, monkeypatch):
    folder = tmp_path / "debian"
    write_idx_gz(folder)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    monkeypatch.setattr(fashion_mnist, "FASHION_DEBIAN", folder)
    with pytest.raises(DataError, match="not a readable gzip file"):
        load_fashion_mnist(tmp_path / "root")


@NEEDS_DEBIAN
def test_the_debian_package_is_fashion_mnist_with_the_recorded_statistics(tmp_path):
    train = load_fashion_mnist(tmp_path, train=True)
    test = load_fashion_mnist(tmp_path, train=False)
    assert train.images.shape == (60_000, 32, 32, 3) and len(test) == 10_000
    assert np.bincount(train.labels).tolist() == [6000] * 10  # balanced, as published
    assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"
    mean, std = channel_statistics(train.images)
    assert np.allclose(mean, FASHION_MEAN, atol=5e-5) and np.allclose(std, FASHION_STD, atol=5e-5)


def test_a_fashion_mnist_file_with_another_type_byte_is_one_line(tmp_path, capsys):
    """An IDX file of int8 (type 0x09) instead of uint8 (0x08) was a TypeError traceback from torchvision."""
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    fashion_files(raw, bad="train-images-idx3-ubyte")
    out = tmp_path / "run"
    assert main(["train", "--preset", "smoke", "--data", "fashion-mnist", "--data-root", str(tmp_path / "data"),
                 "--out", str(out)]) == 2
    err = one_line(capsys.readouterr().err)
    assert f"{raw / 'train-images-idx3-ubyte'}: an IDX file of type 0x09" in err and "delete it" in err
    assert not out.exists()


def fashion_files(raw: Path, bad: str | None = None, n: int = 8) -> None:
    """Fashion-MNIST's four decompressed IDX files with ``n`` random images each; ``bad`` gets type byte 0x09."""
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in FILES:
        array = rng.integers(0, 256, (n, 28, 28)) if "images" in name else np.arange(n) % 10
        data = bytearray(idx_bytes(np.asarray(array, dtype=np.uint8)))
        if name == bad:
            data[2] = 0x09  # int8 instead of uint8
        (raw / name).write_bytes(bytes(data))

import pickle

import numpy as np
import pytest
import torch

from bintut.data.cifar100 import load_cifar100, synthetic_images, write_synthetic_cifar100
from bintut.data.images import DataNotFoundError
from bintut.data.transforms import ImageDataset, train_transform


def test_synthetic_set_uses_the_real_layout(tmp_path):
    root = write_synthetic_cifar100(tmp_path, n_train=50, n_test=20, seed=3)
    folder = root / "cifar-100-python"
    assert sorted(p.name for p in folder.iterdir()) == ["SYNTHETIC", "meta", "test", "train"]
    with open(folder / "train", "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    assert entry["data"].shape == (50, 3072) and entry["data"].dtype == np.uint8
    assert {"fine_labels", "coarse_labels", "filenames", "batch_label"} <= set(entry)
    train, test = load_cifar100(root, train=True), load_cifar100(root, train=False)
    assert train.images.shape == (50, 32, 32, 3) and len(test) == 20
    assert len(train.classes) == 100 and train.classes[0] == "red/h-stripes"
    assert train.labels.min() >= 0 and train.labels.max() < 100


def test_synthetic_is_deterministic_and_class_dependent():
    a, la = synthetic_images(2000, seed=1)
    b, lb = synthetic_images(2000, seed=1)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    # images of a class are closer to their class mean than to other classes' means
    x = a.reshape(len(a), -1).astype(np.float32)
    means = np.stack([x[la == c].mean(0) for c in range(100)])
    dist = ((x[:, None, :] - means[None]) ** 2).sum(-1)
    nearest_mean_acc = (dist.argmin(1) == la).mean()
    assert nearest_mean_acc > 0.5, nearest_mean_acc


def test_regenerates_only_when_parameters_change(tmp_path):
    write_synthetic_cifar100(tmp_path, 30, 10, seed=0)
    stamp = (tmp_path / "cifar-100-python" / "train").stat().st_mtime_ns
    write_synthetic_cifar100(tmp_path, 30, 10, seed=0)
    assert (tmp_path / "cifar-100-python" / "train").stat().st_mtime_ns == stamp
    write_synthetic_cifar100(tmp_path, 40, 10, seed=0)
    assert len(load_cifar100(tmp_path)) == 40


def test_missing_data_explains_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("BINTUT_DATA", raising=False)
    with pytest.raises(DataNotFoundError) as info:
        load_cifar100(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "cifar-100-python") in message
    assert "cifar-100-python.tar.gz" in message and "--data synthetic" in message and "BINTUT_DATA" in message


def test_real_data_is_still_checksummed(tmp_path):
    # a folder that looks like CIFAR-100 but was not written by us is verified by torchvision
    write_synthetic_cifar100(tmp_path, 10, 10)
    (tmp_path / "cifar-100-python" / "SYNTHETIC").unlink()
    with pytest.raises(DataNotFoundError, match="incomplete or corrupted"):
        load_cifar100(tmp_path)


def test_offline_download_fails_clearly(tmp_path, monkeypatch):
    import urllib.error

    from bintut.files import download

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    with pytest.raises(DataNotFoundError, match="could not be downloaded.*Name or service not known"):
        load_cifar100(tmp_path, download=True)
    assert not list(tmp_path.glob("**/*.tmp*"))  # no partial file left behind


def test_data_root_from_environment(tmp_path, monkeypatch):
    write_synthetic_cifar100(tmp_path, 12, 10)
    monkeypatch.setenv("BINTUT_DATA", str(tmp_path))
    assert len(load_cifar100()) == 12


def test_subset_and_transforms(tmp_path):
    s = load_cifar100(write_synthetic_cifar100(tmp_path, 64, 10))
    sub = s.subset(16, seed=0)
    assert len(sub) == 16 and s.subset(None) is s
    with pytest.raises(ValueError, match="subset size"):
        s.subset(0)
    for augment in ("reference", "basic", "none"):
        ds = ImageDataset(sub, train_transform(augment))
        x, y = ds[0]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and isinstance(y, int)
    with pytest.raises(ValueError, match="augment must be one of"):
        train_transform("heavy")

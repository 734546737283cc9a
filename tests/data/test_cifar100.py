import hashlib
import pickle
import time
from pathlib import Path

import numpy as np
import pytest

from bintut.cli import main
from bintut.data.cifar100 import load_cifar100, synthetic_images, write_synthetic_cifar100
from bintut.data.images import DataError, DataNotFoundError, checked_set


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
    """The real download code against a port nothing listens on (refused at once, as offline): one clear error
    naming the reason, no partial file. (Patching urlopen would not reach the download's own opener.)"""
    import socket

    from bintut.data import cifar100

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setattr(cifar100, "CIFAR100_URL", f"http://127.0.0.1:{port}/cifar-100-python.tar.gz")
    with pytest.raises(DataNotFoundError, match="could not be downloaded.*(refused|Errno 111)"):
        load_cifar100(tmp_path, download=True)
    assert not list(tmp_path.glob("**/*.tmp*"))  # no partial file left behind


class _Planted:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self):
        return open, (str(self.canary), "w")


def _marker(folder: Path, names=("train", "test", "meta"), signature="n_train=4 n_test=4 seed=0\n") -> None:
    hashes = "".join(f"sha256 {n} {hashlib.sha256((folder / n).read_bytes()).hexdigest()}\n" for n in names)
    (folder / "SYNTHETIC").write_text(signature + hashes)


def test_cifar_download_from_a_stalled_server_times_out_clearly(stalled_server, tmp_path, monkeypatch, capsys):
    from bintut.data import cifar100

    monkeypatch.setattr(cifar100, "CIFAR100_URL", f"{stalled_server}/cifar-100-python.tar.gz")
    started = time.monotonic()
    with pytest.raises(DataNotFoundError, match="could not be downloaded .*did not answer within 1 s") as info:
        load_cifar100(tmp_path, download=True, progress=False)
    assert time.monotonic() - started < 30
    assert "--data synthetic" in str(info.value)  # the same advice as offline
    said = capsys.readouterr().out
    assert f"downloading CIFAR-100 (161.2 MiB) from {stalled_server}/cifar-100-python.tar.gz into {tmp_path}" in said
    assert list(tmp_path.iterdir()) == []  # no partial archive


def test_a_planted_pickle_in_a_synthetic_folder_never_runs(tmp_path):
    folder = write_synthetic_cifar100(tmp_path, 4, 4) / "cifar-100-python"
    canary = tmp_path / "pwned"
    (folder / "train").write_bytes(pickle.dumps({"data": _Planted(canary)}))
    with pytest.raises(DataError, match="train does not match the content hash .* not reading it. Delete"):
        load_cifar100(tmp_path)
    _marker(folder)  # even a marker forged to match the planted file does not make it run
    with pytest.raises(DataError, match="refusing to load (builtins|io).open"):
        load_cifar100(tmp_path)
    assert not canary.exists()
    (folder / "SYNTHETIC").write_text("n_train=4 n_test=4 seed=0\n")  # an old marker without hashes
    with pytest.raises(DataError, match="records no content hash"):
        load_cifar100(tmp_path)
    assert not canary.exists()


def test_a_damaged_synthetic_cache_is_regenerated(tmp_path, capsys):
    write_synthetic_cifar100(tmp_path, 4, 4)
    good = load_cifar100(tmp_path).images
    train_file = tmp_path / "cifar-100-python" / "train"
    train_file.write_bytes(train_file.read_bytes()[:100])  # truncated
    write_synthetic_cifar100(tmp_path, 4, 4)
    said = capsys.readouterr().out
    assert "train does not match the content hash" in said and "regenerating" in said
    assert np.array_equal(load_cifar100(tmp_path).images, good)


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"data": np.zeros((4, 3072)), "fine_labels": [0] * 4}, "uint8 of shape \\(N, 3072\\), got float64"),
        ({"data": np.zeros((4, 100), np.uint8), "fine_labels": [0] * 4}, "got uint8 \\(4, 100\\)"),
        ({"data": np.zeros((4, 3072), np.uint8), "fine_labels": [0, 1, 2, 150]}, "labels must lie in \\[0, 99\\]"),
        ({"data": np.zeros((4, 3072), np.uint8), "fine_labels": [0, 1]}, "expected 4 integer labels"),
        ({"images": np.zeros((4, 3072), np.uint8)}, "not in the CIFAR-100 layout"),
    ],
)
def test_data_arrays_are_checked(tmp_path, entry, message):
    folder = write_synthetic_cifar100(tmp_path, 4, 4) / "cifar-100-python"
    (folder / "train").write_bytes(pickle.dumps(entry))
    _marker(folder)
    with pytest.raises(DataError, match=message):
        load_cifar100(tmp_path)
    with pytest.raises(DataError, match="labels must lie"):  # the real-data path checks the same way
        checked_set(np.zeros((2, 32, 32, 3), np.uint8), np.array([0, -1]), ["c"] * 100, tmp_path)


def test_a_synthetic_folder_does_not_stand_in_for_cifar100(tmp_path, capsys):
    """5d: a data folder carrying the synthetic marker overrode --data cifar100 (and was called CIFAR-100)."""
    from bintut.data.cifar100 import write_synthetic_cifar100

    write_synthetic_cifar100(tmp_path / "data", 16, 8, 0)
    out = tmp_path / "run"
    assert main(["train", "--preset", "smoke", "--data", "cifar100", "--data-root", str(tmp_path / "data"),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds synthetic images generated by bintut, not CIFAR-100: pass --data synthetic" in err
    assert not out.exists()

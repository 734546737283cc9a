"""bintut.data.choice: which images a run uses, and what an export's golden test falls back to."""
import contextlib
import errno

from bintut.cli import main
from bintut.data import cifar100

from ..conftest import one_line


def test_golden_images_from_unreadable_synthetic_data_fall_back_to_seeded_ones(smoke_run, monkeypatch):
    """2d: a synthetic run whose data folder is read-only: regenerating its data was an OSError traceback."""
    from bintut.data import choice

    def read_only(cfg, n):
        raise PermissionError(13, "Permission denied", "data/synthetic-640-100-0")

    monkeypatch.setattr(choice, "test_images", read_only)
    images, origin = choice.golden_images(smoke_run.config, 3)
    assert images.shape == (3, 3, 32, 32) and "seeded random images (the run's data cannot be read" in origin


def test_a_data_root_that_cannot_be_written_is_one_line(tmp_path, monkeypatch, capsys):
    """A --data-root that is a file, or read-only, where the data must be written: NotADirectoryError traceback."""
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    for root in (afile, afile / "below"):
        assert main(["train", "--preset", "smoke", "--data-root", str(root), "--out", str(tmp_path / "run")]) == 2
        err = one_line(capsys.readouterr().err)
        assert f"--data-root {root} cannot hold the data this run writes there (Not a directory" in err
    assert not (tmp_path / "run").exists()

    def read_only(path, data):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(cifar100, "write_atomically", read_only)
    assert main(["train", "--preset", "smoke", "--data-root", str(tmp_path / "ro"), "--out",
                 str(tmp_path / "run")]) == 2
    assert "cannot hold the data this run writes there (Read-only file system" in one_line(capsys.readouterr().err)

    from bintut.data import fashion_mnist

    from .test_fashion_mnist import write_idx_gz

    write_idx_gz(tmp_path / "debian")  # Debian's package, decompressed into a data root that refuses the write
    monkeypatch.setattr(fashion_mnist, "FASHION_DEBIAN", tmp_path / "debian")

    @contextlib.contextmanager
    def refused(path):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))
        yield

    monkeypatch.setattr(fashion_mnist, "replacing", refused)
    assert main(["train", "--preset", "smoke", "--data", "fashion-mnist", "--data-root", str(tmp_path / "ro"),
                 "--out", str(tmp_path / "run")]) == 2
    err = one_line(capsys.readouterr().err)
    assert "--data-root" in err and "(Permission denied" in err and "gzip" not in err  # not blamed on the source

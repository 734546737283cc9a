"""Issue 24, kind 5: where a one-line error (or a quiet stop) was promised, a traceback came. Each case is run as a
user runs it (the command line, in process or as ``python -m bintut``) and its one line and exit code checked."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bintut.cli import main
from bintut.data import cifar100
from bintut.files.run_folder import PATH_MAX
from bintut.training import runs
from bintut.training.loop import train

from .conftest import tiny

ROOT = Path(__file__).resolve().parents[1]


def one_line(err: str, start: str = "bintut: error: ") -> str:
    assert err.startswith(start) and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished one-epoch run on 16 synthetic images (seconds)."""
    root = tmp_path_factory.mktemp("finished")
    cfg = tiny(root / "data", root / "run", epochs=1, synthetic_train=16, synthetic_test=8)
    train(cfg)
    return root / "run"


STOP_AT_TORCH = """
import os, runpy, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even where the parent ignores it
SIGNUM = int(sys.argv[1])
class StopAtTorch:  # the signal arrives while torch is importing
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            os.kill(os.getpid(), SIGNUM)
        return None
sys.meta_path.insert(0, StopAtTorch())
sys.argv = ["bintut", *sys.argv[2:]]
runpy.run_module("bintut", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_while_torch_imports_is_one_line_and_exit_128_plus_n(signum, tmp_path):
    """Ctrl-C or SIGTERM during torch's import was a traceback and exit 1."""
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-c", STOP_AT_TORCH, str(int(signum)), "train", "--preset", "smoke", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 128 + signum
    assert done.stderr == f"bintut: stopped by signal {int(signum)}\n"
    assert not out.exists()


def fashion_files(raw: Path, bad: str | None = None, n: int = 8) -> None:
    """Fashion-MNIST's four decompressed IDX files with ``n`` random images each; ``bad`` gets type byte 0x09."""
    from .test_fashion_mnist import FILES, idx_bytes

    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in FILES:
        array = rng.integers(0, 256, (n, 28, 28)) if "images" in name else np.arange(n) % 10
        data = bytearray(idx_bytes(np.asarray(array, dtype=np.uint8)))
        if name == bad:
            data[2] = 0x09  # int8 instead of uint8
        (raw / name).write_bytes(bytes(data))


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


def test_c_at_a_symbolic_link_loop_is_one_line(finished, tmp_path, capsys):
    """`export --c LOOP` (a link to itself) was a RuntimeError traceback."""
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    for target in (loop, loop / "c"):
        assert main(["export", str(finished), "--out", str(tmp_path / "m.npz"), "--c", str(target)]) == 2
        assert "a symbolic link on that path leads back to itself" in one_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loop"]


def test_golden_images_that_cannot_be_read_fall_back_to_seeded_ones(tmp_path, capsys):
    """An export --c whose run's test images were damaged since: a DataError traceback after the .npz was
    written. The golden test needs no real images: seeded ones, and the reason, instead."""
    run, raw = tmp_path / "run", tmp_path / "data" / "FashionMNIST" / "raw"
    fashion_files(raw)
    train(tiny(tmp_path / "data", run, epochs=1, data="fashion-mnist", synthetic_train=8))
    fashion_files(raw, bad="t10k-images-idx3-ubyte")
    capsys.readouterr()
    assert main(["export", str(run), "--c", str(tmp_path / "c"), "--golden", "2"]) == 0
    out = capsys.readouterr().out
    assert "golden test (2 images: seeded random images (the run's data cannot be read (" in out
    assert "t10k-images-idx3-ubyte: an IDX file of type 0x09" in out
    assert (tmp_path / "c" / "golden.h").is_file()


def test_a_run_cache_on_a_filesystem_without_locks_is_one_line(tmp_path, monkeypatch):
    """flock's ENOLCK (NFS without a lock manager) in $BINTUT_RUNS was a traceback."""
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setenv(runs.RUNS_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(fcntl, "flock", no_locks)  # the run cache locks through bintut.files.lock
    with pytest.raises(runs.RunCacheError) as caught:
        runs.load_or_train(tiny(tmp_path / "data", tmp_path / "unused", epochs=1))
    message = str(caught.value)
    assert "\n" not in message and "is on a filesystem without file locks (No locks available)" in message
    assert f"set ${runs.RUNS_ENV} to a folder on a local disk" in message
    assert not any((tmp_path / "cache").glob("*/*"))  # nothing trained


def test_an_out_at_the_path_length_limit_is_one_line(finished, tmp_path, capsys):
    """A path just under PATH_MAX: the temporary names inside it passed the limit (ENAMETOOLONG traceback)."""
    deep = tmp_path
    while len(os.fsencode(str(deep))) < PATH_MAX - 220:
        deep = deep / ("d" * 200)
    long_file = deep / ("m" * (PATH_MAX - 30 - len(os.fsencode(str(deep)))) + ".npz")
    assert len(os.fsencode(str(long_file))) < PATH_MAX
    assert main(["export", str(finished), "--out", str(long_file)]) == 2
    assert "bytes long (absolute); with the files bintut writes there it would pass the system's limit of 4096" \
        in one_line(capsys.readouterr().err)
    long_run = deep / ("r" * (PATH_MAX - 20 - len(os.fsencode(str(deep)))))
    assert main(["train", "--preset", "smoke", "--out", str(long_run), "--data-root", str(tmp_path / "data")]) == 2
    assert "--out: the path is" in one_line(capsys.readouterr().err)
    assert not (tmp_path / ("d" * 200)).exists() and not (tmp_path / "data").exists()


def test_a_download_timeout_of_1e300_is_blamed_on_itself(tmp_path, monkeypatch, capsys):
    """$BINTUT_DOWNLOAD_TIMEOUT=1e300 overflowed the socket's timeout, reported as unavailable data or weights."""
    monkeypatch.setenv("BINTUT_DOWNLOAD_TIMEOUT", "1e300")
    assert main(["train", "--preset", "smoke", "--data", "cifar100", "--download", "--data-root",
                 str(tmp_path / "data"), "--out", str(tmp_path / "run")]) == 2
    err = one_line(capsys.readouterr().err)
    assert "$BINTUT_DOWNLOAD_TIMEOUT must be at most 1e+09 seconds (or inf for no limit), got '1e300'" in err
    monkeypatch.setenv("BINTUT_DOWNLOAD_TIMEOUT", "inf")  # no limit stays allowed
    from bintut.files.download import timeout
    assert timeout() == float("inf")


def test_bintuts_own_build_products_do_not_stop_a_second_export(finished, tmp_path, monkeypatch, capsys):
    """After `python -m bintut.integer.c_build host DIR --kernel reference`, `export --c DIR` said DIR held files
    that are not bintut's (bintut_fast0.o, golden_host_fast0)."""
    from bintut.integer import c_build

    monkeypatch.delenv("CC", raising=False)
    try:
        c_build.host_compiler()
    except c_build.CompilerNotFound as err:
        pytest.skip(f"{err}: the golden build needs one")
    folder = tmp_path / "c"
    command = ["export", str(finished), "--out", str(tmp_path / "m.npz"), "--c", str(folder), "--golden", "1",
               "--c-kernel", "reference"]
    assert main(command) == 0
    assert c_build.main(["host", str(folder), "--kernel", "reference"]) == 0
    built = {p.name for p in folder.iterdir()}
    assert any(n.startswith("golden_host") for n in built) and any(n.endswith(".o") for n in built)
    capsys.readouterr()
    assert main(command) == 0, capsys.readouterr().err
    assert not {n for n in os.listdir(folder) if n.endswith(".o") or n.startswith("golden_host")}  # replaced whole
    shutil.rmtree(folder)

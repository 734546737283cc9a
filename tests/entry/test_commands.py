"""bintut.commands: what `python -m bintut train | export | reproduce` do, with their one-line errors and
exit codes (0 done, 2 a clear error, 128 + N stopped by signal N) -- run as a user runs them, in process or as
``python -m bintut``. Training-dependent: these use the smoke run (tests/conftest.py)."""

from __future__ import annotations

import contextlib
import copy
import errno
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
import torch

from bintut.cli import build_parser, main
from bintut.config import TrainConfig, preset
from bintut.data import cifar100
from bintut.data.choice import golden_images
from bintut.data.cifar100 import write_synthetic_cifar100
from bintut.files import lock
from bintut.files.checkpoint import load_checkpoint, save_checkpoint
from bintut.files.metrics import read_metrics
from bintut.files.run_folder import CHECKPOINT, LOCK, PATH_MAX
from bintut.integer import c_build
from bintut.integer import c_library as c_library_module
from bintut.integer.c_library import write_c_library
from bintut.integer.engine import IntegerResNet
from bintut.integer.format import load_export
from bintut.integer.onnx_compare import onnx_session
from bintut.integer.onnx_export import INSTALL, OnnxUnavailableError, check
from bintut.training import loop as train_mod
from bintut.training.loop import train

from ..conftest import leftovers, one_line, tiny
from ..data.test_fashion_mnist import fashion_files
from .conftest import tiny_cli

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, env=None, **kwargs):
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen([sys.executable, *args], env=environ, text=True, **kwargs)


def train_args(data_dir, out, *more):
    return ["-m", "bintut", "train", "--preset", "smoke", "--data-root", str(data_dir), "--out", str(out),
            "--synthetic-train", "16", "--synthetic-test", "8", "--batch-size", "8", "--eval-batch-size", "8",
            "--wandb", "disabled", *more]


def _read_lines(stream, lines: list[str]) -> None:
    for line in stream:
        lines.append(line)


def _wait_for(lines: list[str], text: str, proc: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not any(text in line for line in lines):
        assert proc.poll() is None, f"exited early ({proc.returncode}): {''.join(lines)[-2000:]}"
        assert time.monotonic() < deadline, f"no {text!r} after {seconds} s"
        time.sleep(0.2)


FULL_DISK = """
import resource, sys, torch
from pathlib import Path
from bintut.files.checkpoint import load_checkpoint, save_checkpoint
from bintut.cli import main
from bintut.files.atomic import StorageFullError
from bintut.files.metrics import MetricsLog

folder, data = Path(sys.argv[1]), sys.argv[2]
metrics = folder / "metrics.jsonl"
resource.setrlimit(resource.RLIMIT_FSIZE, (metrics.stat().st_size + 20, resource.RLIM_INFINITY))
log = MetricsLog(metrics, epochs_done=3)  # opening a log must not rewrite it
try:
    log.append({"epoch": 4, "note": "x" * 100})
except StorageFullError as err:
    print("METRICS", err)
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
try:
    save_checkpoint(folder / "checkpoint.pt", {"model": {"w": torch.zeros(1 << 20)}})
except StorageFullError as err:
    print("CHECKPOINT", err)
print("RC", main(["train", "--preset", "smoke", "--data-root", data, "--out", str(folder / "run"), "--epochs", "1",
                  "--synthetic-train", "16", "--synthetic-test", "8", "--batch-size", "8", "--no-progress"]))
"""


@pytest.mark.slow
def test_second_process_on_a_run_folder_stops_and_sigterm_exits_143(data_dir, tmp_path):
    out = tmp_path / "run"
    write_synthetic_cifar100(data_dir / "synthetic-16-8-0", 16, 8, 0)
    first = cli(*train_args(data_dir, out, "--epochs", "50"), env={"PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT)
    lines: list[str] = []
    threading.Thread(target=_read_lines, args=(first.stdout, lines), daemon=True).start()
    try:
        _wait_for(lines, "epoch 1/50: loss", first, 300)
        assert (out / LOCK).read_text().split()[0] == str(first.pid)  # held for the whole run
        second = cli(*train_args(data_dir, out, "--epochs", "50", "--resume"), stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE)
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2
        assert f"bintut: error: run folder {out} in use by PID {first.pid}" in err and "Traceback" not in err
        assert first.poll() is None  # the first run goes on
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=120) == 143
    finally:
        if first.poll() is None:
            first.kill()
    assert "checkpoint saved" in "".join(lines)
    state = load_checkpoint(out / "checkpoint.pt")
    epochs = [r["epoch"] for r in read_metrics(out)]
    assert epochs == list(range(1, len(epochs) + 1)) and state["epoch"] == len(epochs) >= 1  # no duplicate rows
    assert not (out / LOCK).exists() and leftovers(out) == []  # released; no temporary file left


@pytest.mark.slow
def test_full_disk_loses_nothing_and_says_so(data_dir, tmp_path):
    rows = [{"epoch": e, "hard_acc": 0.1 * e} for e in (1, 2, 3)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    save_checkpoint(tmp_path / "checkpoint.pt", {"model": {"w": torch.ones(3)}})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    write_synthetic_cifar100(data_dir / "synthetic-16-8-0", 16, 8, 0)
    proc = cli("-c", FULL_DISK, str(tmp_path), str(data_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=300)
    assert "METRICS could not write" in out and "the disk is full" in out, out + err
    assert "CHECKPOINT could not write" in out and "the previous file is kept" in out
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before  # nothing lost
    assert "RC 2" in out and "bintut: error: could not write" in err and "checkpoint.pt" in err
    assert "disk is full" in err and "Traceback" not in err
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]  # no partial checkpoint, no metric row
    cfg = TrainConfig(**json.loads((run / "config.json").read_text()))
    assert train_mod.resume_state(cfg, run, 0) is None  # and the folder is fit to start over


def test_reproduce_with_a_stalled_server_fails_clearly_and_writes_nothing(stalled_server, tmp_path, monkeypatch,
                                                                          capsys):
    from bintut.data import fashion_mnist

    monkeypatch.setattr(cifar100, "CIFAR100_URL", f"{stalled_server}/cifar-100-python.tar.gz")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(fashion_mnist, "FASHION_DEBIAN", tmp_path / "no-package")  # else reproduce takes it
    monkeypatch.setenv("BINTUT_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bintut: error: CIFAR-100 could not be downloaded") and "did not answer within 1 s" in err
    assert not (tmp_path / "results").exists()  # the run folder it made for the lock is gone again


def test_an_out_under_a_file_or_read_only_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    for out, says in ((tmp_path / "notes.txt", "is a file, not a folder"),
                      (tmp_path / "notes.txt" / "run", "lies under")):
        assert main(["train", "--preset", "smoke", "--out", str(out), "--data-root", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("bintut: error: --out") and says in err and err.count("\n") == 1
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder, so it cannot be refused")
def test_a_read_only_out_is_refused(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert main(["train", "--preset", "smoke", "--out", str(locked / "run"), "--data-root", str(tmp_path)]) == 2
    assert "is read-only" in capsys.readouterr().err


def _edited_copy(run, folder: Path, edit) -> Path:
    from bintut.files.checkpoint import load_checkpoint, save_checkpoint

    shutil.copytree(run.out, folder)
    state = load_checkpoint(folder / "checkpoint.pt", required=())
    edit(state)
    save_checkpoint(folder / "checkpoint.pt", state)
    return folder


def test_a_filesystem_without_locks_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    """1b: ENOLCK (NFS without a lock manager) was a traceback and left a folder with an empty .lock."""
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(lock.fcntl, "flock", no_locks)
    out = tmp_path / "nfs" / "run"
    assert main(["train", "--preset", "smoke", "--out", str(out), "--data-root", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bintut: error: --out" in err and "without file locks" in err
    assert not (tmp_path / "nfs").exists() and not (tmp_path / "data").exists()


def test_foreign_weights_unknown_config_keys_and_a_damaged_metrics_line_are_one_line(smoke_run, tmp_path, capsys):
    """5b: another architecture's weights (--resume, export), an unknown config key (export) and a damaged
    middle line of metrics.jsonl (export, which needs no metrics) were tracebacks."""
    import torch

    def other_layout(state):
        state["model"]["fc.weight"] = torch.zeros(10, 512)

    def other_layout_mid_run(state):  # a finished run has nothing to resume: stop it one epoch earlier
        other_layout(state)
        state["epoch"] -= 1

    other = _edited_copy(smoke_run, tmp_path / "other", other_layout)
    unfinished = _edited_copy(smoke_run, tmp_path / "unfinished", other_layout_mid_run)
    resume = ["train", "--preset", "smoke", "--data-root", smoke_run.config.data_root, "--out", str(unfinished),
              "--resume", "--no-progress"]
    for folder, argv in ((unfinished, resume), (other, ["export", str(other)])):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{folder / 'checkpoint.pt'} holds a model of another layout" in err, err
    newer = _edited_copy(smoke_run, tmp_path / "newer", lambda state: state["config"].update(quantum=True))
    assert main(["export", str(newer)]) == 2
    assert "configuration fields this version of bintut does not know (quantum)" in capsys.readouterr().err
    torn = tmp_path / "torn"
    shutil.copytree(smoke_run.out, torn)
    lines = (torn / "metrics.jsonl").read_text().splitlines(keepends=True)
    (torn / "metrics.jsonl").write_text(lines[0] + '{"epoch": 2, "hard_ac\n' + "".join(lines[2:]))
    assert main(["export", str(torn), "--out", str(tmp_path / "m.npz")]) == 0
    assert (tmp_path / "m.npz").is_file() and not list(tmp_path.glob(".*"))


@contextlib.contextmanager
def file_size_limit(limit: int):
    """RLIMIT_FSIZE for this process, SIGXFSZ ignored so that a write past it raises OSError (EFBIG)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def _tree(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_export_refuses_a_run_that_never_reached_full_binarization(smoke_run, tmp_path, capsys):
    """Item 7: a checkpoint from early in training (p < 1) is refused, naming its controls; --force exports."""
    run = tmp_path / "early"
    shutil.copytree(smoke_run.out, run)
    state = torch.load(run / CHECKPOINT, weights_only=True)
    state["epoch"] = 1  # as if stopped after epoch 1 of 3: the binarization ramp is at ~0.08
    torch.save(state, run / CHECKPOINT)
    out = tmp_path / "model.npz"
    assert main(["export", str(run), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bintut: error: run ") and "never reached p = bin_ratio = 1" in err
    assert "weights.p = 0.0" in err and "activations.bin_ratio = 0.0" in err and "--force" in err
    assert not out.exists()
    assert main(["export", str(run), "--out", str(out), "--force"]) == 0
    captured = capsys.readouterr()
    assert "bintut: warning: run" in captured.err and "weights.p = 0.0" in captured.err
    assert load_export(out).num_classes == 100


def test_export_save_never_truncates_a_good_file(saved_export, smoke_run, tmp_path, capsys):
    """Item 3 (.npz): a write that fails (a file-size limit) leaves the old export intact and no temp file."""
    target = tmp_path / "model.npz"
    shutil.copyfile(saved_export, target)
    before = hashlib.sha256(target.read_bytes()).hexdigest()
    export = load_export(target)
    with file_size_limit(200_000), pytest.raises(OSError, match="File too large"):
        export.save(target)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]  # no temporary file left behind
    with file_size_limit(200_000):
        assert main(["export", str(smoke_run.out), "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert f"bintut: error: could not write {target} (File too large); nothing was changed there" in err
    assert hashlib.sha256(target.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]
    with zipfile.ZipFile(target) as z:
        assert z.testzip() is None


def test_a_failed_or_interrupted_c_export_leaves_the_earlier_one_whole(c_export, smoke_run, tmp_path, monkeypatch,
                                                                       capsys):
    """2a + 2f: a file-size limit or a Ctrl-C mid-export left bintut.h new and bintut_model.h old (and
    Ctrl-C printed a traceback). The library is written beside DIR and takes its place whole."""
    export, images, source = c_export
    folder = tmp_path / "lib"
    shutil.copytree(source, folder)
    before = _tree(folder)
    with file_size_limit(2_000_000), pytest.raises(OSError, match="File too large"):
        write_c_library(export, folder, images)
    assert _tree(folder) == before and sorted(p.name for p in tmp_path.iterdir()) == ["lib"]

    real_copy = c_build.shutil.copyfile
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_copy(*args, **kwargs)

    monkeypatch.setattr(c_build.shutil, "copyfile", interrupted)
    assert main(["export", str(smoke_run.out), "--out", str(tmp_path / "m.npz"), "--c", str(folder),
                 "--golden", "2"]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "bintut: export stopped" in err
    assert _tree(folder) == before and sorted(p.name for p in tmp_path.iterdir()) == ["lib", "m.npz"]
    monkeypatch.setattr(c_build.shutil, "copyfile", real_copy)
    (folder / "bintut.o").write_bytes(b"an old build")  # build products of the earlier export go with it
    library = write_c_library(export, folder, images[:1])
    assert library.golden == 1 and not (folder / "bintut.o").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib", "m.npz"]


def test_c_export_refuses_a_folder_holding_anything_else(c_export, smoke_run, tmp_path, capsys):
    """2b: a user's README.md and bintut.c in DIR were silently overwritten."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "README.md").write_text("my notes")
    (folder / "bintut.c").write_text("my code")
    assert main(["export", str(smoke_run.out), "--out", str(tmp_path / "m.npz"), "--c", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bintut: error: --c {folder} is not an earlier bintut export (it holds README.md, "
                          "bintut.c)") and err.count("\n") == 1
    assert (folder / "README.md").read_text() == "my notes" and (folder / "bintut.c").read_text() == "my code"
    assert not (tmp_path / "m.npz").exists()  # refused before any work
    earlier = tmp_path / "earlier"
    shutil.copytree(c_export[2], earlier)
    (earlier / "notes.txt").write_text("mine")  # an earlier export with a stranger in it
    with pytest.raises(c_library_module.CFolderError, match="holds files that are not bintut's .*notes.txt"):
        c_library_module.check_c_folder(earlier)


@pytest.mark.parametrize("args, message", [
    (["--c", ""], "--c is empty"), (["--out", " "], "--out is empty"), (["--golden", "1000000000"], "--golden must be"),
    (["--golden", "0"], "--golden must be"), (["--c", "x" * 300], "--c: the name xxx"),
    (["--out", "y" * 300 + ".npz"], "--out: the name yyy"),
])
def test_export_arguments_are_checked_up_front(smoke_run, tmp_path, monkeypatch, capsys, args, message):
    """2c/2d/5f: empty --c/--out were skipped or defaulted; --golden 1e9 tried to allocate 22 TiB; a long name
    was a traceback."""
    monkeypatch.chdir(tmp_path)
    with contextlib.suppress(SystemExit):
        assert main(["export", str(smoke_run.out), *args]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [] and not (smoke_run.out / "model_int.npz").exists()


def test_the_cli_exports_a_run_with_a_near_dead_channel(smoke_run, tmp_path):
    from bintut.files.checkpoint import load_checkpoint, save_checkpoint

    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "metrics.jsonl"):
        (run / name).write_bytes((smoke_run.out / name).read_bytes())
    state = load_checkpoint(smoke_run.out / "checkpoint.pt")
    state["model"]["layer2.1.bn2.weight"][7] = 1e-12
    save_checkpoint(run / "checkpoint.pt", state)
    assert main(["export", str(run), "--out", str(tmp_path / "model.npz")]) == 0
    layer = load_export(tmp_path / "model.npz").layers["layer2.1.conv2"]
    # a residual branch: at its fine unit the bias needs most of the 64 bits, so the tiny multiplier keeps
    # fewer bits (M0 < 2^30) instead of the export failing
    assert abs(int(layer.m[7])) < 2**30 <= abs(int(layer.m[6]))


@pytest.fixture(scope="module")
def c_library(smoke_run, tmp_path_factory):
    """The smoke run exported through the CLI: the .npz and the C library with 3 golden images."""
    folder = tmp_path_factory.mktemp("c")
    assert main(["export", str(smoke_run.out), "--out", str(folder / "model.npz"), "--c", str(folder / "lib"),
                 "--golden", "3"]) == 0
    return folder


def test_export_writes_a_self_contained_library(c_library, smoke_run):
    lib = c_library / "lib"
    names = {p.relative_to(lib).as_posix() for p in lib.rglob("*") if p.is_file()}
    assert {"bintut.h", "bintut_model.h", "bintut.c", "bintut_fast.c", "bintut_amx.c", "golden.h", "golden_main.c",
            "README.md", "mcu/mps2_platform.c", "mcu/mps2_an386.ld"} <= names
    export = load_export(c_library / "model.npz")
    header = (lib / "bintut.h").read_text()
    assert "int bintut_infer(const int8_t *image, int32_t *logits);" in header
    assert f"#define BINTUT_INPUT_STEP {export.input_step!r}" in header
    model = (lib / "bintut_model.h").read_text()
    assert "static const uint8_t bits_layer4_1_conv2[" in model and "#define BINTUT_BUFFER_A_BYTES 65536" in model
    readme = (lib / "README.md").read_text()
    assert "| sign bits | 1,401,664 |" in readme and "activation buffer A | 65,536" in readme
    # the golden logits are the numpy integer-only engine's, for the run's first test images
    images, origin = golden_images(smoke_run.config, 3)
    assert "synthetic" in origin
    engine = IntegerResNet(export, integer_only=True)
    logits = engine.integer_logits(engine.quantize_images(images))
    golden = (lib / "golden.h").read_text()
    expected = golden.split("bintut_golden_logits[3][100] = {")[1].split("};")[0]
    assert [int(v) for v in re.findall(r"-?\d+", expected)] == logits.reshape(-1).tolist()


def test_export_can_default_to_the_reference_kernel(smoke_run, tmp_path):
    assert main(["export", str(smoke_run.out), "--out", str(tmp_path / "m.npz"), "--c", str(tmp_path / "lib"),
                 "--golden", "1", "--c-kernel", "reference"]) == 0
    assert "#define BINTUT_FAST 0" in (tmp_path / "lib" / "bintut.h").read_text()


onnx = pytest.importorskip("onnx", reason="the ONNX export needs the optional extra: pip install 'bintut[onnx]'")


def test_export_command_writes_a_checked_onnx_model(smoke_run, tmp_path, capsys):
    path = tmp_path / "model.onnx"
    assert main(["export", str(smoke_run.out), "--out", str(tmp_path / "m.npz"), "--onnx", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{path}: ONNX opset 21, int8 weight codes, float residual branches" in out and "/64 test images" in out
    loaded = onnx.load(str(path))
    check(loaded)
    assert {p.key: p.value for p in loaded.metadata_props}["run"] == smoke_run.out.name
    assert main(["export", str(smoke_run.out), "--out", str(tmp_path / "m.npz"), "--onnx", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_export_command_refuses_a_run_not_fully_binary_unless_forced(smoke_run, tmp_path, capsys):
    from bintut.files.run_folder import CHECKPOINT

    run = tmp_path / "early"
    shutil.copytree(smoke_run.out, run)
    state = torch.load(run / CHECKPOINT, weights_only=True)
    state["epoch"] = 1  # as if stopped after epoch 1 of 3: the binarization ramp is at ~0.08
    torch.save(state, run / CHECKPOINT)
    path = tmp_path / "early.onnx"
    assert main(["export", str(run), "--out", str(tmp_path / "m.npz"), "--onnx", str(path)]) == 2
    assert "never reached p = bin_ratio = 1" in capsys.readouterr().err and not path.exists()
    assert main(["export", str(run), "--out", str(tmp_path / "m.npz"), "--onnx", str(path), "--force"]) == 0
    assert "bintut: warning: run" in capsys.readouterr().err and path.is_file()


def test_a_missing_extra_is_one_line_naming_it(smoke_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(OnnxUnavailableError, match="needs the onnxruntime package"):
        onnx_session(b"")
    path = tmp_path / "model.onnx"
    assert main(["export", str(smoke_run.out), "--out", str(tmp_path / "m.npz"), "--onnx", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bintut: error:") and INSTALL in err
    assert not path.exists() and not (tmp_path / "m.npz").exists()  # refused before any work


def flip(path, offset: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def _offset_of(path, tensor: torch.Tensor) -> int:
    """Where ``tensor``'s storage starts in the file (the bytes as stored, whatever the memory format)."""
    offset = path.read_bytes().find(bytes(tensor.untyped_storage().tolist()[:64]))
    assert offset > 0
    return offset


def test_export_refuses_a_bit_flipped_or_nan_checkpoint_in_one_line(smoke_run, tmp_path, capsys):
    """Through the command line: a finished run's checkpoint with NaN weights exported with exit 0 (all +1 sign
    bits); a bit-flipped one exported silently."""
    run = tmp_path / "run"
    shutil.copytree(smoke_run.out, run)
    good = load_checkpoint(run / CHECKPOINT)
    name = "layer2.0.conv1.parametrizations.weight.original"
    broken = copy.deepcopy(good)
    broken["model"][name][3, 2, 1, 0] = float("nan")
    save_checkpoint(run / CHECKPOINT, broken)
    assert main(["export", str(run), "--out", str(tmp_path / "m.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bintut: error: ") and err.count("\n") == 1 and f"model tensor {name} holds NaN" in err
    save_checkpoint(run / CHECKPOINT, good)
    flip(run / CHECKPOINT, _offset_of(run / CHECKPOINT, good["model"][name]) + 2000, 6)
    assert main(["export", str(run), "--out", str(tmp_path / "m.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "restore it or delete it" in err
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.slow
def test_export_command_reports_sizes(smoke_run, tmp_path, capsys):
    assert main(["export", str(smoke_run.out), "--out", str(tmp_path / "m.npz")]) == 0
    text = capsys.readouterr().out
    assert "555,468,800" in text and "bytes on disk" in text and (tmp_path / "m.npz").is_file()
    assert main(["export", str(tmp_path / "nowhere")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_rerunning_a_finished_run_says_so_and_trains_nothing(data_dir, tmp_path, capsys):
    from bintut.config import preset
    from bintut.training.loop import train

    assert main(tiny_cli(data_dir, tmp_path / "run")) == 0
    capsys.readouterr()
    checkpoint = (tmp_path / "run" / "checkpoint.pt").stat().st_mtime_ns

    def no_loading(cfg):
        raise AssertionError("a finished run loaded its data again")

    args = vars(build_parser().parse_args(tiny_cli(data_dir, tmp_path / "run")))
    del args["command"]
    summary = train(preset(args.pop("preset"), **args), load=no_loading)  # the command's config, loading refused
    assert summary["already_finished"] and summary["epochs"] == 1
    capsys.readouterr()
    assert main(tiny_cli(data_dir, tmp_path / "run")) == 0  # `make smoke` twice
    out = capsys.readouterr().out
    assert "has already finished its 1 epochs; nothing to train" in out and "resuming" not in out
    assert "bintut: nothing to do. final hard accuracy" in out
    assert (tmp_path / "run" / "checkpoint.pt").stat().st_mtime_ns == checkpoint


def test_reproduce_offline_points_to_commands_that_work(tmp_path, monkeypatch, capsys):
    """Offline, reproduce ends with advice it does not itself reject: Debian's Fashion-MNIST, make smoke, and the
    ImageNet weights (every `python -m bintut` command in it parses and makes a valid config)."""
    import shlex
    import socket

    import torch

    from bintut.data import fashion_mnist

    with socket.socket() as closed:  # a port nothing listens on: the download is refused at once, as offline
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("BINTUT_DATA", str(tmp_path / "data"))  # nothing here at all
    monkeypatch.setattr(fashion_mnist, "FASHION_DEBIAN", tmp_path / "no-package")
    monkeypatch.setattr(cifar100, "CIFAR100_URL", f"http://127.0.0.1:{port}/cifar-100-python.tar.gz")
    assert main(["reproduce"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bintut: error: CIFAR-100 could not be downloaded"), err
    assert "make smoke" in err and "--no-pretrained" in err and "resnet18.a1_in1k" in err
    assert "apt-get install dataset-fashion-mnist" in err
    commands = [line.split("python -m bintut ", 1)[1] for line in err.splitlines() if "python -m bintut " in line]
    for command in commands:
        args = vars(build_parser().parse_args(shlex.split(command)))
        args.pop("command")
        preset(args.pop("preset"), **args)  # raises ValueError on a value reproduce's advice must not give


@pytest.mark.parametrize("cifar, fashion, data", [(True, True, "cifar100"), (False, True, "fashion-mnist"),
                                                  (False, False, "cifar100")])
def test_reproduce_takes_cifar100_else_fashion_mnist_and_says_which(tmp_path, monkeypatch, capsys, cifar, fashion,
                                                                     data):
    import torch

    from bintut import commands
    from bintut.data import fashion_mnist

    from ..data.test_fashion_mnist import write_idx_gz

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("BINTUT_DATA", str(tmp_path / "data"))
    if cifar:  # what cifar100_found looks for (it reads nothing)
        (tmp_path / "data" / "cifar-100-python").mkdir(parents=True)
        (tmp_path / "data" / "cifar-100-python" / "train").write_bytes(b"")
    if fashion:  # Debian's package
        write_idx_gz(tmp_path / "debian")
    monkeypatch.setattr(fashion_mnist, "FASHION_DEBIAN", tmp_path / "debian")
    settings = commands.reproduce_settings()
    cfg = preset(settings.pop("preset"), **settings)
    out = capsys.readouterr().out
    assert cfg.data == data and cfg.preset == "workshop"
    if data == "fashion-mnist":  # the recipe of workshop mode on Fashion-MNIST: random weights, a subset
        assert not cfg.pretrained and cfg.train_subset == 2000 and "Fashion-MNIST is here" in out
        assert cfg.out == "results/workshop-fashion-mnist"
    else:
        assert "data: CIFAR-100" in out and cfg.download


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished one-epoch run on 16 synthetic images (seconds)."""
    root = tmp_path_factory.mktemp("finished")
    cfg = tiny(root / "data", root / "run", epochs=1, synthetic_train=16, synthetic_test=8)
    train(cfg)
    return root / "run"


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

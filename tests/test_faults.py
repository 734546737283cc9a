"""Issue 8: each fault reproduced -- a diverged stop, two writers, torn files, a full disk, a stalled
network, late schedule errors, planted pickles, corrupt caches -- with the clear error asserted and
nothing lost. Trainings here are a few batches of 8 images; subprocesses only where the fault needs one."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bintut.cli import build_parser, main
from bintut.config import TrainConfig, preset
from bintut.data.cifar100 import load_cifar100, write_synthetic_cifar100
from bintut.data.images import DataError, DataNotFoundError, checked_set
from bintut.files.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from bintut.files.lock import RunLock
from bintut.files.metrics import MetricsError, MetricsLog, read_metrics
from bintut.files.run_folder import LOCK, RunFolderError
from bintut.model import WeightsUnavailableError, resnet18_cifar
from bintut.quant import Int8Quantizer, binarize_, hard_mode
from bintut.schedule import SHAPES
from bintut.training import guard, recipe
from bintut.training import loop as train_mod
from bintut.training.guard import Diverged
from bintut.training.loop import train

from .conftest import tiny

ROOT = Path(__file__).resolve().parents[1]
RUNFOLDER = ROOT  # the checkout whose bintut the lock-holding scripts import (bintut.files: no torch)


def small(data_dir, out, **overrides):
    """Two batches of 8 images per epoch: the cheapest run that has every moving part."""
    values = dict(synthetic_train=16, synthetic_test=8, batch_size=8, eval_batch_size=8, mix_prob=0.0)
    return tiny(data_dir, out, **{**values, **overrides})


def cli(*args, env=None, **kwargs):
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen([sys.executable, *args], env=environ, text=True, **kwargs)


def train_args(data_dir, out, *more):
    return ["-m", "bintut", "train", "--preset", "smoke", "--data-root", str(data_dir), "--out", str(out),
            "--synthetic-train", "16", "--synthetic-test", "8", "--batch-size", "8", "--eval-batch-size", "8",
            "--wandb", "disabled", *more]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".*") if p.name != LOCK)


# ----------------------------------------------------------------------------- 1. NaN + stop on a GPU


def test_stop_after_nan_without_per_step_sync_keeps_the_good_checkpoint(data_dir, tmp_path, monkeypatch):
    """The GPU loop reads no loss per step; a stop signal after a NaN used to save the NaN model."""
    monkeypatch.setattr(train_mod, "syncs_every_step", lambda device: False)  # the GPU path, on the CPU
    calls = {"n": 0}
    real_loss = recipe.loss_fn

    def nan_then_signal(*args, **kwargs):
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        if calls["n"] == 3:  # epoch 2, first batch: the loss turns NaN and Ctrl-C arrives in the same step
            signal.raise_signal(signal.SIGINT)
            return loss * float("nan")
        return loss

    monkeypatch.setattr(recipe, "loss_fn", nan_then_signal)
    with pytest.raises(Diverged, match="loss became nan by epoch 2, batch 1; the last good checkpoint"):
        train(small(data_dir, tmp_path / "run"))
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert (state["epoch"], state["batch"]) == (1, 0)  # not overwritten by the stop
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert [r["epoch"] for r in read_metrics(tmp_path / "run")] == [1]


# ----------------------------------------------------------------------------- 2 + 11. two processes, SIGTERM


def _read_lines(stream, lines: list[str]) -> None:
    for line in stream:
        lines.append(line)


def _wait_for(lines: list[str], text: str, proc: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not any(text in line for line in lines):
        assert proc.poll() is None, f"exited early ({proc.returncode}): {''.join(lines)[-2000:]}"
        assert time.monotonic() < deadline, f"no {text!r} after {seconds} s"
        time.sleep(0.2)


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


HOLD_LOCK = """
import sys, time
sys.path.insert(0, sys.argv[1])
from bintut.files.lock import RunLock  # no torch: starts at once
RunLock(sys.argv[2]).acquire()
print("locked", flush=True)
time.sleep(60)
"""


def test_stale_lock_of_a_killed_run_is_reported_and_taken_over(tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen(  # takes the lock, then is killed: the lock file stays, the flock goes
        [sys.executable, "-c", HOLD_LOCK, str(RUNFOLDER), str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderError, match=f"in use by PID {holder.pid} "):
            RunLock(out).acquire()
        (out / ".checkpoint.123.abcd.tmp.pt").write_bytes(b"half a checkpoint")  # a write the kill interrupted
    finally:
        holder.kill()
        holder.wait()
    lock = RunLock(out).acquire()
    assert lock.stale.split()[0] == str(holder.pid)
    note = capsys.readouterr().out
    assert f"was locked by PID {holder.pid}" in note and "crashed or killed" in note
    assert leftovers(out) == []  # the dead run's temporary file is gone
    lock.release()
    assert not (out / LOCK).exists() and RunLock(out).acquire().stale is None


# ----------------------------------------------------------------------------- 3 + 10. full disk, torn lines

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


def test_torn_last_metrics_line_is_cut_off_with_a_warning(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epoch": 3, "hard_a')  # a write cut short
    with pytest.warns(UserWarning, match="torn last line"):
        assert [r["epoch"] for r in read_metrics(path)] == [1, 2]
    with pytest.warns(UserWarning, match="cutting off its torn last line"):
        log = MetricsLog(path, epochs_done=2)
    log.append({"epoch": 3})
    assert path.read_text() == '{"epoch": 1}\n{"epoch": 2}\n{"epoch": 3}\n'
    path.write_text('{"epoch": 1}\nnot json\n{"epoch": 3}\n')
    with pytest.raises(MetricsError, match="metrics.jsonl, line 2: not a metrics row"):
        read_metrics(path)


def test_metrics_log_is_not_rewritten_and_recovers_the_row_the_checkpoint_carries(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1}\n{"epoch": 2}\n')
    stamp = path.stat()
    MetricsLog(path, epochs_done=2)  # what every resume of a finished run does
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (stamp.st_ino, stamp.st_mtime_ns, stamp.st_size)
    MetricsLog(path, epochs_done=3, last_row={"epoch": 3})  # a crash came between checkpoint and row
    assert [r["epoch"] for r in read_metrics(path)] == [1, 2, 3]
    MetricsLog(path, epochs_done=1)  # rows of epochs to be redone go, through a new file
    assert path.read_text() == '{"epoch": 1}\n' and path.stat().st_ino != stamp.st_ino


# ----------------------------------------------------------------------------- 4. what --out may hold


def test_refuses_an_out_that_holds_results_or_foreign_files(data_dir, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "metrics.jsonl").write_text('{"epoch": 1, "hard_acc": 0.5}\n')
    (results / "results.png").write_bytes(b"png")
    for resume in (False, True):
        with pytest.raises(FileExistsError, match="holds results \\(metrics.jsonl, results.png\\) but no checkpoint"):
            train(small(data_dir, results, resume=resume))
    assert sorted(p.name for p in results.iterdir()) == ["metrics.jsonl", "results.png"]  # untouched, unlocked
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"jpg")
    with pytest.raises(FileExistsError, match="not empty and holds no bintut run \\(it holds cat.jpg\\)"):
        train(small(data_dir, other))
    assert [p.name for p in other.iterdir()] == ["cat.jpg"]
    started = tmp_path / "started"
    started.mkdir()
    (started / "config.json").write_text(json.dumps(small(data_dir, started, epochs=7).to_dict()))
    with pytest.raises(ValueError, match="epochs: run has 7, now 2"):
        train(small(data_dir, started))
    with pytest.raises(ValueError, match="out must name a folder"):
        preset("smoke", out="")
    with pytest.raises(SystemExit):
        main(["train", "--preset", "smoke", "--out", ""])


# ----------------------------------------------------------------------------- 5. stalled network


@pytest.fixture
def stalled_server(monkeypatch):
    """A server on 127.0.0.1 that accepts connections and never answers; downloads time out after 1 s."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held, done = [], threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not done.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    monkeypatch.setenv("BINTUT_DOWNLOAD_TIMEOUT", "1")
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    done.set()
    thread.join(5)
    for conn in held + [server]:
        conn.close()


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


def test_reproduce_with_a_stalled_server_fails_clearly_and_writes_nothing(stalled_server, tmp_path, monkeypatch,
                                                                          capsys):
    from bintut import commands
    from bintut.data import cifar100

    monkeypatch.setattr(cifar100, "CIFAR100_URL", f"{stalled_server}/cifar-100-python.tar.gz")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(commands, "fashion_mnist_found", lambda root=None: False)  # else reproduce takes it
    monkeypatch.setenv("BINTUT_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bintut: error: CIFAR-100 could not be downloaded") and "did not answer within 1 s" in err
    assert not (tmp_path / "results").exists()  # the run folder it made for the lock is gone again


def test_imagenet_weights_from_a_stalled_server_time_out_clearly(stalled_server, tmp_path, monkeypatch, capsys):
    from torchvision.models import ResNet18_Weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(ResNet18_Weights.IMAGENET1K_V1.value, "url", f"{stalled_server}/resnet18-f37072fd.pth")
    with pytest.raises(WeightsUnavailableError, match="did not answer within 1 s.*--no-pretrained"):
        resnet18_cifar(weights="torchvision", progress=False)
    assert "downloading torchvision's ImageNet ResNet18 weights (IMAGENET1K_V1) (44.7 MiB)" in capsys.readouterr().out


def test_timm_weights_from_a_stalled_server_time_out_clearly(stalled_server, tmp_path, monkeypatch):
    pytest.importorskip("timm", reason="the timm extra is not installed")
    from huggingface_hub import constants

    from bintut import model

    monkeypatch.setattr(model, "_hub_endpoint", lambda: stalled_server)  # as $HF_ENDPOINT would
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached
    started = time.monotonic()
    with pytest.raises(WeightsUnavailableError, match="did not answer within 1 s.*--weights torchvision"):
        resnet18_cifar(weights="timm")
    assert time.monotonic() - started < 30


# ----------------------------------------------------------------------------- 6. schedules, whole range, at once


@pytest.mark.parametrize(
    "field, phases, message",
    [
        ("weight_p", [[0.5, "linear", 0, 1], [1.0, "cosine", 1, 1.2]], "weight_p: reaches 1.2 at t = 1; it must stay "
         "within \\[0.0, 1.0\\]"),
        ("act_ratio", [[0.9, "stay", 0, 0], [1.0, "circle", 0, -0.1]], "act_ratio: reaches -0.1 at t = 1"),
        ("lr", [[0.5, "stay", 1e-3, 1e-3], [1.0, "linear", 1e-3, -1e-4]], "lr: reaches -0.0001 at t = 1; it must "
         "stay at least 0"),
        ("lr", -0.001, "lr: reaches -0.001 at t = 0"),
    ],
)
def test_schedules_are_checked_over_the_whole_run_before_any_folder_is_written(field, phases, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        preset("smoke", **{field: phases})
    with pytest.raises(SystemExit) as info:
        main(["train", "--preset", "smoke", "--out", str(tmp_path / "run"), f"--{field.replace('_', '-')}",
              json.dumps(phases)])
    assert info.value.code == 2 and not (tmp_path / "run").exists()


def test_a_bare_number_is_a_constant_schedule():
    args = vars(build_parser().parse_args(["train", "--lr", "0.001", "--weight-p", "1"]))
    cfg = preset("smoke", lr=args["lr"], weight_p=args["weight_p"])
    assert cfg.lr == [[1.0, "stay", 0.001, 0.001]] and cfg.schedule("weight_p")(0.3) == 1.0


def test_every_schedule_kind_is_monotone_so_its_ends_bound_it():
    u = np.linspace(0, 1, 1001)
    for kind, shape in SHAPES.items():
        values = np.array([shape(x) for x in u])
        assert np.all(np.diff(values) >= -1e-12), kind
        assert values.min() >= min(shape(0.0), shape(1.0)) and values.max() <= max(shape(0.0), shape(1.0))


# ----------------------------------------------------------------------------- 9. planted pickles, bad arrays


class _Planted:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self):
        return open, (str(self.canary), "w")


def _marker(folder: Path, names=("train", "test", "meta"), signature="n_train=4 n_test=4 seed=0\n") -> None:
    hashes = "".join(f"sha256 {n} {hashlib.sha256((folder / n).read_bytes()).hexdigest()}\n" for n in names)
    (folder / "SYNTHETIC").write_text(signature + hashes)


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


# ----------------------------------------------------------------------------- 10. one line, not a traceback


def test_truncated_or_foreign_checkpoints_are_one_line_errors(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    cfg = small(data_dir, run, epochs=1, resume=True)
    (run / "config.json").write_text(cfg.to_json())
    save_checkpoint(run / "checkpoint.pt", {"model": {"w": torch.ones(1000)}, "config": cfg.to_dict()})
    good = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(good[: len(good) // 2])
    argv = ["train", "--preset", "smoke", "--data-root", str(data_dir), "--out", str(run), "--resume", "--epochs", "1",
            "--synthetic-train", "16", "--synthetic-test", "8", "--batch-size", "8", "--eval-batch-size", "8",
            "--no-progress", "--mix-prob", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a readable checkpoint (truncated, corrupt" in err and "delete it" in err
    (run / "checkpoint.pt").write_bytes(good)  # loads, but it is not a bintut training checkpoint
    assert main(argv) == 2
    assert "is not a bintut checkpoint (no optimizer, scaler" in capsys.readouterr().err
    (run / "checkpoint.pt").write_bytes(good[:100])
    with pytest.raises(CheckpointError, match="init_from: .*not a readable checkpoint"):
        recipe.build_model(small(data_dir, tmp_path / "other", init_from=str(run)))


def test_a_corrupt_cached_imagenet_weights_file_is_named_with_delete_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"PK\x03\x04 half a download")
    with pytest.raises(WeightsUnavailableError, match=f"{cached} cannot be read .*: delete it"):
        resnet18_cifar(weights="torchvision", progress=False)


def test_a_corrupt_cached_timm_weights_file_is_named_with_delete_it(tmp_path, monkeypatch):
    pytest.importorskip("timm", reason="the timm extra is not installed")
    from bintut import model

    cached = tmp_path / "model.safetensors"
    cached.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{trunc")
    monkeypatch.setattr(model, "_timm_file", lambda repo, progress=True: str(cached))  # what the HF cache holds
    with pytest.raises(WeightsUnavailableError, match=f"{cached} cannot be read .*: delete it"):
        resnet18_cifar(weights="timm")


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


# ----------------------------------------------------------------------------- 11. smaller ones


def test_exploding_weights_stop_the_run_though_the_loss_is_finite(data_dir, tmp_path, monkeypatch):
    real_step = recipe.train_step
    calls = {"n": 0}

    def step_then_explode(model, *args, **kwargs):
        loss = real_step(model, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:  # after the epoch's last loss: only the weights can tell
            with torch.no_grad():
                model.fc.bias[0] = 3e5
        return loss

    monkeypatch.setattr(train_mod, "train_step", step_then_explode)
    with pytest.raises(Diverged, match="fc.bias exploded \\(\\|w\\| up to 3e\\+05.*no checkpoint was written yet"):
        train(small(data_dir, tmp_path / "run", epochs=1))
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_non_finite_weights_are_divergence():
    net = torch.nn.Linear(2, 2)
    with torch.no_grad():
        net.weight[0, 0] = float("inf")
    assert guard._weights_problem(net) == "weight became non-finite"


def test_abbreviated_flags_are_errors(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--preset", "smoke", "--epoch", "2"])
    assert info.value.code == 2 and "unrecognized arguments: --epoch" in capsys.readouterr().err


def test_hard_mode_in_train_mode_keeps_the_running_maxes():
    model = binarize_(resnet18_cifar(pretrained=False)).train()
    x = torch.randn(2, 3, 32, 32)
    model(x)
    before = {n: b.clone() for n, b in model.named_buffers() if "running_max" in n}
    with hard_mode(model):
        model(3 * x)
    after = {n: b for n, b in model.named_buffers() if "running_max" in n}
    assert before.keys() == after.keys() and all(torch.equal(before[n], after[n]) for n in before)
    assert all(q.training for q in model.modules() if isinstance(q, Int8Quantizer))

"""Issue 17 (faults, round three): each fault reproduced -- a lock whose path is tampered with, a
filesystem without locks, children holding a dead run's lock, hostile download servers, a read-only
run cache, bad values and files -- with the clear error asserted and nothing lost. Servers listen on
127.0.0.1 only and every wait is bounded."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from bintut.cli import main
from bintut.files import download, lock
from bintut.files.lock import RunLock
from bintut.files.run_folder import LOCK, RunFolderError

ROOT = Path(__file__).resolve().parents[1]
RUNFOLDER = ROOT  # the checkout whose bintut the lock-holding scripts import (bintut.files: no torch)


def python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=environ, text=True, **kwargs)


# ----------------------------------------------------------------------------- 1. the run lock


def test_run_lock_keeps_excluding_whatever_happens_to_its_record(tmp_path):
    """1a: deleting or renaming over .lock let a second run in, and the first run's release deleted
    the second run's lock. The lock is on the folder itself; a run removes only its own record."""
    out = tmp_path / "run"
    first = RunLock(out).acquire()
    (out / LOCK).unlink()  # deleted during the run
    with pytest.raises(RunFolderError, match="in use by another process"):
        RunLock(out).acquire()
    planted = tmp_path / "planted"
    planted.write_text("4242 elsewhere 2026-11-29T10:00:00 feed\n")
    os.replace(planted, out / LOCK)  # renamed over
    with pytest.raises(RunFolderError, match="in use by PID 4242"):
        RunLock(out).acquire()
    first.release()
    assert (out / LOCK).read_text().startswith("4242 ")  # not this run's record: left alone
    second = RunLock(out).acquire()  # free now; the record it found is reported as stale
    assert second.stale.startswith("4242 ")
    second.release()
    assert sorted(p.name for p in out.iterdir()) == []


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


FORK_AND_HOLD = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from bintut.files.lock import RunLock  # no torch: starts at once
RunLock(sys.argv[2]).acquire()
ready, tell = os.pipe()
child = os.fork()  # what a DataLoader worker is
if child == 0:  # fork() returns here after the at-fork hooks ran: say so, so the test never races them
    os.write(tell, b"x")
    time.sleep(30)
    os._exit(0)
os.read(ready, 1)
print(child, flush=True)
time.sleep(60)
"""


def test_children_of_a_killed_run_do_not_keep_its_folder_locked(tmp_path):
    """1c: data-loader workers inherited the lock, so a restart right after a SIGKILL was refused."""
    out = tmp_path / "run"
    holder = python(FORK_AND_HOLD, str(RUNFOLDER), str(out), stdout=subprocess.PIPE)
    child = int(holder.stdout.readline())
    try:
        holder.kill()
        holder.wait(10)
        os.kill(child, 0)  # the worker still runs
        lock = RunLock(out).acquire()  # ... and holds nothing
        assert lock.stale.split()[0] == str(holder.pid)
        lock.release()
    finally:
        os.kill(child, signal.SIGKILL)
        time.sleep(0.05)


# ----------------------------------------------------------------------------- 3. broken or hostile servers

HOSTILE = b"\x1b[2J\x1b]0;owned\x07HTTP/1.1 \x00\xff garbage\r\n\x1b[31mred\r\n\r\n"


@pytest.fixture
def server():
    """A server on 127.0.0.1; ``serve(reply)`` sets what each connection gets: bytes, or a function of the
    socket. Stops (and closes every connection) after the test."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.1)
    state = {"reply": b""}
    done = threading.Event()
    conns = []

    def run() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conns.append(conn)
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    def answer(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.settimeout(5)
            conn.recv(65536)  # the request (or the proxy's CONNECT)
            reply = state["reply"]
            if callable(reply):
                reply(conn, done)
            else:
                conn.sendall(reply)
        with contextlib.suppress(OSError):
            conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def serve(reply) -> str:
        state["reply"] = reply
        return f"http://127.0.0.1:{listener.getsockname()[1]}"

    yield serve
    done.set()
    thread.join(5)
    for conn in conns + [listener]:
        conn.close()


def trickle(conn: socket.socket, done: threading.Event) -> None:
    """A valid reply header, then one byte every 0.05 s: never silent for long, never finishing."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 177000000\r\n\r\n")
    while not done.wait(0.05):
        conn.sendall(b"x")


@pytest.mark.parametrize("route", ["direct", "https_proxy"])
def test_a_server_replying_garbage_is_one_clean_line(server, route, tmp_path, monkeypatch, capsys):
    """3a: random bytes (directly or from a proxy) were a raw BadStatusLine traceback; whatever a server
    sends reaches no message unfiltered."""
    url = server(HOSTILE)
    if route == "https_proxy":
        monkeypatch.setenv("https_proxy", url)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.setattr(urllib.request, "_opener", None)  # urlopen reads the proxy variables once
        url = "https://cifar.example/cifar-100-python.tar.gz"
    else:
        url += "/cifar-100-python.tar.gz"
    monkeypatch.setenv("BINTUT_DOWNLOAD_TIMEOUT", "5")
    with pytest.raises(download.DownloadError, match="failed: the server's reply is not HTTP") as info:
        download.download(url, tmp_path / "cifar-100-python.tar.gz", "CIFAR-100", progress=False)
    message = str(info.value)
    assert all(c.isprintable() for c in message), message
    assert list(tmp_path.iterdir()) == []


def test_a_trickling_server_is_given_up_and_nothing_is_left(server, tmp_path, monkeypatch):
    """3b: one byte every 0.05 s kept a download alive forever (the timeout covered each read, not
    progress). Now too little progress over the timeout window is a stall."""
    url = server(trickle) + "/resnet18-f37072fd.pth"
    monkeypatch.setenv("BINTUT_DOWNLOAD_TIMEOUT", "0.5")
    started = time.monotonic()
    with pytest.raises(download.DownloadError, match="sent only .* bytes in 0 s|sent only .* bytes in 1 s"):
        download.download(url, tmp_path / "w.pth", "weights", progress=False)
    assert time.monotonic() - started < 5
    assert list(tmp_path.iterdir()) == []


DOWNLOAD_ALONE = """
import sys
from bintut.files import download
download.download(sys.argv[1], sys.argv[2] + "/cifar-100-python.tar.gz", "CIFAR-100", progress=False)
"""
DOWNLOAD_IN_A_CLI = """
import sys
from bintut.data import choice as data
from bintut.data import cifar100
from bintut.cli import main
cifar100.CIFAR100_URL = sys.argv[1]
sys.exit(main(["train", "--preset", "smoke", "--data", "cifar100", "--download", "--data-root", sys.argv[2],
               "--out", sys.argv[3], "--no-progress"]))
"""


def test_sigterm_or_kill_during_a_download_leaves_no_partial_file(server, tmp_path):
    """3b/5h: a SIGTERM during the download (outside the training loop) left its temporary file; a kill
    leaves it too, and the next download of the same file removes it."""
    url = server(trickle) + "/cifar-100-python.tar.gz"
    root, out = tmp_path / "data", tmp_path / "run"

    def start_and_wait_for_the_partial_file(code: str) -> subprocess.Popen:
        proc = python(code, url, str(root), str(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not list(root.glob(".cifar-100-python.tar.*")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        return proc

    proc = start_and_wait_for_the_partial_file(DOWNLOAD_IN_A_CLI)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and "Traceback" not in err, err
    assert list(root.iterdir()) == [] and not out.exists()

    proc = start_and_wait_for_the_partial_file(DOWNLOAD_ALONE)  # without torch: quicker to start
    proc.kill()
    proc.wait(10)
    left = list(root.glob(".cifar-100-python.tar.*"))
    assert len(left) == 1  # a kill cannot clean up ...
    assert download.remove_stale_temporaries(root / "cifar-100-python.tar.gz") == left  # ... the next download does
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("value", ["inf", " 2.5 "])
def test_download_timeout_inf_means_no_limit(server, value, tmp_path, monkeypatch):
    """3c: BINTUT_DOWNLOAD_TIMEOUT=inf was a traceback."""
    body = b"weights" * 1000
    url = server(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    monkeypatch.setenv("BINTUT_DOWNLOAD_TIMEOUT", value)
    dest = download.download(url + "/w.bin", tmp_path / "w.bin", "weights", progress=False,
                             md5=hashlib.md5(body).hexdigest())
    assert dest.read_bytes() == body and download.timeout() == float(value)


@pytest.mark.parametrize("value", ["soon", "-3", "nan", "\x1b[31m"])
def test_a_bad_download_timeout_is_one_line_naming_the_variable(value, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BINTUT_DOWNLOAD_TIMEOUT", value)
    out = tmp_path / "run"
    assert main(["train", "--preset", "smoke", "--data", "cifar100", "--download", "--data-root",
                 str(tmp_path / "data"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bintut: error: $BINTUT_DOWNLOAD_TIMEOUT must be") and err.count("\n") == 1
    assert "\x1b" not in err and not out.exists()


# ----------------------------------------------------------------------------- 4. the notebooks' run cache


@pytest.fixture
def cached(smoke_run, tmp_path, monkeypatch):
    """A copy of the smoke run in a fresh run cache ($BINTUT_RUNS), under the name load_or_train gives it."""
    from bintut.training.runs import run_name

    cache = tmp_path / "cache"
    folder = cache / run_name(smoke_run.config)
    shutil.copytree(smoke_run.out, folder)
    monkeypatch.setenv("BINTUT_RUNS", str(cache))
    return smoke_run.config, folder


def test_a_finished_stage_is_read_from_a_read_only_cache(cached, monkeypatch):
    """4a: the cache opened its lock file for writing before reading (a shared read-only cache failed)."""
    from bintut.training import runs

    cfg, folder = cached
    cache = folder.parent
    before = sorted(p.name for p in cache.iterdir())
    monkeypatch.setattr(runs, "_locked", lambda path: pytest.fail("took the training lock to read a finished run"))
    for path in (folder, cache):
        path.chmod(0o555)
    try:
        run = runs.load_or_train(cfg)
    finally:
        for path in (folder, cache):
            path.chmod(0o755)
    assert run.final["epoch"] == cfg.epochs and sorted(p.name for p in cache.iterdir()) == before


def test_a_run_cache_that_is_a_file_is_named(tmp_path, monkeypatch):
    """4b: BINTUT_RUNS naming a file gave a raw FileExistsError that did not name the variable."""
    from bintut.config import preset
    from bintut.training.runs import RunCacheError, load_or_train

    (tmp_path / "runs").write_text("not a folder")
    monkeypatch.setenv("BINTUT_RUNS", str(tmp_path / "runs"))
    with pytest.raises(RunCacheError, match=r"\$BINTUT_RUNS = .*runs is a file, not a folder"):
        load_or_train(preset("smoke"))


def test_a_damaged_cached_stage_gets_advice_for_a_notebook(cached):
    """4c: the advice for a corrupt cached stage (delete its checkpoint) led to a second error, about --out."""
    from bintut.training.runs import RunCacheError, load_or_train

    cfg, folder = cached
    (folder / "checkpoint.pt").write_bytes(b"PK\x03\x04 torn")
    advice = rf"cached run {folder} is damaged .*delete that whole folder .*shutil.rmtree.*run this cell again"
    with pytest.raises(RunCacheError, match=advice):
        load_or_train(cfg)
    (folder / "checkpoint.pt").unlink()  # what the old advice said to do
    with pytest.raises(RunCacheError, match=advice) as info:
        load_or_train(cfg)
    assert "--out" not in str(info.value) and (folder / "metrics.jsonl").is_file()  # nothing deleted for the user


# ----------------------------------------------------------------------------- 5. files and values


@pytest.mark.parametrize("value", ["[5]", "[1.5]", "[null]", '[[1, [1], 0, 0]]', "[[1, {}, 0, 0]]", "1e999",
                                   "1" + "0" * 400])
def test_a_malformed_schedule_is_one_line_naming_the_field(value, capsys):
    """5a: --weight-p '[5]' (and [1.5], [null], ...) crashed the validator while it built its message."""
    with pytest.raises(SystemExit):
        main(["train", "--preset", "smoke", "--weight-p", value])
    err = capsys.readouterr().err
    assert "error: weight_p: " in err and "Traceback" not in err


def _edited_copy(run, folder: Path, edit) -> Path:
    from bintut.files.checkpoint import load_checkpoint, save_checkpoint

    shutil.copytree(run.out, folder)
    state = load_checkpoint(folder / "checkpoint.pt", required=())
    edit(state)
    save_checkpoint(folder / "checkpoint.pt", state)
    return folder


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


def test_a_checkpoint_from_before_a_setting_existed_resumes_with_a_note(capsys):
    """5c: a checkpoint written before a config field existed blamed a setting the user did not change."""
    from bintut.config import preset
    from bintut.training.resume import check_resume

    cfg = preset("smoke")
    saved = cfg.to_dict()
    del saved["mix_draw"]  # a run saved before the field was added
    check_resume(cfg, saved)
    assert "predates the setting(s) mix_draw (now 'reference'); continuing" in capsys.readouterr().out
    saved["epochs"] = 99
    with pytest.raises(ValueError, match=r"differs from the saved run \(epochs: run has 99, now 3\)$"):
        check_resume(cfg, saved)


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


@pytest.fixture(scope="module")
def good_export(smoke_run, tmp_path_factory):
    from bintut.integer.fold import export_resnet

    return export_resnet(smoke_run.model).save(tmp_path_factory.mktemp("export") / "good.npz")


@pytest.mark.parametrize("edit, message", [
    (lambda h, f: h["layers"][1].update(stride=0), r"layer1\.0\.conv1\.stride is 0"),
    (lambda h, f: h["blocks"][0].update(identity_shift=200), "block 0: identity multiplier .* or shift 200"),
    (lambda h, f: h.update(num_classes="100"), "num_classes is '100'"),
    (lambda h, f: h["layers"][0].pop("kernel"), "the header is malformed"),
    (lambda h, f: h.update(blocks={}), "blocks are not a list"),
    (lambda h, f: f.update({"conv1.shift": np.full(f["conv1.shift"].shape, 200, np.uint8)}),
     r"conv1\.shift lies in \[200, 200\], outside \[1, 62\]"),
    (lambda h, f: f.update({"fc.m": f["fc.m"].astype(np.float64)}), r"fc\.m has dtype float64"),
])
def test_an_export_with_recomputed_checksums_is_checked_for_structure_and_ranges(good_export, tmp_path, edit,
                                                                                  message):
    """5e: a malformed export whose checksums were recomputed gave KeyError/TypeError/ZeroDivisionError, or
    ran with a shift of 200 (undefined behaviour in the generated C)."""
    import hashlib as hl
    import json

    from bintut.integer.format import ExportError, load_export

    with np.load(good_export) as npz:
        files = {k: npz[k] for k in npz.files}
    header = json.loads(str(files["header"]))
    edit(header, files)
    header["sha256"] = {k: hl.sha256(np.ascontiguousarray(v).tobytes()).hexdigest() for k, v in files.items()
                        if k not in ("header", "header_sha256")}
    text = json.dumps(header)
    files["header"], files["header_sha256"] = np.array(text), np.array(hl.sha256(text.encode()).hexdigest())
    np.savez(tmp_path / "bad.npz", **files)
    with pytest.raises(ExportError, match=message):
        load_export(tmp_path / "bad.npz")


@pytest.mark.parametrize("flag, value, message", [
    ("--seed", "-1", "seed must be between 0 and"), ("--seed", str(2**70), "seed must be between 0 and"),
    ("--mixup-alpha", "-0.5", "mixup_alpha must be a finite number above 0"),
    ("--cutmix-alpha", "nan", "cutmix_alpha must be a finite number above 0"),
    ("--epochs", "1" + "0" * 30, "epochs must be between 1 and"),
    ("--synthetic-train", str(10**12), "synthetic_train must be between 1 and"),
    ("--out", "r" * 300, "--out: the name rrr"),
])
def test_values_out_of_range_are_one_line_before_any_work(flag, value, message, tmp_path, monkeypatch, capsys):
    """5f: --seed -1 or huge seeds, a negative mixup alpha, huge integers, a 300-character --out: tracebacks."""
    monkeypatch.chdir(tmp_path)
    with contextlib.suppress(SystemExit):
        assert main(["train", "--preset", "smoke", "--data-root", str(tmp_path / "data"), flag, value]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_engine_takes_lists_and_tensors(smoke_run):
    """5g: the engine validated np.asarray(images) but then used the original object (a list, a tensor)."""
    import torch

    from bintut.integer.engine import IntegerResNet
    from bintut.integer.fold import export_resnet

    engine = IntegerResNet(export_resnet(smoke_run.model), integer_only=True)
    images = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    expected = engine(images)
    tensor = torch.from_numpy(images).requires_grad_()
    for given in (images.tolist(), tensor):
        assert np.array_equal(engine(given), expected)
    with pytest.raises(ValueError, match="expected an array of images, got list"):
        engine([[1, 2], [3]])


def test_skipped_optimizer_steps_are_counted_in_the_metrics(data_dir, tmp_path, monkeypatch):
    """5i: with fp16 + GradScaler, steps skipped for inf/NaN gradients were reported nowhere."""
    import torch

    from bintut.files.metrics import read_metrics
    from bintut.training import loop as train_mod
    from bintut.training import recipe

    from .conftest import tiny

    real_scaler, real_loss = torch.amp.GradScaler, recipe.loss_fn
    monkeypatch.setattr(train_mod.torch.amp, "GradScaler", lambda device, enabled: real_scaler(device, enabled=True))
    calls = {"n": 0}

    class InfGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return grad * float("inf")

    def loss_with_one_inf_gradient(*args, **kwargs):
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        return InfGradient.apply(loss) if calls["n"] == 2 else loss  # the loss stays finite, the step is skipped

    monkeypatch.setattr(recipe, "loss_fn", loss_with_one_inf_gradient)
    cfg = tiny(data_dir, tmp_path / "run", synthetic_train=16, synthetic_test=8, batch_size=8, eval_batch_size=8,
               mix_prob=0.0, epochs=2)
    train_mod.train(cfg)
    assert [row["skipped_steps"] for row in read_metrics(tmp_path / "run")] == [1, 0]

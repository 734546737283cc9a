"""Issue 17 (faults, round three): each fault reproduced -- a lock whose path is tampered with, a
filesystem without locks, children holding a dead run's lock, hostile download servers, a read-only
run cache, bad values and files -- with the clear error asserted and nothing lost. Servers listen on
127.0.0.1 only and every wait is bounded."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from bintut import download, runfolder
from bintut.cli import main
from bintut.runfolder import LOCK, RunFolderError, RunLock

ROOT = Path(__file__).resolve().parents[1]
RUNFOLDER = ROOT / "bintut" / "runfolder.py"


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

    monkeypatch.setattr(runfolder.fcntl, "flock", no_locks)
    out = tmp_path / "nfs" / "run"
    assert main(["train", "--preset", "smoke", "--out", str(out), "--data-root", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bintut: error: --out" in err and "without file locks" in err
    assert not (tmp_path / "nfs").exists() and not (tmp_path / "data").exists()


FORK_AND_HOLD = """
import importlib.util, os, sys, time
spec = importlib.util.spec_from_file_location("runfolder", sys.argv[1])
runfolder = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runfolder)
runfolder.RunLock(sys.argv[2]).acquire()
child = os.fork()  # what a DataLoader worker is
if child == 0:
    time.sleep(30)
    os._exit(0)
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
from bintut import download
download.download(sys.argv[1], sys.argv[2] + "/cifar-100-python.tar.gz", "CIFAR-100", progress=False)
"""
DOWNLOAD_IN_A_CLI = """
import sys
from bintut import data
from bintut.cli import main
data.CIFAR100_URL = sys.argv[1]
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

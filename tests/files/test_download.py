"""bintut.files.download: the timeout covers a reply's status line and headers, not only its body -- for
CIFAR-100, torchvision's and timm's weights alike. The servers listen on 127.0.0.1 only, send at most a
few hundred bytes, and stop themselves."""

from __future__ import annotations

import contextlib
import hashlib
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from bintut.cli import main
from bintut.files import download

from ..conftest import one_line
from .conftest import python

HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n" + b"X-Pad: " + b"p" * 200 + b"\r\n\r\n"


@pytest.fixture
def header_trickler(monkeypatch):
    """A server that sends a valid status line and headers one byte every 0.2 s (never a silent second, so
    a per-read timeout of 1 s never fires); it stops after 60 s or at the end of the test."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.1)
    done = threading.Event()
    threads = []

    def answer(conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            conn.settimeout(5)
            conn.recv(65536)
            for byte in HEADERS:
                if done.wait(0.2):
                    return
                conn.sendall(bytes([byte]))

    def serve() -> None:
        stop = time.monotonic() + 60
        while not done.is_set() and time.monotonic() < stop:
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            thread = threading.Thread(target=answer, args=(conn,), daemon=True)
            thread.start()
            threads.append(thread)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    monkeypatch.setenv("BINTUT_DOWNLOAD_TIMEOUT", "1")
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    done.set()
    for thread in [server, *threads]:
        thread.join(5)
    listener.close()


def test_headers_sent_a_byte_at_a_time_time_out(header_trickler, tmp_path):
    """Issue 24, kind 4: the stall check started only after the headers, so a server that trickled them hung
    the download; the timeout now bounds connecting and the whole header phase."""
    started = time.monotonic()
    with pytest.raises(download.DownloadError, match="did not answer within 1 s .*headers were still incomplete"):
        download.download(header_trickler + "/cifar-100-python.tar.gz", tmp_path / "c.tar.gz", "CIFAR-100",
                          progress=False)
    assert time.monotonic() - started < 4
    assert list(tmp_path.iterdir()) == []


def test_torchvision_weights_from_a_header_trickler_time_out(header_trickler, tmp_path, monkeypatch):
    from torchvision.models import ResNet18_Weights

    from bintut.model import WeightsUnavailableError, resnet18_cifar

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(ResNet18_Weights.IMAGENET1K_V1.value, "url", f"{header_trickler}/resnet18-f37072fd.pth")
    started = time.monotonic()
    with pytest.raises(WeightsUnavailableError, match="did not answer within 1 s.*--no-pretrained"):
        resnet18_cifar(weights="torchvision", progress=False)
    assert time.monotonic() - started < 4


def test_timm_weights_from_a_header_trickler_time_out(header_trickler, tmp_path, monkeypatch):
    """timm's download had per-read timeouts only; it now goes through bintut's downloader into the Hugging
    Face cache, at a pinned revision checked against its whole sha256."""
    pytest.importorskip("timm", reason="the timm extra is not installed")
    from huggingface_hub import constants

    from bintut import model
    from bintut.model import WeightsUnavailableError, resnet18_cifar

    monkeypatch.setattr(model, "_hub_endpoint", lambda: header_trickler)  # as $HF_ENDPOINT would
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached
    started = time.monotonic()
    with pytest.raises(WeightsUnavailableError, match="did not answer within 1 s.*--weights torchvision"):
        resnet18_cifar(weights="timm")
    assert time.monotonic() - started < 4
    assert not any(p.is_file() for p in tmp_path.rglob("*"))  # no partial file in the cache


def serve_once(body: bytes, length: int | None = None) -> tuple[str, threading.Thread, socket.socket]:
    """A server on 127.0.0.1 answering one request with ``body`` (announcing ``length`` bytes); it waits at most
    10 s for it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(10)

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (length or len(body)) + body)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/w.pth", thread, listener


def test_a_download_that_is_not_the_published_file_is_refused(tmp_path, monkeypatch):
    """A full sha256, not a 32-bit prefix that a hostile server can match in minutes."""
    monkeypatch.setenv("BINTUT_DOWNLOAD_TIMEOUT", "5")
    url, thread, listener = serve_once(b"forged weights")
    with pytest.raises(download.DownloadError, match="not the published file .*expected f37072fd"):
        download.download(url, tmp_path / "w.pth", "weights", progress=False, sha256="f37072fd" + "0" * 56)
    thread.join(5)
    listener.close()
    assert list(tmp_path.iterdir()) == []


def test_a_file_of_known_size_stops_when_the_server_sends_more(tmp_path, monkeypatch):
    """A server that sends fast and never stops would fill the disk before the checksum could refuse it."""
    monkeypatch.setenv("BINTUT_DOWNLOAD_TIMEOUT", "5")
    url, thread, listener = serve_once(b"x" * 5000)
    with pytest.raises(download.DownloadError, match="sent more than the file's 1,000 bytes"):
        download.download(url, tmp_path / "w.pth", "weights", 1000, progress=False, sha256="0" * 64)
    thread.join(5)
    listener.close()
    assert list(tmp_path.iterdir()) == []


def test_the_deadline_is_met_once_the_headers_arrive():
    deadline = download.HeaderDeadline(0.05)
    deadline.met()
    time.sleep(0.2)
    assert not deadline.expired
    late = download.HeaderDeadline(0.05)
    time.sleep(0.3)
    assert late.expired
    late.met()
    assert not download.HeaderDeadline(float("inf")).expired


ROOT = Path(__file__).resolve().parents[2]


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

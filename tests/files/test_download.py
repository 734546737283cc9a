"""bintut.files.download: the timeout covers a reply's status line and headers, not only its body -- for
CIFAR-100, torchvision's and timm's weights alike. The servers listen on 127.0.0.1 only, send at most a
few hundred bytes, and stop themselves."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from bintut.files import download

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

"""Downloads that say what they fetch and never hang: a timeout on every socket, a progress bar.

Every download of bintut (CIFAR-100, the torchvision and timm ImageNet weights) prints what it
fetches, from where, into where and how large, shows a progress bar, and gives up when the
network stalls for ``$BINTUT_DOWNLOAD_TIMEOUT`` seconds (default 60) -- with the same advice as
when there is no network at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tqdm.auto import tqdm

from .runfolder import replacing

TIMEOUT_ENV = "BINTUT_DOWNLOAD_TIMEOUT"
DEFAULT_TIMEOUT = 60.0
CHUNK = 1 << 20


class DownloadError(OSError):
    """A download failed: no network, a stalled server (timeout), or a file that does not match its checksum."""


def timeout() -> float:
    """Seconds a download may wait for the network before giving up (``$BINTUT_DOWNLOAD_TIMEOUT``)."""
    value = os.environ.get(TIMEOUT_ENV, "")
    try:
        seconds = float(value) if value else DEFAULT_TIMEOUT
    except ValueError:
        raise ValueError(f"${TIMEOUT_ENV} must be a number of seconds, got {value!r}") from None
    if not seconds > 0:
        raise ValueError(f"${TIMEOUT_ENV} must be positive, got {value!r}")
    return seconds


def size_text(size: int | None) -> str:
    return "size unknown" if size is None else f"{size / 2**20:,.1f} MiB"


def announce(what: str, url: str, dest: str | os.PathLike, size: int | None) -> None:
    print(f"bintut: downloading {what} ({size_text(size)}) from {url} into {dest}", flush=True)


@contextlib.contextmanager
def socket_timeout(seconds: float | None = None) -> Iterator[float]:
    """For third-party downloaders (torch.hub) that open sockets without a timeout: a default for the call."""
    seconds = timeout() if seconds is None else seconds
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield seconds
    finally:
        socket.setdefaulttimeout(previous)


def timed_out(err: BaseException | None) -> bool:
    """Whether ``err`` (or what caused it) is a timeout, whichever library raised it."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        reason = getattr(err, "reason", None)
        if isinstance(err, TimeoutError) or isinstance(reason, TimeoutError) or "Timeout" in type(err).__name__:
            return True
        err = err.__cause__ or err.__context__
    return False


def describe(err: BaseException, seconds: float) -> str:
    """A network error in words; a stall says how long it waited."""
    if timed_out(err):
        return f"the server did not answer within {seconds:g} s (${TIMEOUT_ENV})"
    return str(getattr(err, "reason", err))


def download(
    url: str, dest: str | os.PathLike, what: str, size: int | None = None, md5: str | None = None,
    progress: bool = True,
) -> Path:
    """Fetch ``url`` into ``dest`` (atomically: a partial file never takes its name) and check its md5.

    ``size`` (bytes, when the caller knows it) is announced before connecting; the bar takes the
    server's Content-Length.
    Raises :class:`DownloadError` on any network failure, a stall of :func:`timeout` seconds
    included, and on a checksum mismatch.
    """
    dest = Path(dest)
    seconds = timeout()
    dest.parent.mkdir(parents=True, exist_ok=True)
    request = urllib.request.Request(url, headers={"User-Agent": "bintut"})
    announce(what, url, dest, size)
    try:
        with urllib.request.urlopen(request, timeout=seconds) as response, replacing(dest) as tmp:
            length = response.headers.get("Content-Length")
            size = int(length) if length else size
            digest = hashlib.md5(usedforsecurity=False)
            with open(tmp, "wb") as f, tqdm(total=size, unit="B", unit_scale=True, desc=dest.name,
                                            disable=not progress) as bar:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            if md5 is not None and digest.hexdigest() != md5:
                raise DownloadError(f"{url} arrived damaged (md5 {digest.hexdigest()}, expected {md5})")
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        raise DownloadError(f"downloading {url} failed: {describe(err, seconds)}") from err
    return dest

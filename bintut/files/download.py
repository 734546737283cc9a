"""Downloads that say what they fetch and never hang: a stall timeout on progress, a progress bar.

Every download of bintut (CIFAR-100, the torchvision and timm ImageNet weights) prints what it
fetches, from where, into where and how large, shows a progress bar, and gives up when the
network stalls -- no byte for ``$BINTUT_DOWNLOAD_TIMEOUT`` seconds (default 60; ``inf`` for no
limit), or less than :data:`MIN_RATE` bytes per second over such a window (a server that trickles)
-- with the same advice as when there is no network at all. Whatever a server sends, its text
reaches a message only through :func:`printable`. A partial file never takes the file's name; a
kill that leaves one behind is cleaned up by the next download of the same file.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import math
import os
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tqdm.auto import tqdm

from bintut.errors import BintutError
from bintut.files.atomic import remove_stale_temporaries, replacing, storage_error

TIMEOUT_ENV = "BINTUT_DOWNLOAD_TIMEOUT"

DEFAULT_TIMEOUT = 60.0

CHUNK = 1 << 20

MIN_RATE = 1024  # bytes per second, averaged over a timeout window: slower than this is a stall


class DownloadError(OSError, BintutError):
    """A download failed: no network, a stalled or broken server, or a file that does not match its checksum."""


def timeout() -> float:
    """Seconds a download may make no progress before giving up (``$BINTUT_DOWNLOAD_TIMEOUT``; ``inf``: never).

    Raises ValueError naming the variable for anything but a positive number or ``inf``.
    """
    value = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        seconds = float(value) if value else DEFAULT_TIMEOUT
    except ValueError:
        raise ValueError(f"${TIMEOUT_ENV} must be a number of seconds (or inf for no limit), got "
                         f"{printable(value)!r}") from None
    if not seconds > 0:
        raise ValueError(f"${TIMEOUT_ENV} must be positive (or inf for no limit), got {printable(value)!r}")
    return seconds


def socket_seconds(seconds: float) -> float | None:
    """A timeout as sockets and HTTP libraries take it: None for no limit."""
    return None if math.isinf(seconds) else seconds


def printable(text: object, limit: int = 200) -> str:
    """``text`` safe to print: control and other non-printable characters as '?', at most ``limit`` characters."""
    text = "".join(c if c.isprintable() else "?" for c in str(text))
    return text if len(text) <= limit else text[:limit] + "..."


def size_text(size: int | None) -> str:
    return "size unknown" if size is None else f"{size / 2**20:,.1f} MiB"


def announce(what: str, url: str, dest: str | os.PathLike, size: int | None) -> None:
    print(f"bintut: downloading {what} ({size_text(size)}) from {printable(url, 500)} into {dest}", flush=True)


@contextlib.contextmanager
def socket_timeout(seconds: float | None = None) -> Iterator[float]:
    """For third-party downloaders (torch.hub) that open sockets without a timeout: a default for the call."""
    seconds = timeout() if seconds is None else seconds
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(socket_seconds(seconds))
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
    """A network error in words (the server's own text filtered through :func:`printable`)."""
    if isinstance(err, Stalled):
        return str(err)
    if timed_out(err):
        return f"the server did not answer within {seconds:g} s (${TIMEOUT_ENV})"
    if isinstance(err, http.client.HTTPException):
        return f"the server's reply is not HTTP ({type(err).__name__}: {printable(err, 80)})"
    return printable(getattr(err, "reason", None) or err)


class Stalled(TimeoutError):
    """The transfer went on, but too slowly to finish: fewer than MIN_RATE bytes/s over a timeout window."""


NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, ssl.SSLError,
                  socket.gaierror)


def _network_failure(err: BaseException) -> bool:
    """Whether an error came from the network or the server (not from writing the local file)."""
    if isinstance(err, NETWORK_ERRORS):
        return True
    # http.client raises plain OSErrors too (a proxy's refused tunnel); local file errors carry a file name
    return isinstance(err, OSError) and err.filename is None and storage_error(err) is None


def copy_with_progress(response, f, digest, bar, seconds: float, clock=time.monotonic) -> None:
    """Copy ``response`` into ``f`` as bytes arrive; raise :class:`Stalled` when fewer than ``MIN_RATE``
    bytes per second arrived over a window of ``seconds`` (each read waits at most ``seconds`` itself)."""
    read = getattr(response, "read1", response.read)  # read1: whatever has arrived, not a full chunk
    window_start, window_bytes = clock(), 0
    while chunk := read(CHUNK):
        f.write(chunk)
        digest.update(chunk)
        bar.update(len(chunk))
        window_bytes += len(chunk)
        elapsed = clock() - window_start
        if elapsed >= seconds:
            if window_bytes < MIN_RATE * elapsed:
                raise Stalled(f"the server sent only {window_bytes:,} bytes in {elapsed:.0f} s, too slow to finish "
                              f"(less than {MIN_RATE:,} bytes/s; ${TIMEOUT_ENV} = {seconds:g} s)")
            window_start, window_bytes = clock(), 0


def download(
    url: str, dest: str | os.PathLike, what: str, size: int | None = None, md5: str | None = None,
    progress: bool = True, sha256_prefix: str | None = None,
) -> Path:
    """Fetch ``url`` into ``dest`` (atomically: a partial file never takes its name) and check its checksum.

    ``size`` (bytes, when the caller knows it) is announced before connecting; the bar takes the
    server's Content-Length. ``md5``: the whole hex digest; ``sha256_prefix``: the leading hex
    digits of the sha256 (torch.hub's file names carry them).
    Raises :class:`DownloadError` on any network failure or broken reply, a stall (see the module)
    included, and on a checksum mismatch; a full disk stays a
    :class:`~bintut.files.run_folder.StorageFullError`.
    """
    dest = Path(dest)
    seconds = timeout()
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(dest)  # what a download killed outright left behind
    request = urllib.request.Request(url, headers={"User-Agent": "bintut"})
    announce(what, url, dest, size)
    try:
        with urllib.request.urlopen(request, timeout=socket_seconds(seconds)) as response, replacing(dest) as tmp:
            length = response.headers.get("Content-Length", "")
            size = int(length) if length.strip().isdigit() else size
            digest = hashlib.md5(usedforsecurity=False) if md5 is not None else hashlib.sha256()
            with open(tmp, "wb") as f, tqdm(total=size, unit="B", unit_scale=True, desc=dest.name,
                                            disable=not progress) as bar:
                copy_with_progress(response, f, digest, bar, seconds)
            expected = md5 if md5 is not None else sha256_prefix
            if expected is not None and not digest.hexdigest().startswith(expected):
                raise DownloadError(f"{printable(url, 500)} arrived damaged ({digest.name} {digest.hexdigest()}, "
                                    f"expected {expected})")
    except DownloadError:
        raise
    except Exception as err:
        if not _network_failure(err):
            raise
        raise DownloadError(f"downloading {printable(url, 500)} failed: {describe(err, seconds)}") from err
    return dest

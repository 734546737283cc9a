"""Downloads that say what they fetch and never hang: a stall timeout on progress, a progress bar.

Every download of bintut (CIFAR-100, the torchvision and timm ImageNet weights) prints what it
fetches, from where, into where and how large, shows a progress bar, and gives up when the
network stalls -- no byte for ``$BINTUT_DOWNLOAD_TIMEOUT`` seconds (default 60; ``inf`` for no
limit), or less than :data:`MIN_RATE` bytes per second over such a window (a server that trickles)
-- with the same advice as when there is no network at all. The reply's status line and headers must all
arrive within that time too (:class:`HeaderDeadline`: a server that sends them a byte at a time is given up,
redirects included). Whatever a server sends, its text
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
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from bintut.errors import BintutError
from bintut.files.atomic import remove_stale_temporaries, replacing, storage_error

TIMEOUT_ENV = "BINTUT_DOWNLOAD_TIMEOUT"

DEFAULT_TIMEOUT = 60.0

CHUNK = 1 << 20

MAX_TIMEOUT = 1e9  # seconds (31 years): a socket's timeout must fit the platform's time_t and timeval

MIN_RATE = 1024  # bytes per second, averaged over a timeout window: slower than this is a stall


class DownloadError(OSError, BintutError):
    """A download failed: no network, a stalled or broken server, or a file that does not match its checksum."""


def timeout() -> float:
    """Seconds a download may make no progress before giving up (``$BINTUT_DOWNLOAD_TIMEOUT``; ``inf``: never).

    Raises ValueError naming the variable for anything but a positive number up to MAX_TIMEOUT, or ``inf``.
    """
    value = os.environ.get(TIMEOUT_ENV, "").strip()
    try:
        seconds = float(value) if value else DEFAULT_TIMEOUT
    except ValueError:
        raise ValueError(f"${TIMEOUT_ENV} must be a number of seconds (or inf for no limit), got "
                         f"{printable(value)!r}") from None
    if not seconds > 0:
        raise ValueError(f"${TIMEOUT_ENV} must be positive (or inf for no limit), got {printable(value)!r}")
    if seconds > MAX_TIMEOUT and not math.isinf(seconds):  # sockets and clocks overflow far below 1e300
        raise ValueError(f"${TIMEOUT_ENV} must be at most {MAX_TIMEOUT:g} seconds (or inf for no limit), got "
                         f"{printable(value)!r}")
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


def copy_with_progress(response, f, digest, bar, seconds: float, clock=time.monotonic,
                       limit: int | None = None) -> None:
    """Copy ``response`` into ``f`` as bytes arrive; raise :class:`Stalled` when fewer than ``MIN_RATE``
    bytes per second arrived over a window of ``seconds`` (each read waits at most ``seconds`` itself), and
    DownloadError when more than ``limit`` bytes arrive (a file of known size: a server that never stops)."""
    read = getattr(response, "read1", response.read)  # read1: whatever has arrived, not a full chunk
    window_start, window_bytes, total = clock(), 0, 0
    while chunk := read(CHUNK):
        total += len(chunk)
        if limit is not None and total > limit:
            raise DownloadError(f"the server sent more than the file's {limit:,} bytes: not the published file")
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


class HeaderDeadline:
    """An overall deadline for the part of a download that per-read timeouts cannot bound: connecting and
    receiving the status line and headers (of every redirect too). Each connection opened through
    :meth:`opener` is shut down when ``seconds`` pass before :meth:`met` is called; ``expired`` then says so.
    A timer thread does it, so it works in any thread; ``inf`` seconds: no deadline."""

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._done = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = None if math.isinf(seconds) else threading.Timer(seconds, self._expire)
        if self._timer is not None:
            self._timer.daemon = True
            self._timer.start()

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked read of the connection's own socket

    def _connect(self, *args, **kwargs) -> socket.socket:
        """socket.create_connection, remembering a duplicate of the socket to shut it down from the timer."""
        sock = socket.create_connection(*args, **kwargs)
        with self._lock:
            if not self._done:
                self._sockets.append(sock.dup())  # the same connection; survives ssl's wrap_socket detaching it
            if self.expired:
                sock.shutdown(socket.SHUT_RDWR)
        return sock

    def met(self) -> None:
        """The headers have arrived (or the download is over): the deadline no longer applies."""
        with self._lock:
            self._done = True
            if self._timer is not None:
                self._timer.cancel()
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()

    def opener(self) -> urllib.request.OpenerDirector:
        """urllib's opener (proxies from the environment, redirects) whose HTTP(S) connections obey the deadline."""
        deadline = self

        def bounded(http_class):
            def connection(*args, **kwargs):
                conn = http_class(*args, **kwargs)
                conn._create_connection = deadline._connect  # what HTTPConnection.connect opens its socket with
                return conn
            return connection

        class Plain(urllib.request.HTTPHandler):
            def do_open(self, http_class, req, **kwargs):
                return super().do_open(bounded(http_class), req, **kwargs)

        class Secure(urllib.request.HTTPSHandler):
            def do_open(self, http_class, req, **kwargs):
                return super().do_open(bounded(http_class), req, **kwargs)

        return urllib.request.build_opener(Plain, Secure)


def download(
    url: str, dest: str | os.PathLike, what: str, size: int | None = None, md5: str | None = None,
    progress: bool = True, sha256: str | None = None,
) -> Path:
    """Fetch ``url`` into ``dest`` (atomically: a partial file never takes its name) and check its checksum.

    ``size`` (bytes, when the caller knows it) is announced before connecting; the bar takes the
    server's Content-Length. ``md5`` or ``sha256``: the whole hex digest the file must have; with one, ``size``
    is the file's exact size, and more bytes than that are refused as they arrive.
    Raises :class:`DownloadError` on any network failure or broken reply, a stall or reply headers late
    beyond the timeout (see the module) included, and on a checksum mismatch; a full disk stays a
    :class:`~bintut.files.run_folder.StorageFullError`.
    """
    dest = Path(dest)
    seconds = timeout()
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(dest)  # what a download killed outright left behind
    request = urllib.request.Request(url, headers={"User-Agent": "bintut"})
    announce(what, url, dest, size)
    expected_size = size
    deadline = HeaderDeadline(seconds)
    try:
        with deadline.opener().open(request, timeout=socket_seconds(seconds)) as response, replacing(dest) as tmp:
            deadline.met()
            length = response.headers.get("Content-Length", "")
            size = int(length) if length.strip().isdigit() else size
            digest = hashlib.md5(usedforsecurity=False) if md5 is not None else hashlib.sha256()
            with open(tmp, "wb") as f, tqdm(total=size, unit="B", unit_scale=True, desc=dest.name,
                                            disable=not progress) as bar:
                copy_with_progress(response, f, digest, bar, seconds,
                                   limit=expected_size if md5 is not None or sha256 is not None else None)
            expected = md5 if md5 is not None else sha256
            if expected is not None and digest.hexdigest() != expected:
                raise DownloadError(f"{printable(url, 500)} arrived damaged or is not the published file "
                                    f"({digest.name} {digest.hexdigest()}, expected {expected})")
    except DownloadError:
        raise
    except Exception as err:
        if deadline.expired:  # whatever the shut-down connection raised
            raise DownloadError(f"downloading {printable(url, 500)} failed: the server did not answer within "
                                f"{seconds:g} s (${TIMEOUT_ENV}; its reply's headers were still incomplete)") from err
        if not _network_failure(err):
            raise
        raise DownloadError(f"downloading {printable(url, 500)} failed: {describe(err, seconds)}") from err
    finally:
        deadline.met()
    return dest

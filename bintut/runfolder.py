"""Run folders that survive faults: one writer at a time, files replaced whole, clear errors.

A training run holds an exclusive lock on its folder (:class:`RunLock`, a ``flock`` on
``.lock`` inside it, which also names the holder): a second process on the same folder stops at
once, and a lock file left by a crashed run is noticed and reported. Every file a run rewrites
goes through :func:`replacing`: written under a unique temporary name beside it, renamed over
the old file only when complete, removed on failure -- so a full disk or a kill mid-write
leaves the previous file intact and no partial file behind. This module does not import torch.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK = ".lock"
TMP_MARK = ".tmp"  # in the name of every temporary file replacing() makes: ".<name>.<pid>.<random>.tmp<suffix>"
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class RunFolderError(RuntimeError):
    """The run folder cannot be used: in use by another process, read-only, not a folder."""


class StorageFullError(OSError):
    """A write failed for lack of space (disk full, quota, file-size limit); the previous file is kept."""

    def __str__(self) -> str:
        return str(self.strerror)


def storage_error(err: BaseException) -> OSError | None:
    """The out-of-space OSError behind ``err`` (itself, or a cause/context such as torch.save's), else None."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in STORAGE_ERRNOS:
            return err
        err = err.__cause__ or err.__context__
    return None


def full_message(path: os.PathLike | str, err: OSError) -> str:
    return (f"could not write {path}: the disk is full or a size limit was reached ({err.strerror}); "
            "the previous file is kept. Free some space and run again (with --resume to continue a run)")


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a unique temporary path beside ``path``; on success it replaces ``path``, on failure it is removed.

    The temporary name keeps the suffix (tools that pick a format from it still work). An
    out-of-space failure is raised as :class:`StorageFullError` saying so.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}{TMP_MARK}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        full = storage_error(err)
        if full is not None and not isinstance(err, StorageFullError):
            raise StorageFullError(full.errno, full_message(path, full)) from err
        raise


def leftover_temporaries(folder: Path) -> list[Path]:
    """Temporary files that :func:`replacing` left behind when its process was killed mid-write."""
    return sorted(p for p in folder.glob(f".*{TMP_MARK}*") if p.is_file())


def folder_contents(folder: Path) -> list[str]:
    """The names in a run folder that matter: without the lock file and leftover temporaries; [] if missing."""
    if not folder.is_dir():
        return []
    junk = {p.name for p in leftover_temporaries(folder)} | {LOCK}
    return sorted(p.name for p in folder.iterdir() if p.name not in junk)


def check_writable_folder(folder: Path) -> None:
    """Refuse, before any work, an --out that is a file, lies under a file, or cannot be written."""
    if str(folder).strip() == "":
        raise RunFolderError("--out is empty: name the folder for the run's files")
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == folder else f"lies under {existing}, which is a file"
        raise RunFolderError(f"--out {folder} {where}, not a folder: choose a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunFolderError(f"--out {folder}: {existing} is read-only for this user: choose a folder you can write")


class RunLock:
    """An exclusive lock on a run folder for the life of a run (``flock`` on ``folder/.lock``).

    The lock file holds the holder's PID, host and start time; a clean release removes it. A
    lock file found with nobody holding the lock was left by a run that crashed or was killed:
    :meth:`acquire` takes the folder over, reports it and keeps the record in ``stale``. The
    kernel drops a ``flock`` when its process dies, so a crash never leaves the folder blocked.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        self.fd: int | None = None
        self.created: list[Path] = []  # folders acquire() made, deepest last
        self.stale: str | None = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self) -> RunLock:
        check_writable_folder(self.folder)
        self._make_folder()
        while self.fd is None:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd).strip()
                os.close(fd)
                who = f"PID {holder.split()[0]} ({_describe(holder)})" if holder else "another process"
                raise RunFolderError(
                    f"run folder {self.folder} in use by {who}; wait for it to finish, stop it, or choose another --out"
                ) from None
            if _same_file(fd, self.path):
                self.fd = fd
            else:  # released and removed between our open and our lock: open the new one
                os.close(fd)
        self._take_over()
        return self

    def _make_folder(self) -> None:
        missing = []
        folder = self.folder
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunFolderError(f"--out {self.folder} cannot be created ({err.strerror})") from err
        self.created = list(reversed(missing))

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise RunFolderError(f"--out {self.folder} is read-only ({err.strerror}): choose a folder "
                                     "you can write") from err
            raise RunFolderError(f"--out {self.folder} cannot hold a run ({err.strerror})") from err

    def _take_over(self) -> None:
        previous = _read(self.fd).strip()
        if previous:
            self.stale = previous
            print(f"bintut: note: {self.folder} was locked by PID {previous.split()[0]} ({_describe(previous)}), "
                  "which ended without releasing it (crashed or killed); taking the folder over")
        for tmp in leftover_temporaries(self.folder):  # nobody else writes here: these are a dead run's
            tmp.unlink(missing_ok=True)
        record = f"{os.getpid()} {socket.gethostname()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, record, 0)
        os.fsync(self.fd)

    def release(self, remove_created: bool = False) -> None:
        """Unlock and remove the lock file; with ``remove_created``, also the folders acquire() made, if empty."""
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
        if remove_created:
            for folder in reversed(self.created):
                try:
                    folder.rmdir()
                except OSError:
                    break

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read(fd: int) -> str:
    return os.pread(fd, 4096, 0).decode(errors="replace")


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _describe(record: str) -> str:
    parts = record.split()
    if len(parts) >= 3:
        return f"on {parts[1]}, since {parts[2]}"
    return "no details recorded"

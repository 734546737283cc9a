"""Run folders that survive faults: one writer at a time, files replaced whole, clear errors.

A training run holds an exclusive lock on its folder (:class:`RunLock`, a ``flock`` on the
folder itself; ``.lock`` inside it names the holder): a second process on the same folder stops
at once, and a record left by a crashed run is noticed and reported. Every file a run rewrites
goes through :func:`replacing`: written under a unique temporary name beside it, renamed over
the old file only when complete, removed on failure -- so a full disk or a kill mid-write
leaves the previous file intact and no partial file behind. This module does not import torch.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import shutil
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


def temporary_path(path: str | os.PathLike) -> Path:
    """A unique name beside ``path`` for writing its replacement: ``.<stem>.<pid>.<random>.tmp<suffix>``."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}{TMP_MARK}{path.suffix}")


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a unique temporary path beside ``path``; on success it replaces ``path``, on failure it is removed.

    The temporary name keeps the suffix (tools that pick a format from it still work). An
    out-of-space failure is raised as :class:`StorageFullError` saying so.
    """
    path = Path(path)
    tmp = temporary_path(path)
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of ``path`` that :func:`replacing` left in a process that no longer runs.

    For files written outside a locked run folder (downloads, data, exports): a process killed
    outright (SIGKILL) cannot clean up after itself, so the next writer of the same file does.
    Returns what it removed.
    """
    path = Path(path)
    pattern = re.compile(re.escape(f".{path.stem}.") + r"(\d+)\.[0-9a-f]+" + re.escape(TMP_MARK + path.suffix) + "$")
    removed = []
    try:
        names = [p for p in path.parent.iterdir() if pattern.match(p.name)]
    except OSError:
        return removed
    for tmp in names:
        pid = int(pattern.match(tmp.name)[1])
        if pid != os.getpid() and not _alive(pid):
            with contextlib.suppress(OSError):
                if tmp.is_dir():
                    shutil.rmtree(tmp)
                else:
                    tmp.unlink()
                removed.append(tmp)
    return removed


def folder_contents(folder: Path) -> list[str]:
    """The names in a run folder that matter: without the lock file and leftover temporaries; [] if missing."""
    if not folder.is_dir():
        return []
    junk = {p.name for p in leftover_temporaries(folder)} | {LOCK}
    return sorted(p.name for p in folder.iterdir() if p.name not in junk)


NAME_MAX = 255  # bytes in one file name on Linux's file systems


def check_name_lengths(path: str | os.PathLike, what: str) -> None:
    """Refuse a path with a name longer than the file system allows (RunFolderError naming ``what``)."""
    for part in Path(path).parts:
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            raise RunFolderError(f"{what}: the name {part[:24]}... is {size} bytes long; a file or folder name "
                                 f"may have at most {NAME_MAX}: choose a shorter one")


def check_writable_folder(folder: Path) -> None:
    """Refuse, before any work, an --out that is a file, lies under a file, or cannot be written."""
    if str(folder).strip() == "":
        raise RunFolderError("--out is empty: name the folder for the run's files")
    check_name_lengths(folder, "--out")
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


NO_LOCK_ERRNOS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EBADF, errno.EINVAL}
_HELD: set[int] = set()  # descriptors of the run locks this process holds


def _close_held_in_child() -> None:
    """In a forked child (a DataLoader worker): close the parent's lock descriptors without unlocking.

    A ``flock`` belongs to the open file description, which a fork shares: a worker that kept the
    descriptor would keep the folder locked after its parent was killed. Closing (not ``LOCK_UN``,
    which would unlock the parent too) drops the child's reference only.
    """
    for fd in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_held_in_child)


class RunLock:
    """An exclusive lock on a run folder for the life of a run: a ``flock`` on the folder itself.

    The lock is taken on a descriptor of the folder (its inode), not on a file in it, so deleting,
    renaming or replacing anything inside the folder cannot let a second run in. ``folder/.lock``
    records the holder (PID, host, start) for the messages; a clean release removes it -- only if
    it is still the record this run wrote. A record found with nobody holding the lock was left
    by a run that crashed or was killed: :meth:`acquire` takes the folder over, reports it and
    keeps the record in ``stale``. The kernel drops the lock when its holder dies; the descriptor
    is close-on-exec and closed in forked children (data-loader workers), so no child of a killed
    run keeps the folder locked. A filesystem without locks (``ENOLCK``: NFS without a lock
    manager) is refused in one line, leaving nothing behind.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        self.fd: int | None = None
        self.created: list[Path] = []  # folders acquire() made, deepest last
        self.stale: str | None = None
        self.record: str | None = None  # what this run wrote into .lock

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self) -> RunLock:
        check_writable_folder(self.folder)
        self._make_folder()
        try:
            fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            self._remove_created()
            raise RunFolderError(f"--out {self.folder} cannot hold a run ({err.strerror})") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _read_record(self.path)
            who = f"PID {holder.split()[0]} ({_describe(holder)})" if holder else "another process"
            raise RunFolderError(
                f"run folder {self.folder} in use by {who}; wait for it to finish, stop it, or choose another --out"
            ) from None
        except OSError as err:
            os.close(fd)
            self._remove_created()
            if err.errno in NO_LOCK_ERRNOS:
                raise RunFolderError(
                    f"--out {self.folder} is on a filesystem without file locks ({err.strerror}), so bintut "
                    "cannot keep a second run out of it: choose a folder on a local disk") from None
            raise RunFolderError(f"--out {self.folder} cannot be locked ({err.strerror})") from err
        self.fd = fd
        _HELD.add(fd)
        try:
            self._take_over()
        except BaseException:
            self.release(remove_created=True)
            raise
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

    def _remove_created(self) -> None:
        for folder in reversed(self.created):
            try:
                folder.rmdir()
            except OSError:
                break
        self.created = []

    def _take_over(self) -> None:
        previous = _read_record(self.path).strip()
        if previous:
            self.stale = previous
            print(f"bintut: note: {self.folder} was locked by PID {previous.split()[0]} ({_describe(previous)}), "
                  "which ended without releasing it (crashed or killed); taking the folder over")
        for tmp in leftover_temporaries(self.folder):  # nobody else writes here: these are a dead run's
            tmp.unlink(missing_ok=True)
        self.record = (f"{os.getpid()} {socket.gethostname()} {time.strftime('%Y-%m-%dT%H:%M:%S')} "
                       f"{secrets.token_hex(8)}\n")
        try:
            with replacing(self.path) as tmp:
                tmp.write_text(self.record)
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise RunFolderError(f"--out {self.folder} is read-only ({err.strerror}): choose a folder "
                                     "you can write") from err
            raise

    def release(self, remove_created: bool = False) -> None:
        """Unlock; remove ``.lock`` if it still holds this run's record; with ``remove_created``, also the
        folders acquire() made, if empty. A lock this object does not hold is left alone."""
        if self.fd is None:
            return
        try:
            if self.record is not None and _read_record(self.path) == self.record:
                self.path.unlink(missing_ok=True)
        finally:
            _HELD.discard(self.fd)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
            self.record = None
        if remove_created:
            self._remove_created()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_record(path: Path) -> str:
    """The holder record in a ``.lock`` file ('' if there is none or it cannot be read)."""
    try:
        with open(path, "rb") as f:
            return f.read(4096).decode(errors="replace")
    except OSError:
        return ""


def _describe(record: str) -> str:
    parts = record.split()
    if len(parts) >= 3:
        return f"on {parts[1]}, since {parts[2]}"
    return "no details recorded"

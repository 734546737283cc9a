"""One writer per run folder: :class:`RunLock`, a ``flock`` on the folder itself, whose ``.lock``
file names the holder; a second process on the same folder stops at once, and a record left by a
crashed run is noticed and reported. :func:`waiting_lock`, the same ``flock`` on a file, waits for
its holder instead (the run cache: parallel processes share one training). No torch.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bintut.files.atomic import leftover_temporaries, replacing, writer_alive
from bintut.files.run_folder import LOCK, RunFolderError, check_writable_folder

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


class LockUnavailable(OSError):
    """:func:`waiting_lock` could not lock: ``reason`` is 'open' (the lock file cannot be created) or 'no-locks'
    (the filesystem has no file locks); the OSError's errno and strerror are the system's."""

    def __init__(self, reason: str, err: OSError) -> None:
        super().__init__(err.errno, err.strerror, err.filename)
        self.reason = reason


@contextlib.contextmanager
def waiting_lock(path: str | os.PathLike,
                 error: Callable[[LockUnavailable], BaseException] | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the file ``path`` (created, with its folders, if missing; never
    truncated) for the ``with`` body, waiting as long as another process holds it.

    When the file cannot be created or its filesystem has no file locks (NFS without a lock manager:
    :data:`NO_LOCK_ERRNOS`), raises ``error(LockUnavailable)`` -- the caller's one-line message -- or the
    :class:`LockUnavailable` itself; any other failure to lock is raised as the system's OSError.
    """
    fail = error or (lambda unavailable: unavailable)
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")  # never truncates; only the lock matters
    except OSError as err:
        raise fail(LockUnavailable("open", err)) from err
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as err:
            if err.errno not in NO_LOCK_ERRNOS:
                raise
            raise fail(LockUnavailable("no-locks", err)) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
        """Take the lock (creating the folder if needed) and return self; a stale record is taken over.

        Raises RunFolderError, naming the folder, when it cannot be opened or locked, when another process
        holds it (the message names its PID and start), or when its filesystem has no file locks (NFS
        without a lock manager); nothing created is left behind.
        """
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
        for tmp in leftover_temporaries(self.folder):  # a dead writer's; a live one's (an export) is left alone
            if not writer_alive(tmp):
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

"""Files replaced whole: written under a unique temporary name beside the target, renamed over it
only when complete, removed on failure -- a full disk or a kill mid-write leaves the previous file
intact and no partial file behind. The one atomic write of bintut (run files, exports, synthetic
data). No torch.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bintut.errors import BintutError

TMP_MARK = ".tmp"  # in the name of every temporary file replacing() makes: ".<name>.<pid>.<random>.tmp<suffix>"

STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class StorageFullError(OSError, BintutError):
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


_WRITER = re.compile(r"\.(\d+)\.[0-9a-f]+" + re.escape(TMP_MARK) + r"(\.[^.]*)?$")


def writer_alive(tmp: Path) -> bool:
    """Whether the process that is writing the temporary file ``tmp`` (its PID is in the name) still runs:
    then the file is work in progress (an export beside a run), not a leftover. False for a name that carries
    no PID."""
    match = _WRITER.search(Path(tmp).name)
    return match is not None and (int(match[1]) == os.getpid() or _alive(int(match[1])))


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


def write_atomically(path: Path, data: bytes) -> str:
    """Write under a private temporary name, then rename (a concurrent reader never sees half a file); its sha256."""
    remove_stale_temporaries(path)  # what a writer killed outright (SIGKILL) left behind
    with replacing(path) as tmp:
        tmp.write_bytes(data)
    return hashlib.sha256(data).hexdigest()

"""The run cache on disk: where it is (``$BINTUT_RUNS``, default ``./runs``; the notebooks' ``notebooks/runs``)
and ``python -m bintut clean``, which frees it. Standard library only.

:mod:`bintut.training.runs` trains into the cache and reuses what it finds there; every run in it can be trained
again on demand, so freeing it loses no result. What ``clean`` deletes: run folders (a folder directly in a cache
folder holding ``config.json`` or ``checkpoint.pt``) and the cache's ``.NAME.lock`` files. What it leaves: any other
file or folder, a run that is training now (its folder's lock is held), a cache folder inside the recordings
(``$BINTUT_RECORDED`` or ``docs/recorded``), and ``results/`` (not a cache: ``make clean`` removes that).
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from bintut.files.run_folder import CHECKPOINT, CONFIG

RUNS_ENV = "BINTUT_RUNS"

RECORDED_ENV = "BINTUT_RECORDED"  # the recordings' folder (bintut.teaching.record); never cleaned

CHECKOUT = Path(__file__).resolve().parents[2]  # the folder holding bintut/, notebooks/ and docs/


def runs_dir() -> Path:
    """The run cache: ``$BINTUT_RUNS``, default ``./runs``."""
    return Path(os.environ.get(RUNS_ENV) or "runs")


def cache_folders() -> list[Path]:
    """The run caches ``clean`` frees, each once: ``$BINTUT_RUNS`` (when set), ``./runs`` and ``./notebooks/runs``
    (the notebooks run in ``notebooks/``, so their ``./runs`` is there). Folders that do not exist are left out."""
    found: dict[Path, Path] = {}
    for folder in (runs_dir(), Path("runs"), Path("notebooks") / "runs"):
        if folder.is_dir() and not folder.is_symlink():
            found.setdefault(folder.resolve(), folder)
    return list(found.values())


def _recordings() -> Path:
    return Path(os.environ.get(RECORDED_ENV) or CHECKOUT / "docs" / "recorded").resolve()


def _size(path: Path) -> int:
    """Bytes held by the files under ``path`` (links not followed)."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def _is_run(folder: Path) -> bool:
    if not folder.is_dir() or folder.is_symlink():
        return False
    return (folder / CONFIG).is_file() or (folder / CHECKPOINT).is_file()


def _is_lock_name(name: str) -> bool:
    return name.startswith(".") and name.endswith(".lock")  # the cache's lock of run NAME: .NAME.lock


def _busy(path: Path) -> bool:
    """Whether another process holds the flock of a run folder (RunLock) or a cache lock file (waiting_lock)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | (os.O_DIRECTORY if path.is_dir() else 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError as err:  # a filesystem without locks: nothing can hold one
        return err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EBADF, errno.EINVAL)
    finally:
        os.close(fd)
    return False


@dataclass
class CacheReport:
    """What ``clean`` found: ``freed`` (path, bytes) deleted or, in a dry run, to delete; ``kept`` (path, why)."""

    freed: list[tuple[Path, int]] = field(default_factory=list)
    kept: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(size for _, size in self.freed)


def free_cache(folders: list[Path] | None = None, dry_run: bool = False) -> CacheReport:
    """Delete the run folders and lock files of each cache folder (default :func:`cache_folders`); with
    ``dry_run`` only measure them. A folder that cannot be deleted is kept with the reason; raises nothing for
    it. Raises OSError only when a cache folder itself cannot be listed."""
    report = CacheReport()
    recordings = _recordings()
    for cache in cache_folders() if folders is None else folders:
        here = cache.resolve()
        if here == recordings or recordings in here.parents:
            report.kept.append((cache, f"inside the recordings ({recordings}): never cleaned"))
            continue
        for entry in sorted(cache.iterdir()):
            is_lock = _is_lock_name(entry.name) and entry.is_file() and not entry.is_symlink()
            if not (_is_run(entry) or is_lock):
                report.kept.append((entry, "not a run folder"))
                continue
            if _busy(entry):
                report.kept.append((entry, "in use: a run is training there"))
                continue
            size = _size(entry) if entry.is_dir() else entry.stat().st_size
            if not dry_run:
                try:
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                except OSError as err:
                    report.kept.append((entry, f"could not be deleted ({err.strerror or err})"))
                    continue
            report.freed.append((entry, size))
    return report


def megabytes(size: int) -> str:
    """``size`` bytes in words: '644.2 MB', '12.0 kB', '0 bytes'."""
    if size >= 10**6:
        return f"{size / 1e6:,.1f} MB"
    return f"{size / 1e3:.1f} kB" if size >= 1000 else f"{size} bytes"


def clean(dry_run: bool = False) -> int:
    """``python -m bintut clean [--dry-run]``: free the run cache and say how much (exit 0); with ``dry_run``,
    list what would be freed. Raises OSError when a cache folder cannot be listed (one line under the CLI)."""
    folders = cache_folders()
    report = free_cache(folders, dry_run)
    verb = "would delete" if dry_run else "deleted"
    for path, size in report.freed:
        print(f"bintut: {verb} {path} ({megabytes(size)})")
    for path, why in report.kept:
        if why != "not a run folder":
            print(f"bintut: kept {path}: {why}")
    others = sum(why == "not a run folder" for _, why in report.kept)
    where = ", ".join(str(f) for f in folders) or "no run cache here (./runs, ./notebooks/runs, $BINTUT_RUNS)"
    runs = sum(not _is_lock_name(path.name) for path, _ in report.freed)
    left = f"; {others} other {'entry' if others == 1 else 'entries'} left alone" if others else ""
    print(f"bintut: {'would free' if dry_run else 'freed'} {megabytes(report.total)} in {runs} run folder"
          f"{'s' if runs != 1 else ''} ({where}){left}")
    return 0

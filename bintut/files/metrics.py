"""The metrics file of a run: one JSON object per completed epoch in ``metrics.jsonl``, appended
and replaced whole; a damaged or partial last line is reported, never silently dropped. A
``metrics.jsonl`` that is a symbolic link is refused, never written through (``O_NOFOLLOW``): a run
writes only inside its folder.
"""

from __future__ import annotations

import errno
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

from bintut.errors import BintutError
from bintut.files.atomic import StorageFullError, full_message, replacing, storage_error
from bintut.files.run_folder import METRICS


class MetricsError(ValueError, BintutError):
    """A metrics.jsonl line in the middle of the file is not a JSON row (the file was edited or damaged), or the
    file is a symbolic link, which a run never writes through."""


def _linked(path: Path) -> MetricsError:
    try:
        target = f" (to {os.readlink(path)})"
    except OSError:
        target = ""
    return MetricsError(f"{path} is a symbolic link{target}; a run writes only inside its folder, never through a "
                        "link: remove the link (or copy the file it points to in its place)")


def _open_for_writing(path: Path, flags: int) -> int:
    """os.open for writing that refuses to follow a symbolic link (O_NOFOLLOW: no race with a check)."""
    try:
        return os.open(path, flags | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as err:
        if err.errno == errno.ELOOP or path.is_symlink():
            raise _linked(path) from None
        raise


def _scan(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The rows of a metrics file and the length of the intact part (shorter when the last line is torn)."""
    data = path.read_bytes()
    rows: list[dict[str, Any]] = []
    offset = 0
    lines = data.split(b"\n")
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError(f"a {type(row).__name__}, not a row")
            except ValueError as err:
                if number == len(lines) or (number == len(lines) - 1 and not lines[-1]):
                    return rows, offset  # the last line: a write that was cut short
                raise MetricsError(f"{path}, line {number}: not a metrics row ({err}); fix or remove that line") \
                    from None
            rows.append(row)
        offset = min(offset + len(line) + 1, len(data))
    return rows, len(data)


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All rows of a metrics.jsonl file (or of the metrics.jsonl inside a run folder).

    A torn last line (a write cut short by a crash or a full disk) is skipped with a warning.
    """
    path = Path(path)
    if path.is_dir():
        path = path / METRICS
    if not path.is_file():
        return []
    rows, intact = _scan(path)
    if intact < path.stat().st_size:
        warnings.warn(f"{path}: ignoring its torn last line (a write that was cut short)", stacklevel=2)
    return rows


class MetricsLog:
    """One JSON row per epoch, appended: the file is never rewritten in place.

    Opening it for a run that has completed ``epochs_done`` epochs repairs what a crash can leave:
    a torn last line is cut off (with a warning); rows of epochs that will be redone are dropped
    by writing a new file and renaming it over the old one; the row of the last completed epoch,
    which the checkpoint carries (``last_row``), is appended if the crash came before it was.
    Raises MetricsError when the file is a symbolic link (on opening, and on any append: a link put in
    its place later is not written through either) or is damaged before its last line.
    """

    def __init__(self, path: str | os.PathLike, epochs_done: int = 0, last_row: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        rows = self._repair()
        kept = [r for r in rows if r.get("epoch", 0) <= epochs_done]
        if len(kept) < len(rows):
            with replacing(self.path) as tmp:
                tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        last_epoch = kept[-1].get("epoch", 0) if kept else 0
        if last_row is not None and last_row.get("epoch") == epochs_done == last_epoch + 1:
            self.append(last_row)

    def _repair(self) -> list[dict[str, Any]]:
        if self.path.is_symlink():
            raise _linked(self.path)
        if not self.path.is_file():
            return []
        rows, intact = _scan(self.path)
        size = self.path.stat().st_size
        if intact < size:
            warnings.warn(f"{self.path}: cutting off its torn last line ({size - intact} bytes of a write that was "
                          "cut short); the complete rows are kept", stacklevel=3)
            fd = _open_for_writing(self.path, 0)
            try:
                os.ftruncate(fd, intact)
            finally:
                os.close(fd)
        elif size and not self.path.read_bytes().endswith(b"\n"):
            self._write(b"\n")  # a complete last row whose newline was cut off
        return rows

    def append(self, row: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        self._write((json.dumps(clean) + "\n").encode())

    def _write(self, data: bytes) -> None:
        """Append whole or not at all: a failed write (full disk) is cut back off the file."""
        fd = _open_for_writing(self.path, os.O_APPEND | os.O_CREAT)
        try:
            size = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError as err:
                os.ftruncate(fd, size)
                if storage_error(err):
                    raise StorageFullError(err.errno, full_message(self.path, err)) from err
                raise
        finally:
            os.close(fd)

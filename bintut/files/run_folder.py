"""A run folder's layout: the names of the files a run writes, what a folder may hold, and checks
of a folder before a run writes into it. The one place that knows the file names (``config.json``,
``checkpoint.pt``, ``metrics.jsonl``, ``results.png``, ``model_int.npz``). No torch.
"""

from __future__ import annotations

import os
from pathlib import Path

from bintut.errors import BintutError
from bintut.files.atomic import leftover_temporaries

CONFIG = "config.json"  # the run's TrainConfig, written before its first step
CHECKPOINT = "checkpoint.pt"  # everything --resume needs, rewritten after every epoch
METRICS = "metrics.jsonl"  # one row per completed epoch
FIGURE = "results.png"  # written when the run ends
EXPORT = "model_int.npz"  # the integer network, written by `python -m bintut export`
LOCK = ".lock"  # names the process that holds the folder
RESULTS = (METRICS, FIGURE, EXPORT)  # what a finished run holds
RUN_FILES = {CONFIG, CHECKPOINT, "wandb", *RESULTS}  # what a run folder may hold; anything else is not ours


class RunFolderError(RuntimeError, BintutError):
    """The run folder cannot be used: in use by another process, read-only, not a folder."""


def folder_contents(folder: Path) -> list[str]:
    """The names in a run folder that matter: without the lock file and leftover temporaries; [] if missing."""
    if not folder.is_dir():
        return []
    junk = {p.name for p in leftover_temporaries(folder)} | {LOCK}
    return sorted(p.name for p in folder.iterdir() if p.name not in junk)


NAME_MAX = 255  # bytes in one file name on Linux's file systems
PATH_MAX = 4096  # bytes in a whole path, its terminating zero included (Linux)
TEMP_NAME_EXTRA = 24  # what a temporary name adds to a name: "." + ".<pid>.<8 hex digits>" + ".tmp"
INSIDE_EXTRA = 48  # the longest path bintut writes below a folder it is given, e.g. "/.metrics.<pid>.<hex>.tmp.jsonl"


def check_name_lengths(path: str | os.PathLike, what: str) -> None:
    """Refuse a path that the file system cannot hold with what bintut writes there: a name longer than
    NAME_MAX (the last one with its temporary name's extra bytes), or a whole path (absolute, with the files
    written below it) longer than PATH_MAX. Raises RunFolderError naming ``what``, the length and the limit."""
    parts = Path(path).parts
    for i, part in enumerate(parts):
        size = len(os.fsencode(part)) + (TEMP_NAME_EXTRA if i == len(parts) - 1 else 0)
        if size > NAME_MAX:
            raise RunFolderError(f"{what}: the name {part[:24]}... is {len(os.fsencode(part))} bytes long; a file or "
                                 f"folder name may have at most {NAME_MAX} (the last one "
                                 f"{NAME_MAX - TEMP_NAME_EXTRA}, for its temporary name): choose a shorter one")
    total = len(os.fsencode(os.path.abspath(path)))
    if total + INSIDE_EXTRA >= PATH_MAX:
        raise RunFolderError(f"{what}: the path is {total} bytes long (absolute); with the files bintut writes there "
                             f"it would pass the system's limit of {PATH_MAX} bytes: choose a shorter path")


def check_writable_folder(folder: Path) -> None:
    """Refuse, before any work, an --out that is a file, lies under a file, or cannot be written.

    Raises RunFolderError with a one-line reason and what to choose instead: an empty name, a name too long
    for the file system, a file in the way, or a read-only folder.
    """
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

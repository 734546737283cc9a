"""bintut.files.lock: one process per run folder -- a stale lock of a killed run is reported and taken over;
the lock holds whatever happens to its record file, and children of a killed run do not keep it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bintut.files.lock import RunLock
from bintut.files.run_folder import LOCK, RunFolderError

from ..conftest import leftovers
from .conftest import python

ROOT = Path(__file__).resolve().parents[2]


RUNFOLDER = ROOT  # the checkout whose bintut the lock-holding scripts import (bintut.files: no torch)


HOLD_LOCK = """
import sys, time
sys.path.insert(0, sys.argv[1])
from bintut.files.lock import RunLock  # no torch: starts at once
RunLock(sys.argv[2]).acquire()
print("locked", flush=True)
time.sleep(60)
"""


def test_stale_lock_of_a_killed_run_is_reported_and_taken_over(tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen(  # takes the lock, then is killed: the lock file stays, the flock goes
        [sys.executable, "-c", HOLD_LOCK, str(RUNFOLDER), str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderError, match=f"in use by PID {holder.pid} "):
            RunLock(out).acquire()
        (out / ".checkpoint.123.abcd.tmp.pt").write_bytes(b"half a checkpoint")  # a write the kill interrupted
    finally:
        holder.kill()
        holder.wait()
    lock = RunLock(out).acquire()
    assert lock.stale.split()[0] == str(holder.pid)
    note = capsys.readouterr().out
    assert f"was locked by PID {holder.pid}" in note and "crashed or killed" in note
    assert leftovers(out) == []  # the dead run's temporary file is gone
    lock.release()
    assert not (out / LOCK).exists() and RunLock(out).acquire().stale is None



FORK_AND_HOLD = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from bintut.files.lock import RunLock  # no torch: starts at once
RunLock(sys.argv[2]).acquire()
ready, tell = os.pipe()
child = os.fork()  # what a DataLoader worker is
if child == 0:  # fork() returns here after the at-fork hooks ran: say so, so the test never races them
    os.write(tell, b"x")
    time.sleep(30)
    os._exit(0)
os.read(ready, 1)
print(child, flush=True)
time.sleep(60)
"""


def test_run_lock_keeps_excluding_whatever_happens_to_its_record(tmp_path):
    """1a: deleting or renaming over .lock let a second run in, and the first run's release deleted
    the second run's lock. The lock is on the folder itself; a run removes only its own record."""
    out = tmp_path / "run"
    first = RunLock(out).acquire()
    (out / LOCK).unlink()  # deleted during the run
    with pytest.raises(RunFolderError, match="in use by another process"):
        RunLock(out).acquire()
    planted = tmp_path / "planted"
    planted.write_text("4242 elsewhere 2026-11-29T10:00:00 feed\n")
    os.replace(planted, out / LOCK)  # renamed over
    with pytest.raises(RunFolderError, match="in use by PID 4242"):
        RunLock(out).acquire()
    first.release()
    assert (out / LOCK).read_text().startswith("4242 ")  # not this run's record: left alone
    second = RunLock(out).acquire()  # free now; the record it found is reported as stale
    assert second.stale.startswith("4242 ")
    second.release()
    assert sorted(p.name for p in out.iterdir()) == []


def test_children_of_a_killed_run_do_not_keep_its_folder_locked(tmp_path):
    """1c: data-loader workers inherited the lock, so a restart right after a SIGKILL was refused."""
    out = tmp_path / "run"
    holder = python(FORK_AND_HOLD, str(RUNFOLDER), str(out), stdout=subprocess.PIPE)
    child = int(holder.stdout.readline())
    try:
        holder.kill()
        holder.wait(10)
        os.kill(child, 0)  # the worker still runs
        lock = RunLock(out).acquire()  # ... and holds nothing
        assert lock.stale.split()[0] == str(holder.pid)
        lock.release()
    finally:
        os.kill(child, signal.SIGKILL)
        time.sleep(0.05)

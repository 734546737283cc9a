"""bintut.files.lock.waiting_lock: the run cache's lock (one flock implementation, shared with RunLock's errnos)."""

from __future__ import annotations

import errno
import fcntl
import threading
import time

import pytest

from bintut.files.lock import NO_LOCK_ERRNOS, LockUnavailable, waiting_lock


def test_a_second_holder_waits_until_the_first_lets_go(tmp_path):
    path = tmp_path / "cache" / ".run.lock"
    order: list[str] = []
    holding = threading.Event()

    def first() -> None:
        with waiting_lock(path):
            holding.set()
            time.sleep(0.3)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    assert holding.wait(5)
    with waiting_lock(path):  # a second open file description: flock makes it wait
        order.append("second in")
    thread.join()
    assert order == ["first done", "second in"]
    assert path.is_file() and path.read_text() == ""  # created, never truncated or written


def test_a_lock_file_that_cannot_be_created_is_the_callers_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(LookupError, match="^open: File exists$") as caught:
        with waiting_lock(tmp_path / "file" / ".run.lock", lambda u: LookupError(f"{u.reason}: {u.strerror}")):
            pytest.fail("the body ran without the lock")
    assert isinstance(caught.value.__cause__, OSError)
    with pytest.raises(LockUnavailable) as bare:  # without a callback: the LockUnavailable itself
        with waiting_lock(tmp_path / "file" / ".run.lock"):
            pass
    assert bare.value.reason == "open" and bare.value.errno == errno.EEXIST


@pytest.mark.parametrize("code", sorted(NO_LOCK_ERRNOS))
def test_a_filesystem_without_locks_is_reported_and_other_failures_pass(tmp_path, monkeypatch, code):
    def no_locks(fd, operation):
        raise OSError(code, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(LockUnavailable) as caught:
        with waiting_lock(tmp_path / ".run.lock"):
            pytest.fail("the body ran without the lock")
    assert caught.value.reason == "no-locks" and caught.value.errno == code


def test_another_locking_failure_is_the_systems_error(tmp_path, monkeypatch):
    def interrupted(fd, operation):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(fcntl, "flock", interrupted)
    with pytest.raises(OSError, match="Input/output error") as caught:
        with waiting_lock(tmp_path / ".run.lock"):
            pass
    assert not isinstance(caught.value, LockUnavailable)

"""bintut.errors.run_command: the command line's one error policy (one line and exit 2, 128 + N on a stop)."""

from __future__ import annotations

import errno
import signal

import pytest

from bintut.errors import EXIT_ERROR, ONE_LINE_ERRORS, BintutError, Terminated, report, run_command
from bintut.files.atomic import StorageFullError


def _raise(err: BaseException):
    def body() -> int:
        raise err

    return body


@pytest.mark.parametrize("err", [BintutError("the run folder is busy"), FileNotFoundError("no such run: x"),
                                 FileExistsError("x exists"), ValueError("epochs must be at least 1, got 0")])
def test_each_kind_of_bad_input_is_one_line_and_exit_2(err, capsys):
    assert isinstance(err, ONE_LINE_ERRORS)
    assert run_command(_raise(err)) == EXIT_ERROR == 2
    assert capsys.readouterr().err == f"bintut: error: {err}\n"


def test_the_body_s_exit_code_passes_through(capsys):
    assert run_command(lambda: 0) == 0 and run_command(lambda: 3) == 3
    assert capsys.readouterr().err == ""
    assert report("a message") == 2 and capsys.readouterr().err == "bintut: error: a message\n"


def test_a_hint_follows_the_error_it_is_for(capsys):
    def hint(err: BaseException) -> str | None:
        return "offline? run make smoke" if isinstance(err, FileNotFoundError) else None

    assert run_command(_raise(FileNotFoundError("no data")), hint=hint) == 2
    assert capsys.readouterr().err == "bintut: error: no data\noffline? run make smoke\n"
    assert run_command(_raise(ValueError("bad")), hint=hint) == 2
    assert capsys.readouterr().err == "bintut: error: bad\n"


@pytest.mark.parametrize("err, code", [(KeyboardInterrupt(), 130), (Terminated(signal.SIGTERM), 143)])
def test_a_stop_is_one_line_and_128_plus_n(err, code, capsys):
    assert run_command(_raise(err)) == code
    assert capsys.readouterr().err == f"bintut: stopped by signal {code - 128}\n"
    assert run_command(_raise(err), stopped=lambda n: f"bintut: export stopped (signal {n})") == code
    assert capsys.readouterr().err == f"bintut: export stopped (signal {code - 128})\n"
    assert run_command(_raise(err), stopped=lambda n: None) == code  # the command already said what it kept
    assert capsys.readouterr().err == ""


def test_a_full_disk_behind_another_error_is_one_line_naming_what_was_written(capsys):
    try:
        raise OSError(errno.ENOSPC, "No space left on device")
    except OSError as cause:
        wrapped = RuntimeError("torch.save failed")
        wrapped.__cause__ = cause
    assert run_command(_raise(wrapped), writing="runs/seed") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("bintut: error: could not write runs/seed: the disk is full")
    full = StorageFullError(errno.EFBIG, "file too large for the file-size limit")
    assert run_command(_raise(full)) == 2
    assert capsys.readouterr().err == "bintut: error: file too large for the file-size limit\n"


def test_a_bug_keeps_its_traceback():
    with pytest.raises(TypeError, match="a bug"):
        run_command(_raise(TypeError("a bug")))
    with pytest.raises(SystemExit):  # argparse's usage errors are not the policy's
        run_command(_raise(SystemExit(2)))

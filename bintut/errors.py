"""The base of every error bintut raises on purpose, :class:`BintutError`, and :class:`Terminated`, the
stop that SIGTERM asks for outside the training loop.

Each bintut error also derives from the built-in exception that says what kind of failure it is
(``ValueError`` for bad input, ``FileNotFoundError`` for missing data, ``OSError`` for a full
disk ...), so ``except ValueError`` still works. :func:`run_command` is the command line's one error policy:
a bintut error (or a bad value, a missing file) is printed as one line with exit 2 instead of a traceback.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable


class BintutError(Exception):
    """An error whose message says what went wrong and what to do; the CLI prints it as one line and exits with 2."""


class Terminated(KeyboardInterrupt):
    """SIGTERM outside the training loop: unwinds like Ctrl-C, so that every temporary file is removed."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


# The command line's one error policy (python -m bintut train, export, reproduce, record, clean): each command's
# body runs inside run_command.

ONE_LINE_ERRORS = (BintutError, FileNotFoundError, FileExistsError, ValueError)
"""What a command reports as one line and exit 2: every bintut error, and the built-in kinds bad input raises
(a missing file, a file in the way, a bad value). Anything else is a bug and keeps its traceback."""

EXIT_ERROR = 2  # a clear error; 0 is done, 128 + N stopped by signal N


def report(message: str) -> int:
    """Print ``bintut: error: MESSAGE`` on stderr and return :data:`EXIT_ERROR`."""
    print(f"bintut: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def run_command(body: Callable[[], int], stopped: Callable[[int], str | None] | None = None,
                hint: Callable[[BaseException], str | None] | None = None, writing: str = "its files") -> int:
    """Run a command's ``body`` (which returns its exit code) under the CLI's error policy and return the code.

    - :data:`ONE_LINE_ERRORS`: ``bintut: error: <message>`` on stderr, exit 2; then ``hint(err)`` if it gives a line.
    - A full disk or size limit behind any other error (:func:`bintut.files.atomic.storage_error`): one line naming
      ``writing`` (what the command writes) unless the error names its file, exit 2.
    - Ctrl-C or SIGTERM (:class:`Terminated`): ``stopped(N)`` -- the command's line, or None when the command
      already said what it kept -- else ``bintut: stopped by signal N``; exit 128 + N (130, 143).
    - Anything else propagates (a bug: its traceback is the report).
    """
    try:
        return body()
    except KeyboardInterrupt as err:
        signum = getattr(err, "signum", signal.SIGINT)
        line = f"bintut: stopped by signal {signum}" if stopped is None else stopped(signum)
        if line:
            print(line, file=sys.stderr)
        return 128 + signum
    except Exception as err:
        from bintut.files.atomic import StorageFullError, full_message, storage_error

        if isinstance(err, ONE_LINE_ERRORS):
            code = report(str(err))
        elif (full := storage_error(err)) is not None:
            code = report(str(full) if isinstance(full, StorageFullError) else full_message(full.filename or writing,
                                                                                              full))
        else:
            raise
        extra = hint(err) if hint else None
        if extra:
            print(extra, file=sys.stderr)
        return code

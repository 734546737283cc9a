"""The base of every error bintut raises on purpose, :class:`BintutError`, and :class:`Terminated`, the
stop that SIGTERM asks for outside the training loop.

Each bintut error also derives from the built-in exception that says what kind of failure it is
(``ValueError`` for bad input, ``FileNotFoundError`` for missing data, ``OSError`` for a full
disk ...), so ``except ValueError`` still works; the CLI catches :class:`BintutError` once and
prints its message instead of a traceback (``bintut/cli.py``).
"""

from __future__ import annotations


class BintutError(Exception):
    """An error whose message says what went wrong and what to do; the CLI prints it as one line and exits with 2."""


class Terminated(KeyboardInterrupt):
    """SIGTERM outside the training loop: unwinds like Ctrl-C, so that every temporary file is removed."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum

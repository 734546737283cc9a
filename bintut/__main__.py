"""``python -m bintut``: the command line (:mod:`bintut.cli`). A stop at any moment after start-up -- Ctrl-C or
SIGTERM while torch is still importing included -- ends in one line and exit 128 + N (130, 143)."""

import signal
import sys

from bintut.errors import Terminated, run_command


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signum)


def run() -> int:
    """:func:`bintut.cli.main` (which handles SIGTERM itself once it runs) under the command line's error policy
    (:func:`bintut.errors.run_command`): a stop during the imports before it, or one that escapes it, is reported
    as ``bintut: stopped by signal N`` and exit 128 + N."""
    signal.signal(signal.SIGTERM, _terminate)

    def body() -> int:
        from bintut.cli import main

        return main()

    return run_command(body)


if __name__ == "__main__":
    sys.exit(run())

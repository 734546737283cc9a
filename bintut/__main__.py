"""``python -m bintut``: the command line (:mod:`bintut.cli`). A stop at any moment after start-up -- Ctrl-C or
SIGTERM while torch is still importing included -- ends in one line and exit 128 + N (130, 143)."""

import signal
import sys

from bintut.errors import Terminated


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signum)


def run() -> int:
    """:func:`bintut.cli.main` (which handles SIGTERM itself once it runs), with a stop during the imports before
    it, or one that escapes it, reported as ``bintut: stopped by signal N`` and exit 128 + N."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        from bintut.cli import main

        return main()
    except KeyboardInterrupt as err:
        signum = getattr(err, "signum", signal.SIGINT)
        print(f"bintut: stopped by signal {signum}", file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    sys.exit(run())

"""bintut.__main__: ``python -m bintut`` stopped by a signal while torch imports says so in one line and
exits 128 + N."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


STOP_AT_TORCH = """
import os, runpy, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, even where the parent ignores it
SIGNUM = int(sys.argv[1])
class StopAtTorch:  # the signal arrives while torch is importing
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            os.kill(os.getpid(), SIGNUM)
        return None
sys.meta_path.insert(0, StopAtTorch())
sys.argv = ["bintut", *sys.argv[2:]]
runpy.run_module("bintut", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_while_torch_imports_is_one_line_and_exit_128_plus_n(signum, tmp_path):
    """Ctrl-C or SIGTERM during torch's import was a traceback and exit 1."""
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-c", STOP_AT_TORCH, str(int(signum)), "train", "--preset", "smoke", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 128 + signum
    assert done.stderr == f"bintut: stopped by signal {int(signum)}\n"
    assert not out.exists()

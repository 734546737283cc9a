"""Fixtures of the files layer's tests: a Python subprocess that imports this checkout's bintut."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]



def python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=environ, text=True, **kwargs)

"""bintut.integer.xnor: the XNOR-popcount GEMM (numpy and C) is the +-1 product bit for bit."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bintut.integer.kernels import pack_signs
from bintut.integer.xnor import pm1_product, xnor_gemm

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("k", [1, 7, 8, 9, 63, 64, 65, 576, 4608])
def test_xnor_gemm_is_the_pm1_product_bit_for_bit(k):
    rng = np.random.default_rng(k)
    a = np.where(rng.random((33, k)) < 0.5, -1, 1)
    w = np.where(rng.random((70, k)) < 0.3, -1, 1)  # 70: more than one chunk of output channels
    acc = xnor_gemm(pack_signs(a), pack_signs(w), k)
    assert acc.dtype == np.int32 and np.array_equal(acc, pm1_product(a, w))


def test_xnor_gemm_extremes_and_a_bad_width():
    k = 4608
    ones = np.ones((1, k))
    assert xnor_gemm(pack_signs(ones), pack_signs(ones), k)[0, 0] == k
    assert xnor_gemm(pack_signs(ones), pack_signs(-ones), k)[0, 0] == -k
    with pytest.raises(ValueError, match="K = 9 needs 2"):
        xnor_gemm(pack_signs(np.ones((1, 8))), pack_signs(np.ones((1, 8))), 9)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_the_c_popcount_kernels_equal_numpy():
    """benchmarks/xnor_layer.py compiles the C kernels and exits 1 unless each equals numpy bit for bit."""
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "xnor_layer.py"), "--layer", "layer4",
                           "--repeats", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith(("| int8", "| xnor"))]
    assert len(rows) == 4 and all(r.endswith("| True |") or "unavailable" in r for r in rows)
    assert "xnor_portable" in done.stdout and "True" in next(r for r in rows if "xnor_portable" in r)

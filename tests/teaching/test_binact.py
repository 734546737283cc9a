"""bintut.teaching.binact: binary activations from a run (notebook 09) -- the teaching layer's binary conv,
the fine-tune that leaves its run alone, and the benchmark table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bintut.binact import (
    BinaryActQuantizer,
)

ROOT = Path(__file__).resolve().parents[2]


def test_a_binary_conv_in_the_teaching_layer():
    from bintut.teaching.binact import binary_conv_identity

    result = binary_conv_identity(channels=9, size=5, out_channels=3, seed=2)  # K = 81: not a multiple of 8
    assert result["equal"] and result["xnor"].shape == (3, 5, 5)


def test_fine_tune_from_a_run_leaves_the_run_alone(smoke_run):
    from bintut.teaching.binact import BINARY_RAMP, fine_tune

    with pytest.raises(ValueError, match="steps must be at least 1"):
        fine_tune(smoke_run, 0)
    result = fine_tune(smoke_run, steps=3)
    assert [r["step"] for r in result["history"]] == [1, 2, 3]
    assert [r["p"] for r in result["history"]] == [BINARY_RAMP(t / 3) for t in range(3)]
    assert all(np.isfinite(r["loss"]) for r in result["history"]) and 0 <= result["hard %"] <= 100
    assert any(isinstance(m, BinaryActQuantizer) for m in result["model"].modules())
    assert not any(isinstance(m, BinaryActQuantizer) for m in smoke_run.model.modules())


def test_binact_from_a_finished_run_prints_its_table(smoke_run):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "binact_from_run.py"), str(smoke_run.out),
                           "--steps", "1"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "load average" in done.stdout and "UTC" in done.stdout and "python " in done.stdout
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == 2 + 4 and "| + binary inputs, stem and head int8 | conv1, fc | 1 |" in done.stdout

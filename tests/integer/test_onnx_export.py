"""The deployed network as ONNX (issue 25): a valid model, run by onnxruntime's CPU provider, agreeing with
bintut's deployed integer-only network; the export command's --onnx; a one-line error without the extra."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bintut.integer.onnx_compare import onnx_agreement, onnx_session
from bintut.integer.onnx_export import check, to_onnx

LARGER_RUN = Path(__file__).parents[1] / "fixtures" / "synth5.npz"


@pytest.mark.parametrize("residual", ["float", "int8"])
def test_the_larger_synthetic_run_agrees_on_99_percent(residual):
    """The export of docs/benchmarks.md's larger synthetic run (tests/fixtures/synth5.npz, 1.6 MB, made by
    `python -m bintut train --preset smoke --synthetic-train 2000 --synthetic-test 1000 --epochs 5 --out RUN`, then
    `python -m bintut export RUN --out tests/fixtures/synth5.npz`) on 300 of its test images (regenerated, seed 1):
    onnxruntime's top-1 is the deployed network's on >= 99 % of them and on every clear-margin image, whether the
    residual branches are added unrounded (as in the deployed network: onnxruntime runs the stem and each block's
    conv1 in int8) or each rounded to int8 first (then every conv but the last block's conv2 is int8)."""
    from collections import Counter

    from bintut.data.cifar100 import synthetic_images
    from bintut.integer.format import load_export
    from bintut.integer.onnx_compare import onnxruntime_graph

    export = load_export(LARGER_RUN)
    pixels, _ = synthetic_images(1000, seed=1)
    mean, std = np.array(export.mean, np.float32), np.array(export.std, np.float32)
    images = ((pixels[:300].astype(np.float32) / 255 - mean) / std).transpose(0, 3, 1, 2)
    model = to_onnx(export, residual=residual)
    check(model)
    ops = Counter(n.op_type for n in onnxruntime_graph(model).graph.node)
    assert (ops["QLinearConv"], ops["QLinearAdd"]) == ((9, 0) if residual == "float" else (19, 7))
    result = onnx_agreement(export, images, onnx_session(model))
    print(residual, result)
    assert result["top-1 agreement"] >= 0.99 and result["clear-margin agreement"] == 1.0
    assert result["images"] == 300 and result["clear-margin images"] >= 270



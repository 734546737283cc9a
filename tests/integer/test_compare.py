"""bintut.integer.compare: layer by layer, the integer accumulators are those torch implies."""

import torch

from bintut.integer.compare import layer_agreement


def test_accumulators_equal_those_implied_by_torch(exported):
    """Per layer: the int8 codes torch feeds each layer, through each of our kernels, give exactly
    the integer accumulators of torch's conv on those codes and signs; and torch's hard-mode layer
    output is that accumulator times s_x * s_c up to float32 rounding."""
    model, export = exported
    rows = layer_agreement(model, export, torch.randn(4, 3, 32, 32))
    assert [r["layer"] for r in rows] == list(export.layers)
    assert all(r["exact"] for r in rows), [r["layer"] for r in rows if not r["exact"]]
    assert max(r["torch deviation"] for r in rows) < 1e-4

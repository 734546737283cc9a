"""bintut.integer.engine: the numpy integer engine -- int8 quantization as torch rounds, the integer-only
forward, and the inputs it refuses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bintut.integer.engine import IntegerResNet, quantize
from bintut.integer.format import load_export


def test_the_engine_takes_lists_and_tensors(exported):
    """5g: the engine validated np.asarray(images) but then used the original object (a list, a tensor)."""
    import torch

    from bintut.integer.engine import IntegerResNet

    engine = IntegerResNet(exported[1], integer_only=True)
    images = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    expected = engine(images)
    tensor = torch.from_numpy(images).requires_grad_()
    for given in (images.tolist(), tensor):
        assert np.array_equal(engine(given), expected)
    with pytest.raises(ValueError, match="expected an array of images, got list"):
        engine([[1, 2], [3]])


def test_engine_refuses_bad_images(saved_export):
    """Item 11: raw uint8 pixels, NaN and an empty batch are refused with a clear message, in both engines."""
    export = load_export(saved_export)
    for engine in (IntegerResNet(export), IntegerResNet(export, integer_only=True)):
        with pytest.raises(ValueError, match="expected normalised float images, got uint8"):
            engine(np.zeros((2, 3, 32, 32), dtype=np.uint8))
        nan = np.zeros((2, 3, 32, 32), dtype=np.float32)
        nan[1, 0, 3, 3] = np.nan
        with pytest.raises(ValueError, match="1 NaN or infinite values"):
            engine(nan)
        with pytest.raises(ValueError, match="the batch is empty"):
            engine(np.zeros((0, 3, 32, 32), dtype=np.float32))
        with pytest.raises(ValueError, match=r"shape \(N, 3, H, W\)"):
            engine(np.zeros((2, 32, 32, 3), dtype=np.float32))
    integer = IntegerResNet(export, integer_only=True)
    with pytest.raises(ValueError, match="laid out for 32 x 32 images"):
        integer(np.zeros((1, 3, 28, 28), dtype=np.float32))
    with pytest.raises(ValueError, match="expected int8 image codes"):
        integer.integer_logits(np.zeros((1, 32, 32, 3), dtype=np.float32))


def test_quantize_matches_torch_rounding():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 1000.0, -1000.0], dtype=np.float32)
    step = np.float32(1.0)
    torch_codes = torch.clamp(torch.round(torch.from_numpy(x) / float(step)), -127, 127)
    assert quantize(x, step).tolist() == torch_codes.to(torch.int8).tolist() == [0, 2, 2, 0, -2, 127, -127]


def test_integer_only_engine_is_integer_and_kernel_independent(exported):
    _, export = exported
    images = np.random.default_rng(2).standard_normal((2, 3, 32, 32)).astype(np.float32)
    engine = IntegerResNet(export, integer_only=True)
    codes = engine.quantize_images(images)
    assert codes.dtype == np.int8 and codes.shape == (2, 32, 32, 3)
    logits = engine.integer_logits(codes)
    assert logits.dtype == np.int32 and logits.shape == (2, 100)
    assert np.array_equal(IntegerResNet(export, "oracle", integer_only=True).integer_logits(codes), logits)
    assert np.array_equal(IntegerResNet(export, "addsub", integer_only=True).integer_logits(codes[:1]), logits[:1])
    # forward() is the same integers scaled by 2^-logit_bits
    assert np.array_equal(engine(images), logits.astype(np.float32) * np.float32(2.0**-export.logit_bits))
    seen = engine.input_codes(images)
    assert list(seen) == list(export.layers) and all(c.dtype == np.int8 for c in seen.values())

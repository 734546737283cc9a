"""The deployed network in torch (bintut.integer.torch_engine): bit for bit the numpy integer-only engine's, on
every machine -- and the three faults of issue 14 that made an export or the hard view differ from it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bintut.integer.engine import IntegerResNet
from bintut.integer.fold import export_resnet
from bintut.integer.torch_engine import TorchIntegerResNet, deployed_accuracy
from bintut.model import resnet18_cifar
from bintut.quant import binarize_, set_controls

from ..conftest import calibrated
from .conftest import both_engines, converted


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("batch", [1, 5])
def test_torch_integer_network_is_the_numpy_engine_bit_for_bit(seed, batch):
    export = export_resnet(calibrated(seed))
    images = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(100 + seed)) * 2
    expected, got = both_engines(export, images)
    assert got.dtype == np.int32 and got.shape == (batch, 100)
    np.testing.assert_array_equal(got, expected)
    engine = TorchIntegerResNet(export)
    assert np.array_equal(engine.quantize_images(images).permute(0, 2, 3, 1).numpy(),
                          IntegerResNet(export).quantize_images(images.numpy()))


def test_deployed_accuracy_before_calibration_is_none_with_the_reason():
    model = binarize_(resnet18_cifar(pretrained=False))
    result = deployed_accuracy(model, [(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))])
    assert result["acc"] is None and "never calibrated" in result["why"]


def test_deployed_accuracy_leaves_the_model_as_it_was():
    model = calibrated(0).train()
    set_controls(model, 0.3, 0.2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = deployed_accuracy(model, [(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3]))])
    assert result["count"] == 4 and 0 <= result["acc"] <= 1
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ----------------------------------------------------------------------------- the faults


def test_a_near_dead_batchnorm_channel_exports_as_a_constant(tmp_path):
    """Fault a: gamma = 1e-10 gave 'multiplier 4.47e-12 is out of the fixed-point range'; now that channel's
    multiplier is 0 and its output the constant its bias says, in numpy and torch alike."""
    model = calibrated(0)
    with torch.no_grad():
        model.layer1[0].bn1.weight[5] = 1e-10
    export = export_resnet(model)
    layer = export.layers["layer1.0.conv1"]
    assert layer.m[5] == 0 and layer.m[4] != 0
    images = torch.randn(3, 3, 32, 32)
    expected, got = both_engines(export, images)
    np.testing.assert_array_equal(got, expected)
    codes = IntegerResNet(export, integer_only=True).input_codes(images.numpy())["layer1.0.conv2"]
    constant = codes[..., 5]
    assert (constant == constant.flat[0]).all()
    # beta / sigma rounded once: a channel whose float output is 2.3 steps gives code 2, not 3
    expected_code = np.clip(np.floor(layer.b[5] / export.layers["layer1.0.conv2"].act_step + 0.5), 0, 127)
    assert constant.flat[0] == expected_code


def test_the_torch_integer_engine_takes_an_empty_batch():
    """0 images crashed (torch.cat of no chunks); now 0 rows of logits, and deployed_accuracy counts 0."""
    model = converted()
    engine = TorchIntegerResNet(export_resnet(model))
    logits = engine(torch.zeros(0, 3, 32, 32))
    assert logits.shape == (0, 100) and logits.dtype == torch.float32
    codes = engine.integer_logits(torch.zeros(0, 3, 32, 32, dtype=torch.int8))
    assert codes.shape == (0, 100) and codes.dtype == torch.int32
    result = deployed_accuracy(model, [(torch.zeros(0, 3, 32, 32), torch.zeros(0, dtype=torch.int64))])
    assert result["count"] == 0 and result["acc"] == 0.0

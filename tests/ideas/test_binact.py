"""Binary activations (bintut.binact) and the XNOR-popcount GEMM (bintut.integer.xnor), taught in notebook 09."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bintut import binarize_, resnet18_cifar
from bintut.binact import (
    BinaryActQuantizer,
    binarize_activations_,
    set_binary_controls,
    sign_clipped_ste,
)
from bintut.integer.kernels import im2col, pack_signs
from bintut.integer.xnor import xnor_costs, xnor_gemm
from bintut.quant import GradualQuantizer, Int8Quantizer, hard_mode, quantizers, set_controls


def test_clipped_identity_gradient():
    u = torch.tensor([-3.0, -1.0, -0.2, 0.0, 0.7, 1.0, 1.5], requires_grad=True)
    y = sign_clipped_ste(u)
    (y * torch.arange(1.0, 8.0)).sum().backward()
    assert y.tolist() == [-1, -1, -1, 1, 1, 1, 1]
    assert u.grad.tolist() == [0, 2, 3, 4, 5, 6, 0]


def test_the_quantizer_is_a_gradual_quantizer_with_two_levels():
    q = BinaryActQuantizer()
    assert isinstance(q, GradualQuantizer) and not isinstance(q, Int8Quantizer)
    x = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 4.0], requires_grad=True)  # mean 1.5
    q.set_controls(1.0, 1.0)
    y = q(x)  # training mode: the batch sets s = 1.5
    assert float(q.running_mean) == 1.5
    assert y.tolist() == [0.0, 0.0, 0.0, 3.0, 3.0, 3.0]
    y.sum().backward()
    assert x.grad.tolist() == [1, 1, 1, 1, 1, 0]  # 0 <= x <= 2s
    assert q.signs(x).tolist() == [-1, -1, -1, 1, 1, 1]
    q.set_controls(0.0, 0.0)
    assert torch.equal(q(x), x)  # p = bin_ratio = 0: the input unchanged
    q.eval()
    q.set_controls(0.5, 0.5)  # eval: blended without a mask
    assert torch.allclose(q(x), 0.5 * x + 0.5 * torch.tensor([0.0, 0, 0, 3, 3, 3]))


def _both_model():
    torch.manual_seed(0)
    model = binarize_(resnet18_cifar(pretrained=False, num_classes=10))
    with torch.no_grad():
        model(torch.randn(8, 3, 32, 32))  # calibrate
    set_controls(model, 1.0, 1.0)
    return model.eval()


def test_from_the_both_stage_gradually():
    model = _both_model()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
    names = binarize_activations_(model)
    assert len(names) == 19 and "conv1" not in names and "fc" not in names
    with torch.no_grad():
        assert torch.equal(model(x), before)  # controls at 0: exactly the both model
    assert len(list(quantizers(model, "activations"))) == 21  # the int8 quantizers stay, as the start of each
    set_binary_controls(model, 1.0, 1.0)
    with torch.no_grad():
        after = model(x)
    assert not torch.equal(after, before)
    with hard_mode(model), torch.no_grad():
        assert torch.equal(model(x), after)
    with pytest.raises(ValueError, match="already has binary activations"):
        binarize_activations_(model)
    with pytest.raises(ValueError, match="no int8 input quantizers"):
        binarize_activations_(resnet18_cifar(pretrained=False, num_classes=10))
    with pytest.raises(ValueError, match="no binary activations"):
        set_binary_controls(_both_model(), 1.0)


def test_a_binary_conv_is_a_constant_plus_the_xnor_product():
    """conv(s (1 + b), w) with zero padding = s (sum w + xnor(b, w)), a padded tap being b = -1."""
    rng = np.random.default_rng(1)
    b = np.where(rng.random((1, 6, 6, 16)) < 0.5, -1, 1).astype(np.int8)  # NHWC signs
    w = np.where(rng.random((8, 16, 3, 3)) < 0.5, -1, 1).astype(np.int8)
    w_rows = w.transpose(0, 2, 3, 1).reshape(8, -1)
    torch_acc = torch.nn.functional.conv2d(torch.from_numpy((1.0 + b.transpose(0, 3, 1, 2)).astype(np.float32)),
                                           torch.from_numpy(w.astype(np.float32)), padding=1)
    cols = im2col(b.astype(np.int16) + 1, 3, 1, 1) - 1  # pad the codes 1 + b with 0, i.e. b with -1
    acc = w_rows.sum(axis=1) + xnor_gemm(pack_signs(cols), pack_signs(w_rows), cols.shape[1])
    assert np.array_equal(acc.reshape(6, 6, 8).transpose(2, 0, 1), torch_acc[0].numpy().astype(np.int64))


def test_costs_keep_the_stem_and_head_in_int8():
    from bintut.integer.fold import export_resnet
    from bintut.integer.opcount import layer_costs

    rows = xnor_costs(layer_costs(export_resnet(_both_model())))
    by = {r["layer"]: r for r in rows}
    assert by["conv1"]["binary path ops"] == by["conv1"]["int8 path ops"]
    assert by["fc"]["input bytes binary"] == by["fc"]["input bytes int8"]
    block = by["layer4.0.conv2"]  # K = 4608: 72 words per output, an XOR and a popcount each
    assert block["K"] == 4608 and block["int8 path ops"] == 16 * 512 * 4608
    assert block["binary path ops"] == 16 * 512 * 2 * 72 and block["input bytes binary"] == 512 * 16 // 8



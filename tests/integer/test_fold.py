"""Issue 24, kind 6: the export computes what the integer network can compute exactly (a convolution's bias
before a BatchNorm, a BatchNorm without affine parameters) and refuses, naming the layer and the reason, what it
cannot (no running statistics, a padding mode other than zeros, unequal stride or padding per axis); the torch
integer engine takes an empty batch."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from bintut.integer.engine import clear_margin
from bintut.integer.fold import export_resnet
from bintut.integer.format import ExportError
from bintut.integer.torch_engine import TorchIntegerResNet
from bintut.model import resnet18_cifar
from bintut.quant import binarize_, hard_mode, set_controls

from ..conftest import calibrated
from .conftest import calibrated_binary_model, converted

BIASED = ("conv1", "bn1"), ("layer1.0.conv2", "layer1.0.bn2"), ("layer3.0.downsample.0", "layer3.0.downsample.1")


def with_biases(model: nn.Module) -> nn.Module:
    """A copy of a calibrated model whose convolutions in BIASED carry a large bias that their BatchNorm's running
    mean absorbs: the same function, so the same deployed network (the bias cancels only if it is folded)."""
    twin = copy.deepcopy(model)
    modules = dict(twin.named_modules())
    generator = torch.Generator().manual_seed(1)
    for conv_name, bn_name in BIASED:
        conv, bn = modules[conv_name], modules[bn_name]
        bias = torch.randn(conv.out_channels, generator=generator) * 3
        conv.bias = nn.Parameter(bias)
        bn.running_mean += bias
    return twin


def test_a_conv_bias_before_batchnorm_folds_into_the_epilogue():
    """The bias was dropped silently (logits wrong): now B = beta + gamma * (bias - mu) / sigma, and the
    deployed network computes the float model's hard-mode logits."""
    plain = converted()
    model = with_biases(plain)
    export = export_resnet(model)
    conv, bn = model.layer1[0].conv2, model.layer1[0].bn2
    with torch.no_grad():
        sigma = torch.sqrt(bn.running_var.double() + bn.eps)
        expected = bn.bias.double() + bn.weight.double() * (conv.bias.double() - bn.running_mean.double()) / sigma
        without = bn.bias.double() - bn.weight.double() * bn.running_mean.double() / sigma  # the old, biasless fold
    np.testing.assert_allclose(export.layers["layer1.0.conv2"].b, expected.float().numpy(), rtol=1e-5, atol=1e-5)
    assert np.abs(without.numpy() - export.layers["layer1.0.conv2"].b).max() > 1.0
    reference = export_resnet(plain)  # the same function without biases
    for name, _ in BIASED:
        np.testing.assert_allclose(export.layers[name].b, reference.layers[name].b, rtol=1e-4, atol=1e-4)
    images = torch.randn(24, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad(), hard_mode(model):
        ref = model(images).numpy()
    scale = np.abs(ref).max()
    deployed = TorchIntegerResNet(export)(images).numpy()  # the integer-only network: the bias-free twin's
    assert np.abs(deployed - TorchIntegerResNet(reference)(images).numpy()).max() < 1e-3 * scale
    largest, clear = clear_margin(ref, deployed)  # the usual agreement check: clear winners agree
    assert np.array_equal(deployed.argmax(1)[clear], ref.argmax(1)[clear])


def same_network(export, reference) -> None:
    """Two exports compute the same integer network: equal geometry, signs and fixed-point constants."""
    assert list(export.layers) == list(reference.layers)
    for name, layer in export.layers.items():
        other = reference.layers[name]
        assert (layer.kind, layer.kernel, layer.stride, layer.padding) == (other.kind, other.kernel, other.stride,
                                                                           other.padding), name
        for field in ("bits", "a", "b", "m", "shift", "bias"):
            np.testing.assert_array_equal(getattr(layer, field), getattr(other, field), err_msg=f"{name}.{field}")


def test_a_batchnorm_without_affine_parameters_folds_with_gamma_1_and_beta_0():
    """affine=False was an AttributeError traceback. Its twin: the same statistics with gamma = 1, beta = 0."""
    reference_model = converted()
    model = copy.deepcopy(reference_model)
    for stage, i, name in ((reference_model.layer2, 1, "bn1"), (reference_model.layer4, 0, "bn2")):
        with torch.no_grad():
            getattr(stage[i], name).weight.fill_(1.0)
            getattr(stage[i], name).bias.fill_(0.0)
    for stage, i, name in ((model.layer2, 1, "bn1"), (model.layer4, 0, "bn2")):
        old = getattr(stage[i], name)
        new = nn.BatchNorm2d(old.num_features, affine=False).eval()
        new.running_mean.copy_(old.running_mean)
        new.running_var.copy_(old.running_var)
        setattr(stage[i], name, new)
    export = export_resnet(model)
    bn = model.layer2[1].bn1
    with torch.no_grad():
        expected = -bn.running_mean.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    np.testing.assert_allclose(export.layers["layer2.1.conv1"].b, expected.float().numpy(), rtol=1e-6, atol=1e-6)
    same_network(export, export_resnet(reference_model))


def _set(path: str, value):
    def edit(model):
        *parents, last = path.split(".")
        owner = model
        for part in parents:
            owner = owner[int(part)] if part.isdigit() else getattr(owner, part)
        setattr(owner, last, value)
    return edit


REFUSED = [
    (_set("layer1.0.bn1", nn.BatchNorm2d(64, track_running_stats=False)), "layer1.0.conv1",
     "keeps no running statistics"),
    (_set("layer2.0.conv2.padding_mode", "reflect"), "layer2.0.conv2", "padding_mode 'reflect'"),
    (_set("layer1.1.conv2.padding_mode", "circular"), "layer1.1.conv2", "padding_mode 'circular'"),
    (_set("layer1.0.conv1.padding", (1, 0)), "layer1.0.conv1", r"padding \(1, 0\) differs between the axes"),
    (_set("layer1.0.conv1.stride", (1, 2)), "layer1.0.conv1", r"stride \(1, 2\) differs between the axes"),
    (_set("layer1.0.conv1", nn.Conv2d(64, 64, 2, padding="same", bias=False)), "layer1.0.conv1",
     "padding 'same' with a 2 x 2 kernel pads unequally"),
    (_set("layer1.0.bn1", nn.GroupNorm(8, 64)), "layer1.0.conv1", "followed by a GroupNorm"),
    (_set("layer2.0.downsample", nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(64, 128, 1, bias=False),
                                               nn.BatchNorm2d(128))),
     "layer2.0.downsample", "a shortcut made of AvgPool2d, Conv2d, BatchNorm2d"),
]


@pytest.mark.parametrize("edit, layer, reason", REFUSED, ids=[r[2][:20] for r in REFUSED])
def test_what_the_integer_network_cannot_compute_is_refused_naming_layer_and_reason(edit, layer, reason):
    """Each was exported as symmetric zero padding (wrong accumulators, wrong map sizes), or a traceback."""
    torch.manual_seed(0)
    model = resnet18_cifar(pretrained=False)
    edit(model)
    binarize_(model)
    with torch.no_grad():  # calibrated in training mode: every layer saw its inputs (some edits break eval)
        try:
            model.train()(torch.randn(4, 3, 32, 32))
        except RuntimeError:
            pass
    for quantizer_layer in model.modules():  # the range check comes after the geometry: calibrate by hand too
        q = getattr(quantizer_layer, "input_quant", None)
        if q is not None and not bool(q.initialized):
            q.running_max.fill_(1.0)
            q.initialized.fill_(True)
    set_controls(model, 1.0, 1.0)
    with pytest.raises(ExportError, match=f"^layer {layer}.*{reason}") as caught:
        export_resnet(model.eval())
    assert "\n" not in str(caught.value)


def test_a_shortcut_without_batchnorm_folds_its_bias():
    """nn.Sequential(Conv2d) as a projection shortcut was an IndexError traceback: A = s_x * s_c, B = bias."""
    def bare(model):
        model.layer2[0].downsample = nn.Sequential(nn.Conv2d(64, 128, 1, stride=2, bias=True))

    model = converted(bare)
    layer = export_resnet(model).layers["layer2.0.downsample.0"]
    np.testing.assert_allclose(layer.b, model.layer2[0].downsample[0].bias.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(layer.a, layer.act_step * layer.weight_scale, rtol=1e-6)


def test_string_padding_with_one_symmetric_meaning_is_computed():
    """'same' (odd kernel, stride 1) is kernel // 2 zeros on every side and 'valid' none: exported as such,
    the same network as the numeric paddings."""
    reference_model = converted()
    model = copy.deepcopy(reference_model)
    model.layer1[0].conv1.padding = "same"
    model.layer2[1].conv2.padding = "same"
    model.layer3[0].downsample[0].padding = "valid"
    export = export_resnet(model)
    assert export.layers["layer1.0.conv1"].padding == 1 and export.layers["layer3.0.downsample.0"].padding == 0
    same_network(export, export_resnet(reference_model))
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), hard_mode(model), hard_mode(reference_model):
        assert torch.equal(model(images), reference_model(images))  # the float model agrees that they are one


def test_export_refuses_models_that_are_not_fully_binary():
    model = calibrated_binary_model()
    set_controls(model, 0.9, 1.0)
    with pytest.raises(ExportError, match="not fully binarized"):
        export_resnet(model)
    from bintut.quant import QuantConfig

    weights_only = binarize_(resnet18_cifar(pretrained=False), QuantConfig(activations=False))
    set_controls(weights_only, 1, 1)
    with pytest.raises(ExportError, match="lacks a activation quantizer|lacks a weight quantizer|activation"):
        export_resnet(weights_only)
    with pytest.raises(ExportError, match="torchvision ResNet"):
        export_resnet(torch.nn.Linear(3, 3))


def test_export_names_the_layer_whose_int8_range_is_zero():
    model = calibrated(0)
    model.layer3[1].conv1.input_quant.running_max.zero_()
    with pytest.raises(ExportError, match=r"layer layer3\.1\.conv1: the int8 input range is zero"):
        export_resnet(model)


def test_the_exporter_refuses_a_model_with_nan_weights_made_in_memory():
    from bintut.integer.fold import ExportError, export_resnet

    model = copy.deepcopy(calibrated_binary_model())
    with torch.no_grad():
        model.layer3[1].conv2.parametrizations.weight.original[0, 1, 2, 2] = float("inf")
    with pytest.raises(ExportError, match=r"layer3\.1\.conv2\.parametrizations\.weight\.original holds NaN or "
                                          "infinite values"):
        export_resnet(model)


import numpy as np
import pytest
import torch
from torch import nn

from bintut.model import resnet18_cifar
from bintut.quant import (
    Int8Quantizer,
    QuantConfig,
    SignQuantizer,
    binarize_,
    get_controls,
    hard_mode,
    is_fully_binary,
    quantizers,
    set_controls,
)

from ..conftest import calibrated


def conv_layer(seed=0):
    torch.manual_seed(seed)
    return nn.Conv2d(8, 16, 3, padding=1)


def test_fully_binary_weights_take_two_values_per_channel():
    layer = binarize_(conv_layer(), QuantConfig(activations=False))
    set_controls(layer, 1.0, 1.0)
    w = layer.weight.detach()
    scale = layer.parametrizations.weight[0].scale.detach().flatten()
    for c in range(w.shape[0]):
        values = set(w[c].flatten().tolist())
        assert values == {scale[c].item(), -scale[c].item()}
    # sign(0) = +1
    q = SignQuantizer(torch.zeros(2, 3))
    q.set_controls(1, 1)
    assert torch.equal(q(torch.zeros(2, 3)), q.scale.expand(2, 3))


def test_zero_controls_give_fp_weights_exactly():
    ref = conv_layer()
    layer = binarize_(conv_layer(), QuantConfig(activations=False))
    assert torch.equal(layer.weight, ref.weight)


def test_analytic_scale_is_mean_abs():
    layer = binarize_(conv_layer(), QuantConfig(activations=False, scale="analytic"))
    original = layer.parametrizations.weight.original.detach()
    set_controls(layer, 1, 1)
    expected = original.abs().mean(dim=(1, 2, 3))
    assert torch.allclose(layer.weight.detach().abs().amax(dim=(1, 2, 3)), expected)
    assert not any(n.endswith("scale") for n, _ in layer.named_parameters())


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_fraction_binarized_follows_p(p):
    torch.manual_seed(1)
    q = SignQuantizer(torch.randn(256, 256))
    w = torch.randn(256, 256)
    q.set_controls(p=p, bin_ratio=0.0)
    out = q(w)
    binarized = (out != w).float().mean().item()
    assert binarized == pytest.approx(p, abs=0.01)


def test_nested_masks_only_grow():
    torch.manual_seed(2)
    w = torch.randn(64, 64)
    q = SignQuantizer(w, nested=True)
    previous = torch.zeros_like(w, dtype=torch.bool)
    for p in (0.1, 0.3, 0.6, 0.9):
        q.set_controls(p=p, bin_ratio=0)
        now = q(w) != w
        assert torch.all(now | ~previous), "an entry binarized at a lower p reverted"
        assert torch.equal(now, q(w) != w), "nested mask changed between forwards"
        previous = now


def test_bin_ratio_blends_linearly():
    w = torch.randn(4, 5)
    q = SignQuantizer(w)
    q.set_controls(p=0, bin_ratio=0.25)
    hard = torch.where(w >= 0, 1.0, -1.0) * q.scale.detach()
    assert torch.allclose(q(w), 0.75 * w + 0.25 * hard)


def test_straight_through_gradients():
    w = torch.randn(6, 5, requires_grad=True)
    q = SignQuantizer(w.detach())
    q.set_controls(1, 1)
    q(w).sum().backward()
    # identity STE for sign: d/dw = scale; d/dscale = sign(w) summed
    assert torch.allclose(w.grad, q.scale.detach().expand_as(w))
    assert torch.allclose(q.scale.grad.flatten(), torch.where(w >= 0, 1.0, -1.0).sum(1))

    x = torch.randn(3, 10, requires_grad=True)
    a = Int8Quantizer()
    a.set_controls(1, 1)
    a(x).sum().backward()
    inside = x.detach().abs() < x.detach().abs().max()  # the max itself sits on the clamp boundary
    assert torch.equal(x.grad[inside], torch.ones_like(x)[inside])  # round passes gradients straight through
    y = torch.tensor([1.0, 500.0], requires_grad=True)
    a.eval()
    a(y).sum().backward()
    assert y.grad.tolist() == [1.0, 0.0]  # clamped beyond the running max: no gradient


def test_int8_levels_and_scale():
    torch.manual_seed(3)
    a = Int8Quantizer()
    a.set_controls(1, 1)
    x = torch.randn(10_000) * 3
    y = a(x)
    step = x.abs().max() / 127
    assert a.running_max.item() == pytest.approx(x.abs().max().item())
    codes = y / step
    assert torch.allclose(codes, codes.round(), atol=1e-4)
    assert codes.abs().max() <= 127 + 1e-4
    assert len(torch.unique(y)) <= 255
    assert (y - x).abs().max() <= step / 2 + 1e-6
    assert torch.equal(a.integer(x).float(), codes.round())


def test_running_max_ema_and_eval_freeze():
    a = Int8Quantizer(momentum=0.1)
    a(torch.full((4,), 2.0))
    assert a.running_max.item() == pytest.approx(2.0)  # first batch initialises
    a(torch.full((4,), 4.0))
    assert a.running_max.item() == pytest.approx(0.9 * 2.0 + 0.1 * 4.0)
    a.eval()
    a(torch.full((4,), 100.0))
    assert a.running_max.item() == pytest.approx(2.2)
    a.set_controls(1, 1)
    assert a(torch.full((1,), 100.0)).item() == pytest.approx(2.2)  # clamped to +127 steps


def test_conversion_preserves_fp_outputs_and_hard_mode_restores():
    from bintut.model import resnet18_cifar

    torch.manual_seed(4)
    ref = resnet18_cifar(pretrained=False).eval()
    model = resnet18_cifar(pretrained=False).eval()
    model.load_state_dict(ref.state_dict())
    binarize_(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
        n_layers = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
        assert len(list(quantizers(model, "weights"))) == n_layers == 21
        assert len(list(quantizers(model, "activations"))) == n_layers
        set_controls(model, p=0.3, bin_ratio=0.2)
        with hard_mode(model):
            assert is_fully_binary(model)
            hard_out = model(x)
        assert get_controls(model)["weights.p"] == pytest.approx(0.3)
        assert not torch.allclose(hard_out, ref(x))


def test_targets_are_separate():
    model = binarize_(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)))
    set_controls(model, p=0.5, bin_ratio=0.1, target="weights")
    set_controls(model, p=0.2, target="activations")
    c = get_controls(model)
    assert c == pytest.approx(
        {"weights.p": 0.5, "weights.bin_ratio": 0.1, "activations.p": 0.2, "activations.bin_ratio": 0.0}
    )
    only_acts = binarize_(nn.Linear(3, 3), QuantConfig(weights=False))
    assert [q.role for q in quantizers(only_acts)] == ["activations"]
    with pytest.raises(ValueError, match="no weights quantizers"):
        set_controls(only_acts, 1, 1, target="weights")


@pytest.mark.parametrize("name, kwargs", [("p", {"p": 1.5}), ("bin_ratio", {"bin_ratio": -0.1}),
                                          ("p", {"p": float("nan")})])
def test_controls_outside_unit_interval(name, kwargs):
    model = binarize_(nn.Linear(3, 3))
    with pytest.raises(ValueError, match=f"{name} must be in \\[0, 1\\], got"):
        set_controls(model, **kwargs)


def test_bad_conversions():
    with pytest.raises(ValueError, match="no Conv2d or Linear"):
        binarize_(nn.ReLU())
    model = binarize_(nn.Linear(3, 3))
    with pytest.raises(ValueError, match="already converted"):
        binarize_(model)
    with pytest.raises(ValueError, match="quantizes nothing"):
        binarize_(nn.Linear(3, 3), QuantConfig(weights=False, activations=False))
    with pytest.raises(ValueError, match="scale must be"):
        binarize_(nn.Linear(3, 3), QuantConfig(scale="median"))
    with pytest.raises(ValueError, match="target must be"):
        list(quantizers(model, "biases"))


def test_controls_are_buffers_updated_in_place():
    model = binarize_(nn.Linear(3, 3))
    q = next(quantizers(model))
    before = q.p.data_ptr()
    set_controls(model, 0.5, 0.5)
    assert q.p.data_ptr() == before and q.p.item() == 0.5


def test_hard_mode_in_train_mode_keeps_the_running_maxes():
    model = binarize_(resnet18_cifar(pretrained=False)).train()
    x = torch.randn(2, 3, 32, 32)
    model(x)
    before = {n: b.clone() for n, b in model.named_buffers() if "running_max" in n}
    with hard_mode(model):
        model(3 * x)
    after = {n: b for n, b in model.named_buffers() if "running_max" in n}
    assert before.keys() == after.keys() and all(torch.equal(before[n], after[n]) for n in before)
    assert all(q.training for q in model.modules() if isinstance(q, Int8Quantizer))


def test_a_zero_range_quantizer_gives_the_integer_paths_codes_not_nan():
    """Fault b: a running max of 0 gave [1.2e-38, nan, nan, nan] in hard mode while integer() gave +-127."""
    q = Int8Quantizer()
    q.set_controls(1.0, 1.0)
    q.train()
    q(torch.zeros(4, 8))
    q.eval()
    x = torch.tensor([0.01, 0.05, 0.5, -0.5, 0.0, 1e-45, -1e-40, 3e38])
    out = q(x)
    codes = q.integer(x)
    step = q.step_for(x)
    assert torch.isfinite(out).all()
    assert torch.equal(out, codes.float() * step)
    assert codes.tolist() == [127, 127, 127, -127, 0, 0, -1, 127]
    from bintut.integer.engine import quantize  # what the numpy engine (and the C library) compute

    assert codes.tolist() == quantize(x.numpy(), np.float32(step.item())).tolist()
    x = torch.tensor([1.0, -2.0], requires_grad=True)  # the straight-through gradient is still defined
    q(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_hard_mode_on_a_training_model_is_the_eval_mode_deployable_view():
    """Fault c: hard_mode(model) on a training model used batch statistics (logits off by up to 1.38 and
    dependent on the batch) and moved BatchNorm's running statistics."""
    model = calibrated(0)
    set_controls(model, 0.4, 0.3)
    images = torch.randn(6, 3, 32, 32)
    with torch.no_grad(), hard_mode(model):
        eval_view = model(images)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = {name: m.training for name, m in model.named_modules()}
    model.layer2[0].bn1.eval()  # a mixed model: every flag comes back as it was
    modes["layer2.0.bn1"] = False
    with torch.no_grad(), hard_mode(model):
        train_view = model(images)
        first_two = model(images[:2])
    assert torch.equal(train_view, eval_view)
    assert torch.allclose(first_two, eval_view[:2], atol=1e-5, rtol=0)  # no batch statistics
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert [q.p.item() for q in model.modules() if isinstance(q, Int8Quantizer)][0] == pytest.approx(0.4)

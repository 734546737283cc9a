"""The deployed network in torch (bintut.integer.torch_engine): bit for bit the numpy integer-only engine's, on
every machine -- and the three faults of issue 14 that made an export or the hard view differ from it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bintut.cli import main
from bintut.integer.engine import IntegerResNet, clear_margin
from bintut.integer.fold import export_resnet
from bintut.integer.format import ExportError, load_export
from bintut.integer.torch_engine import TorchIntegerResNet, deployed_accuracy
from bintut.model import resnet18_cifar
from bintut.quant import Int8Quantizer, binarize_, hard_mode, set_controls

from ..conftest import tiny


def calibrated(seed: int) -> torch.nn.Module:
    """A random-init, fully binary ResNet18 whose BatchNorm statistics and int8 ranges saw one batch."""
    torch.manual_seed(seed)
    model = binarize_(resnet18_cifar(pretrained=False))
    with torch.no_grad():
        model.train()(torch.randn(8, 3, 32, 32))
    set_controls(model, 1.0, 1.0)
    return model.eval()


def both_engines(export, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    numpy_engine = IntegerResNet(export, integer_only=True)
    expected = numpy_engine.integer_logits(numpy_engine.quantize_images(images.numpy()))
    torch_engine = TorchIntegerResNet(export, chunk=3)  # chunks that do not divide the batch
    return expected, torch_engine.integer_logits(torch_engine.quantize_images(images)).numpy()


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


def test_trained_model_torch_integer_equals_numpy_on_the_whole_test_set(smoke_run):
    from bintut.data.choice import test_images

    export = export_resnet(smoke_run.model)
    images, labels, _ = test_images(smoke_run.config)
    expected, got = both_engines(export, images)
    np.testing.assert_array_equal(got, expected)
    # ... and the accuracy every epoch row reports is this network's
    reported = smoke_run.final["deployed_acc"]
    assert reported == pytest.approx(float((expected.argmax(1) == labels.numpy()).mean()))


def test_float_fake_quant_and_integer_networks_agree_where_the_margin_guarantees_it(smoke_run):
    """Where torch's hard-mode top-2 logit gap exceeds twice the largest logit difference between the two
    networks, no rounding can change the winner: those images must agree. (The share of the others is a
    property of the trained weights and of the machine's float arithmetic, so it is reported, not asserted.)"""
    from bintut.data.choice import test_images

    images, _, _ = test_images(smoke_run.config)
    export = export_resnet(smoke_run.model)
    with torch.no_grad(), hard_mode(smoke_run.model):
        ref = smoke_run.model(images)
    deployed, ref = TorchIntegerResNet(export)(images).numpy(), ref.numpy()
    largest, clear = clear_margin(ref, deployed)
    assert np.array_equal(deployed.argmax(1)[clear], ref.argmax(1)[clear])
    print(f"agreement {float((deployed.argmax(1) == ref.argmax(1)).mean()):.3f} on {len(images)} images; "
          f"{int(clear.sum())} with a clear margin; largest logit difference {largest:.4f}")


@pytest.mark.slow
def test_bf16_run_reports_the_integer_networks_accuracy_on_any_cpu(data_dir, tmp_path, smoke_run):
    """Trained under bf16 autocast (native on some CPUs, emulated on others: the weights differ), the
    deployed accuracy in metrics.jsonl is the numpy integer engine's accuracy on the exported weights."""
    from bintut.data.choice import test_images
    from bintut.training.loop import train
    from bintut.training.runs import load_run

    cfg = tiny(data_dir, tmp_path / "bf16", amp="bf16", synthetic_train=8, batch_size=8, epochs=1,
               synthetic_test=100, eval_batch_size=100, init_from=str(smoke_run.out),
               lr=[[1.0, "stay", 1e-5, 1e-5]])
    train(cfg)
    reported = json.loads((tmp_path / "bf16" / "metrics.jsonl").read_text().splitlines()[-1])
    run = load_run(tmp_path / "bf16")
    images, labels, _ = test_images(run.config)
    engine = IntegerResNet(export_resnet(run.model), integer_only=True)
    accuracy = float((engine(images.numpy()).argmax(1) == labels.numpy()).mean())
    assert reported["test_images"] == 100 and reported["deployed_acc"] == pytest.approx(accuracy)


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


def test_the_cli_exports_a_run_with_a_near_dead_channel(smoke_run, tmp_path):
    from bintut.files.checkpoint import load_checkpoint, save_checkpoint

    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "metrics.jsonl"):
        (run / name).write_bytes((smoke_run.out / name).read_bytes())
    state = load_checkpoint(smoke_run.out / "checkpoint.pt")
    state["model"]["layer2.1.bn2.weight"][7] = 1e-12
    save_checkpoint(run / "checkpoint.pt", state)
    assert main(["export", str(run), "--out", str(tmp_path / "model.npz")]) == 0
    layer = load_export(tmp_path / "model.npz").layers["layer2.1.conv2"]
    # a residual branch: at its fine unit the bias needs most of the 64 bits, so the tiny multiplier keeps
    # fewer bits (M0 < 2^30) instead of the export failing
    assert abs(int(layer.m[7])) < 2**30 <= abs(int(layer.m[6]))


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


def test_export_names_the_layer_whose_int8_range_is_zero():
    model = calibrated(0)
    model.layer3[1].conv1.input_quant.running_max.zero_()
    with pytest.raises(ExportError, match=r"layer layer3\.1\.conv1: the int8 input range is zero"):
        export_resnet(model)


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


def test_fixed_point_epilogues_round_like_exact_arithmetic_whatever_the_sign_and_size():
    """round((a * x + b) / unit) per channel, for negative, tiny (underflowing), crowded and zero multipliers."""
    from fractions import Fraction

    from bintut.integer.fixedpoint import apply, fixed_point

    rng = np.random.default_rng(0)
    a = np.concatenate([rng.normal(0, 1e-3, 6), [-2e-3, 3e-17, -1e-16, 0.0, 1e-9, -4e-10]])
    b = np.concatenate([rng.normal(0, 0.05, 6), [0.01, 0.0114, -0.023, 0.0299, 2.1, -0.9]])
    unit = 2.4e-6  # a residual branch's fine unit: large b / unit
    m, shift, bias = fixed_point(a, b, unit, 127 * 576)
    x = rng.integers(-127 * 576, 127 * 576, size=(500, len(a)))
    got = apply(x, m, shift, bias)
    for c in range(len(a)):
        exact = [Fraction(float(a[c])) * int(v) / Fraction(unit) + Fraction(float(b[c])) / Fraction(unit)
                 for v in x[:, c]]
        expected = np.array([int(np.floor(e + Fraction(1, 2))) for e in exact])
        near_half = np.array([abs(e - np.floor(e) - Fraction(1, 2)) < Fraction(1, 1000) for e in exact])
        assert np.array_equal(got[~near_half, c], expected[~near_half]), f"channel {c}"
    assert m[a.tolist().index(3e-17)] == 0 and np.sign(m[6]) == -1

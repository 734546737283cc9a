"""Fixtures of the training layer's tests: a cheap config, a cached copy of the smoke run."""

from __future__ import annotations

import shutil

import pytest

from ..conftest import tiny


def small(data_dir, out, **overrides):
    """Two batches of 8 images per epoch: the cheapest run that has every moving part."""
    values = dict(synthetic_train=16, synthetic_test=8, batch_size=8, eval_batch_size=8, mix_prob=0.0)
    return tiny(data_dir, out, **{**values, **overrides})


@pytest.fixture
def cached(smoke_run, tmp_path, monkeypatch):
    """A copy of the smoke run in a fresh run cache ($BINTUT_RUNS), under the name load_or_train gives it."""
    from bintut.training.runs import run_name

    cache = tmp_path / "cache"
    folder = cache / run_name(smoke_run.config)
    shutil.copytree(smoke_run.out, folder)
    monkeypatch.setenv("BINTUT_RUNS", str(cache))
    return smoke_run.config, folder


def quantizer_outputs_exact(device: str, dtype, batch: int) -> list[bool]:
    """Under autocast, whether each Int8Quantizer of a fully binary ResNet18 returned exactly
    round(x / step) * step of its input in float32 -- for every call, in training and in eval mode."""
    import torch

    from bintut.model import resnet18_cifar
    from bintut.quant import Int8Quantizer, binarize_, set_controls

    torch.manual_seed(0)
    model = binarize_(resnet18_cifar(pretrained=False)).to(device)
    set_controls(model, 1.0, 1.0)
    seen: list[bool] = []

    def check(q: Int8Quantizer, inputs: tuple, output: torch.Tensor) -> None:
        x = inputs[0].float()
        step = q.step_for(x)  # after the forward: the running max this forward used
        expected = torch.clamp(torch.round(x / step), -127, 127) * step
        seen.append(output.dtype == torch.float32 and torch.equal(output, expected))

    for q in model.modules():
        if isinstance(q, Int8Quantizer):
            q.register_forward_hook(check)
    x = torch.randn(batch, 3, 32, 32, device=device)
    for training in (True, False):
        model.train(training)
        with torch.autocast(device, dtype=dtype):
            model(x)
    return seen


def engine_and_torch_predictions(out):
    """For a finished run folder: the numpy engine's and torch's (float32, hard mode) top-1 predictions on the
    run's whole test set, and the labels."""
    import torch

    from bintut.data.choice import test_images
    from bintut.integer.engine import IntegerResNet
    from bintut.integer.fold import export_resnet
    from bintut.quant import hard_mode
    from bintut.training.runs import load_run

    run = load_run(out)
    images, labels, _ = test_images(run.config)
    with torch.no_grad(), hard_mode(run.model):
        torch_pred = run.model(images).argmax(1).numpy()
        engine_pred = IntegerResNet(export_resnet(run.model))(images.numpy()).argmax(1)
    return engine_pred, torch_pred, labels.numpy()

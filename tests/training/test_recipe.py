"""bintut.training.recipe: the model a config builds, the training step (compiled or not) and evaluation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bintut import binarize_, set_controls
from bintut.config import preset
from bintut.data.device import DeviceBatches
from bintut.data.images import ImageSet
from bintut.training.recipe import build_model, evaluate, loss_fn, steps_per_epoch


def test_the_model_head_follows_the_data_set():
    from bintut.config import preset
    from bintut.training.recipe import build_model

    model = build_model(preset("smoke", data="fashion-mnist"))
    assert model.fc.out_features == 10
    assert build_model(preset("smoke")).fc.out_features == 100


def test_compiled_step_gives_the_same_loss():
    """torch.compile of a binarizing model: same loss and gradients on the same batch (controls as tensors)."""
    torch.manual_seed(0)
    model = binarize_(nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(8, 10),
    ))
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))
    model(x)  # in training mode: initialise the running maxima
    model.eval()  # then freeze BN statistics and running maxima, so both passes see the same state
    compiled = torch.compile(model)
    settings = ((0.0, 0.0), (1.0, 1.0), (1.0, 0.5), (0.0, 0.7))  # 0 < p < 1 draws random masks: not compared
    for i, (p, r) in enumerate(settings):
        set_controls(model, p, r)
        losses, grads = [], []
        # after the first compilation, new control values must not recompile (they are tensors)
        with torch._dynamo.config.patch(error_on_recompile=i > 0):
            for m in (model, compiled):
                model.zero_grad()
                loss = loss_fn(m(x), y, 0.1)
                loss.backward()
                losses.append(loss.detach())
                grads.append(model[0].parametrizations.weight.original.grad.clone())
        assert torch.allclose(losses[0], losses[1], rtol=1e-4, atol=1e-5), (p, r, losses)
        assert torch.allclose(grads[0], grads[1], rtol=1e-3, atol=1e-5), (p, r)


def test_a_padded_last_evaluation_batch_gives_the_same_results():
    torch.manual_seed(0)
    model = build_model(preset("smoke", pretrained=False))
    model(torch.randn(8, 3, 32, 32))  # one training-mode pass: running maxima of the activations set
    rng = torch.Generator().manual_seed(1)
    images = ImageSet(torch.randint(0, 256, (20, 32, 32, 3), dtype=torch.uint8, generator=rng).numpy(),
                      torch.randint(0, 100, (20,), generator=rng).numpy(), [])
    loader = DeviceBatches(images, torch.device("cpu"), None).loader(list(range(20)), 8)  # 8, 8, 4
    plain, padded = (evaluate(model, loader, torch.device("cpu"), hard=True, pad=pad) for pad in (False, True))
    assert plain["count"] == padded["count"] == 20 and plain["acc"] == padded["acc"]
    assert abs(plain["loss"] - padded["loss"]) < 1e-5 * max(1.0, plain["loss"])


def test_drop_last_counts_whole_batches_and_refuses_a_set_smaller_than_a_batch():
    assert steps_per_epoch(40, 16, drop_last=True) == 2 and steps_per_epoch(40, 16, drop_last=False) == 3
    with pytest.raises(ValueError, match="no whole batch"):
        steps_per_epoch(10, 16, drop_last=True)
    assert preset("fast").drop_last and not preset("seed").drop_last  # the reference keeps the last batch

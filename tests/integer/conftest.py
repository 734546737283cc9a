"""Fixtures of the integer layer's tests, none of which trains: calibrated random fully binary ResNet18s and
their exports (bintut.model and bintut.quant only), so that `pytest tests/integer` never imports bintut.training
or bintut.teaching (tests/integer/test_without_training.py checks)."""

import numpy as np
import pytest
import torch

from bintut.integer.c_library import write_c_library
from bintut.integer.engine import IntegerResNet
from bintut.integer.fold import export_resnet
from bintut.integer.format import load_export
from bintut.integer.torch_engine import TorchIntegerResNet
from bintut.model import resnet18_cifar
from bintut.quant import binarize_, set_controls


@pytest.fixture(scope="module")
def saved_export(tmp_path_factory):
    """A calibrated random fully binary ResNet18's export, saved (no training: the file checks need a valid
    export, not a good model)."""
    path = tmp_path_factory.mktemp("export") / "model.npz"
    return export_resnet(calibrated_binary_model()).save(path)



@pytest.fixture(scope="module")
def c_export(saved_export, tmp_path_factory):
    """An exported C library (2 golden images), and what it takes to write another."""
    export = load_export(saved_export)
    images = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    folder = write_c_library(export, tmp_path_factory.mktemp("c") / "lib", images).folder
    return export, images, folder


def calibrated_binary_model(seed: int = 0) -> torch.nn.Module:
    """A random-init, fully binary ResNet18 whose activation ranges and BatchNorm statistics saw three batches."""
    torch.manual_seed(seed)
    model = binarize_(resnet18_cifar(pretrained=False))
    model.train()
    with torch.no_grad():
        for _ in range(3):  # calibrate activation ranges and BN statistics
            model(torch.randn(16, 3, 32, 32))
    model.eval()
    set_controls(model, 1.0, 1.0)
    return model


@pytest.fixture(scope="module")
def exported():
    model = calibrated_binary_model()
    return model, export_resnet(model)


def both_engines(export, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The int32 logits of the numpy integer-only engine and of the torch one (in chunks of 3) for ``images``."""
    numpy_engine = IntegerResNet(export, integer_only=True)
    expected = numpy_engine.integer_logits(numpy_engine.quantize_images(images.numpy()))
    torch_engine = TorchIntegerResNet(export, chunk=3)  # chunks that do not divide the batch
    return expected, torch_engine.integer_logits(torch_engine.quantize_images(images)).numpy()


def converted(edit=None, seed: int = 0) -> torch.nn.Module:
    """A random-init ResNet18-CIFAR, edited by ``edit(model)`` before binarize_, calibrated on two batches and
    set fully binary (eval mode)."""
    torch.manual_seed(seed)
    model = resnet18_cifar(pretrained=False)
    if edit is not None:
        edit(model)
    binarize_(model)
    with torch.no_grad():
        model.train()
        for _ in range(2):
            model(torch.randn(8, 3, 32, 32))
    set_controls(model, 1.0, 1.0)
    return model.eval()

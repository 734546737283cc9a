from __future__ import annotations

import os

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory):
    """A data root in which the synthetic sets are generated (cached for the session)."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory):
    """The smoke preset, trained once per test session and shared by xdist workers (file lock)."""
    from bintut.config import preset
    from bintut.training.runs import load_or_train

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    with pytest.MonkeyPatch.context() as patch:  # scoped: notebook kernels must not inherit it
        patch.setenv("BINTUT_RUNS", str(shared / "runs"))
        return load_or_train(preset("smoke", data_root=str(shared / "data"), progress=False))


def tiny(data_dir, out, **overrides):
    """A seconds-long config: synthetic data, few steps, every moving part switched on."""
    from bintut.config import preset

    values = dict(
        data_root=str(data_dir), out=str(out), synthetic_train=96, synthetic_test=32, epochs=2,
        batch_size=32, eval_batch_size=32, mix_prob=0.5, progress=False, wandb="disabled",
        lr=[[0.2, "linear", 1e-4, 1e-3], [1.0, "cosine", 1e-3, 1e-4]],
        weight_p=[[0.2, "stay", 0, 0], [1.0, "linear", 0, 1]],
        weight_ratio=[[0.3, "stay", 0, 0], [1.0, "cosine", 0, 1]],
        act_p=[[0.2, "stay", 0, 0], [1.0, "linear", 0, 1]],
        act_ratio=[[0.3, "stay", 0, 0], [1.0, "cosine", 0, 1]],
    )
    values.update(overrides)
    return preset("smoke", **values)


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

"""Checks that need a CUDA GPU: the seed preset's fp16 path and the float32 guarantees on the card.

Skipped, with the reason, on machines without a GPU (CI has none); run them where one is lent:
``python -m pytest tests/test_cuda.py``.
"""

import json

import pytest
import torch

from ..conftest import tiny
from .conftest import engine_and_torch_predictions, quantizer_outputs_exact

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none is visible)")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_int8_quantizer_is_float32_exact_under_cuda_autocast(dtype):
    seen = quantizer_outputs_exact("cuda", dtype, batch=16)
    assert len(seen) == 2 * 21 and all(seen)


@pytest.mark.parametrize("data_path", ["loader", "device"])
def test_fp16_run_on_the_gpu_reports_the_integer_models_accuracy(data_dir, tmp_path, data_path):
    """seed's machinery (fp16 + GradScaler, per-image loader or device data) on synthetic data: the
    deployed accuracy of every epoch row, computed by the CUDA integer network, is exactly the numpy
    integer engine's on the CPU. Hard (float32 fake-quant) vs integer agreement is printed: a few int8
    codes per layer can land one step apart (torch's conv + BatchNorm and the folded epilogue round
    differently), so near-tie predictions of a weakly trained model can flip (H100, 2026-11-27: 1.000
    loader, 0.978 device)."""
    from bintut.training.loop import train

    cfg = tiny(data_dir, tmp_path / data_path, device="cuda", amp="auto", data_path=data_path, epochs=6,
               synthetic_train=1024, synthetic_test=500, batch_size=64, eval_batch_size=250, augment="reference",
               mix_draw="reference")
    train(cfg)
    rows = [json.loads(line) for line in (tmp_path / data_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["activations.p"] == 1.0 and rows[-1]["hard_acc"] == rows[-1]["soft_acc"]
    engine_pred, torch_pred, labels = engine_and_torch_predictions(tmp_path / data_path)
    agreement = (engine_pred == torch_pred).mean()
    engine_acc = (engine_pred == labels).mean()
    print(f"{data_path}: hard {rows[-1]['hard_acc']:.4f}, deployed {rows[-1]['deployed_acc']:.4f}, "
          f"numpy engine {engine_acc:.4f}, hard vs integer agreement {agreement:.4f}")
    assert rows[-1]["deployed_acc"] == pytest.approx(engine_acc)


@pytest.mark.parametrize("seed", [0, 1])
def test_cuda_integer_network_equals_the_cpu_one_bit_for_bit(seed):
    from bintut.integer.fold import export_resnet
    from bintut.integer.torch_engine import TorchIntegerResNet
    from bintut.model import resnet18_cifar
    from bintut.quant import binarize_, set_controls

    torch.manual_seed(seed)
    model = binarize_(resnet18_cifar(pretrained=False))
    with torch.no_grad():
        model.train()(torch.randn(16, 3, 32, 32))
    set_controls(model, 1.0, 1.0)
    export = export_resnet(model.eval())
    images = torch.randn(300, 3, 32, 32) * 2
    cpu = TorchIntegerResNet(export, "cpu")
    cuda = TorchIntegerResNet(export, "cuda")
    codes = cpu.quantize_images(images)
    assert torch.equal(cuda.quantize_images(images.cuda()).cpu(), codes)  # the division is IEEE on the GPU too
    assert torch.equal(cuda.integer_logits(codes.cuda()).cpu(), cpu.integer_logits(codes))

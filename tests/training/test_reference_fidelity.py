"""The `seed` preset computes what the reference (github.com/SebastianFia/binary_resnet18) computes.

Each test pins one fact about the reference's recipe (GUIDE §1-2) or one guarantee bintut adds
to it (quantizer arithmetic in float32 whatever the autocast). That the reported deployed accuracy is the
exported integer network's, on every machine, is tests/test_torch_engine.py's.
"""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torchvision.transforms import v2

from bintut import model as model_mod
from bintut.config import preset
from bintut.data.device import BatchAugment
from bintut.model import WeightsUnavailableError, resnet18_cifar, timm_state_dict
from bintut.quant import Int8Quantizer, QuantConfig, SignQuantizer, binarize_
from bintut.schedule import REFERENCE_BINARIZATION, REFERENCE_LR
from bintut.training.devices import use_device_data
from bintut.training.recipe import autocast_dtype, loss_fn, mixer

from .conftest import quantizer_outputs_exact

CUDA = torch.device("cuda")  # only its type is read: no GPU needed


def test_seed_preset_fields_are_the_references():
    cfg = preset("seed")
    assert (cfg.epochs, cfg.batch_size, cfg.weight_decay, cfg.grad_clip) == (300, 128, 1e-4, 1.0)
    assert (cfg.mix_prob, cfg.mixup_alpha, cfg.cutmix_alpha, cfg.label_smoothing) == (0.5, 0.2, 0.5, 0.1)
    assert cfg.lr == REFERENCE_LR
    assert cfg.weight_p == cfg.weight_ratio == cfg.act_p == cfg.act_ratio == REFERENCE_BINARIZATION
    assert cfg.augment == "reference" and cfg.pretrained
    # the five recipe details of issue 10
    assert autocast_dtype(cfg.amp, CUDA) == torch.float16  # fp16 autocast + GradScaler on a GPU
    assert autocast_dtype(cfg.amp, torch.device("cpu")) is None
    assert cfg.mix_draw == "reference"
    assert cfg.scale_init == "constant:0.01"
    assert cfg.weights == "timm"
    assert cfg.data_path == "loader" and not use_device_data(cfg, CUDA)  # per-image PIL-style augmentation
    # bintut's own choices stay available, by name
    fast = preset("fast")
    assert autocast_dtype(fast.amp, CUDA) == torch.bfloat16 and use_device_data(fast, CUDA)
    assert preset("seed", mix_draw="independent", scale_init="mean_abs", weights="torchvision").weights == "torchvision"


@pytest.mark.parametrize("field, value", [
    ("scale_init", "constant:-1"), ("scale_init", "median"), ("scale_init", "constant:x"),
    ("mix_draw", "both"), ("weights", "imagenet"),
])
def test_new_fields_reject_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        preset("seed", **{field: value})


def test_scale_init_constant_or_mean_abs():
    torch.manual_seed(0)
    layer = nn.Conv2d(4, 6, 3)
    reference = SignQuantizer(layer.weight, scale_init="constant:0.01")
    assert torch.equal(reference.scale, torch.full((6, 1, 1, 1), 0.01))
    ours = SignQuantizer(layer.weight, scale_init="mean_abs")
    assert torch.allclose(ours.scale.flatten(), layer.weight.detach().abs().mean((1, 2, 3)))
    converted = binarize_(nn.Sequential(nn.Linear(3, 2)), QuantConfig(scale_init="constant:0.5"))
    assert torch.equal(converted[0].parametrizations.weight[0].scale, torch.full((2, 1), 0.5))


def _mixed_lambdas(mix: v2.Transform, draws: int) -> dict[str, np.ndarray]:
    """lambda of each draw, by operation: a batch of an all-0 and an all-1 image, labels 0 and 1.

    The label of image 0 after mixing is lambda * onehot(0) + (1 - lambda) * onehot(1). Mixup
    blends pixel values (strictly between 0 and 1); cutmix pastes a box (values stay 0 or 1).
    """
    torch.manual_seed(0)
    x = torch.stack([torch.zeros(3, 32, 32), torch.ones(3, 32, 32)])
    y = torch.tensor([0, 1])
    out: dict[str, list[float]] = {"mixup": [], "cutmix": []}
    for _ in range(draws):
        mixed, target = mix(x, y)
        blended = bool(((mixed[0] > 0) & (mixed[0] < 1)).any())
        out["mixup" if blended else "cutmix"].append(target[0, 0].item())
    return {k: np.array(v) for k, v in out.items()}


def test_mix_draw_reference_gives_each_operation_either_alpha():
    reference = mixer(preset("seed"))
    independent = mixer(preset("seed", mix_draw="independent"))
    pairs = lambda m: sorted((type(t).__name__, t.alpha) for t in m.transforms)  # noqa: E731
    assert pairs(reference) == [("CutMix", 0.2), ("CutMix", 0.5), ("MixUp", 0.2), ("MixUp", 0.5)]
    assert reference.p == [0.25] * 4
    assert pairs(independent) == [("CutMix", 0.5), ("MixUp", 0.2)]
    # mean min(lambda, 1 - lambda) of mixup: Beta(0.2, 0.2) gives 0.102, Beta(0.5, 0.5) 0.182, the
    # reference's 50/50 mixture of the two 0.142 (standard error over ~2,000 draws: ~0.003)
    for mix, expected in ((reference, 0.142), (independent, 0.102)):
        lam = _mixed_lambdas(mix, 4000)["mixup"]
        assert len(lam) > 1500
        assert np.minimum(lam, 1 - lam).mean() == pytest.approx(expected, abs=0.012)


def test_label_smoothing_only_on_mixed_batches():
    logits, labels = torch.randn(8, 100), torch.randint(0, 100, (8,))
    assert torch.equal(loss_fn(logits, labels, 0.1), F.cross_entropy(logits, labels))
    soft = F.one_hot(labels, 100).float()
    assert torch.allclose(loss_fn(logits, soft, 0.1), F.cross_entropy(logits, soft, label_smoothing=0.1))


def test_int8_quantizer_is_float32_exact_under_bf16_autocast():
    """Each layer's quantizer returns exactly round(x / step) * step of its (float32) input, under autocast."""
    seen = quantizer_outputs_exact("cpu", torch.bfloat16, batch=4)
    assert len(seen) == 2 * 21 and all(seen)


def test_soft_evaluation_sprinkles_weights_but_not_activations():
    """Reference: in eval the soft activation is (1 - r) x + r hard(x), without a mask; weights keep theirs."""
    torch.manual_seed(0)
    q = Int8Quantizer()
    x = torch.randn(64, 64)
    q.train()
    q(x)  # calibrate the running max
    q.set_controls(p=0.5, bin_ratio=0.3)
    q.eval()
    hard = q.hard(x)
    assert torch.allclose(q(x), 0.7 * x + 0.3 * hard, atol=1e-6)
    assert torch.equal(q(x), q(x))  # deterministic: no mask
    q.train()
    assert not torch.equal(q(x), q(x))  # training: a fresh mask every forward

    w = SignQuantizer(torch.randn(64, 64))
    w.set_controls(p=0.5, bin_ratio=0.3)
    w.eval()
    assert not torch.equal(w(x), w(x))  # weights: sprinkled in eval too, as the reference


def test_perspective_interpolates_as_torchvision():
    """RandomPerspective resamples bilinearly by default, RandomRotation and RandomAffine nearest."""
    transforms = (v2.RandomRotation(15), v2.RandomAffine(15), v2.RandomPerspective())
    defaults = [getattr(t.interpolation, "value", t.interpolation) for t in transforms]
    assert list(BatchAugment.MODES) == ["nearest", *defaults]  # crop + flip move whole pixels
    assert defaults == ["nearest", "nearest", "bilinear"]


def test_timm_weights_load_through_timms_api(tmp_path, monkeypatch):
    timm = pytest.importorskip("timm", reason="the optional timm extra is not installed")
    source = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "pytorch_model.bin"
    torch.save(source.state_dict(), path)
    monkeypatch.setattr("huggingface_hub.hf_hub_download", lambda *a, **k: str(path))
    loaded = timm_state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in source.state_dict().items())
    model = resnet18_cifar(pretrained=True, weights="timm")  # timm's names are torchvision's
    assert torch.equal(model.layer3[1].conv2.weight, source.layer3[1].conv2.weight)
    assert model.fc.out_features == 100 and model.conv1.kernel_size == (3, 3)


def test_timm_weights_offline_fail_at_once_with_advice(tmp_path, monkeypatch):
    pytest.importorskip("timm", reason="the optional timm extra is not installed")

    def not_cached(*args, **kwargs):
        raise FileNotFoundError("not in the cache")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", not_cached)
    monkeypatch.setattr(model_mod, "_hub_reachable", lambda host="huggingface.co": False)
    with pytest.raises(WeightsUnavailableError, match="--weights torchvision"):
        resnet18_cifar(pretrained=True, weights="timm")

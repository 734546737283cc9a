"""The batched (GPU) augmentation draws from the same distributions as the per-image pipeline."""

import numpy as np
import pytest
import torch

from bintut.data.cifar100 import synthetic_images
from bintut.data.device import BatchAugment, DeviceBatches, _hsv_to_rgb, _rgb_to_hsv
from bintut.data.images import CIFAR100_MEAN, CIFAR100_STD, ImageSet
from bintut.data.transforms import train_transform

N = 2000
MEAN = torch.tensor(CIFAR100_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(CIFAR100_STD).view(1, 3, 1, 1)


def statistics(x: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-image summaries that each augmentation moves: brightness, fill, grayscale, erasing, flips."""
    pixels = x * STD + MEAN  # back to [0, 1] (erased areas hold normal noise)
    gray = ((pixels[:, 0] - pixels[:, 1]).abs() < 1e-3).float().mean((1, 2)) > 0.6
    fill = (pixels.abs() < 1e-4).all(1).float().mean((1, 2))
    outside = ((pixels < -0.05) | (pixels > 1.05)).any(1).float().mean((1, 2))  # erasing noise
    left_right = pixels[..., :16].mean((1, 2, 3)) - pixels[..., 16:].mean((1, 2, 3))
    return {
        "mean": pixels.mean((1, 2, 3)).numpy(),
        "saturation": (pixels.amax(1) - pixels.amin(1)).mean((1, 2)).numpy(),
        "fill": fill.numpy(), "gray": gray.float().numpy(), "erased": (outside > 0.02).float().numpy(),
        "left-right": left_right.numpy(),
    }


@pytest.fixture(scope="module")
def both_pipelines():
    torch.manual_seed(0)
    images, _ = synthetic_images(4, seed=3)
    source = torch.from_numpy(images[1]).permute(2, 0, 1).contiguous()  # one asymmetric image
    per_image = torch.stack([train_transform("reference")(source) for _ in range(N)])
    batched = BatchAugment("reference")(source.expand(N, 3, 32, 32).contiguous(), torch.Generator().manual_seed(1))
    return statistics(per_image), statistics(batched)


@pytest.mark.parametrize("name, tolerance", [
    ("mean", 0.02), ("saturation", 0.02), ("fill", 0.02), ("gray", 0.03), ("erased", 0.04), ("left-right", 0.02),
])
def test_same_distributions_as_the_per_image_pipeline(both_pipelines, name, tolerance):
    reference, ours = both_pipelines
    a, b = reference[name], ours[name]
    standard_error = np.sqrt(a.var() / len(a) + b.var() / len(b))
    assert abs(a.mean() - b.mean()) < tolerance + 3 * standard_error, (name, a.mean(), b.mean())
    # spread too: the two pipelines vary as much from image to image
    assert abs(a.std() - b.std()) < 0.25 * max(a.std(), b.std()) + 0.01, (name, a.std(), b.std())


def test_probabilities_of_the_random_operations():
    aug, g = BatchAugment("reference"), torch.Generator().manual_seed(2)
    colourful = torch.tensor([0.9, 0.2, 0.1]).view(1, 3, 1, 1).expand(4000, 3, 8, 8)
    out = aug.colour(colourful, g)
    gray = ((out[:, 0] - out[:, 1]).abs() < 1e-6).all(-1).all(-1).float()
    assert gray.mean().item() == pytest.approx(0.2, abs=0.02)  # RandomGrayscale(0.2)
    erased = aug.erase(torch.zeros(4000, 3, 32, 32), g) != 0
    hit = erased.flatten(1).any(1)
    assert hit.float().mean().item() == pytest.approx(0.3, abs=0.025)  # RandomErasing(p=0.3)
    area = erased[:, 0].flatten(1).float().mean(1)[hit]
    assert area.min() >= 0.03 and area.max() <= 0.21 and area.mean() == pytest.approx(0.125, abs=0.02)


def test_basic_and_none():
    images, _ = synthetic_images(8, seed=0)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    plain = BatchAugment("none")(x)
    expected = torch.stack([train_transform("none")(img) for img in x])
    assert torch.allclose(plain, expected, atol=1e-6)
    basic = BatchAugment("basic")(x, torch.Generator().manual_seed(0))
    # crop + flip only move pixels: every output pixel is an input pixel of the same image or zero fill
    for out, img in zip(basic, expected, strict=True):
        for c in range(3):
            allowed = np.append(np.unique(img[c].numpy()), (-MEAN / STD).flatten()[c].item())
            distance = np.abs(out[c].numpy().reshape(-1, 1) - allowed.reshape(1, -1)).min(1)
            assert distance.max() < 1e-5
    with pytest.raises(ValueError, match="augment must be one of"):
        BatchAugment("strong")


def test_hsv_roundtrip():
    x = torch.rand(32, 3, 6, 6)
    assert torch.allclose(_hsv_to_rgb(_rgb_to_hsv(x)), x, atol=1e-5)


def test_device_batches_serve_the_permutation():
    images, labels = synthetic_images(10, seed=0)
    batches = DeviceBatches(ImageSet(images, labels, []), torch.device("cpu"), augment=None)
    order = [3, 1, 4, 0, 9, 2]
    served = list(batches.batches(order, batch_size=4))
    assert [len(y) for _, y in served] == [4, 2]
    assert torch.cat([y for _, y in served]).tolist() == labels[order].tolist()
    x0 = served[0][0][0]
    assert torch.allclose(x0, train_transform("none")(torch.from_numpy(images[3]).permute(2, 0, 1)), atol=1e-6)

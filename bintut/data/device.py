"""The data path that never waits: uint8 images held on the GPU, augmented a whole batch at a time.

:class:`BatchAugment` draws the reference augmentation's random parameters per sample
(``bintut.data.transforms.train_transform``) and applies them to a batch with tensor ops:

* crop with 4-pixel zero padding + horizontal flip, rotation (±15°), affine (±15°, translate
  10 %) and perspective (distortion 0.5, p = 0.2): one 3x3 homography per image and stage, each
  stage one ``grid_sample`` with zero fill and torchvision's default interpolation of that
  transform (nearest for crop, rotation and affine; bilinear for perspective) -- sequential like
  the PIL pipeline, so areas that leave the image at one stage stay black (a single composed
  resampling would keep them);
* colour jitter (brightness, contrast, saturation 0.3; hue 0.1), grayscale (p = 0.2),
  normalisation, random erasing (p = 0.3, area 5-20 %, aspect 0.3-3.3, random normal values).

The parameter distributions are the PIL pipeline's; the two deliberate differences (colour operations in
a fixed order; erasing samples its rectangle once, clipped) are documented in docs/fast_training.md.
:class:`DeviceBatches` replaces the DataLoader: a seeded permutation indexes the resident tensor.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn import functional as F

from bintut.data.images import CIFAR100_MEAN, CIFAR100_STD, ImageSet
from bintut.data.transforms import AUGMENTATIONS
from bintut.errors import BintutError


class DeviceMemoryError(RuntimeError, BintutError):
    """The data set does not fit in the device's free memory."""


def _uniform(n: int, low: float, high: float, g: torch.Generator | None, device) -> torch.Tensor:
    return torch.empty(n, device=device).uniform_(low, high, generator=g)


def _bernoulli(n: int, p: float, g: torch.Generator | None, device) -> torch.Tensor:
    return torch.rand(n, device=device, generator=g) < p


def _eye(n: int, device) -> torch.Tensor:
    return torch.eye(3, device=device).expand(n, 3, 3).clone()


def _rotation(degrees: torch.Tensor) -> torch.Tensor:
    """Rotation about the image centre in normalised coordinates ([-1, 1]^2)."""
    r = torch.deg2rad(degrees)
    m = _eye(len(degrees), degrees.device)
    m[:, 0, 0], m[:, 0, 1] = torch.cos(r), -torch.sin(r)
    m[:, 1, 0], m[:, 1, 1] = torch.sin(r), torch.cos(r)
    return m


def _translation(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    m = _eye(len(tx), tx.device)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def _homography(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Per-sample 3x3 H with H @ src_i ~ dst_i for 4 point pairs (n, 4, 2) -> (n, 3, 3)."""
    n = src.shape[0]
    x, y = src[..., 0], src[..., 1]
    u, v = dst[..., 0], dst[..., 1]
    zeros, ones = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack([x, y, ones, zeros, zeros, zeros, -u * x, -u * y], -1)
    rows_v = torch.stack([zeros, zeros, zeros, x, y, ones, -v * x, -v * y], -1)
    a = torch.cat([rows_u, rows_v], 1)  # (n, 8, 8)
    b = torch.cat([u, v], 1).unsqueeze(-1)
    h = torch.linalg.solve(a.double(), b.double()).squeeze(-1).float()
    return torch.cat([h, torch.ones(n, 1, device=src.device)], 1).view(n, 3, 3)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(maxc == r, (g - b) / safe % 6, torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4))
    h = torch.where(delta > 0, h / 6, torch.zeros_like(h)) % 1.0
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    return torch.stack([h, s, maxc], 1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], 1)
    return v.unsqueeze(1) - (v * s).unsqueeze(1) * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


class BatchAugment(nn.Module):
    """Per-sample random augmentation of a uint8 NCHW batch; returns normalised float32.
    Raises ValueError listing the choices for an unknown ``augment``."""

    def __init__(self, augment: str = "reference", padding: int = 4, mean: tuple[float, ...] = CIFAR100_MEAN,
                 std: tuple[float, ...] = CIFAR100_STD) -> None:
        super().__init__()
        if augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
        self.augment = augment
        self.padding = padding
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    # -- parameters ------------------------------------------------------------------------
    # torchvision's default interpolation per geometric stage: RandomPerspective's is bilinear, the others nearest.
    MODES = ("nearest", "nearest", "nearest", "bilinear")

    def geometry(self, n: int, size: int, g: torch.Generator | None = None, device=None) -> list[torch.Tensor]:
        """Per-stage, per-sample homographies (output -> input, normalised coordinates), each (n, 3, 3).

        The stages are crop+flip, rotation, affine and perspective (only the first without 'reference').
        """
        device = device or self.mean.device
        unit = 2.0 / size  # one pixel in normalised coordinates
        shift = torch.randint(-self.padding, self.padding + 1, (2, n), device=device, generator=g).float()
        crop = _translation(shift[0] * unit, shift[1] * unit)  # crop of the zero-padded image
        flip = _bernoulli(n, 0.5, g, device)
        crop[:, 0, 0] = torch.where(flip, -1.0, 1.0)
        if self.augment != "reference":
            return [crop]
        rotation = _rotation(_uniform(n, -15, 15, g, device))  # RandomRotation(15)
        affine = _rotation(_uniform(n, -15, 15, g, device))  # RandomAffine(15, translate=(0.1, 0.1))
        max_shift = 0.1 * size
        tx = torch.round(_uniform(n, -max_shift, max_shift, g, device)) * unit
        ty = torch.round(_uniform(n, -max_shift, max_shift, g, device)) * unit
        affine = _translation(tx, ty) @ affine
        # RandomPerspective(0.5, p=0.2): each corner moves inwards by up to half the half-size.
        apply = _bernoulli(n, 0.2, g, device)
        half = size // 2
        corners = torch.tensor([[0, 0], [size - 1, 0], [size - 1, size - 1], [0, size - 1]], device=device).float()
        limit = 0.5 * half
        jitter = torch.stack([
            torch.floor(torch.rand(n, 4, device=device, generator=g) * (limit + 1)),
            torch.floor(torch.rand(n, 4, device=device, generator=g) * (limit + 1)),
        ], -1)
        inward = torch.tensor([[1, 1], [-1, 1], [-1, -1], [1, -1]], device=device).float()
        moved = corners + jitter * inward
        start = corners.expand(n, 4, 2)
        to_norm = lambda p: (p + 0.5) * unit - 1  # noqa: E731 - pixel centres to [-1, 1]
        persp = _homography(to_norm(moved), to_norm(start))  # output (moved) -> input (start)
        persp = torch.where(apply.view(n, 1, 1), persp, _eye(n, device))
        return [crop, rotation, affine, persp]

    # -- application -----------------------------------------------------------------------
    def forward(self, images: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        """uint8 pixels (N, 3, H, W) in [0, 255] -> augmented, normalised float32 (N, 3, H, W), drawn from ``g``."""
        x = images.float().div_(255)
        n, _, h, w = x.shape
        device = x.device
        if self.augment != "none":
            ys, xs = torch.meshgrid(torch.linspace(-1 + 1 / h, 1 - 1 / h, h, device=device),
                                    torch.linspace(-1 + 1 / w, 1 - 1 / w, w, device=device), indexing="ij")
            grid = torch.stack([xs, ys, torch.ones_like(xs)], -1).view(1, h * w, 3)
            for m, mode in zip(self.geometry(n, h, g, device), self.MODES, strict=False):  # basic: crop only
                src = grid @ m.transpose(1, 2)
                src = src[..., :2] / src[..., 2:].clamp_min(1e-6)
                x = F.grid_sample(x, src.view(n, h, w, 2), mode=mode, padding_mode="zeros", align_corners=False)
        if self.augment == "reference":
            x = self.colour(x, g)
        x = (x - self.mean) / self.std
        if self.augment == "reference":
            x = self.erase(x, g)
        return x

    def colour(self, x: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        """ColorJitter(0.3, 0.3, 0.3, 0.1), then RandomGrayscale(0.2), per sample: float (N, 3, H, W) colours in
        [0, 1] -> the same shape and range."""
        n, device = x.shape[0], x.device
        factor = lambda: _uniform(n, 0.7, 1.3, g, device).view(n, 1, 1, 1)  # noqa: E731
        x = (x * factor()).clamp(0, 1)  # brightness
        mean = _gray(x).mean((1, 2, 3), keepdim=True)
        x = torch.lerp(mean, x, factor()).clamp(0, 1)  # contrast
        x = torch.lerp(_gray(x), x, factor()).clamp(0, 1)  # saturation
        hsv = _rgb_to_hsv(x)
        hue = _uniform(n, -0.1, 0.1, g, device).view(n, 1, 1)
        hsv = torch.stack([(hsv[:, 0] + hue) % 1.0, hsv[:, 1], hsv[:, 2]], 1)
        x = _hsv_to_rgb(hsv)
        gray = _bernoulli(n, 0.2, g, device).view(n, 1, 1, 1)
        return torch.where(gray, _gray(x).expand_as(x), x)

    def erase(self, x: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        """RandomErasing(p=0.3, scale=(0.05, 0.2), ratio=(0.3, 3.3), value='random'), per sample, on normalised
        float (N, 3, H, W) images; same shape out."""
        n, _, h, w = x.shape
        device = x.device
        area = _uniform(n, 0.05, 0.2, g, device) * h * w
        ratio = torch.exp(_uniform(n, math.log(0.3), math.log(3.3), g, device))
        eh = torch.sqrt(area * ratio).round().clamp(1, h)
        ew = torch.sqrt(area / ratio).round().clamp(1, w)
        top = torch.floor(torch.rand(n, device=device, generator=g) * (h - eh + 1))
        left = torch.floor(torch.rand(n, device=device, generator=g) * (w - ew + 1))
        rows = torch.arange(h, device=device).view(1, h, 1)
        cols = torch.arange(w, device=device).view(1, 1, w)
        inside = ((rows >= top.view(n, 1, 1)) & (rows < (top + eh).view(n, 1, 1))
                  & (cols >= left.view(n, 1, 1)) & (cols < (left + ew).view(n, 1, 1)))
        mask = (inside & _bernoulli(n, 0.3, g, device).view(n, 1, 1)).unsqueeze(1)
        noise = torch.randn(x.shape, device=device, generator=g)
        return torch.where(mask, noise, x)


class DeviceBatches:
    """A data set resident on one device as uint8, served in (augmented) batches without workers.
    Raises DeviceMemoryError when the set would need more than half the GPU's free memory (the message
    suggests --data-path loader or a --train-subset)."""

    def __init__(self, images: ImageSet, device: torch.device, augment: str | None) -> None:
        data = torch.from_numpy(images.images).permute(0, 3, 1, 2).contiguous()
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            need = data.numel() + 8 * len(images)
            if need > 0.5 * free:
                raise DeviceMemoryError(
                    f"the data set needs {need / 2**30:.2f} GiB on {device} but only {free / 2**30:.2f} GiB are "
                    "free (we use at most half); use --data-path loader, or a --train-subset"
                )
        self.images = data.to(device)
        self.labels = torch.from_numpy(images.labels).to(device)
        # "none" only normalises
        self.augment = BatchAugment(augment or "none", mean=images.mean, std=images.std).to(device)

    def __len__(self) -> int:
        return len(self.labels)

    def loader(self, indices: list[int], batch_size: int) -> _Batches:
        """A re-iterable of batches in this order (for evaluation, iterated once per epoch)."""
        return _Batches(self, indices, batch_size)

    def batches(
        self, indices: list[int] | torch.Tensor, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Normalised batches in the given order, augmented when the set was built with an augmentation:
        (images (B, 3, H, W) float32, labels (B,) int64) on the set's device, B <= ``batch_size``."""
        order = torch.as_tensor(indices, device=self.images.device, dtype=torch.long)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            yield self.augment(self.images[idx]), self.labels[idx]


class _Batches:
    def __init__(self, source: DeviceBatches, indices: list[int], batch_size: int) -> None:
        self.source, self.indices, self.batch_size = source, indices, batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.source.batches(self.indices, self.batch_size)

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

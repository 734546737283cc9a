"""Figures of the model: the two stems, feature maps, a mixed batch (notebooks 01 and 02).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from bintut.model import record_io
from bintut.teaching.anatomy import STAGES, feature_maps
from bintut.teaching.viz.base import display_image, figure_grid, label_bars


def plot_stems(imagenet: nn.Module, cifar: nn.Module, size: int = 32):
    """Spatial size of the feature maps after each stage, ImageNet stem vs CIFAR stem."""
    a, b = feature_maps(imagenet, size), feature_maps(cifar, size)
    fig, (ax,) = figure_grid(width=6.4)
    x = np.arange(len(STAGES))
    label_bars(ax, ax.bar(x - 0.2, [a[s][1] for s in STAGES], 0.4, label="ImageNet stem (7×7/2 + maxpool)"), "{:.0f}")
    label_bars(ax, ax.bar(x + 0.2, [b[s][1] for s in STAGES], 0.4, label="CIFAR stem (3×3/1)", hatch="//"),
                "{:.0f}")
    ax.set_xticks(x, STAGES)
    ax.set_ylabel(f"feature-map height (input {size}×{size})")
    ax.set_yscale("log", base=2)
    ax.set_ylim(top=2**8)  # headroom for the legend
    ax.set_title("spatial size after each stage")
    ax.legend(loc="upper right")
    return fig


@torch.no_grad()
def plot_feature_maps(imagenet: nn.Module, cifar: nn.Module, image: torch.Tensor):
    """One normalised image (3, 32, 32) through both stems: the mean |activation| over channels after each
    stage."""
    rows = [("ImageNet stem", imagenet), ("CIFAR stem", cifar)]
    fig, axes = figure_grid(len(STAGES) + 1, width=1.6, height=1.8, nrows=2)
    for r, (label, model) in enumerate(rows):
        seen = record_io(model, list(STAGES), image[None])
        axes[r][0].imshow(display_image(image))
        axes[r][0].set_title("input 32×32", fontsize="small")
        axes[r][0].set_ylabel(label)
        for c, stage in enumerate(STAGES, start=1):
            fmap = seen[stage][1][0].abs().mean(0)
            axes[r][c].imshow(fmap.numpy(), cmap="magma")
            axes[r][c].set_title(f"{stage}\n{fmap.shape[0]}×{fmap.shape[1]}", fontsize="small")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("mean |activation| over channels after each stage (one image)")
    return fig


def plot_mixed_batch(images: torch.Tensor, labels: torch.Tensor, seed: int = 0, num_classes: int = 100):
    """A few images, their mixup and their cutmix versions (as the training loop draws them): normalised
    ``images`` (N, 3, H, W) and int64 ``labels`` (N,)."""
    from torchvision.transforms import v2

    n = len(images)
    mixed = {"original": (images, None)}
    for name, op in (("mixup, Beta(0.2, 0.2)", v2.MixUp(alpha=0.2, num_classes=num_classes)),
                     ("cutmix, Beta(0.5, 0.5)", v2.CutMix(alpha=0.5, num_classes=num_classes))):
        torch.manual_seed(seed)  # one λ per batch: the seed picks a visible mix
        x, y = op(images.clone(), labels.clone())
        mixed[name] = (x, y)
    fig, axes = figure_grid(n, width=1.45, height=1.6, nrows=3)
    for r, (name, (x, y)) in enumerate(mixed.items()):
        for c in range(n):
            ax = axes[r][c]
            img = x[c].permute(1, 2, 0).numpy()
            ax.imshow(np.clip(img, 0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            if y is None:
                ax.set_title(f"class {int(labels[c])}", fontsize="small")
            else:
                top = torch.topk(y[c], 2)
                ax.set_title(" + ".join(f"{v:.2f}·{int(i)}" for v, i in zip(top.values, top.indices, strict=True)),
                             fontsize="x-small")
        axes[r][0].set_ylabel(name, fontsize="small")
    fig.suptitle("a batch, mixed with the next image\n(titles: λ·class + (1−λ)·class)", fontsize="medium")
    return fig

"""Plots for the notebooks: quantizers made visible. Each returns its matplotlib Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from .quant import Int8Quantizer, SignQuantizer


def _figure(ncols: int = 1, width: float = 4.2, height: float = 3.2):
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), layout="constrained", squeeze=False)
    return fig, axes[0]


@torch.no_grad()
def plot_blend(w: torch.Tensor, entries: int = 6):
    """Effective value of a few weights as bin_ratio goes 0 -> 1 at p = 0: straight lines to ±scale."""
    q = SignQuantizer(w)
    ratios = np.linspace(0, 1, 21)
    values = []
    for r in ratios:
        q.set_controls(p=0.0, bin_ratio=float(r))
        values.append(q(w).flatten()[:entries].numpy())
    fig, (ax,) = _figure()
    ax.plot(ratios, np.array(values), marker=".")
    ax.set_xlabel("bin_ratio")
    ax.set_ylabel("effective weight")
    ax.set_title("blend: (1 - r) w + r sign(w) s")
    ax.grid(alpha=0.3)
    return fig


@torch.no_grad()
def plot_sprinkling(w: torch.Tensor, ps=(0.0, 0.25, 0.5, 0.75, 1.0)):
    """Left: measured fraction of binarized entries against p. Right: weight histograms at several p."""
    q = SignQuantizer(w)
    grid = np.linspace(0, 1, 11)
    measured = []
    for p in grid:
        q.set_controls(p=float(p), bin_ratio=0.0)
        measured.append((q(w) != w).float().mean().item())
    fig, (left, right) = _figure(2)
    left.plot(grid, grid, "k--", label="p")
    left.plot(grid, measured, "o", label="measured")
    left.set_xlabel("p")
    left.set_ylabel("fraction binarized")
    left.legend()
    left.grid(alpha=0.3)
    for p in ps:
        q.set_controls(p=p, bin_ratio=0.0)
        right.hist(q(w).flatten().numpy(), bins=80, histtype="step", label=f"p = {p}")
    right.set_xlabel("effective weight")
    right.set_yscale("log")
    right.set_title("sprinkling moves mass to ±scale")
    right.legend(fontsize="small")
    return fig


@torch.no_grad()
def plot_int8(x: torch.Tensor):
    """Left: x against its int8 fake-quantized value. Right: the rounding error, within ±step/2."""
    q = Int8Quantizer()
    q.set_controls(1.0, 1.0)
    y = q(x)
    step = float(q.running_max) / 127
    fig, (left, right) = _figure(2)
    order = torch.argsort(x.flatten())
    left.plot(x.flatten()[order].numpy(), y.flatten()[order].numpy(), drawstyle="steps-mid")
    left.set_xlabel("x")
    left.set_ylabel("int8 fake-quant(x)")
    left.set_title(f"step = max|x| / 127 = {step:.4f}")
    left.grid(alpha=0.3)
    right.hist(((y - x) / step).flatten().numpy(), bins=50)
    right.set_xlabel("rounding error / step")
    right.set_title("uniform in [-1/2, 1/2]")
    return fig


def plot_running_max(batch_maxima: list[float], momentum: float = 0.1):
    """How the EMA running max follows the per-batch max|x| (first batch initialises it)."""
    q = Int8Quantizer(momentum=momentum)
    tracked = []
    for m in batch_maxima:
        q.observe(torch.tensor([m]))
        tracked.append(float(q.running_max))
    fig, (ax,) = _figure(width=6)
    ax.plot(batch_maxima, ".", label="max|x| of the batch")
    ax.plot(tracked, label=f"running max (momentum {momentum})")
    ax.set_xlabel("training step")
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def plot_stage_bars(rows: list[dict], title: str = "test accuracy by stage"):
    """Grouped bars of hard and soft accuracy, one group per row of stages.results_table."""
    fig, (ax,) = _figure(width=6.5)
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["hard %"] for r in rows], 0.4, label="hard (deployable)")
    ax.bar(x + 0.2, [r["soft %"] for r in rows], 0.4, label="soft (current controls)")
    ax.set_xticks(x, [r["stage"] for r in rows])
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.legend()
    return fig


def plot_stems(imagenet, cifar, size: int = 32):
    """Spatial size of the feature maps after each stage, ImageNet stem vs CIFAR stem."""
    from .anatomy import STAGES, feature_maps

    a, b = feature_maps(imagenet, size), feature_maps(cifar, size)
    fig, (ax,) = _figure(width=6)
    x = np.arange(len(STAGES))
    ax.bar(x - 0.2, [a[s][1] for s in STAGES], 0.4, label="ImageNet stem (7x7/2 + maxpool)")
    ax.bar(x + 0.2, [b[s][1] for s in STAGES], 0.4, label="CIFAR stem (3x3/1)")
    ax.set_xticks(x, STAGES)
    ax.set_ylabel(f"feature-map height (input {size}x{size})")
    ax.set_yscale("log", base=2)
    ax.set_ylim(top=2 ** 8)  # headroom for the legend
    ax.legend(loc="upper right")
    return fig

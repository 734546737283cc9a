"""Figures of the quantizers: blending, sprinkling, int8 codes and the running maximum, and the
schedules that drive them (notebooks 02 to 04).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from bintut.model import record_io
from bintut.quant import Int8Quantizer, SignQuantizer
from bintut.schedule import PhaseList, Schedule
from bintut.teaching.viz.base import figure_grid


@torch.no_grad()
def plot_blend(w: torch.Tensor, entries: int = 6):
    """Effective value of a few weights as bin_ratio goes 0 -> 1 at p = 0: straight lines to ±scale.
    ``w``: a float weight (out, ...), as a conv's; the first ``entries`` of it are drawn."""
    q = SignQuantizer(w)
    ratios = np.linspace(0, 1, 21)
    values = []
    for r in ratios:
        q.set_controls(p=0.0, bin_ratio=float(r))
        values.append(q(w).flatten()[:entries].numpy())
    fig, (ax,) = figure_grid(width=5)
    styles = ["-", "--", "-.", ":"]
    for i, column in enumerate(np.array(values).T):
        ax.plot(ratios, column, styles[i % len(styles)], marker=".", label=f"w[0, {i}]")
    ax.set_xlabel("bin_ratio r")
    ax.set_ylabel("effective weight")
    ax.set_title(r"blend: $(1-r)\,w + r\,\mathrm{sign}(w)\,s_c$  (p = 0)")
    ax.legend(fontsize="x-small", ncols=2)
    ax.grid(alpha=0.3)
    return fig


@torch.no_grad()
def plot_sprinkling(w: torch.Tensor, ps=(0.0, 0.25, 0.5, 0.75, 1.0), seed: int = 0):
    """Left: measured fraction of binarized entries against p. Right: weight histograms at several p.
    ``w``: a float weight (out, ...), as a conv's."""
    torch.manual_seed(seed)
    q = SignQuantizer(w)
    grid = np.linspace(0, 1, 11)
    measured = []
    for p in grid:
        q.set_controls(p=float(p), bin_ratio=0.0)
        measured.append((q(w) != w).float().mean().item())
    fig, (left, right) = figure_grid(2)
    left.plot(grid, grid, "k--", label="p")
    left.plot(grid, measured, "o", label="measured")
    left.set_xlabel("p")
    left.set_ylabel("fraction binarized")
    left.set_title("each entry binarized with probability p")
    left.legend()
    left.grid(alpha=0.3)
    for p, style in zip(ps, ["-", "--", "-.", ":", "-"], strict=False):
        q.set_controls(p=p, bin_ratio=0.0)
        right.hist(q(w).flatten().numpy(), bins=80, histtype="step", linestyle=style, label=f"p = {p}")
    right.set_xlabel("effective weight")
    right.set_ylabel("count (log)")
    right.set_yscale("log")
    right.set_title("sprinkling moves mass to ±scale")
    right.legend(fontsize="small")
    return fig


@torch.no_grad()
def fp_share(w: torch.Tensor, p: float, bin_ratio: float) -> float:
    """Mean share of the full-precision weight in the effective weight, measured on the quantizer.

    Each effective entry is c·w + (1 − c)·hard(w); this solves for c entry by entry. ``w``: a float
    weight (out, ...); returns a fraction in [0, 1].
    """
    q = SignQuantizer(w)
    q.set_controls(p=p, bin_ratio=bin_ratio)
    hard = q.hard(w)
    keep = (w - hard).abs() > 1e-6
    return float(((q(w) - hard)[keep] / (w - hard)[keep]).mean())


def plot_fp_share(w: torch.Tensor, seed: int = 0):
    """Blend and sprinkle together: the full-precision share at p = bin_ratio = t is (1 − t)^2, measured on a
    float weight ``w`` (out, ...)."""
    torch.manual_seed(seed)
    ts = np.linspace(0, 1, 11)
    fig, (ax,) = figure_grid(width=5)
    ax.plot(ts, 1 - ts, "k:", label=r"blend or sprinkle alone: $1-t$")
    ax.plot(ts, (1 - ts) ** 2, "k-", label=r"both: $(1-t)^2$")
    ax.plot(ts, [fp_share(w, t, t) for t in ts], "o", label="measured on SignQuantizer")
    ax.set_xlabel("t  (p = bin_ratio = t)")
    ax.set_ylabel("full-precision share of the weight")
    ax.set_title("expected full-precision share")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig


@torch.no_grad()
def plot_int8(x: torch.Tensor, zoom: float = 6.0):
    """x against its int8 fake-quantized value (whole range and a zoom on the staircase), and the
    rounding error, uniform within ±step/2. ``x``: float activations of any shape; ``zoom``: the zoomed
    window's half-width, in steps."""
    q = Int8Quantizer()
    q.set_controls(1.0, 1.0)
    y = q(x)
    step = float(q.running_max) / 127
    flat, out = x.flatten(), y.flatten()
    order = torch.argsort(flat)
    fig, (left, middle, right) = figure_grid(3, width=3.6)
    left.plot(flat[order].numpy(), out[order].numpy(), drawstyle="steps-mid")
    left.set_xlabel("x")
    left.set_ylabel("int8 fake-quant(x)")
    left.set_title(f"step = max|x| / 127 = {step:.4f}")
    left.grid(alpha=0.3)
    near = (flat.abs() < zoom * step)[order]
    middle.plot(flat[order][near].numpy(), out[order][near].numpy(), drawstyle="steps-mid", label="fake-quant")
    middle.plot(flat[order][near].numpy(), flat[order][near].numpy(), "k:", label="x")
    middle.set_xlabel("x (zoom)")
    middle.set_title(f"zoom: ±{zoom:.0f} steps around 0")
    middle.legend(fontsize="small")
    middle.grid(alpha=0.3)
    right.hist(((y - x) / step).flatten().numpy(), bins=50)
    right.set_xlabel("rounding error / step")
    right.set_ylabel("count")
    right.set_title("uniform in [−1/2, 1/2]")
    return fig


def tracked_maxima(batch_maxima: list[float], momentum: float = 0.1) -> np.ndarray:
    """The running max each batch is quantized with: ``Int8Quantizer.hard`` in training first updates the EMA with
    the batch, then rounds the batch on the grid of the updated max (the first batch initialises it). Returns
    (len(batch_maxima),) float64, in the activations' units. Taught in notebooks/04_int8_activations.ipynb."""
    q = Int8Quantizer(momentum=momentum)
    tracked = []
    for m in batch_maxima:
        q.observe(torch.tensor([m]))
        tracked.append(float(q.running_max))
    return np.asarray(tracked)


def clipped_batches(batch_maxima: list[float], momentum: float = 0.1) -> np.ndarray:
    """Which batches clip: their max|x| (as the float32 activations hold it) is above the running max they are
    quantized with (:func:`tracked_maxima`). Returns (len(batch_maxima),) bool."""
    maxima = np.asarray(batch_maxima, dtype=np.float32)
    return maxima > tracked_maxima(batch_maxima, momentum).astype(np.float32)


def plot_running_max(batch_maxima: list[float], momentum: float = 0.1):
    """How the EMA running max follows the per-batch max|x|: where a batch's max is above it, the
    values in between are clipped to ±127."""
    steps = np.arange(len(batch_maxima))
    maxima, tracked = np.asarray(batch_maxima), tracked_maxima(batch_maxima, momentum)
    clipped = clipped_batches(batch_maxima, momentum)
    fig, (ax,) = figure_grid(width=6.4)
    ax.fill_between(steps, tracked, maxima, where=clipped, color="tab:red", alpha=0.25, step="mid",
                    label="clipped to ±127·step")
    ax.plot(steps, maxima, ".", color="tab:blue", label="max|x| of the batch")
    ax.plot(steps, tracked, "-", color="tab:orange",
            label=f"running max the batch is quantized with (momentum {momentum})")
    ax.set_xlabel("training step")
    ax.set_ylabel("max |x|")
    ax.set_title(f"the running max lags the batch maxima: {int(clipped.sum())} of {len(steps)} batches clip")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig


@torch.no_grad()
def input_codes(model: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The int8 codes every quantized layer receives for ``images`` (eval mode, frozen running max)."""
    layers = [n for n, m in model.named_modules() if isinstance(getattr(m, "input_quant", None), Int8Quantizer)]
    modules = dict(model.named_modules())
    seen = record_io(model, layers, images)
    return {name: modules[name].input_quant.integer(seen[name][0]) for name in layers}


def plot_code_histogram(codes: dict[str, torch.Tensor]):
    """Histogram of the int8 codes: the image (signed) vs every other layer's input (after a ReLU).
    ``codes``: layer name -> int8 codes of any shape, the image's first."""
    first = next(iter(codes))
    rest = torch.cat([c.flatten() for name, c in codes.items() if name != first])
    fig, (left, right) = figure_grid(2)
    bins = np.arange(-128, 129, 4)
    left.hist(codes[first].flatten().numpy(), bins=bins)
    left.set_title(f"{first} input: the image, signed")
    right.hist(rest.numpy(), bins=bins, color="tab:green")
    right.set_yscale("log")
    right.set_title(f"the other {len(codes) - 1} layers: after ReLU")
    for ax in (left, right):
        ax.set_xlabel("int8 code")
        ax.set_ylabel("count")
        ax.axvline(0, color="k", lw=0.8)
    return fig


def plot_schedules(schedules: Mapping[str, Schedule | PhaseList], epochs: int | None = None, ax=None):
    """Plot schedules over training progress (or epochs); returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.2), layout="constrained")
    n = 501
    ts = [i / (n - 1) for i in range(n)]
    xs = [t * epochs for t in ts] if epochs else ts
    for label, sched in schedules.items():
        sched = sched if isinstance(sched, Schedule) else Schedule(sched, label)
        ax.plot(xs, [sched(t) for t in ts], label=label)
    ax.set_xlabel("epoch" if epochs else "training progress t")
    ax.set_ylabel("value")
    ax.grid(alpha=0.3)
    ax.legend()
    return ax.figure

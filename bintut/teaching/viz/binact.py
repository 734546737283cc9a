"""Figures of binary activations (notebook 09): the two levels and their gradient, what XNOR + popcount buys per
layer, and the fine-tune's loss while the binary quantizers' p rises.
"""

from __future__ import annotations

import numpy as np
import torch

from bintut.binact import BinaryActQuantizer
from bintut.teaching.viz.base import figure_grid


def plot_binary_activation(x: torch.Tensor):
    """Left: a ReLU output's histogram with the level s (its mean) and the two values 0 and 2s. Middle: hard(x)
    against x. Right: the clipped-identity gradient, 1 on [0, 2s]. ``x``: float activations >= 0, any shape."""
    q = BinaryActQuantizer()
    q.set_controls(1.0, 1.0)
    grid = torch.linspace(0, float(x.max()), 400, requires_grad=True)
    q(x)  # training mode: sets s from this batch
    q.eval()
    s = float(q.running_mean)
    y = q(grid)
    y.sum().backward()
    fig, (left, middle, right) = figure_grid(3, width=3.6)
    left.hist(x.flatten().numpy(), bins=60, color="tab:gray")
    left.axvline(s, color="tab:red", ls="--", label=f"threshold s = mean = {s:.2f}")
    left.set_title("a ReLU output")
    left.set_xlabel("x")
    left.legend(fontsize="x-small")
    middle.plot(grid.detach().numpy(), y.detach().numpy(), drawstyle="steps-post")
    middle.plot(grid.detach().numpy(), grid.detach().numpy(), "k:", label="x")
    middle.set_title("forward: 0 or 2s")
    middle.set_xlabel("x")
    middle.legend(fontsize="small")
    right.plot(grid.detach().numpy(), grid.grad.numpy(), color="tab:green")
    right.set_ylim(-0.1, 1.2)
    right.set_title("backward: 1 where 0 ≤ x ≤ 2s")
    right.set_xlabel("x")
    for ax in (left, middle, right):
        ax.grid(alpha=0.3)
    return fig


def plot_xnor_costs(rows: list[dict]):
    """Per layer (rows of :func:`bintut.integer.xnor.xnor_costs`): operations per image on the int8 path and the
    binary one, and the input's bytes as int8 codes and as bits (log scales)."""
    names = [r["layer"].replace(".conv", ".c").replace("downsample.0", "down") for r in rows]
    x = np.arange(len(rows))
    fig, axes = figure_grid(1, width=9, height=2.4, nrows=2)
    top, bottom = axes[0][0], axes[1][0]
    int8_ops, binary_ops = sum(r["int8 path ops"] for r in rows), sum(r["binary path ops"] for r in rows)
    top.bar(x - 0.2, [r["int8 path ops"] / 1e6 for r in rows], 0.4, label="int8 path: one add/sub per MAC")
    top.bar(x + 0.2, [r["binary path ops"] / 1e6 for r in rows], 0.4, hatch="//",
            label="binary path: XOR + popcount per 64 MACs")
    top.set_title(f"operations per image: {int8_ops / 1e6:,.0f} M against {binary_ops / 1e6:,.1f} M "
                  f"({int8_ops / binary_ops:.0f}× fewer)")
    top.set_ylabel("M ops per image")
    bottom.bar(x - 0.2, [r["input bytes int8"] / 1024 for r in rows], 0.4, label="input as int8 codes")
    bottom.bar(x + 0.2, [r["input bytes binary"] / 1024 for r in rows], 0.4, hatch="//", label="input as bits")
    bottom.set_ylabel("KiB")
    for ax in (top, bottom):
        ax.set_yscale("log")
        ax.legend(fontsize="x-small", ncols=2)
        ax.set_xticks(x, names if ax is bottom else [], rotation=60, fontsize="x-small")
        ax.grid(axis="y", alpha=0.3)
    return fig


def plot_fine_tunes(histories: dict[str, list[dict]]):
    """Each fine-tune's training loss (top) while p = bin_ratio of its binary quantizers rise (bottom), per step."""
    fig, axes = figure_grid(1, width=6.4, height=2.2, nrows=2)
    top, bottom = axes[0][0], axes[1][0]
    for (label, rows), style in zip(histories.items(), ["-", "--", ":", "-."], strict=False):
        top.plot([r["step"] for r in rows], [r["loss"] for r in rows], style, marker=".", label=label)
    first = next(iter(histories.values()))
    bottom.plot([r["step"] for r in first], [r["p"] for r in first], color="k")
    top.set_ylabel("training loss")
    top.legend(fontsize="x-small")
    bottom.set_ylabel("p = bin_ratio")
    bottom.set_xlabel("optimizer step")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    return fig

"""What every figure shares: the figure size and resolution, tables, and images for display.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from bintut.data.images import CIFAR100_MEAN, CIFAR100_STD
from bintut.teaching.stages import format_table

DPI = 80  # small PNGs: the committed notebooks keep their teaching figures


def figure_grid(ncols: int = 1, width: float = 4.2, height: float = 3.2, nrows: int = 1):
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), layout="constrained",
                             squeeze=False, dpi=DPI)
    return fig, axes[0] if nrows == 1 else axes


def table(rows: list[dict]):
    """Dict rows (shared keys) as a Markdown table that notebooks render as a table."""
    from IPython.display import Markdown


    return Markdown(format_table(rows))


def display_image(image: torch.Tensor) -> np.ndarray:
    """A normalised (3, H, W) image back to (H, W, 3) float colours in [0, 1] (undoing the CIFAR-100
    normalisation)."""

    mean, std = torch.tensor(CIFAR100_MEAN)[:, None, None], torch.tensor(CIFAR100_STD)[:, None, None]
    return (image * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()


def label_bars(ax, bars, fmt: str = "{:.1f}") -> None:
    """Value labels on top of bars, so a bar of height 0 still says 0."""
    ax.bar_label(bars, labels=[fmt.format(b.get_height()) for b in bars], padding=2, fontsize="small")

"""Figures people would rather look at than read."""

from __future__ import annotations

import os
from typing import Any

from .tracking import read_metrics


def plot_run(metrics: str | os.PathLike | list[dict[str, Any]], path: str | os.PathLike | None = None):
    """Hard and soft test accuracy, p, bin_ratio and LR against epochs; saved as PNG if path."""
    import matplotlib

    if path is not None and matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rows = read_metrics(metrics) if not isinstance(metrics, list) else metrics
    if not rows:
        raise ValueError("no metrics to plot")
    epochs = [r["epoch"] for r in rows]
    fig, (acc, ctl) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, layout="constrained")
    for key, label in (("hard_acc", "hard (p = bin_ratio = 1: deployable)"), ("soft_acc", "soft (current controls)")):
        acc.plot(epochs, [100 * (r[key] or 0) for r in rows], marker=".", label=label)
    acc.set_ylabel("test accuracy (%)")
    acc.legend()
    acc.grid(alpha=0.3)
    for key in ("weights.p", "weights.bin_ratio", "activations.p", "activations.bin_ratio"):
        if key in rows[0]:
            ctl.plot(epochs, [r[key] for r in rows], label=key)
    ctl.set_ylabel("control value")
    ctl.set_xlabel("epoch")
    ctl.xaxis.set_major_locator(MaxNLocator(integer=True))
    ctl.grid(alpha=0.3)
    lr = ctl.twinx()
    lr.plot(epochs, [r["lr"] for r in rows], "k--", label="learning rate")
    lr.set_ylabel("learning rate")
    lines = ctl.get_legend_handles_labels()
    more = lr.get_legend_handles_labels()
    ctl.legend(lines[0] + more[0], lines[1] + more[1], loc="center right", fontsize="small")
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig

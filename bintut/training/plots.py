"""Figures people would rather look at than read.
"""

from __future__ import annotations

import os
from typing import Any

from bintut.files.metrics import read_metrics


def plot_run(
    metrics: str | os.PathLike | list[dict[str, Any]], path: str | os.PathLike | None = None, data: str | None = None
):
    """Hard, soft and deployed test accuracy, training loss, p, bin_ratio and LR against epochs; PNG if path.

    ``data`` names the data set in the title (the training loop passes e.g. 'synthetic data made offline
    (640 training images)'), so that a figure seen alone says what its accuracies were measured on.
    Raises ValueError when there are no metrics rows to plot.
    """
    import matplotlib

    if path is not None and matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rows = read_metrics(metrics) if not isinstance(metrics, list) else metrics
    if not rows:
        raise ValueError("no metrics to plot")
    epochs = [r["epoch"] for r in rows]
    # No constrained layout: it costs a second per figure, and train() draws one per run.
    fig, (acc, ctl) = plt.subplots(2, 1, figsize=(7.5, 5.2), sharex=True, dpi=80)
    fig.subplots_adjust(left=0.1, right=0.86, top=0.93, bottom=0.1, hspace=0.12)
    series = (("hard_acc", "hard (p = bin_ratio = 1, float fake-quant)", "o-"),
              ("soft_acc", "soft (current controls)", "s--"),
              ("deployed_acc", "deployed (integer-only network, as the C library)", "^:"))
    for key, label, style in series:
        if any(r.get(key) is not None for r in rows):  # runs recorded before deployed_acc existed lack it
            acc.plot(epochs, [100 * r[key] if r.get(key) is not None else float("nan") for r in rows], style,
                     label=label, clip_on=False, markerfacecolor="none" if key == "deployed_acc" else None)
    acc.set_ylabel("test accuracy (%)")
    acc.set_ylim(0, max([5.0] + [115 * (r.get(k) or 0) for r in rows for k, _, _ in series]))
    acc.set_title(f"{len(rows)} epochs: test accuracy, training loss and the controls")
    if data:
        fig.suptitle(f"data: {data}", fontsize="medium", fontweight="bold")
        fig.subplots_adjust(top=0.88)
    acc.grid(alpha=0.3)
    loss = acc.twinx()
    loss.plot(epochs, [r["train_loss"] for r in rows], ":", color="grey", label="training loss")
    loss.set_ylabel("training loss")
    handles = [h + m for h, m in zip(acc.get_legend_handles_labels(), loss.get_legend_handles_labels(), strict=True)]
    acc.legend(*handles, fontsize="small")
    # p and bin_ratio (and weights and activations) often share a schedule: distinct line styles and
    # marker sizes keep every series visible where they coincide.
    styles = {"weights.p": ("tab:blue", "-", "o", 10), "weights.bin_ratio": ("tab:blue", "--", "x", 12),
              "activations.p": ("tab:orange", ":", "o", 5), "activations.bin_ratio": ("tab:orange", "-.", "+", 7)}
    for key, (colour, line, marker, size) in styles.items():
        if key in rows[0]:
            ctl.plot(epochs, [r[key] for r in rows], color=colour, linestyle=line, marker=marker, markersize=size,
                     markerfacecolor="none", label=key)
    ctl.set_ylabel("control value")
    ctl.set_ylim(-0.05, 1.05)
    ctl.set_xlabel("epoch")
    ctl.xaxis.set_major_locator(MaxNLocator(integer=True))
    ctl.grid(alpha=0.3)
    lr = ctl.twinx()
    lr.plot(epochs, [r["lr"] for r in rows], "k:", label="learning rate")
    lr.set_ylabel("learning rate")
    lines = ctl.get_legend_handles_labels()
    more = lr.get_legend_handles_labels()
    ctl.legend(lines[0] + more[0], lines[1] + more[1], loc="center right", fontsize="small")
    if path is not None:
        fig.savefig(path, dpi=100)
        plt.close(fig)
    return fig

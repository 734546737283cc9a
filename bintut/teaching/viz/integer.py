"""Figures of the integer network: layer costs, the pipeline, predictions, code differences,
memory and speed (notebooks 05, 07 and 08).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from bintut.teaching.viz.base import display_image, figure_grid


def plot_layer_costs(costs: list):
    """Per layer of the exported network (bintut.integer.opcount.layer_costs): MACs, and the weights' bytes as
    packed sign bits against fp32."""
    names = [c.name.replace(".conv", ".c").replace("downsample.0", "down") for c in costs]
    x = np.arange(len(costs))
    fig, axes = figure_grid(1, width=9, height=2.4, nrows=2)
    top, bottom = axes[0][0], axes[1][0]
    top.bar(x, [c.macs / 1e6 for c in costs], color="tab:blue")
    top.set_ylabel("MACs per image (M)")
    top.set_title(f"{sum(c.macs for c in costs) / 1e6:,.0f} M MACs per image, every one an int8 add/sub")
    bottom.bar(x - 0.2, [c.fp32_bytes / 1024 for c in costs], 0.4, label="fp32 weights")
    bottom.bar(x + 0.2, [c.packed_bytes / 1024 for c in costs], 0.4, label="packed sign bits", hatch="//")
    bottom.set_yscale("log")
    bottom.set_ylabel("KiB")
    bottom.legend(fontsize="small", ncols=2)
    for ax in (top, bottom):
        ax.set_xticks(x, names if ax is bottom else [], rotation=60, fontsize="x-small")
        ax.grid(axis="y", alpha=0.3)
    return fig


PIPELINE = (
    ("ImageNet\nResNet18", "torchvision"),
    ("01 stem", "3×3/1 conv,\nno max-pool"),
    ("02 baseline", "full precision,\np = bin_ratio = 0"),
    ("03 + 04", "weights ±s_c (STE),\ninputs int8, gradually"),
    ("05 export", "sign bits,\nBN folded: A·acc + B"),
    ("numpy engine", "int8 add/sub,\nint32 accumulators"),
)


def plot_pipeline():
    """The tutorial's pipeline as boxes and arrows, with the reference recipe's single run beneath."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    fig, (ax,) = figure_grid(width=10, height=2.6)
    ax.set_xlim(0, len(PIPELINE))
    ax.set_ylim(0, 2.6)
    ax.axis("off")
    for i, (title, detail) in enumerate(PIPELINE):
        ax.add_patch(FancyBboxPatch((i + 0.08, 1.05), 0.84, 1.3, boxstyle="round,pad=0.02", facecolor="#e8f0fb",
                                    edgecolor="tab:blue"))
        ax.text(i + 0.5, 2.05, title, ha="center", va="center", fontsize="small", fontweight="bold")
        ax.text(i + 0.5, 1.5, detail, ha="center", va="center", fontsize="x-small")
        if i:
            ax.add_patch(FancyArrowPatch((i - 0.06, 1.7), (i + 0.1, 1.7), arrowstyle="-|>", mutation_scale=12))
    ax.add_patch(FancyBboxPatch((2.08, 0.15), 1.84, 0.6, boxstyle="round,pad=0.02", facecolor="#fdf0e0",
                                edgecolor="tab:orange"))
    ax.text(3.0, 0.45, "reference recipe: 02–04 as one 300-epoch run\n(the reference stage)", ha="center",
            va="center", fontsize="x-small")
    ax.set_title("from a pretrained float network to integer add/sub: the notebooks in order")
    return fig


def plot_prediction(image: torch.Tensor, torch_logits: np.ndarray, engine_logits: np.ndarray, classes: list[str],
                    label: int | None = None, k: int = 5):
    """One normalised image (3, H, W) and the top-k classes of torch (hard mode) and of the integer engine,
    from their logits of one image, (classes,) each (float, or the engine's in its logit units)."""
    fig, (left, right) = figure_grid(2, width=4)
    left.imshow(display_image(image))
    left.set_xticks([])
    left.set_yticks([])
    left.set_title("input" + ("" if label is None else f": {classes[label]}"), fontsize="small")
    top = np.argsort(-torch_logits)[:k]
    y = np.arange(k)
    right.barh(y + 0.2, torch_logits[top], 0.4, label="torch, hard mode")
    right.barh(y - 0.2, engine_logits[top], 0.4, label="integer engine", hatch="//")
    right.set_yticks(y, [classes[i] for i in top], fontsize="small")
    right.invert_yaxis()
    right.set_xlabel("logit")
    right.set_title(f"top-{k} classes")
    right.legend(fontsize="small")
    return fig


def plot_code_differences(rows: list[dict], title: str = "integer-only vs float-epilogue engine, end to end"):
    """Per binary layer (bintut.integer.engine.code_differences, or bintut.integer.onnx_compare.onnx_code_differences
    with its ``title``): the share of int8 input codes two networks give the same, one step apart, or further."""
    names = [r["layer"].replace(".conv", ".c").replace("downsample.0", "down") for r in rows]
    x = np.arange(len(rows))
    equal = np.array([r["equal %"] for r in rows])
    one = np.array([r["off by 1 %"] for r in rows])
    more = np.array([r["off by more %"] for r in rows])
    fig, (ax,) = figure_grid(width=9, height=2.8)
    ax.bar(x, equal, label="equal", color="tab:green")
    ax.bar(x, one, bottom=equal, label="off by 1", color="tab:orange")
    ax.bar(x, more, bottom=equal + one, label="off by more", color="tab:red")
    ax.set_ylim(max(0.0, float(equal.min()) - 5), 100)
    ax.set_xticks(x, names, rotation=60, fontsize="x-small")
    ax.set_ylabel("% of the codes a layer reads")
    ax.set_title(title)
    ax.legend(fontsize="small", ncols=3, loc="lower left")
    return fig


def plot_memory(rows: list[dict]):
    """Flash and RAM of the exported C library (bintut.integer.c_library.sizes_table rows) as stacked bars, in KiB."""
    fig, (ax,) = figure_grid(width=8, height=2.6)
    colours = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    for y, memory in enumerate(("flash", "RAM")):
        left = 0.0
        for row in (r for r in rows if r["memory"] == memory):
            kib = row["bytes"] / 1024
            ax.barh(y, kib, left=left, color=next(colours), edgecolor="white",
                    label=f"{memory}: {row['what']} ({kib:,.0f} KiB)")
            left += kib
        ax.text(left, y, f"  {left:,.0f} KiB", va="center", fontsize="small")
    ax.set_yticks([0, 1], ["flash", "RAM"])
    ax.set_xlabel("KiB")
    ax.set_xlim(0, sum(r["bytes"] for r in rows if r["memory"] == "flash") / 1024 * 1.15)
    ax.invert_yaxis()
    ax.set_title("what the C library needs on a microcontroller")
    ax.legend(fontsize="x-small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def plot_speed(rows: list[dict], key: str = "images/s", title: str = "one CPU core, one image at a time",
               peaks: dict[str, float] | None = None):
    """Horizontal bars of ``row[key]`` labelled by ``row["path"]`` (e.g. bintut.integer.c_build.kernel_timings rows);
    ``peaks``: name -> value, drawn as dashed vertical lines (e.g. a core's MACs/cycle ceilings: a roofline's roofs).
    Taught in notebooks/08_fast_addsub.ipynb."""
    fig, (ax,) = figure_grid(width=7, height=0.5 + 0.45 * len(rows))
    y = np.arange(len(rows))
    bars = ax.barh(y, [r[key] for r in rows], color=[f"C{i}" for i in range(len(rows))])
    ax.bar_label(bars, labels=[f"{r[key]:,.1f}" for r in rows], padding=2, fontsize="small")
    ax.set_yticks(y, [r["path"] for r in rows], fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel(key)
    ax.set_xlim(0, max([r[key] for r in rows] + list((peaks or {}).values())) * 1.2)
    for i, (name, value) in enumerate((peaks or {}).items()):
        ax.axvline(value, color="k", linestyle=("--", ":", "-.")[i % 3], linewidth=1, label=f"{name} peak: {value:,g}")
    if peaks:
        ax.legend(fontsize="small", loc="lower right")
    ax.set_title(title)
    return fig

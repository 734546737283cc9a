"""Figures and tables for the notebooks: the quantizers made visible. Each plot returns its Figure.

Teaching figures take their inputs as arguments or draw them from a fixed seed, so they come out
the same in every mode (the notebooks keep them under ``# KEEP_OUTPUT``).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from .quant import Int8Quantizer, SignQuantizer

DPI = 80  # small PNGs: the committed notebooks keep their teaching figures


def _figure(ncols: int = 1, width: float = 4.2, height: float = 3.2, nrows: int = 1):
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), layout="constrained",
                             squeeze=False, dpi=DPI)
    return fig, axes[0] if nrows == 1 else axes


def table(rows: list[dict]):
    """Dict rows (shared keys) as a Markdown table that notebooks render as a table."""
    from IPython.display import Markdown

    from .stages import format_table

    return Markdown(format_table(rows))


def _display(image: torch.Tensor) -> np.ndarray:
    """A normalised CHW image back to HWC colours in [0, 1] (undoing the CIFAR-100 normalisation)."""
    from .data import CIFAR100_MEAN, CIFAR100_STD

    mean, std = torch.tensor(CIFAR100_MEAN)[:, None, None], torch.tensor(CIFAR100_STD)[:, None, None]
    return (image * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()


def _bar_labels(ax, bars, fmt: str = "{:.1f}") -> None:
    """Value labels on top of bars, so a bar of height 0 still says 0."""
    ax.bar_label(bars, labels=[fmt.format(b.get_height()) for b in bars], padding=2, fontsize="small")


# ----------------------------------------------------------------------------- 01: the stem


def plot_stems(imagenet: nn.Module, cifar: nn.Module, size: int = 32):
    """Spatial size of the feature maps after each stage, ImageNet stem vs CIFAR stem."""
    from .anatomy import STAGES, feature_maps

    a, b = feature_maps(imagenet, size), feature_maps(cifar, size)
    fig, (ax,) = _figure(width=6.4)
    x = np.arange(len(STAGES))
    _bar_labels(ax, ax.bar(x - 0.2, [a[s][1] for s in STAGES], 0.4, label="ImageNet stem (7×7/2 + maxpool)"), "{:.0f}")
    _bar_labels(ax, ax.bar(x + 0.2, [b[s][1] for s in STAGES], 0.4, label="CIFAR stem (3×3/1)", hatch="//"),
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
    """One image through both stems: the mean |activation| over channels after each stage."""
    from .anatomy import STAGES, record_io

    rows = [("ImageNet stem", imagenet), ("CIFAR stem", cifar)]
    fig, axes = _figure(len(STAGES) + 1, width=1.6, height=1.8, nrows=2)
    for r, (label, model) in enumerate(rows):
        seen = record_io(model, list(STAGES), image[None])
        axes[r][0].imshow(_display(image))
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


# ----------------------------------------------------------------------------- 02: the recipe


def plot_mixed_batch(images: torch.Tensor, labels: torch.Tensor, seed: int = 0, num_classes: int = 100):
    """A few images, their mixup and their cutmix versions (as the training loop draws them)."""
    from torchvision.transforms import v2

    n = len(images)
    mixed = {"original": (images, None)}
    for name, op in (("mixup, Beta(0.2, 0.2)", v2.MixUp(alpha=0.2, num_classes=num_classes)),
                     ("cutmix, Beta(0.5, 0.5)", v2.CutMix(alpha=0.5, num_classes=num_classes))):
        torch.manual_seed(seed)  # one λ per batch: the seed picks a visible mix
        x, y = op(images.clone(), labels.clone())
        mixed[name] = (x, y)
    fig, axes = _figure(n, width=1.45, height=1.6, nrows=3)
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


# ----------------------------------------------------------------------------- 03: binary weights


@torch.no_grad()
def plot_blend(w: torch.Tensor, entries: int = 6):
    """Effective value of a few weights as bin_ratio goes 0 -> 1 at p = 0: straight lines to ±scale."""
    q = SignQuantizer(w)
    ratios = np.linspace(0, 1, 21)
    values = []
    for r in ratios:
        q.set_controls(p=0.0, bin_ratio=float(r))
        values.append(q(w).flatten()[:entries].numpy())
    fig, (ax,) = _figure(width=5)
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
    """Left: measured fraction of binarized entries against p. Right: weight histograms at several p."""
    torch.manual_seed(seed)
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

    Each effective entry is c·w + (1 − c)·hard(w); this solves for c entry by entry.
    """
    q = SignQuantizer(w)
    q.set_controls(p=p, bin_ratio=bin_ratio)
    hard = q.hard(w)
    keep = (w - hard).abs() > 1e-6
    return float(((q(w) - hard)[keep] / (w - hard)[keep]).mean())


def plot_fp_share(w: torch.Tensor, seed: int = 0):
    """Blend and sprinkle together: the full-precision share at p = bin_ratio = t is (1 − t)^2."""
    torch.manual_seed(seed)
    ts = np.linspace(0, 1, 11)
    fig, (ax,) = _figure(width=5)
    ax.plot(ts, 1 - ts, "k:", label=r"blend or sprinkle alone: $1-t$")
    ax.plot(ts, (1 - ts) ** 2, "k-", label=r"both: $(1-t)^2$")
    ax.plot(ts, [fp_share(w, t, t) for t in ts], "o", label="measured on SignQuantizer")
    ax.set_xlabel("t  (p = bin_ratio = t)")
    ax.set_ylabel("full-precision share of the weight")
    ax.set_title("expected full-precision share")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig


# ----------------------------------------------------------------------------- 04: int8 activations


@torch.no_grad()
def plot_int8(x: torch.Tensor, zoom: float = 6.0):
    """x against its int8 fake-quantized value (whole range and a zoom on the staircase), and the
    rounding error, uniform within ±step/2."""
    q = Int8Quantizer()
    q.set_controls(1.0, 1.0)
    y = q(x)
    step = float(q.running_max) / 127
    flat, out = x.flatten(), y.flatten()
    order = torch.argsort(flat)
    fig, (left, middle, right) = _figure(3, width=3.6)
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
    """The running max each batch is quantized against (an Int8Quantizer's EMA before it sees the
    batch; the first batch initialises it)."""
    q = Int8Quantizer(momentum=momentum)
    tracked = []
    for m in batch_maxima:
        tracked.append(float(q.running_max) if bool(q.initialized) else m)
        q.observe(torch.tensor([m]))
    return np.asarray(tracked)


def plot_running_max(batch_maxima: list[float], momentum: float = 0.1):
    """How the EMA running max follows the per-batch max|x|: where a batch's max is above it, the
    values in between are clipped to ±127."""
    steps = np.arange(len(batch_maxima))
    maxima, tracked = np.asarray(batch_maxima), tracked_maxima(batch_maxima, momentum)
    clipped = maxima > tracked
    fig, (ax,) = _figure(width=6.4)
    ax.fill_between(steps, tracked, maxima, where=clipped, color="tab:red", alpha=0.25, step="mid",
                    label="clipped to ±127·step")
    ax.plot(steps, maxima, ".", color="tab:blue", label="max|x| of the batch")
    ax.plot(steps, tracked, "-", color="tab:orange", label=f"running max before the batch (momentum {momentum})")
    ax.set_xlabel("training step")
    ax.set_ylabel("max |x|")
    ax.set_title(f"the running max lags the batch maxima: {int(clipped.sum())} of {len(steps)} batches clip")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig


@torch.no_grad()
def input_codes(model: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The int8 codes every quantized layer receives for ``images`` (eval mode, frozen running max)."""
    from .anatomy import record_io

    layers = [n for n, m in model.named_modules() if isinstance(getattr(m, "input_quant", None), Int8Quantizer)]
    modules = dict(model.named_modules())
    seen = record_io(model, layers, images)
    return {name: modules[name].input_quant.integer(seen[name][0]) for name in layers}


def plot_code_histogram(codes: dict[str, torch.Tensor]):
    """Histogram of the int8 codes: the image (signed) vs every other layer's input (after a ReLU)."""
    first = next(iter(codes))
    rest = torch.cat([c.flatten() for name, c in codes.items() if name != first])
    fig, (left, right) = _figure(2)
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


def plot_stage_bars(rows: list[dict], title: str = "test accuracy by stage"):
    """Grouped bars of hard and soft accuracy, one group per row of stages.results_table."""
    fig, (ax,) = _figure(width=6.5)
    x = np.arange(len(rows))
    _bar_labels(ax, ax.bar(x - 0.2, [r["hard %"] for r in rows], 0.4, label="hard (p = bin_ratio = 1: deployable)"))
    _bar_labels(ax, ax.bar(x + 0.2, [r["soft %"] for r in rows], 0.4, label="soft (what the stage trained)",
                           hatch="//"))
    ax.set_xticks(x, [r["stage"] for r in rows])
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, max([r["hard %"] for r in rows] + [r["soft %"] for r in rows] + [1.0]) * 1.25)
    ax.set_title(title)
    ax.legend(fontsize="small")
    return fig


# ----------------------------------------------------------------------------- 05: where the work is


def plot_layer_costs(costs: list):
    """Per layer of the exported network (bintut.opcount.layer_costs): MACs, and the weights' bytes as
    packed sign bits against fp32."""
    names = [c.name.replace(".conv", ".c").replace("downsample.0", "down") for c in costs]
    x = np.arange(len(costs))
    fig, axes = _figure(1, width=9, height=2.4, nrows=2)
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


# ----------------------------------------------------------------------------- 06: the pipeline and one image

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

    fig, (ax,) = _figure(width=10, height=2.6)
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


# ----------------------------------------------------------------------------- one image


def plot_prediction(image: torch.Tensor, torch_logits: np.ndarray, engine_logits: np.ndarray, classes: list[str],
                    label: int | None = None, k: int = 5):
    """One (normalised) image and the top-k classes of torch (hard mode) and of the integer engine."""
    fig, (left, right) = _figure(2, width=4)
    left.imshow(_display(image))
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


# ----------------------------------------------------------------------------- 07: integer only, then C


def plot_code_differences(rows: list[dict]):
    """Per binary layer (bintut.engine.code_differences): the share of int8 input codes the integer-only engine
    gives the same as the float-epilogue engine, one step apart, or further."""
    names = [r["layer"].replace(".conv", ".c").replace("downsample.0", "down") for r in rows]
    x = np.arange(len(rows))
    equal = np.array([r["equal %"] for r in rows])
    one = np.array([r["off by 1 %"] for r in rows])
    more = np.array([r["off by more %"] for r in rows])
    fig, (ax,) = _figure(width=9, height=2.8)
    ax.bar(x, equal, label="equal", color="tab:green")
    ax.bar(x, one, bottom=equal, label="off by 1", color="tab:orange")
    ax.bar(x, more, bottom=equal + one, label="off by more", color="tab:red")
    ax.set_ylim(max(0.0, float(equal.min()) - 5), 100)
    ax.set_xticks(x, names, rotation=60, fontsize="x-small")
    ax.set_ylabel("% of the codes a layer reads")
    ax.set_title("integer-only vs float-epilogue engine, end to end")
    ax.legend(fontsize="small", ncols=3, loc="lower left")
    return fig


def plot_memory(rows: list[dict]):
    """Flash and RAM of the exported C library (bintut.cexport.sizes_table rows) as stacked bars, in KiB."""
    fig, (ax,) = _figure(width=8, height=2.6)
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


# ----------------------------------------------------------------------------- 08: making add/sub fast


def plot_speed(rows: list[dict], key: str = "images/s", title: str = "one CPU core, one image at a time"):
    """Horizontal bars of ``row[key]`` labelled by ``row["path"]`` (e.g. bintut.cexport.kernel_timings rows)."""
    fig, (ax,) = _figure(width=7, height=0.5 + 0.45 * len(rows))
    y = np.arange(len(rows))
    bars = ax.barh(y, [r[key] for r in rows], color=[f"C{i}" for i in range(len(rows))])
    ax.bar_label(bars, labels=[f"{r[key]:,.1f}" for r in rows], padding=2, fontsize="small")
    ax.set_yticks(y, [r["path"] for r in rows], fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel(key)
    ax.set_xlim(0, max(r[key] for r in rows) * 1.2)
    ax.set_title(title)
    return fig


# ----------------------------------------------------------------------------- recorded stages (docs/recorded)
# Drawn from a recording's committed metrics (bintut.record.load_recording): the same in every mode.


def _recorded_title(ax, title: str, rec) -> None:
    cfg, p = rec.configs["baseline"], rec.provenance
    ax.set_title(f"{title}\n{rec.data}, {cfg['train_subset'] or 'all'} training / {cfg['test_subset'] or 'all'} "
                 f"test images; recorded {p.get('date', '?')[:10]} ({str(p.get('machine', '?')).split(',')[0]})",
                 fontsize="medium")


def plot_recorded_baseline(rec):
    """The recorded baseline: its test accuracy (soft: the full-precision network it trains) and, for the same
    weights binarized all at once (hard), against the epoch; training loss on the right axis."""
    from matplotlib.ticker import MaxNLocator

    rows = rec.metrics["baseline"]
    epochs = [r["epoch"] for r in rows]
    fig, (ax,) = _figure(width=6.8, height=3.6)
    ax.plot(epochs, [100 * r["soft_acc"] for r in rows], "s-", color="tab:green", label="full precision (soft)")
    ax.plot(epochs, [100 * r["hard_acc"] for r in rows], "o--", color="tab:red",
            label="the same weights binarized at once (hard)")
    from .data import num_classes

    ax.axhline(100 / num_classes(rec.configs["baseline"]["data"]), color="0.5", lw=0.8, ls=":", label="chance")
    ax.set_ylim(0, 100)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    loss = ax.twinx()
    loss.plot(epochs, [r["train_loss"] for r in rows], ":", color="grey", label="training loss")
    loss.set_ylabel("training loss")
    handles = [h + m for h, m in zip(ax.get_legend_handles_labels(), loss.get_legend_handles_labels(), strict=True)]
    ax.legend(*handles, fontsize="small", loc="center right")
    _recorded_title(ax, "the recorded baseline", rec)
    return fig


def plot_recorded_stage(rec, stage: str = "weights"):
    """A recorded binarizing stage after the baseline it starts from: hard and soft test accuracy against the
    epoch (top) while p and bin_ratio rise (bottom). Soft is the network the stage trains at the controls of the
    moment, hard the same weights with every quantizer at 1; the gap between them closes as the controls reach 1.
    """
    from matplotlib.ticker import MaxNLocator

    base, rows = rec.metrics["baseline"], rec.metrics[stage]
    offset = base[-1]["epoch"]
    fig, axes = _figure(width=6.8, height=2.7, nrows=2)
    acc, ctl = axes[:, 0]
    acc.sharex(ctl)
    b_epochs = [r["epoch"] for r in base]
    s_epochs = [offset + r["epoch"] for r in rows]
    acc.plot(b_epochs, [100 * r["soft_acc"] for r in base], "s-", color="tab:green", label="baseline (fp)")
    acc.plot([offset] + s_epochs, [100 * base[-1]["soft_acc"]] + [100 * r["soft_acc"] for r in rows], "s--",
             color="tab:blue", label="soft (controls of the moment)")
    acc.plot([offset] + s_epochs, [100 * base[-1]["hard_acc"]] + [100 * r["hard_acc"] for r in rows], "o-",
             color="tab:red", label="hard (every quantizer at 1)")
    if "deployed_acc" in rows[0]:
        acc.plot(s_epochs, [100 * r["deployed_acc"] for r in rows], "x:", color="k", label="deployed (integers)")
    acc.axhline(100 * base[-1]["soft_acc"], color="tab:green", lw=0.8, ls=":")
    acc.axvline(offset + 0.5, color="0.6", lw=0.8)
    acc.set_ylim(0, 100)
    acc.set_ylabel("test accuracy (%)")
    acc.grid(alpha=0.3)
    acc.legend(fontsize="x-small", loc="upper left")
    _recorded_title(acc, f"baseline, then the {stage} stage", rec)
    styles = {".p": ("o-", "p"), ".bin_ratio": ("x--", "bin_ratio")}
    for target in ("weights", "activations") if stage == "both" else (stage,):
        for suffix, (style, name) in styles.items():
            key = target + suffix
            ctl.plot(b_epochs + s_epochs, [0.0] * len(base) + [r.get(key, 0.0) for r in rows], style,
                     markerfacecolor="none", label=f"{target} {name}")
    ctl.axvline(offset + 0.5, color="0.6", lw=0.8)
    ctl.set_ylim(-0.05, 1.05)
    ctl.set_ylabel("control value")
    ctl.set_xlabel("epoch (baseline, then the stage)")
    ctl.xaxis.set_major_locator(MaxNLocator(integer=True))
    ctl.grid(alpha=0.3)
    ctl.legend(fontsize="small", loc="upper left")
    return fig


def plot_recorded_costs(rec):
    """What binarizing costs on the recording, in points of test accuracy (bintut.record.cost_points): the
    baseline's final accuracy minus each stage's final accuracy with its quantizers fully on."""
    from .record import cost_points

    costs = cost_points(rec)
    names = {"weights": "binary weights\n(weights stage)", "activations": "int8 inputs\n(activations stage)",
             "both": "both\n(both stage)"}
    fig, (ax,) = _figure(width=6.2, height=3.4)
    order = [s for s in ("activations", "weights", "both") if s in costs]
    bars = ax.bar(range(len(order)), [costs[s] for s in order], 0.55,
                  color=["tab:orange", "tab:blue", "tab:purple"][: len(order)])
    ax.bar_label(bars, labels=[f"{costs[s]:+.1f}" for s in order], padding=2, fontsize="small")
    ax.set_xticks(range(len(order)), [names[s] for s in order])
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylabel("cost (points of test accuracy)")
    top = max([abs(v) for v in costs.values()] + [1.0])
    ax.set_ylim(min(0.0, min(costs.values(), default=0.0)) * 1.3 - 0.5, top * 1.3)
    _recorded_title(ax, f"cost = baseline {rec.final('baseline', 'soft_acc'):.1f} % minus the stage", rec)
    return fig

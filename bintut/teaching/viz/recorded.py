"""Figures of recorded runs: accuracy by stage and the recorded curves (notebooks 02, 03, 04, 06).
"""

from __future__ import annotations

import numpy as np

from bintut.data.choice import num_classes
from bintut.teaching.viz.base import figure_grid, label_bars


def plot_stage_bars(rows: list[dict], title: str = "test accuracy by stage"):
    """Grouped bars of hard and soft accuracy, one group per row of stages.results_table."""
    fig, (ax,) = figure_grid(width=6.5)
    x = np.arange(len(rows))
    label_bars(ax, ax.bar(x - 0.2, [r["hard %"] for r in rows], 0.4, label="hard (p = bin_ratio = 1: deployable)"))
    label_bars(ax, ax.bar(x + 0.2, [r["soft %"] for r in rows], 0.4, label="soft (what the stage trained)",
                           hatch="//"))
    ax.set_xticks(x, [r["stage"] for r in rows])
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, max([r["hard %"] for r in rows] + [r["soft %"] for r in rows] + [1.0]) * 1.25)
    ax.set_title(title)
    ax.legend(fontsize="small")
    return fig


def _machine(rec) -> str:
    """The recording's machine, short: 'CPU Intel Xeon' from 'CPU Intel(R) Xeon(R) Processor, 2 cores, ...'."""
    return str(rec.provenance.get("machine", "?")).split(",")[0].replace("(R)", "").replace(" Processor", "")


def _recorded_title(ax, title: str, rec) -> None:
    cfg, p = rec.configs["baseline"], rec.provenance
    ax.set_title(f"{title}\n{rec.data}, {cfg['train_subset'] or 'all'} training / {cfg['test_subset'] or 'all'} "
                 f"test images; recorded {p.get('date', '?')[:10]} ({_machine(rec)})", fontsize="medium")


def plot_recorded_baseline(rec):
    """The recorded baseline: its test accuracy (soft: the full-precision network it trains) and, for the same
    weights binarized all at once (hard), against the epoch; training loss on the right axis."""
    from matplotlib.ticker import MaxNLocator

    rows = rec.metrics["baseline"]
    epochs = [r["epoch"] for r in rows]
    fig, (ax,) = figure_grid(width=6.8, height=3.6)
    ax.plot(epochs, [100 * r["soft_acc"] for r in rows], "s-", color="tab:green", label="full precision (soft)")
    ax.plot(epochs, [100 * r["hard_acc"] for r in rows], "o--", color="tab:red",
            label="the same weights binarized at once (hard)")

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
    fig, axes = figure_grid(width=6.8, height=2.7, nrows=2)
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
    """What binarizing costs on the recording, in points of test accuracy (bintut.teaching.lesson.cost): the
    reference's final soft accuracy (fp-continued, or the baseline in recordings without it) minus each binarizing
    stage's, each the mean over its seeds, with whiskers of the difference's uncertainty (two sampling errors and
    the seed spreads). A bar whose whisker crosses 0 is not a measured cost."""
    from bintut.teaching.lesson import BINARIZING, cost, reference_stage

    names = {"weights": "binary weights\n(weights)", "activations": "int8 inputs\n(activations)",
             "both": "both, gradual\n(both)", "abrupt": "both, at once\n(abrupt)", "p-only": "both, p\nalone",
             "ratio-only": "both, bin_ratio\nalone"}
    colours = {"weights": "tab:cyan", "activations": "tab:orange", "both": "tab:blue", "abrupt": "tab:red",
               "p-only": "tab:purple", "ratio-only": "tab:olive"}
    order = [s for s in BINARIZING if s in rec.seeds]
    costs = [cost(rec, s) for s in order]
    fig, (ax,) = figure_grid(width=7.2, height=3.4)
    bars = ax.bar(range(len(order)), [c.value for c in costs], 0.55, yerr=[c.uncertainty for c in costs],
                  capsize=5, color=[colours[s] for s in order])
    ax.bar_label(bars, labels=[f"{c.value:+.1f}" for c in costs], padding=2, fontsize="small", label_type="center")
    ax.set_xticks(range(len(order)), [names[s] for s in order], fontsize="small")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylabel("cost (points of test accuracy)")
    ref = reference_stage(rec)
    _recorded_title(ax, f"cost = {ref} {rec.final(ref, 'soft_acc'):.1f} % minus the stage, ± its uncertainty", rec)
    return fig


CONTROL_STYLES = {  # stage -> (colour, line style, label)
    "fp-continued": ("tab:green", "-", "fp-continued (no quantizer)"),
    "both": ("tab:blue", "-", "gradual (both: p and bin_ratio ramp)"),
    "abrupt": ("tab:red", "--", "abrupt (the control: binary at once)"),
    "p-only": ("tab:purple", "-.", "p alone"),
    "ratio-only": ("tab:orange", ":", "bin_ratio alone"),
}


def plot_recorded_control(rec):
    """Gradual against abrupt binarization on a recording: left, each seed's test accuracy against the epoch for
    every control stage (the binarizing stages' hard accuracy: the deployable network, p = bin_ratio = 1;
    fp-continued's soft: full precision); right, the final soft accuracy (the network each stage trained) as each
    seed's ring and the mean with whiskers of two sampling errors (bintut.teaching.lesson)."""
    from matplotlib.ticker import MaxNLocator

    from bintut.teaching.lesson import result

    stages = [s for s in CONTROL_STYLES if s in rec.seeds]
    fig, (curves, finals) = figure_grid(2, width=4.6, height=3.6)
    for stage in stages:
        colour, style, label = CONTROL_STYLES[stage]
        key = "soft_acc" if stage == "fp-continued" else "hard_acc"
        for i, rows in enumerate(rec.seeds[stage].values()):
            curves.plot([r["epoch"] for r in rows], [100 * r[key] for r in rows], style, marker="o", ms=3,
                        color=colour, alpha=0.85, label=label if i == 0 else None)
    curves.set_xlabel("epoch of the stage (each from the same baseline)")
    curves.set_ylabel("test accuracy (%): hard; fp-continued soft")
    curves.xaxis.set_major_locator(MaxNLocator(integer=True))
    curves.grid(alpha=0.3)
    curves.legend(fontsize="x-small", loc="lower right")
    curves.set_title("each seed's curve", fontsize="medium")
    for x, stage in enumerate(stages):
        r = result(rec, stage)
        colour = CONTROL_STYLES[stage][0]
        finals.errorbar([x], [r.mean], yerr=[2 * r.sampling], fmt="s", color=colour, capsize=5, ms=7)
        finals.plot([x] * len(r.per_seed), list(r.per_seed.values()), "o", color=colour, mfc="none", ms=6)
        finals.annotate(f"{r.mean:.1f}", (x, r.mean), textcoords="offset points", xytext=(9, -3), fontsize="small")
    finals.set_xticks(range(len(stages)), [s.replace("-", "-\n") for s in stages], fontsize="small")
    finals.set_xlim(-0.5, len(stages) - 0.3)
    finals.set_ylabel("final soft test accuracy (%)")
    finals.grid(alpha=0.3, axis="y")
    finals.set_title("final: seeds (rings), mean ± 2 sampling errors", fontsize="medium")
    cfg, p = rec.configs["baseline"], rec.provenance
    fig.suptitle(f"gradual against abrupt: {rec.data}, {cfg['train_subset'] or 'all'} training / "
                 f"{cfg['test_subset'] or 'all'} test images; recorded {p.get('date', '?')[:10]} ({_machine(rec)})",
                 fontsize="medium")
    return fig

"""The tutorial's stages as configurations, in three modes chosen by one switch.

Modes: ``smoke`` (synthetic data generated offline, seconds: what CI runs), ``workshop`` (a
CIFAR-100 subset on a laptop CPU, minutes; without CIFAR-100, a Fashion-MNIST subset) and ``full``
(the reference recipe on a GPU). The mode comes from the notebook's ``parameters`` cell, else
``$BINTUT_MODE``, else ``full`` on a GPU and ``workshop`` without one -- and ``smoke`` when no real
data is here at all, so that a notebook's default never fails offline (:func:`mode_line` says what
was taken).

Stages: ``baseline`` (full precision), ``weights`` (binary weights only), ``activations`` (int8
inputs only), ``both`` (weights and activations together, as the reference does) -- each later
stage starts from the baseline -- and ``reference`` (the whole recipe as one run). The controls of the
lesson (notebooks 03 and 04), each also from the baseline and for the same epochs and learning rates as
``both``: ``abrupt`` (both quantizers at p = bin_ratio = 1 from the first step: plain straight-through
training), ``p-only`` (p rises, bin_ratio stays 0), ``ratio-only`` (bin_ratio rises, p stays 0) and
``fp-continued`` (every control at 0: the baseline trained on, the fair reference for what a stage costs).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from bintut.config import TrainConfig, preset
from bintut.data.choice import data_words
from bintut.data.cifar100 import cifar100_found
from bintut.data.fashion_mnist import fashion_mnist_found
from bintut.data.images import DataNotFoundError
from bintut.files.metrics import read_metrics
from bintut.model import WeightsUnavailableError
from bintut.schedule import REFERENCE_BINARIZATION
from bintut.training.runs import Run, load_or_train, run_name, runs_dir

MODE_ENV = "BINTUT_MODE"

MODES = ("smoke", "workshop", "full")

STAGES = ("baseline", "weights", "activations", "both", "reference", "abrupt", "p-only", "ratio-only", "fp-continued")

OFF = [[1.0, "stay", 0.0, 0.0]]
ON = [[1.0, "stay", 1.0, 1.0]]

# Which controls follow the stage's ramp (the rest stay at 0); ``abrupt`` holds all four at 1 instead.
RAMPED: dict[str, tuple[str, ...]] = {
    "baseline": (), "fp-continued": (), "weights": ("weight_p", "weight_ratio"), "activations": ("act_p", "act_ratio"),
    "both": ("weight_p", "weight_ratio", "act_p", "act_ratio"), "p-only": ("weight_p", "act_p"),
    "ratio-only": ("weight_ratio", "act_ratio"), "abrupt": (),
}
CONTROLS = ("weight_p", "weight_ratio", "act_p", "act_ratio")


def stage_schedules(stage: str, ramp: list) -> dict[str, list]:
    """The four control schedules of a stage (not ``reference``), given the ramp its ramped controls follow."""
    if stage == "abrupt":
        return dict.fromkeys(CONTROLS, ON)
    return {c: ramp if c in RAMPED[stage] else OFF for c in CONTROLS}

# After the baseline: cosine 0 -> 0.5 over the first 1/8, then cosine 0.5 -> 1 (the reference's
# binarization phases, rescaled to a run that starts at the end of the baseline).
RAMP = [[0.125, "cosine", 0.0, 0.5], [1.0, "cosine", 0.5, 1.0]]

# In seconds-long smoke runs the binary network gets a quarter of the steps at p = 1 to recover.
SMOKE_RAMP = [[0.75, "cosine", 0.0, 1.0], [1.0, "stay", 1.0, 1.0]]

# Smoke stages are sized for a notebook that trains three of them in under a minute on one slow CPU core
# (each ~10 s): 32 synthetic training and 16 test images, two epochs of two steps. They prove that the
# machinery runs end to end; with fewer training images than classes their accuracies stay near chance.
MODE_SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(preset="smoke", synthetic_train=32, synthetic_test=16, epochs=2, batch_size=16,
                  eval_batch_size=16),
    "workshop": dict(preset="workshop", epochs=4),
    "full": dict(preset="seed"),
}

# Workshop mode without CIFAR-100: Fashion-MNIST (real photos; offline from Debian's package), from random
# initial weights (ImageNet weights need a download), crop+flip but no mixing (too few steps to profit from it),
# and the peak learning rate of the recorded experiment (docs/recorded). About 3 minutes of wall time per stage
# on 2 quiet Xeon cores, measured (docs/data.md): 2,000 training images x 4 epochs.
FASHION_WORKSHOP: dict[str, Any] = dict(
    data="fashion-mnist", pretrained=False, train_subset=2000, test_subset=500, mix_prob=0.0,
    lr=[[0.1, "linear", 1e-4, 2e-3], [1.0, "cosine", 2e-3, 1e-4]],
)

# The reference spends 60 of its 300 epochs on the baseline; the stage-wise version keeps that split.
FULL_EPOCHS = {"baseline": 60, "reference": 300} | dict.fromkeys(STAGES[1:4] + STAGES[5:], 240)


def resolve_mode(mode: str | None = None, fallback: bool = True) -> str:
    """The parameter, else $BINTUT_MODE, else 'full' on a GPU and 'workshop' without one.

    With ``fallback``, the default (neither parameter nor $BINTUT_MODE) is 'smoke' where no real data is
    found (no CIFAR-100, no Fashion-MNIST): offline, a notebook's default runs rather than fails.
    Raises ValueError, listing the modes and where the bad one came from, for an unknown mode.
    """
    chosen = mode or os.environ.get(MODE_ENV)
    if chosen is None:
        chosen = "full" if torch.cuda.is_available() else "workshop"
        if fallback and workshop_data() is None:
            chosen = "smoke"
    if chosen not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {chosen!r} (from the parameters cell or ${MODE_ENV})")
    return chosen


def workshop_data(root: str | os.PathLike | None = None) -> str | None:
    """The real data found here: 'cifar100' (in the data root), else 'fashion-mnist' (data root or Debian's
    package), else None. Looks at files only; reads nothing."""
    if cifar100_found(root):
        return "cifar100"
    return "fashion-mnist" if fashion_mnist_found(root) else None


def mode_line(mode: str) -> str:
    """One line for a notebook's first cell: the mode, and the data and recipe it takes here."""
    if mode == "smoke":
        why = ""
        if os.environ.get(MODE_ENV) is None and workshop_data() is None and not torch.cuda.is_available():
            why = " (no CIFAR-100 or Fashion-MNIST found here, so not workshop mode)"
        return (f"running in smoke mode{why}: synthetic data generated offline, random initial weights, seconds "
                "per stage; accuracies stay near chance")
    cfg = stage_config("baseline", mode)
    if cfg.data == "fashion-mnist":
        return (f"running in {mode} mode on Fashion-MNIST (no CIFAR-100 in {cfg.data_root or 'the data root'}): "
                f"{cfg.train_subset:,} training and {cfg.test_subset:,} test images, random initial weights, "
                f"{cfg.epochs} epochs per stage (about 3 minutes of wall time per stage on 2 cores, measured: "
                "docs/data.md)")
    subset = f"{cfg.train_subset:,} training images, " if cfg.train_subset else ""
    return f"running in {mode} mode on CIFAR-100: {subset}{cfg.epochs} epochs per stage"


def stage_config(stage: str, mode: str | None = None, **overrides: Any) -> TrainConfig:
    """The configuration of one tutorial stage in one mode.

    Raises ValueError listing the stages for an unknown ``stage`` (and as :func:`resolve_mode` and
    :func:`bintut.config.preset` do for a bad mode or override)."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    mode = resolve_mode(mode)
    settings = dict(MODE_SETTINGS[mode])
    name = settings.pop("preset")
    if mode == "full":
        settings["epochs"] = FULL_EPOCHS[stage]
    if mode == "workshop" and (overrides.get("data") or workshop_data(overrides.get("data_root"))) == "fashion-mnist":
        settings |= FASHION_WORKSHOP  # found here, or asked for by name
    if stage == "reference":
        if mode == "smoke":
            ref = [[0.2, "stay", 0.0, 0.0], [0.7, "cosine", 0.0, 1.0], [1.0, "stay", 1.0, 1.0]]
            settings |= dict(weight_p=ref, weight_ratio=ref, act_p=ref, act_ratio=ref)
        elif mode == "workshop":
            settings |= dict(weight_p=REFERENCE_BINARIZATION, weight_ratio=REFERENCE_BINARIZATION,
                             act_p=REFERENCE_BINARIZATION, act_ratio=REFERENCE_BINARIZATION)
        return preset(name, **{**settings, **overrides})
    settings |= stage_schedules(stage, SMOKE_RAMP if mode == "smoke" else RAMP)
    if stage != "baseline":  # later stages start from the baseline's run folder
        base = {k: v for k, v in overrides.items() if k == "data"}
        settings["init_from"] = str(runs_dir() / run_name(stage_config("baseline", mode, **base), "baseline"))
    return preset(name, **{**settings, **overrides})


# What each stage trains, in words (rows of results_table).
STAGE_TITLES = {
    "baseline": "full precision",
    "weights": "binary weights, fp activations",
    "activations": "fp weights, int8 activations",
    "both": "binary weights + int8 activations",
    "reference": "the reference recipe as one run",
    "abrupt": "binary weights + int8 activations at once (the control)",
    "p-only": "binary weights + int8 activations, p alone",
    "ratio-only": "binary weights + int8 activations, bin_ratio alone",
    "fp-continued": "full precision, trained on (the reference for costs)",
}

# The published reference (github.com/SebastianFia/binary_resnet18): CIFAR-100, one 300-epoch run.
PUBLISHED = {"fp": (76.7, 60, "full precision, end of the first 60 epochs"),
             "binary": (74.3, 300, "fully binary (±1·scale weights, int8 activations), epoch 300")}

NOTEBOOK_HINT = ('Set mode = "smoke" in the parameters cell (synthetic data generated offline, random initial '
                 "weights) to run this notebook without downloads; or install Fashion-MNIST (apt-get install "
                 "dataset-fashion-mnist) for workshop mode on real images.")


def run_stage(stage: str, mode: str | None = None, *, verbose: bool = True, **overrides: Any) -> Run:
    """Load the stage's finished run, or train it (and the baseline it starts from) first.

    Says which of the two happens (loading only when ``verbose``); a missing data set or weights file
    raises the library's error with one more line for notebook readers (how to switch to smoke mode).
    """
    if stage not in ("baseline", "reference"):
        run_stage("baseline", mode, verbose=False)
    cfg = stage_config(stage, mode, **overrides)
    out = runs_dir() / run_name(cfg, stage)
    done = read_metrics(out)
    if done and done[-1]["epoch"] >= cfg.epochs:
        if verbose:
            print(f"{stage}: loading the finished run {out} (delete the folder to train again)")
    else:
        print(f"{stage}: training {cfg.epochs} epochs on {data_words(cfg)} -> {out}", flush=True)
    try:
        return load_or_train(cfg, label=stage)
    except (DataNotFoundError, WeightsUnavailableError) as err:
        raise type(err)(f"{NOTEBOOK_HINT}\nWhat was missing: {err}") from None  # one traceback, the hint first


def describe(run: Run, label: str) -> str:
    """One honest line: what was run, in which mode and on which data, and what it reached."""
    cfg, last = run.config, run.final
    deployed = "" if last.get("deployed_acc") is None else f" / {100 * last['deployed_acc']:.1f} % deployed"
    return (f"{label}: {100 * last['hard_acc']:.1f} % hard / {100 * last['soft_acc']:.1f} % soft{deployed} "
            "test accuracy "
            f"after {last['epoch']} epochs on {data_words(cfg)} (preset {cfg.preset}, run {run.out.name})")


def comparable(stage: str, run: Run) -> str:
    """Whether a run can stand beside the published numbers, and if not, why not (one phrase)."""
    cfg = run.config
    if stage != "reference":
        return "no: a tutorial stage (its own LR schedule and restart)"
    if cfg.data != "cifar100":
        return "no: synthetic data" if cfg.data == "synthetic" else f"no: {data_words(cfg)}, not CIFAR-100"
    if cfg.train_subset or cfg.epochs != PUBLISHED["binary"][1]:
        return f"no: {cfg.preset} preset ({cfg.train_subset or 'all'} images, {cfg.epochs} epochs)"
    return "yes: the reference recipe (docs/recipe.md lists the remaining differences)"


def _points(value: float | None) -> float | str:
    return "n/a" if value is None else round(100 * value, 1)


def results_table(runs: dict[str, Run]) -> list[dict[str, Any]]:
    """One row per finished run, keyed by stage name: what it trains, hard and soft accuracy, and
    whether it is comparable to the published numbers (only the ``reference`` stage in full mode is).

    "hard" evaluates with every quantizer at p = bin_ratio = 1 (the reference's fake-quantized float
    network); "soft" with the controls at the end of the run, i.e. the network this stage trained;
    "deployed" is the integer-only network the C library runs (n/a for runs recorded before it existed).
    """
    rows = []
    for stage, run in runs.items():
        last = run.final
        rows.append({
            "stage": stage, "trains": STAGE_TITLES.get(stage, stage), "data": data_words(run.config).split(" (")[0],
            "epochs": last["epoch"],
            "hard %": round(100 * last["hard_acc"], 1), "soft %": round(100 * last["soft_acc"], 1),
            "deployed %": _points(last.get("deployed_acc")),
            "weights p": round(last.get("weights.p", 0.0), 3),
            "activations p": round(last.get("activations.p", 0.0), 3),
            "comparable to published": comparable(stage, run),
        })
    return rows


def reference_comparison(run: Run) -> list[dict[str, Any]]:
    """The reference stage beside the published numbers: its full-precision accuracy at the end of the
    fp phase (the last epoch with both controls at 0, i.e. t <= 0.2) and its final hard accuracy."""
    fp_rows = [r for r in run.metrics if r.get("weights.p", 0) == 0 and r.get("activations.p", 0) == 0]
    fp = fp_rows[-1] if fp_rows else None
    verdict = comparable("reference", run)
    rows = []
    for key, (value, epoch, what) in PUBLISHED.items():
        row = fp if key == "fp" else run.final
        acc = "soft_acc" if key == "fp" else "hard_acc"
        ours = f"{100 * row[acc]:.1f} % (epoch {row['epoch']})" if row else "no epoch with both controls at 0"
        rows.append({"what": what, "published (epoch)": f"{value} % ({epoch})", f"this run ({run.out.name})": ours,
                     "comparable": verdict})
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of dict rows (shared keys), for print() in notebooks and docs."""
    if not rows:
        return ""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "|".join(" --- " for _ in keys) + "|"]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)

"""The tutorial's stages as configurations, in three modes chosen by one switch.

Modes: ``smoke`` (synthetic data generated offline, seconds: what CI runs), ``workshop`` (a
CIFAR-100 subset on a laptop CPU, minutes) and ``full`` (the reference recipe on a GPU). The mode
comes from the notebook's ``parameters`` cell, else ``$BINTUT_MODE``, else ``full`` on a GPU and
``workshop`` without one.

Stages: ``baseline`` (full precision), ``weights`` (binary weights only), ``activations`` (int8
inputs only), ``both`` (weights and activations together, as the reference does) -- each later
stage starts from the baseline -- and ``reference`` (the whole recipe as one run).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from .config import TrainConfig, preset
from .runs import Run, load_or_train, run_name, runs_dir
from .schedule import REFERENCE_BINARIZATION

MODE_ENV = "BINTUT_MODE"
MODES = ("smoke", "workshop", "full")
STAGES = ("baseline", "weights", "activations", "both", "reference")

OFF = [[1.0, "stay", 0.0, 0.0]]
# After the baseline: cosine 0 -> 0.5 over the first 1/8, then cosine 0.5 -> 1 (the reference's
# binarization phases, rescaled to a run that starts at the end of the baseline).
RAMP = [[0.125, "cosine", 0.0, 0.5], [1.0, "cosine", 0.5, 1.0]]
# In seconds-long smoke runs the binary network gets a quarter of the steps at p = 1 to recover.
SMOKE_RAMP = [[0.75, "cosine", 0.0, 1.0], [1.0, "stay", 1.0, 1.0]]

MODE_SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(preset="smoke", synthetic_train=256, synthetic_test=100, epochs=2, batch_size=16, progress=False),
    "workshop": dict(preset="workshop", epochs=4),
    "full": dict(preset="seed"),
}
# The reference spends 60 of its 300 epochs on the baseline; the stage-wise version keeps that split.
FULL_EPOCHS = {"baseline": 60, "weights": 240, "activations": 240, "both": 240, "reference": 300}


def resolve_mode(mode: str | None = None) -> str:
    """The parameter, else $BINTUT_MODE, else 'full' on a GPU and 'workshop' without one."""
    mode = mode or os.environ.get(MODE_ENV) or ("full" if torch.cuda.is_available() else "workshop")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r} (from the parameters cell or ${MODE_ENV})")
    return mode


def stage_config(stage: str, mode: str | None = None, **overrides: Any) -> TrainConfig:
    """The configuration of one tutorial stage in one mode."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    mode = resolve_mode(mode)
    settings = dict(MODE_SETTINGS[mode])
    name = settings.pop("preset")
    if mode == "full":
        settings["epochs"] = FULL_EPOCHS[stage]
    if stage == "reference":
        if mode == "smoke":
            ref = [[0.2, "stay", 0.0, 0.0], [0.7, "cosine", 0.0, 1.0], [1.0, "stay", 1.0, 1.0]]
            settings |= dict(epochs=3, weight_p=ref, weight_ratio=ref, act_p=ref, act_ratio=ref)
        elif mode == "workshop":
            settings |= dict(weight_p=REFERENCE_BINARIZATION, weight_ratio=REFERENCE_BINARIZATION,
                             act_p=REFERENCE_BINARIZATION, act_ratio=REFERENCE_BINARIZATION)
        return preset(name, **{**settings, **overrides})
    ramp = SMOKE_RAMP if mode == "smoke" else RAMP
    weights = ramp if stage in ("weights", "both") else OFF
    acts = ramp if stage in ("activations", "both") else OFF
    settings |= dict(weight_p=weights, weight_ratio=weights, act_p=acts, act_ratio=acts)
    if stage != "baseline":  # later stages start from the baseline's run folder
        settings["init_from"] = str(runs_dir() / run_name(stage_config("baseline", mode), "baseline"))
    return preset(name, **{**settings, **overrides})


def run_stage(stage: str, mode: str | None = None, **overrides: Any) -> Run:
    """Load the stage's finished run, or train it (and the baseline it starts from) first."""
    if stage not in ("baseline", "reference"):
        run_stage("baseline", mode)
    return load_or_train(stage_config(stage, mode, **overrides), label=stage)


def describe(run: Run, label: str) -> str:
    """One honest line: what was run, in which mode and on which data, and what it reached."""
    cfg, last = run.config, run.final
    data = "synthetic data generated offline" if cfg.data == "synthetic" else "CIFAR-100"
    if cfg.train_subset:
        data += f" ({cfg.train_subset} training images)"
    return (f"{label}: {100 * last['hard_acc']:.1f} % hard / {100 * last['soft_acc']:.1f} % soft test accuracy "
            f"after {last['epoch']} epochs on {data} (preset {cfg.preset}, run {run.out.name})")


def results_table(runs: dict[str, Run]) -> list[dict[str, Any]]:
    """Rows of (stage, data, epochs, hard %, soft %, weights p, activations p) from finished runs."""
    rows = []
    for label, run in runs.items():
        last = run.final
        rows.append({
            "stage": label, "data": run.config.data, "epochs": last["epoch"],
            "hard %": round(100 * last["hard_acc"], 1), "soft %": round(100 * last["soft_acc"], 1),
            "weights p": round(last.get("weights.p", 0.0), 3),
            "activations p": round(last.get("activations.p", 0.0), 3),
            "run": run.out.name,
        })
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of dict rows (shared keys), for print() in notebooks and docs."""
    if not rows:
        return ""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "|".join(" --- " for _ in keys) + "|"]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)
